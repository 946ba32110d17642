"""Training: named presets, seeded, resumable, with the diagnostics the course needs.

    python -m minillm.train --preset base                 # trains, resuming from runs/base/ if there
    python -m minillm.train --preset base --checkpoint base   # ... then writes minillm/checkpoints/base.*

Every `eval_every` steps the run logs (runs/NAME/log.jsonl) the validation loss in bits per byte,
the attention mass on position 0 per layer and head (the attention-sink diagnostic) and, on a
prose stream six contexts long, the perplexity of window attention against attention sinks: the
numbers that tell whether the model has grown sinks yet. The whole state (weights, optimizer, data
generator, step) is saved every `save_every` steps, so a killed run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from . import data, validate
from .cache import SinkCache, WindowCache
from .config import ModelConfig
from .model import MiniLLM
from .probes import sink_mass
from .streaming import stream_nll
from .tokenizer import ByteTokenizer

BOS, SINK = ByteTokenizer.bos_id, ByteTokenizer.sink_id


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    batch_size: int = 32
    steps: int = 20_000
    lr: float = 2e-3  # peak learning rate (AdamW), after a linear warm-up
    min_lr: float = 2e-4  # cosine decay ends here
    warmup: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    prose_fraction: float = 0.5  # share of each batch drawn from prose; the rest is code
    prefix: tuple[int, ...] = (BOS,)  # tokens every sample starts with
    seed: int = 0
    eval_every: int = 500
    save_every: int = 250

    def __post_init__(self) -> None:
        if self.model is not None and not isinstance(self.model, ModelConfig):  # None: another model's run
            raise TypeError(f"TrainConfig.model must be a ModelConfig or None, got {type(self.model).__name__}")
        for name in ("batch_size", "steps", "eval_every", "save_every"):
            if validate.check_int(f"TrainConfig.{name}", getattr(self, name)) <= 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {getattr(self, name)}")
        validate.check_int("TrainConfig.warmup", self.warmup, 0)
        validate.check_int("TrainConfig.seed", self.seed, 0)
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "prose_fraction"):
            validate.check_float(f"TrainConfig.{name}", getattr(self, name), 0)
        if not 0 <= self.prose_fraction <= 1:
            raise ValueError(f"TrainConfig.prose_fraction must be in [0, 1], got {self.prose_fraction}")
        if not 0 < self.min_lr <= self.lr:
            raise ValueError(f"need 0 < min_lr <= lr, got min_lr={self.min_lr}, lr={self.lr}")


PRESETS: dict[str, TrainConfig] = {
    # the course's model: 4 layers, d=128, context 128
    "base": TrainConfig(),
    # the same recipe with StreamingLLM's learnable sink token prepended to every sample (§3.3)
    "sink_token": TrainConfig(prefix=(SINK, BOS)),
    # seconds on a CPU: for tests and notebook demos
    "tiny": TrainConfig(
        model=ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32),
        batch_size=8,
        steps=50,
        warmup=10,
        eval_every=25,
        save_every=25,
    ),
}


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to cfg.min_lr at cfg.steps."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def get_batch(cfg: TrainConfig, split: str, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch mixing prose and code rows, each starting with cfg.prefix."""
    n_prose = round(cfg.batch_size * cfg.prose_fraction)
    parts = [(kind, n) for kind, n in (("prose", n_prose), ("code", cfg.batch_size - n_prose)) if n]
    batches = [
        data.sample_batch(data.load_bytes(kind, split), n, cfg.model.max_seq_len, generator, cfg.prefix)
        for kind, n in parts
    ]
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not norms), as nanoGPT does."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95))


@torch.no_grad()
def evaluate(model: MiniLLM, cfg: TrainConfig) -> dict:
    """Validation bits per byte per kind, sink mass per layer/head, window vs sink perplexity."""
    gen = torch.Generator().manual_seed(1234)  # the same validation batches every time
    T = cfg.model.max_seq_len
    out = {}
    for kind in data.KINDS:
        x, y = data.sample_batch(data.load_bytes(kind, "val"), 32, T, gen, cfg.prefix)
        loss = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())
        out[f"val_bpb_{kind}"] = round(loss.item() / math.log(2), 4)
    x, _ = data.sample_batch(data.load_bytes("prose", "val"), 8, T, gen, cfg.prefix)
    out["sink_mass"] = [[round(m, 3) for m in row] for row in sink_mass(model, x).tolist()]
    # A stream 6 contexts long, cache of half a context: after eviction, how much does losing the
    # first tokens cost? (the measure of chapter 03)
    stream = list(cfg.prefix) + data.eval_stream("prose", "val", 6 * T)[1:]
    window = T // 2
    evicted = slice(window + len(cfg.prefix), None)
    window_ppl = stream_nll(model, stream, WindowCache(window))[evicted].mean().exp().item()
    sink_ppl = stream_nll(model, stream, SinkCache(4, window - 4))[evicted].mean().exp().item()
    out["stream_ppl_window"], out["stream_ppl_sink4"] = round(window_ppl, 3), round(sink_ppl, 3)
    return out


def fit(
    model: torch.nn.Module,
    cfg: TrainConfig,
    out_dir: str | Path,
    loss_fn: Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
    evaluate_fn: Callable[[torch.nn.Module, int], dict],
    record: dict,
    resume: bool = True,
    max_minutes: float | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> torch.nn.Module:
    """The training loop every model of the course shares: AdamW with warm-up and cosine decay,
    gradient clipping, an evaluation every cfg.eval_every steps appended to out_dir/log.jsonl, and
    the whole state saved every cfg.save_every steps so that a killed run resumes exactly.

    loss_fn(model, inputs, targets) -> scalar loss in nats; evaluate_fn(model, step) -> dict to log;
    `record` describes the run (a resumed run must have the same record). Pauses (resumably) after
    max_minutes, or on reaching step `stop_at` with the schedule still set for cfg.steps.
    """
    if stop_at is not None:
        validate.check_int("stop_at", stop_at, 1)
    if max_minutes is not None:
        validate.check_float("max_minutes", max_minutes, 0)  # 0: one step, then pause
    validate.check_bool("resume", resume)
    out_dir = writable_dir("out_dir", out_dir)
    state_path, log_path = out_dir / "state.pt", out_dir / "log.jsonl"
    optimizer = make_optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)  # the batches, independent of model init
    step = 0
    if resume and state_path.exists():
        state = load_state(state_path)
        if state["config"] != record:
            raise ValueError(f"{state_path} was trained with another config; use another --out or --no-resume")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        step = state["step"]
        truncate_log(log_path, step)  # entries after the saved step are about to be redone
    elif log_path.exists():
        log_path.unlink()

    def save() -> None:
        state = {
            "config": record,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "generator": generator.get_state(),
            "step": step,
        }
        tmp = out_dir / "state.tmp"
        try:
            torch.save(state, tmp)
            tmp.replace(state_path)  # atomic: a kill never leaves half a file
        except (OSError, RuntimeError) as e:  # torch reports a full disk as "[enforce fail at ...]"
            tmp.unlink(missing_ok=True)
            saved = f"the last saved state ({state_path}) is unchanged" if state_path.exists() else "nothing saved"
            raise OSError(
                f"could not save the training state at step {step} in {out_dir} (disk full or not writable?): "
                f"{e}; {saved}, and rerunning the same command resumes from it"
            ) from None

    def step_done(step: int, loss: torch.Tensor) -> None:
        """The progress bar, and the evaluation and save that are due after `step`."""
        bar.update(1)
        bar.set_postfix(bpb=f"{loss.item() / math.log(2):.3f}")
        if step % cfg.eval_every == 0 or step in (cfg.steps, stop_at):
            model.eval()
            with torch.no_grad():
                metrics = evaluate_fn(model, step)
            model.train()
            entry = {
                "step": step,
                "train_bpb": round(loss.item() / math.log(2), 4),
                **metrics,
                "minutes": round((time.time() - start) / 60, 2),
            }
            with log_path.open("a") as f:
                f.write(json.dumps(entry) + "\n")
            bar.write(json.dumps({k: v for k, v in entry.items() if k != "sink_mass"}))
        if step % cfg.save_every == 0 or step in (cfg.steps, stop_at):
            save()

    end = cfg.steps if stop_at is None else min(cfg.steps, stop_at)
    start = time.time()
    model.train()
    bar = tqdm(total=end, initial=min(step, end), disable=not progress, desc="train")
    # Where Ctrl-C can land: "idle" (state consistent), "drawn" (a batch drawn, weights untouched:
    # rewind the generator) or "updating" (weights, or the step's log entry, may be ahead of or behind
    # `step`: nothing consistent to save; the last save is the way back).
    phase = "idle"
    try:
        while step < end:
            batch_state = generator.get_state()
            phase = "drawn"
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(cfg, step)
            x, y = get_batch(cfg, "train", generator)
            loss = loss_fn(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            phase = "updating"
            optimizer.step()
            step += 1
            step_done(step, loss)
            phase = "idle"
            if max_minutes is not None and time.time() - start > 60 * max_minutes:
                save()
                break
    except KeyboardInterrupt:
        if phase == "updating":
            print(f"interrupted during an update or its log; resuming starts from the last state saved in {out_dir}")
        else:
            if phase == "drawn":
                generator.set_state(batch_state)  # the unfinished step's batch is drawn again on resume
            save()
            print(f"interrupted: state saved at step {step} in {state_path}; run the same command again to resume")
        raise
    finally:
        bar.close()
    return model.eval()


def writable_dir(name: str, path: str | Path) -> Path:
    """`path` as a directory that exists and takes files, checked before any work is done."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"{name} must be a str or Path, got {type(path).__name__}")
    if str(path) == "":  # Path("") is the current directory: never what an empty flag meant
        raise ValueError(f"{name} must be a non-empty path")
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"{name} {str(path)!r} is not a writable directory: {e.strerror or e}") from None
    return path


def load_state(path: Path) -> dict:
    """A saved training state, or an error that names the file and the way out."""
    try:
        state = torch.load(path, weights_only=False)
    except Exception as e:  # unpickling a damaged file raises anything from EOFError to RuntimeError
        raise ValueError(
            f"{path} is corrupt or not a training state ({type(e).__name__}: {e}); delete it or pass --no-resume "
            "(resume=False) to start over"
        ) from None
    if not isinstance(state, dict) or not {"config", "model", "optimizer", "generator", "step"} <= state.keys():
        raise ValueError(f"{path} is not a training state; delete it or pass --no-resume (resume=False) to start over")
    return state


def truncate_log(log_path: Path, step: int) -> None:
    """Drop log entries past `step`: a run killed after logging but before saving redoes them."""
    if not log_path.exists():
        return
    lines = log_path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        log_path.write_text("".join(line + "\n" for line in kept))


def next_token_loss(model: MiniLLM, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of every next token (nats)."""
    return F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten())


def train(
    cfg: TrainConfig,
    out_dir: str | Path,
    resume: bool = True,
    max_minutes: float | None = None,
    progress: bool = True,
    stop_at: int | None = None,
) -> MiniLLM:
    """Train (or resume) a MiniLLM run in out_dir; returns the model. Pauses after max_minutes or at stop_at."""
    torch.manual_seed(cfg.seed)
    return fit(
        MiniLLM(cfg.model),
        cfg,
        out_dir,
        next_token_loss,
        lambda model, step: evaluate(model, cfg),
        asdict(cfg),
        resume,
        max_minutes,
        progress,
        stop_at,
    )


def sum_minutes(log: list[dict]) -> float:
    """Wall-clock minutes of a run from its log, adding up the pieces of a resumed run."""
    total, last = 0.0, 0.0
    for record in log:
        total += record["minutes"] - last if record["minutes"] >= last else record["minutes"]
        last = record["minutes"]
    return round(total, 1)


@torch.no_grad()
def checkpoint_report(model: MiniLLM, cfg: TrainConfig) -> dict:
    """What a checkpoint's json records about its behaviour, measured on prose it never saw (test):
    bits per byte, attention mass on position 0 per layer and head, and perplexity by position on
    streams 8 contexts long (the length failure of chapter 01)."""
    model.eval()
    T = cfg.model.max_seq_len
    gen = torch.Generator().manual_seed(0)
    x, y = data.sample_batch(data.load_bytes("prose", "test"), 32, T, gen, cfg.prefix)
    test_bpb = F.cross_entropy(model(x).logits.flatten(0, 1), y.flatten()).item() / math.log(2)
    mass = sink_mass(model, x[:16])
    streams = torch.tensor([data.eval_stream("prose", "test", 8 * T - 1, offset=i * 8 * T) for i in range(8)])
    nll = F.cross_entropy(model(streams).logits[:, :-1].flatten(0, 1), streams[:, 1:].flatten(), reduction="none")
    nll = nll.view(8, -1).mean(0)  # (8T - 1,): mean over streams, by position
    ppl = {f"{k}T": round(nll[(k - 1) * T : k * T - 1].mean().exp().item(), 3) for k in (1, 2, 4, 8)}
    return {
        "test_bpb_prose": round(test_bpb, 4),
        "sink_mass_test_prose": [[round(m, 3) for m in row] for row in mass.tolist()],
        "ppl_by_context_test_prose": ppl,  # "4T": tokens 3T..4T of dense 8T-token streams
    }


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line options every training script shares: where, how long, resume, export."""
    parser.add_argument("--out", default=None, help="run directory (default runs/PRESET)")
    parser.add_argument("--steps", type=validate.positive_int, default=None, help="override the preset's step count")
    parser.add_argument("--threads", type=validate.positive_int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--max-minutes", type=validate.nonnegative_float, default=None, help="stop (resumably) after this long"
    )
    parser.add_argument("--stop-at", type=validate.positive_int, default=None, help="pause (resumably) at this step")
    parser.add_argument("--no-resume", action="store_true", help="start over even if a state exists")
    parser.add_argument(
        "--checkpoint",
        type=validate.checkpoint_name,
        default=None,
        help="when done (or paused by --stop-at), save as NAME",
    )


def check_run_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """What add_run_arguments' flags need before the first step: threads set, and the run and
    checkpoint directories writable (found out now, not after hours of training). Returns --out."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    from .pretrained import CHECKPOINT_DIR

    try:
        out = writable_dir("--out", Path(args.out or f"runs/{args.preset}"))
        if args.checkpoint is not None:
            writable_dir("the checkpoint directory", CHECKPOINT_DIR)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a MiniLLM preset (resumable).")
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS))
    parser.add_argument("--seed", type=validate.nonnegative_int, default=None)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    out = check_run_arguments(parser, args)
    cfg = PRESETS[args.preset]
    cfg = replace(cfg, **{k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None})
    model = train(cfg, out, resume=not args.no_resume, max_minutes=args.max_minutes, stop_at=args.stop_at)
    state = load_state(out / "state.pt")
    if args.checkpoint and (state["step"] >= cfg.steps or state["step"] == args.stop_at):
        from .pretrained import save_checkpoint

        log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
        meta = {
            "preset": args.preset,
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
            "corpus_sha256": {kind: data.corpus_sha256(kind) for kind in data.KINDS},
            "steps": state["step"],
            "schedule_complete": state["step"] >= cfg.steps,  # False: paused early, learning rate not yet decayed
            "train_minutes": sum_minutes(log),
            "final": log[-1],
            **checkpoint_report(model, cfg),
            "command": "python -m minillm.train " + shlex.join(sys.argv[1:] if argv is None else argv),
        }
        print("saved", save_checkpoint(model, args.checkpoint, meta))


if __name__ == "__main__":
    main()
