"""StreamingLLM at scale: a 64K-token stream through a sink cache, and the per-token speed-up over
sliding window with re-computation (Xiao et al., 2023, arXiv 2309.17453, Figures 3, 5 and 10).

    python benchmarks/streaming.py                       # base, 65,536 tokens, caches 128..1024
    python benchmarks/streaming.py --tokens 8192 --quick # a smoke test

Writes benchmarks/results/streaming.json and streaming.png:
- perplexity per 1,024-token segment of the prose test stream (the test books, repeated end to end
  when the stream is longer than the split) for a SinkCache(4, W - 4), a WindowCache(W) and dense
  attention (dense only as far as it fits: its cost grows with the stream);
- the cache's memory (bytes of its keys and values) and the process's resident memory per segment:
  flat for the sink cache, growing for dense;
- per-token latency of decoding with the sink cache against re-computing the last W tokens, at
  cache sizes W = 128, 256, 512, 1024, measured in one run, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from process_memory import process_memory_mb  # noqa: E402

from minillm import data  # noqa: E402
from minillm.cache import DenseCache, KVCache, SinkCache, WindowCache  # noqa: E402
from minillm.pretrained import load_pretrained  # noqa: E402
from minillm.streaming import stream_nll  # noqa: E402

RESULTS = Path(__file__).parent / "results"
SEGMENT = 1024


def cache_bytes(cache: KVCache) -> int:
    return sum(t.numel() * t.element_size() for t in cache.keys + cache.values)


def long_stream(n_tokens: int) -> list[int]:
    """BOS + the prose test split, repeated end to end until the stream has n_tokens tokens."""
    split = data.load_bytes("prose", "test").tolist()
    body = (split * math.ceil(n_tokens / len(split)))[: n_tokens - 1]
    return [256, *body]


@torch.no_grad()
def stream_by_segment(model, ids: list[int], cache: KVCache, chunk: int) -> dict:
    """Per-segment perplexity, cache bytes and RSS, streaming `ids` through one cache in chunks."""
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
            }
        )
    after_first = torch.cat(nll_all[1:]).mean().exp().item() if len(nll_all) > 1 else float("nan")
    return {"segments": segments, "ppl_after_first_segment": round(after_first, 4)}


@torch.no_grad()
def per_token_latency(model, cache_size: int, n_tokens: int = 64) -> dict:
    """Seconds per decoded token: sink cache (one token per forward) vs re-computing the window."""
    ids = torch.tensor([long_stream(cache_size + n_tokens + 1)])
    cache = SinkCache(4, cache_size - 4)
    model(ids[:, :cache_size], cache=cache)  # fill the cache
    start = time.perf_counter()
    for t in range(cache_size, cache_size + n_tokens):
        model(ids[:, t : t + 1], cache=cache)
    sink = (time.perf_counter() - start) / n_tokens
    start = time.perf_counter()
    for t in range(cache_size, cache_size + n_tokens):
        model(ids[:, t - cache_size + 1 : t + 1])  # a fresh forward over the last cache_size tokens
    recompute = (time.perf_counter() - start) / n_tokens
    return {
        "cache": cache_size,
        "sink_ms": round(1000 * sink, 3),
        "recompute_ms": round(1000 * recompute, 3),
        "speedup": round(recompute / sink, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="base")
    parser.add_argument("--tokens", type=int, default=65_536)
    parser.add_argument("--window", type=int, default=128, help="cache size W for the perplexity stream")
    parser.add_argument("--dense-tokens", type=int, default=4096, help="how far to run dense attention")
    parser.add_argument("--caches", type=int, nargs="+", default=[128, 256, 512, 1024])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="small run, results not written")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.checkpoint)
    ids = long_stream(args.tokens)
    W = args.window
    result = {
        "checkpoint": args.checkpoint,
        "tokens": args.tokens,
        "window": W,
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    t0 = time.time()
    result["sink"] = stream_by_segment(model, ids, SinkCache(4, W - 4), chunk=256)
    result["window_attention"] = stream_by_segment(model, ids[: args.dense_tokens], WindowCache(W), chunk=256)
    result["dense"] = stream_by_segment(model, ids[: args.dense_tokens], DenseCache(), chunk=256)
    result["stream_seconds"] = round(time.time() - t0, 1)
    result["latency"] = [per_token_latency(model, c, 16 if args.quick else 64) for c in args.caches]
    print(json.dumps({k: v for k, v in result.items() if k not in ("sink", "window_attention", "dense")}, indent=1))
    print("sink ppl after the first segment:", result["sink"]["ppl_after_first_segment"])
    if args.quick:
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(result, RESULTS / "streaming.png")


def plot(result: dict, path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name, key in (("4 sinks + window", "sink"), ("window", "window_attention"), ("dense", "dense")):
        segs = result[key]["segments"]
        axes[0].plot([s["start"] / 1000 for s in segs], [s["ppl"] for s in segs], "o-", ms=3, label=name)
        axes[1].plot([s["start"] / 1000 for s in segs], [s["cache_bytes"] / 1e6 for s in segs], "o-", ms=3, label=name)
    axes[0].set(
        xlabel="thousand tokens",
        ylabel="perplexity per 1K-token segment",
        yscale="log",
        title=f"{result['checkpoint']}, cache {result['window']}",
    )
    axes[1].set(xlabel="thousand tokens", ylabel="KV cache (MB)", title="memory")
    lat = result["latency"]
    axes[2].plot([r["cache"] for r in lat], [r["recompute_ms"] for r in lat], "o-", label="re-computation")
    axes[2].plot([r["cache"] for r in lat], [r["sink_ms"] for r in lat], "o-", label="sink cache")
    axes[2].set(xlabel="cache size", ylabel="ms per token", xscale="log", yscale="log", title="per-token latency")
    for ax in axes:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
