"""Per-token decoding latency of each KV cache against a bare forward and re-computation.

    python benchmarks/cache_speed.py                    # base and smollm2-135m, caches 128..2048
    python benchmarks/cache_speed.py --models base --caches 1024 --quick   # a smoke test
    python benchmarks/cache_speed.py --label before --out /tmp/before.json # any code under PYTHONPATH

With `size` tokens in the cache, each row times one decoding step (a forward of one new token):
- `bare`: a forward of that one token alone, no cache (the model's own cost: the floor);
- `dense`: `DenseCache()` holding `size` tokens (it grows by one per step);
- `sink`: `SinkCache(4, size - 4)`, full (StreamingLLM, evicting every step);
- `lambda`: `LambdaCache(4, size - 3, size - 3)`, full (LM-Infinite: 4 global + `size - 4` recent
  entries, the globals beyond the distance limit);
- `recompute`: a fresh forward over the last `size` tokens (sliding window with re-computation).
Every time is the median of single-step timings (`fastest_ms`: the minimum); each step runs every
method once in turn (re-computation only every few steps), so that a burst of load on a shared
machine hits all of them alike; the load average is recorded.
Writes benchmarks/results/cache_speed.json and cache_speed.png (unless --quick or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from minillm.cache import DenseCache, LambdaCache, SinkCache  # noqa: E402
from minillm.pretrained import load_pretrained  # noqa: E402
from minillm.validate import positive_int  # noqa: E402

RESULTS = Path(__file__).parent / "results"
METHODS = ("bare", "dense", "sink", "lambda", "recompute")


def make_cache(method: str, size: int):
    if method == "dense":
        return DenseCache()
    if method == "sink":
        return SinkCache(4, size - 4)
    return LambdaCache(4, size - 3, size - 3)


@torch.no_grad()
def time_row(model, size: int, steps: int, rounds: int, recompute_steps: int) -> dict:
    """Median ms per step of each method with `size` tokens in the cache."""
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(size)
    n_total = size + rounds * steps + 1
    ids = torch.randint(0, vocab, (1, n_total), generator=g)
    caches = {}
    for method in ("dense", "sink", "lambda"):
        caches[method] = make_cache(method, size)
        for start in range(0, size, 256):  # fill in chunks: memory stays small
            model(ids[:, start : min(start + 256, size)], cache=caches[method])
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for i in range(rounds * steps):  # every step runs each method once: a burst of load hits all alike
        t = size + i
        token = ids[:, t : t + 1]
        for method in METHODS:
            if method == "recompute" and i % max(1, steps // recompute_steps):
                continue
            start = time.perf_counter()
            if method == "bare":
                model(token)
            elif method == "recompute":
                model(ids[:, t - size + 1 : t + 1])
            else:
                model(token, cache=caches[method])
            times[method].append(time.perf_counter() - start)
    row = {"cache": size}
    for method in METHODS:
        row[f"{method}_ms"] = round(1000 * statistics.median(times[method]), 3)
    row["fastest_ms"] = {m: round(1000 * min(times[m]), 3) for m in METHODS}  # the least disturbed step
    row["sink_over_dense"] = round(row["sink_ms"] / row["dense_ms"], 3)
    row["sink_over_bare"] = round(row["sink_ms"] / row["bare_ms"], 3)
    row["recompute_over_sink"] = round(row["recompute_ms"] / row["sink_ms"], 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["base", "smollm2-135m"])
    parser.add_argument("--caches", type=positive_int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--steps", type=positive_int, default=16, help="timed steps per method per round")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--label", default="after", help="a name for the code measured (before/after)")
    parser.add_argument("--out", type=Path, default=None, help="json path (default: results/cache_speed.json)")
    parser.add_argument("--quick", action="store_true", help="1 round of 4 steps, nothing written")
    args = parser.parse_args()
    if args.threads < 1 or args.steps < 1 or args.rounds < 1 or min(args.caches) < 8:
        parser.error("--threads, --steps and --rounds must be >= 1 and every cache >= 8")
    if args.quick:
        args.steps, args.rounds = 4, 1
    torch.set_num_threads(args.threads)
    result = {
        "label": args.label,
        "threads": args.threads,
        "steps": args.steps,
        "rounds": args.rounds,
        "interleaved": "per step",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "models": {},
    }
    for name in args.models:
        model = load_pretrained(name)
        rows = []
        for size in args.caches:
            # a re-computation step over 2K tokens of SmolLM2 takes seconds: fewer of them
            recompute_steps = max(1, min(args.steps, (4096 * args.steps) // (size * model.config.n_layers * 4)))
            row = time_row(model, size, args.steps, args.rounds, recompute_steps)
            row["load_average"] = round(os.getloadavg()[0], 2)
            print(name, json.dumps(row), flush=True)
            rows.append(row)
        result["models"][name] = rows
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    if args.quick:
        return
    path = args.out or RESULTS / "cache_speed.json"
    path.parent.mkdir(exist_ok=True, parents=True)
    previous = json.loads(path.read_text()) if path.exists() else {}
    runs = {k: v for k, v in previous.get("runs", {}).items() if k != args.label}
    runs[args.label] = result
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    plot(runs, path.with_suffix(".png"))


def plot(runs: dict, path: Path) -> None:
    """ms per token against cache size, one panel per model, one line style per run (label)."""
    models = sorted({m for run in runs.values() for m in run["models"]})
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    styles = ["-", "--", ":"]
    for ax, model in zip(axes[0], models, strict=True):
        for (label, run), style in zip(runs.items(), styles, strict=False):
            rows = run["models"].get(model, [])
            for i, method in enumerate(METHODS):
                ax.plot(
                    [r["cache"] for r in rows],
                    [r[f"{method}_ms"] for r in rows],
                    style,
                    marker="o",
                    ms=3,
                    color=f"C{i}",
                    label=f"{method} ({label})",
                )
        ax.set(
            xlabel="tokens in the cache",
            ylabel="ms per decoded token (median, 1 thread)",
            xscale="log",
            yscale="log",
            title=model,
        )
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
