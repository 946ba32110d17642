"""StreamingLLM at scale: a 64K-token stream through a sink cache, and the per-token speed-up over
sliding window with re-computation (Xiao et al., 2023, arXiv 2309.17453, Figures 3, 5 and 10).

    python benchmarks/streaming.py --checkpoint smollm2-135m   # SmolLM2, 65,536 tokens, cache 4 + 1020
    python benchmarks/streaming.py --checkpoint base            # the course's byte model, cache 4 + 124
    python benchmarks/streaming.py --parts latency              # re-measure one part, keep the other
    python benchmarks/streaming.py --tokens 8192 --quick        # a smoke test, nothing written

Writes benchmarks/results/streaming_CHECKPOINT.json and .png:
- `stream`: perplexity per 1,024-token segment of the prose test stream (the test books, repeated
  end to end when the stream is longer than the split, after one BOS) for a SinkCache(4, W - 4), a
  WindowCache(W) and dense attention (dense only as far as `--dense-tokens`: its cost grows with
  the stream); the cache's memory (bytes of its keys and values) and the
  process's resident and peak resident memory after each segment: flat for the sink cache once it is
  full, growing for dense;
- `latency`: median milliseconds per decoded token at cache sizes W, measured in one run by
  `cache_speed.time_row`: a bare one-token forward (no cache), DenseCache, SinkCache(4, W - 4) and
  LambdaCache (one token per forward against a full cache) and re-computation (a fresh forward
  over the last W tokens), the methods alternating step by step, with their ratios.
Each part is written as soon as it finishes, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from cache_speed import time_row  # noqa: E402
from process_memory import process_memory_mb  # noqa: E402

from minillm import data  # noqa: E402
from minillm.cache import DenseCache, KVCache, SinkCache, WindowCache  # noqa: E402
from minillm.pretrained import load_pretrained, load_tokenizer  # noqa: E402
from minillm.streaming import stream_nll  # noqa: E402
from minillm.validate import positive_int  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SEGMENT = 1024
DEFAULTS = {  # cache size of the long stream, and the cache sizes timed, per model
    "base": {"window": 128, "caches": [128, 256, 512, 1024]},
    "smollm2-135m": {"window": 1024, "caches": [256, 512, 1024, 2048]},
}


def cache_bytes(cache: KVCache) -> int:
    return sum(t.numel() * t.element_size() for t in cache.keys + cache.values)


def long_stream(checkpoint: str, n_tokens: int) -> list[int]:
    """BOS + the prose test split's tokens, repeated end to end until the stream has n_tokens."""
    tok = load_tokenizer(checkpoint)
    body = tok.encode(data.load_text("prose", "test"))
    return [tok.bos_id, *(body * math.ceil(n_tokens / len(body)))[: n_tokens - 1]]


@torch.no_grad()
def stream_by_segment(model, ids: list[int], cache: KVCache, chunk: int) -> dict:
    """Per-segment perplexity, cache bytes and memory, streaming `ids` through one cache in chunks."""
    segments, nll_all = [], []
    for start in range(0, len(ids) - 1, SEGMENT):
        # segments overlap by one token: the last one of a segment is the input that predicts the next's first
        nll = stream_nll(model, ids[start : start + SEGMENT + 1], cache, chunk_size=chunk)
        nll_all.append(nll)
        segments.append(
            {
                "start": start,
                "ppl": round(nll.mean().exp().item(), 4),
                "cache_bytes": cache_bytes(cache),
                "rss_mb": round(process_memory_mb("VmRSS"), 1),
                "peak_rss_mb": round(process_memory_mb("VmHWM"), 1),
            }
        )
    after_first = torch.cat(nll_all[1:]).mean().exp().item() if len(nll_all) > 1 else float("nan")
    return {"segments": segments, "ppl_after_first_segment": round(after_first, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="base", choices=sorted(DEFAULTS))
    parser.add_argument("--parts", nargs="+", default=["stream", "latency"], choices=["stream", "latency"])
    parser.add_argument("--tokens", type=positive_int, default=65_536, help="length of the sink-cache stream (>= 2048)")
    parser.add_argument("--window", type=positive_int, help="cache size W of the long stream (default: per model)")
    parser.add_argument("--dense-tokens", type=positive_int, default=4096, help="how far to run dense attention")
    parser.add_argument("--caches", type=positive_int, nargs="+", help="cache sizes to time (default: per model)")
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--quick", action="store_true", help="small run, results not written")
    args = parser.parse_args()
    window = args.window or DEFAULTS[args.checkpoint]["window"]
    caches = args.caches or DEFAULTS[args.checkpoint]["caches"]
    for name, value, low in (("--tokens", args.tokens, 2 * SEGMENT), ("--dense-tokens", args.dense_tokens, 2)):
        if value < low:
            parser.error(f"{name} must be >= {low}, got {value}")
    if window < 5 or min(caches) < 5:
        parser.error("--window and --caches must be >= 5 (4 sinks + at least one recent token)")
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.checkpoint)
    ids = long_stream(args.checkpoint, max(args.tokens, max(caches) + 64))
    path = RESULTS / f"streaming_{args.checkpoint}.json"
    result = json.loads(path.read_text()) if path.exists() and not args.quick else {}
    result.update(
        checkpoint=args.checkpoint,
        cpu=platform.processor() or platform.machine(),
        cpu_cores=os.cpu_count(),
        torch=torch.__version__,
    )

    def save(part: str, value: dict) -> None:
        result[part] = {**value, "threads": args.threads, "date": date.today().isoformat()}
        if not args.quick:
            RESULTS.mkdir(exist_ok=True)
            path.write_text(json.dumps(result, indent=1) + "\n")
            plot(result, path.with_suffix(".png"))
        print(part, "done", flush=True)

    if "stream" in args.parts:
        t0 = time.time()
        stream = ids[: args.tokens]
        save(
            "stream",
            {
                "tokens": args.tokens,
                "window": window,
                "sink": stream_by_segment(model, stream, SinkCache(4, window - 4), chunk=256),
                "window_attention": stream_by_segment(model, stream, WindowCache(window), chunk=256),
                "dense": stream_by_segment(model, stream[: args.dense_tokens], DenseCache(), chunk=256),
                "seconds": round(time.time() - t0, 1),
            },
        )
        print("sink ppl after the first segment:", result["stream"]["sink"]["ppl_after_first_segment"])
    if "latency" in args.parts:
        rows = []
        for c in caches:
            # re-computation costs a forward over c tokens per step: 4 of them per cache size
            rows.append(
                time_row(model, c, steps=4 if args.quick else 16, rounds=1 if args.quick else 2, recompute_steps=2)
            )
            print(rows[-1], flush=True)
        save("latency", {"rows": rows, "load_average": [round(x, 2) for x in os.getloadavg()]})


def plot(result: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    if "stream" in result:
        stream = result["stream"]
        for name, key in (("4 sinks + window", "sink"), ("window", "window_attention"), ("dense", "dense")):
            segs = stream[key]["segments"]
            starts = [s["start"] / 1000 for s in segs]
            axes[0].plot(starts, [s["ppl"] for s in segs], "o-", ms=3, label=name)
            axes[1].plot(starts, [s["cache_bytes"] / 1e6 for s in segs], "o-", ms=3, label=f"{name}: KV cache")
        segs = stream["sink"]["segments"]
        axes[1].plot(
            [s["start"] / 1000 for s in segs], [s["peak_rss_mb"] for s in segs], "k--", label="process peak RSS"
        )
        axes[0].set(
            xlabel="thousand tokens into the stream",
            ylabel="perplexity per 1K-token segment",
            yscale="log",
            title=f"{result['checkpoint']}, cache {stream['window']}",
        )
        axes[1].set(xlabel="thousand tokens into the stream", ylabel="MB", yscale="log", title="memory")
    if "latency" in result:
        lat = result["latency"]["rows"]
        for key, name in (
            ("recompute", "re-computation"),
            ("dense", "dense cache"),
            ("sink", "sink cache"),
            ("bare", "bare forward"),
        ):
            axes[2].plot([r["cache"] for r in lat], [r[f"{key}_ms"] for r in lat], "o-", label=name)
        axes[2].set(
            xlabel="cache size (tokens)",
            ylabel="median ms per token",
            xscale="log",
            yscale="log",
            title=f"per-token latency, {result['latency']['threads']} thread(s)",
        )
    for ax in axes:
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
