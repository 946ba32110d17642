"""LM-Infinite at scale: perplexity, time and peak memory against length, up to 64x the training
context (Han et al., 2023, arXiv 2308.16137, Table 1 / Figure 1 and the O(n) claim).

    python benchmarks/lm_infinite.py           # base, 1x..64x T; about 5 min on one shared CPU thread
    python benchmarks/lm_infinite.py --quick   # a smoke test up to 8x T, nothing written

Writes benchmarks/results/lm_infinite.json and lm_infinite.png:

- `ablation`: perplexity over the last T tokens of prose test streams of 1x, 4x, 16x and 64x the
  training context T, for dense attention, window attention, StreamingLLM (4 sinks + window),
  Λ without the distance limit, the limit without Λ, Λ + limit, and the sliding window with
  re-computation. Every length scores the *same* target tokens (the streams of different lengths
  end at the same place and differ only in how much text comes before), averaged over
  `--targets` places in the test split, so columns differ only through the length.
- `scaling`: for lengths T..64T, each run in a fresh process: seconds for one forward over the
  whole stream (best of `--repeats`), peak resident memory above the process's baseline (VmHWM
  from /proc/self/status, Linux), and perplexity over the whole stream, for
  (i) dense causal attention as the model runs it (PyTorch's fused `scaled_dot_product_attention`,
  which on CPU never stores the T x T scores: memory O(T), time O(T^2)),
  (ii) the dense Λ reference (`model(ids, mask_mod=lambda_shaped(...), max_distance=T)`: an
  explicit T x T mask and scores, memory O(T^2)), skipped where it would not fit in memory, and
  (iii) blockwise Λ attention (`minillm.lambda_attention.lambda_forward`: memory and time O(T)).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from process_memory import process_memory_mb

from minillm import data, masks
from minillm.cache import DenseCache, LambdaCache, SinkCache, WindowCache
from minillm.lambda_attention import lambda_forward
from minillm.pretrained import load_pretrained
from minillm.streaming import recompute_nll, stream_nll
from minillm.validate import positive_int

RESULTS = Path(__file__).resolve().parent / "results"
N_GLOBAL = 10  # LM-Infinite's README uses 10 for extreme lengths (100 for its perplexity runs)
NEVER = 10**9  # a size no stream reaches: "no limit" or "every token is global"


def variants(T: int) -> dict:
    """The ablation's caches, each a fresh-cache factory; n_local = max_distance = T, as the paper."""
    return {
        "dense": lambda: DenseCache(),
        "window": lambda: WindowCache(T - 1),  # the query and T - 1 before it: the same T keys as n_local = T
        "streamingllm": lambda: SinkCache(4, T - 5),  # 4 sinks + T - 5 recent + the query = T keys
        "lambda_no_limit": lambda: LambdaCache(N_GLOBAL, T, NEVER),
        "limit_no_lambda": lambda: LambdaCache(NEVER, T, T),  # every token visible, far ones at distance T
        "lambda_limit": lambda: LambdaCache(N_GLOBAL, T, T),
    }


def target_stream(length: int, end: int) -> list[int]:
    """BOS + the length - 1 bytes of the prose test split that end at byte `end`."""
    return data.eval_stream("prose", "test", length - 1, offset=end - (length - 1))


def ablation(model, multiples: list[int], n_targets: int) -> dict:
    """Perplexity over the last T tokens, per variant and multiple of T, pooled over targets."""
    T = model.config.max_seq_len
    ends = [max(multiples) * T + 20_000 * i for i in range(n_targets)]
    table = {}
    for name, make in [*variants(T).items(), ("recompute", None)]:
        table[name] = {}
        for mult in multiples:
            nll = []
            for end in ends:
                ids = target_stream(mult * T, end)
                if make is None:  # a window method: the last 2T tokens are all it ever reads
                    nll.append(recompute_nll(model, ids[-2 * T :], T - 1)[-T:])
                else:
                    nll.append(stream_nll(model, ids, make(), chunk_size=256)[-T:])
            table[name][str(mult)] = round(torch.cat(nll).mean().exp().item(), 4)
        print(f"{name:>16s}", table[name], flush=True)
    return {"multiples": multiples, "target_ends": ends, "n_global": N_GLOBAL, "ppl_last_T": table}


@torch.no_grad()
def one_run(checkpoint: str, method: str, length: int, repeats: int) -> dict:
    """Run in a fresh process: time, peak memory and perplexity of one forward over `length` tokens."""
    model = load_pretrained(checkpoint)
    T = model.config.max_seq_len
    ids = torch.tensor([data.eval_stream("prose", "test", length - 1)])
    forward = {
        "dense": lambda: model(ids).logits,
        "lambda_reference": lambda: model(ids, mask_mod=masks.lambda_shaped(N_GLOBAL, T), max_distance=T).logits,
        "lambda_blockwise": lambda: lambda_forward(model, ids, N_GLOBAL, T, T),
    }[method]
    model(ids[:, :T])  # warm up kernels and allocator at a small size
    baseline = process_memory_mb("VmHWM")
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        logits = forward()
        seconds.append(time.perf_counter() - start)
    nll = F.cross_entropy(logits[0, :-1], ids[0, 1:])
    return {
        "method": method,
        "tokens": length,
        "seconds": round(min(seconds), 4),
        "peak_mb": round(process_memory_mb("VmHWM") - baseline, 1),
        "ppl": round(nll.exp().item(), 4),
    }


def reference_fits(length: int, n_heads: int) -> bool:
    """Whether the dense Λ reference (about 6 float32 (H, L, L) tensors at once) fits in free memory."""
    need = 6 * n_heads * length**2 * 4
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return need < 0.6 * int(line.split()[1]) * 1024
    except OSError:
        pass
    return length <= 4096


def scaling(args, model) -> list[dict]:
    T, rows = model.config.max_seq_len, []
    for mult in args.lengths:
        for method in ("dense", "lambda_reference", "lambda_blockwise"):
            length = mult * T
            if method == "lambda_reference" and not reference_fits(length, model.config.n_heads):
                rows.append({"method": method, "tokens": length, "skipped": "would not fit in memory"})
                continue
            repeats = 1 if method == "lambda_reference" and length >= 4096 else args.repeats
            cmd = [sys.executable, __file__, "--one", method, str(length), "--checkpoint", args.checkpoint]
            cmd += ["--repeats", str(repeats), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    return rows


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = result["training_context"]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4))
    ab = result["ablation"]
    for name, row in ab["ppl_last_T"].items():
        axes[0].plot(ab["multiples"], [row[str(m)] for m in ab["multiples"]], "o-", ms=4, label=name)
    axes[0].set(xscale="log", yscale="log", xlabel="stream length / T", ylabel="ppl over the last T tokens")
    axes[0].set_title("ablation (same target tokens at every length)", fontsize=10)
    labels = {"dense": "dense (fused SDPA)", "lambda_reference": "dense Λ reference", "lambda_blockwise": "blockwise Λ"}
    for method, label in labels.items():
        rows = [r for r in result["scaling"] if r["method"] == method and "skipped" not in r]
        xs = [r["tokens"] / T for r in rows]
        for ax, key in zip(axes[1:], ("ppl", "seconds", "peak_mb")):
            ax.plot(xs, [r[key] for r in rows], "o-", ms=4, label=label)
    axes[1].set(ylabel="ppl over the whole stream", title="perplexity against length")
    axes[2].set(ylabel="seconds per forward", title="time (one forward, best of runs)")
    axes[3].set(ylabel="peak memory above baseline (MB)", title="peak memory (VmHWM)")
    for ax in axes[1:]:
        ax.set(xscale="log", yscale="log", xlabel="stream length / T")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"{result['checkpoint']} (T = {T}), n_global = {N_GLOBAL}, n_local = limit = T", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="base")
    parser.add_argument(
        "--multiples", type=positive_int, nargs="+", default=[1, 4, 16, 64], help="ablation lengths / T"
    )
    parser.add_argument("--lengths", type=positive_int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="scaling / T")
    parser.add_argument("--targets", type=positive_int, default=4, help="target places in the test split")
    parser.add_argument("--repeats", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--quick", action="store_true", help="small run, results not written")
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one_run(args.checkpoint, args.one[0], int(args.one[1]), args.repeats)))
        return
    if args.quick:
        args.multiples, args.lengths, args.targets, args.repeats = [1, 4, 8], [1, 2, 8], 1, 1
    model = load_pretrained(args.checkpoint)
    start = time.time()
    result = {
        "checkpoint": args.checkpoint,
        "training_context": model.config.max_seq_len,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "ablation": ablation(model, args.multiples, args.targets),
        "scaling": scaling(args, model),
    }
    result["minutes"] = round((time.time() - start) / 60, 1)
    if args.quick:
        print(json.dumps(result["scaling"], indent=1))
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lm_infinite.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, RESULTS / "lm_infinite.png")
    print(f"wrote {RESULTS / 'lm_infinite.json'} and .png in {result['minutes']} min")


if __name__ == "__main__":
    main()
