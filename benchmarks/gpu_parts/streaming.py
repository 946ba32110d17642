"""Part "streaming": StreamingLLM's per-token latency and flat memory on a GPU (Xiao et al., 2023,
arXiv 2309.17453, Figure 10 and Table 6).

Latency: one new token through a SinkCache of C entries (one forward of one token) against
re-computing the last C tokens from scratch (one forward of C tokens), at C = 256 .. 4096. Memory:
a long stream fed through one SinkCache in segments, with `torch.cuda.max_memory_allocated` reset
before each segment, so a flat curve means the cache stops growing once it is full.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from minillm.cache import SinkCache
from minillm.streaming import stream_nll

from .common import Budget, for_each_model, median_call_ms
from .models import encode, test_prompts


def stream_ids(tokenizer, n_tokens: int) -> list[int]:
    """BOS + the prose test split (its first n_tokens * 8 characters: enough for a byte or BPE
    tokenizer), repeated end to end until the stream holds n_tokens tokens."""
    ids = encode(tokenizer, test_prompts("prose", 1, n_tokens * 8)[0])
    body = ids[1:] * (n_tokens // max(len(ids) - 1, 1) + 1)
    return [ids[0], *body[: n_tokens - 1]]


@torch.no_grad()
def latency(model, ids: torch.Tensor, cache_size: int, settings: dict) -> dict:
    """Median ms per token: the sink cache against re-computation over the last cache_size tokens."""
    n, warmup, timed, n_sink = settings["latency_tokens"], settings["warmup"], settings["timed"], settings["n_sink"]
    cache = SinkCache(n_sink, cache_size - n_sink)
    model(ids[:, :cache_size], cache=cache)  # fill the cache: every later token evicts one
    sink = median_call_ms(lambda i: model(ids[:, cache_size + i : cache_size + i + 1], cache=cache), n, warmup, timed)
    t0 = cache_size  # re-computation: a fresh forward over the cache_size tokens that end at token t0 + i
    recompute = median_call_ms(lambda i: model(ids[:, t0 + i - cache_size + 1 : t0 + i + 1]), n, warmup, timed)
    return {
        "cache": cache_size,
        "sink_ms": None if sink is None else round(sink, 4),
        "recompute_ms": None if recompute is None else round(recompute, 4),
        "speedup": None if sink is None else round(recompute / sink, 2),
    }


@torch.no_grad()
def memory_over_stream(model, ids: list[int], settings: dict) -> dict:
    """Peak allocated MB per segment of a stream through one SinkCache, and whether it stays flat."""
    cuda = settings["device"] == "cuda"
    cache, seg = SinkCache(settings["n_sink"], settings["stream_cache"] - settings["n_sink"]), settings["segment"]
    segments = []
    for start in range(0, len(ids) - 1, seg):
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        # consecutive segments share one token: a segment's last input predicts the next one's first
        nll = stream_nll(model, ids[start : start + seg + 1], cache, chunk_size=settings["chunk"])
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
        segments.append({"start": start, "nll": round(nll.mean().item(), 4),
                         "peak_mb": None if peak is None else round(peak, 2)})  # fmt: skip
    peaks = [s["peak_mb"] for s in segments[1:] if s["peak_mb"] is not None]  # the first segment fills the cache
    flat = None if not peaks else max(peaks) <= 1.05 * min(peaks)
    return {"cache": settings["stream_cache"], "tokens": len(ids), "segments": segments, "flat": flat}


def run(settings: dict, budget: Budget, save: Callable[[dict], None]) -> dict:
    """{"models": {name: {"latency": [...], "memory": {...}} or {"skipped": why}}}."""

    def measure(name: str, model, tokenizer, entry: dict, save_now: Callable[[], None]) -> None:
        ids = stream_ids(tokenizer, max(settings["stream_tokens"], max(settings["caches"]) + 2 * settings["warmup"]
                                        + settings["latency_tokens"] + 1))  # fmt: skip
        ids_t = torch.tensor([ids], device=settings["device"])
        entry["latency"] = []
        for c in settings["caches"]:
            entry["latency"].append({"cache": c, "skipped": budget.reason()} if budget.spent()
                                    else latency(model, ids_t, c, settings))  # fmt: skip
            save_now()
            print(f"  streaming {name} {entry['latency'][-1]}", flush=True)
        entry["memory"] = (
            {"skipped": budget.reason()} if budget.spent()
            else memory_over_stream(model, ids[: settings["stream_tokens"]], settings)
        )  # fmt: skip
        print(f"  streaming {name} memory flat: {entry['memory'].get('flat', entry['memory'].get('skipped'))}")

    return for_each_model("streaming", settings, budget, save, measure)


def plot(result: dict, path, title: str) -> None:
    """Left: ms per token against cache size. Right: peak allocated MB per segment of the stream."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_mem) = plt.subplots(1, 2, figsize=(11, 4))
    for c, (name, m) in enumerate(n_m for n_m in result["models"].items() if "latency" in n_m[1]):
        lat = [r for r in m["latency"] if r.get("sink_ms") is not None]
        if lat:
            ax_lat.plot([r["cache"] for r in lat], [r["recompute_ms"] for r in lat], "--o", color=f"C{c}",
                        label=f"{name} re-computation")  # fmt: skip
            ax_lat.plot([r["cache"] for r in lat], [r["sink_ms"] for r in lat], "-o", color=f"C{c}",
                        label=f"{name} sink cache")  # fmt: skip
        segs = [s for s in m.get("memory", {}).get("segments", []) if s["peak_mb"] is not None]
        if segs:
            ax_mem.plot([s["start"] for s in segs], [s["peak_mb"] for s in segs], "-o", ms=3, color=f"C{c}", label=name)
    ax_lat.set(xscale="log", yscale="log", xlabel="cache size (tokens)", ylabel="ms per token (median)")
    ax_mem.set(xlabel="token index (segment start)", ylabel="peak allocated MB in the segment", ylim=(0, None))
    for ax in (ax_lat, ax_mem):
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:  # a dry run (no CUDA memory counters, no timings), or every model skipped
            ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", color="gray")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
