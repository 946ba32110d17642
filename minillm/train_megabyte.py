"""MEGABYTE against a flat byte transformer at equal training compute, on the prose + code mix.

    python -m minillm.train_megabyte --preset megabyte --threads 1   # trains in runs/megabyte/ (resumable)
    python -m minillm.train_megabyte --preset flat --threads 1       # the baseline, in runs/flat/
    python -m minillm.train_megabyte --compare                       # parameters and FLOPs of each preset
    python -m minillm.train_megabyte --preset megabyte --threads 1 --checkpoint megabyte   # ... then save

What is matched, as in the paper's Table 2 (Yu et al., 2023, arXiv 2305.07185): training compute.
Both presets see the same batches (same seed, batch size, context T = 512 bytes, prose/code mix) for
the same number of steps with the same schedule, and their forward FLOPs per byte
(`flops_per_byte`) agree within 3 %. MEGABYTE spends that compute on about 6.6x the parameters,
because its big feed-forward layers run once per patch of P = 8 bytes instead of once per byte.
Both are scored by `megabyte.byte_loss` on exactly the same bytes. The schedule, batches and
optimizer and loop are minillm.train's (`fit`).

At T = 512 attention is only 24 % of the flat model's FLOPs, so there is little for patches to save.
The presets `flat_2k` and `megabyte_2k` (T = 2048, attention 56 %) are the paper's regime; the
compute-matched sweep over them is benchmarks/megabyte_fair.py.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn

from . import data
from .config import ModelConfig
from .megabyte import Megabyte, MegabyteConfig, bits_per_byte, byte_loss
from .model import MiniLLM
from .train import TrainConfig, add_run_arguments, check_run_arguments, fit, load_state, sum_minutes


@dataclass(frozen=True)
class Flops:
    """Forward FLOPs per byte, split into weight matmuls and attention (scores + weighted values)."""

    matmul: float
    attention: float

    @property
    def total(self) -> float:
        return self.matmul + self.attention


def _stack_flops(width: int, n_layers: int, mlp_ratio: int, keys: float) -> Flops:
    """One position through n_layers Blocks, attending to `keys` keys. 2 FLOPs per multiply-add."""
    matmul = 2 * n_layers * (4 + 2 * mlp_ratio) * width**2  # qkv (3), proj (1), up + down (2·mlp_ratio)
    return Flops(matmul, 2 * 2 * n_layers * keys * width)  # q·k and weights·v


def flops_breakdown(config: MegabyteConfig | ModelConfig, seq_len: int, causal: bool = True) -> dict[str, Flops]:
    """Forward FLOPs per byte by part of the model: where the compute goes (see flops_per_byte).

    MEGABYTE: "global" (its stack runs once per patch, so its cost per byte is divided by P),
    "local" (once per byte, attending within the patch) and "projections" (W_GL and the output
    head, once per byte). A flat model: "layers" and "head".
    """
    if isinstance(config, ModelConfig):
        keys = (seq_len + 1) / 2 if causal else seq_len
        layers = _stack_flops(config.d_model, config.n_layers, config.mlp_ratio, keys)
        return {"layers": layers, "head": Flops(2 * config.d_model * config.vocab_size, 0.0)}
    if not isinstance(config, MegabyteConfig):
        raise TypeError(f"config must be a MegabyteConfig or ModelConfig, got {type(config).__name__}")
    c, P = config, config.patch_size
    K = -(-seq_len // P)
    g = _stack_flops(c.global_width, c.n_global_layers, c.mlp_ratio, (K + 1) / 2 if causal else K)
    loc = _stack_flops(c.d_local, c.n_local_layers, c.mlp_ratio, (P + 1) / 2 if causal else P)
    return {
        "global": Flops(g.matmul / P, g.attention / P),
        "local": loc,
        "projections": Flops(2 * c.d_global * c.d_local + 2 * c.d_local * c.vocab_size, 0.0),
    }


def flops_per_byte(config: MegabyteConfig | ModelConfig, seq_len: int, causal: bool = True) -> Flops:
    """Forward FLOPs per byte of a model on sequences of seq_len bytes (training costs ~3x that).

    Counts weight matmuls (the head included) and attention; ignores norms, softmax, embedding
    lookups and adds. causal=True counts the (n + 1) / 2 keys a query needs on average, False all n
    (what a dense kernel computes). MEGABYTE's global stack runs once per patch, hence the / P.
    """
    parts = flops_breakdown(config, seq_len, causal).values()
    return Flops(sum(f.matmul for f in parts), sum(f.attention for f in parts))


@dataclass(frozen=True)
class ByteRun:
    """A preset: the data and schedule (minillm.train's TrainConfig) and, for MEGABYTE, its model.

    train.model.max_seq_len is the context T in bytes for both. With megabyte=None the model is
    the flat MiniLLM(train.model); otherwise only train.model.max_seq_len is read.
    """

    train: TrainConfig
    megabyte: MegabyteConfig | None = None

    @property
    def seq_len(self) -> int:
        return self.train.model.max_seq_len

    def build(self) -> Megabyte | MiniLLM:
        return MiniLLM(self.train.model) if self.megabyte is None else Megabyte(self.megabyte)

    def flops_per_byte(self) -> Flops:
        return flops_per_byte(self.train.model if self.megabyte is None else self.megabyte, self.seq_len)


_T = 512  # context in bytes: P = T ** (1/3) = 8 is the paper's cost-optimal patch size
_RECIPE = TrainConfig(
    model=ModelConfig(d_model=128, n_layers=4, n_heads=4, max_seq_len=_T),  # the flat baseline
    batch_size=16, steps=4000, lr=2e-3, min_lr=2e-4, warmup=200, eval_every=250, save_every=250,
)  # fmt: skip
# MEGABYTE at the flat preset's FLOPs per byte (-2 %): global 4 x 320 wide over 64 patches, local 2 x 128
_MEGABYTE = MegabyteConfig(
    patch_size=8, d_global=40, n_global_layers=4, n_global_heads=5,
    d_local=128, n_local_layers=2, n_local_heads=4, max_patches=_T // 8,
)  # fmt: skip
_TINY = replace(_RECIPE, batch_size=8, steps=50, warmup=10, eval_every=25, save_every=25)
_TINY_MEGABYTE = MegabyteConfig(
    patch_size=4, d_global=12, n_global_heads=2, d_local=24, n_local_heads=2, max_patches=16
)
# The fair test (benchmarks/megabyte_fair.py): T = 2048, where attention is 56 % of the flat model's
# FLOPs, a constant learning rate after warm-up so that one run passes through every compute budget,
# and MEGABYTE's global stack widened (8 x 60 = 480, 6 heads) to match the flat FLOPs per byte (+0.6 %).
_T_LONG = 2048
_LONG = replace(
    _RECIPE, model=replace(_RECIPE.model, max_seq_len=_T_LONG), batch_size=4, steps=720,
    lr=2e-3, min_lr=2e-3, warmup=30, eval_every=60, save_every=60,
)  # fmt: skip
_MEGABYTE_LONG = MegabyteConfig(
    patch_size=8, d_global=60, n_global_layers=4, n_global_heads=6,
    d_local=128, n_local_layers=2, n_local_heads=4, max_patches=_T_LONG // 8,
)  # fmt: skip
PRESETS: dict[str, ByteRun] = {
    "flat": ByteRun(_RECIPE),  # the course's base width and depth at context 512: 0.8M parameters
    "megabyte": ByteRun(_RECIPE, _MEGABYTE),  # 5.4M parameters
    "flat_2k": ByteRun(_LONG),  # the same 0.8M-parameter model at context 2048
    "megabyte_2k": ByteRun(_LONG, _MEGABYTE_LONG),  # 11.6M parameters
    # seconds on a CPU, for tests and notebook demos; matched in FLOPs per byte too (0.074 vs 0.070 M)
    "tiny_flat": ByteRun(replace(_TINY, model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=64))),
    "tiny_megabyte": ByteRun(replace(_TINY, model=ModelConfig(max_seq_len=64)), _TINY_MEGABYTE),
}


def compare(runs: dict[str, ByteRun] | None = None) -> dict[str, dict]:
    """Parameters and FLOPs per byte (forward; x3 for training) of each preset: what is matched."""
    runs = PRESETS if runs is None else runs
    out = {}
    for name, run in runs.items():
        f = run.flops_per_byte()
        out[name] = {
            "parameters": run.build().num_parameters(),
            "seq_len": run.seq_len,
            "mflops_per_byte": round(f.total / 1e6, 4),
            "attention_share": round(f.attention / f.total, 3),
            "bytes_per_step": run.train.batch_size * run.seq_len,
        }
    return out


def evaluate(model: nn.Module, run: ByteRun) -> dict:
    """Validation bits per byte per kind on fixed batches: the same bytes for every model."""
    gen = torch.Generator().manual_seed(1234)
    out = {}
    for kind in data.KINDS:
        x, _ = data.sample_batch(data.load_bytes(kind, "val"), 32, run.seq_len, gen, run.train.prefix)
        out[f"val_bpb_{kind}"] = round(bits_per_byte(model, x), 4)
    return out


@torch.no_grad()
def test_report(model: nn.Module, run: ByteRun, batch_size: int = 32) -> dict:
    """Test bits per byte per kind on held-out bytes (the test split): the same bytes for every model."""
    model.eval()
    gen = torch.Generator().manual_seed(0)
    out = {}
    for kind in data.KINDS:
        x, _ = data.sample_batch(data.load_bytes(kind, "test"), batch_size, run.seq_len, gen, run.train.prefix)
        out[f"test_bpb_{kind}"] = round(bits_per_byte(model, x), 4)
    return out


def train(run: ByteRun, out_dir: str | Path, resume: bool = True, max_minutes: float | None = None,
          progress: bool = True, stop_at: int | None = None) -> nn.Module:  # fmt: skip
    """Train (or resume) a preset in out_dir with minillm.train's loop; pauses after max_minutes or at stop_at."""
    cfg = run.train
    torch.manual_seed(cfg.seed)
    flops_per_step = 3 * run.flops_per_byte().total * cfg.batch_size * (run.seq_len - 1)

    def evaluate_fn(model: nn.Module, step: int) -> dict:
        return {**evaluate(model, run), "train_tflops": round(step * flops_per_step / 1e12, 3)}

    # both models score the bytes x[:, 1:] of the same BOS-first batches
    return fit(
        run.build(),
        cfg,
        out_dir,
        lambda model, x, y: byte_loss(model, x),
        evaluate_fn,
        asdict(run),
        resume,
        max_minutes,
        progress,
        stop_at,
    )


def save_run(model: nn.Module, run: ByteRun, preset: str, out: Path, name: str, argv: list[str], **extra) -> Path:
    """Save a finished run as minillm/checkpoints/NAME.* with its recipe, what is matched, and test bpb."""
    from .pretrained import save_checkpoint

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    matched = {k: v for k, v in compare({preset: run})[preset].items() if k != "attention_share"}
    meta = {
        "preset": preset,
        "matched": "training compute: the same batches, steps and schedule as the other preset, at nearly the "
        "same forward MFLOPs per byte (mflops_per_byte)",
        **matched,
        "train_config": {k: v for k, v in asdict(run.train).items() if k != "model"},
        "corpus_sha256": {kind: data.corpus_sha256(kind) for kind in data.KINDS},
        "steps": log[-1]["step"],
        "schedule_complete": log[-1]["step"] >= run.train.steps,  # False: paused early, learning rate not decayed
        "train_minutes": sum_minutes(log),
        "final": log[-1],
        "curve": [{k: e[k] for k in ("step", "train_tflops", "val_bpb_prose", "val_bpb_code")} for e in log],
        **test_report(model, run),
        "command": "python -m minillm.train_megabyte " + shlex.join(argv),
        **extra,
    }
    return save_checkpoint(model, name, meta)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train MEGABYTE or its matched flat baseline (resumable).")
    parser.add_argument("--preset", choices=sorted(PRESETS))
    parser.add_argument("--compare", action="store_true", help="print parameters and FLOPs of every preset")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if args.compare:
        print(json.dumps(compare(), indent=2))
        return
    if args.preset is None:
        parser.error("give --preset NAME (or --compare)")
    out = check_run_arguments(parser, args)
    run = PRESETS[args.preset]
    if args.steps is not None:
        run = replace(run, train=replace(run.train, steps=args.steps))
    model = train(run, out, resume=not args.no_resume, max_minutes=args.max_minutes, stop_at=args.stop_at)
    step = load_state(out / "state.pt")["step"]
    if args.checkpoint and (step >= run.train.steps or step == args.stop_at):
        print("saved", save_run(model, run, args.preset, out, args.checkpoint, sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
