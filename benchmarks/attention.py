"""Time of sink + sliding-window attention against the sequence length T, by implementation.

    python benchmarks/attention.py                      # CPU: torch variants, T = 512 .. 8K
    python benchmarks/attention.py --lengths 1024 2048  # a shorter sweep
    python benchmarks/attention.py --backward           # forward + backward instead of forward only

On a CPU it compares the torch variants: dense SDPA with the materialized sink + window mask
(O(T^2) work and memory), causal SDPA (a different, denser mask: the flash kernel with no mask
tensor, the speed an O(T^2) kernel can reach) and `minillm_kernels.blocked_attention` (the kernel's block
skipping in torch, O(T * (window + n_sink))). On CUDA it adds the Triton kernel
(`minillm_kernels.block_sparse_attention`, FlashAttention arXiv 2205.14135 + block skipping) and
FlexAttention compiled with `create_block_mask` of the same mask_mod, in float16, timed with
`triton.testing.do_bench`; the Triton interpreter is far too slow to time, so the CPU run leaves
it out. Writes attention_<device>.json and .png into --out.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

import minillm_kernels
from minillm import masks
from minillm.validate import device_arg, nonnegative_int, positive_int
from minillm_kernels import blocked_attention, count_visited_blocks, mask_mod_for


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:  # Linux: the CPU's model name
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def variants(T: int, n_sink: int, window: int, block: int, device: torch.device) -> dict[str, Callable]:
    """name -> fn(q, k, v) for every implementation that runs on this device."""
    mask_mod = mask_mod_for(n_sink, window)
    dense_mask = masks.materialize(mask_mod, T, T).to(device)  # (T, T), built once, outside the timing
    fns = {
        "dense masked SDPA": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense_mask),
        "causal SDPA (denser mask)": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "blocked torch": lambda q, k, v: blocked_attention(q, k, v, n_sink=n_sink, window=window, block=block),
    }
    if device.type == "cuda":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        block_mask = create_block_mask(mask_mod, None, None, T, T, device=device)
        flex = torch.compile(flex_attention)
        fns["FlexAttention (compiled)"] = lambda q, k, v: flex(q, k, v, block_mask=block_mask)
        if minillm_kernels.TRITON_AVAILABLE:
            fns["Triton block-sparse"] = lambda q, k, v: minillm_kernels.block_sparse_attention(
                q, k, v, n_sink=n_sink, window=window
            )
    return fns


def time_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median milliseconds of fn(): triton.testing.do_bench on CUDA, a wall clock on a CPU."""
    if device.type == "cuda":
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=25, rep=100))
    fn()  # warm-up (allocations, first-call dispatch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def make_step(attend: Callable, q, k, v, dout: torch.Tensor | None) -> Callable[[], object]:
    """What one timed call does: the forward, or (dout given) the forward and the backward."""
    if dout is None:
        return lambda: attend(q, k, v)
    return lambda: torch.autograd.grad(attend(q, k, v), (q, k, v), dout)


def run(args: argparse.Namespace, device: torch.device) -> list[dict]:
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    B, H, D = args.batch, args.heads, args.head_dim
    rows = []
    for T in args.lengths:
        g = torch.Generator(device="cpu").manual_seed(T)
        q, k, v = (
            torch.randn(B, H, T, D, generator=g).to(device, dtype).requires_grad_(args.backward) for _ in range(3)
        )
        dout = torch.randn_like(q)
        expected = None
        for name, attend in variants(T, args.n_sink, args.window, args.block, device).items():
            step = make_step(attend, q, k, v, dout if args.backward else None)
            with torch.no_grad() if not args.backward else torch.enable_grad():
                out = attend(q, k, v).detach()
                # every variant with the sink + window mask must agree (causal SDPA is another mask)
                err = None if expected is None or "causal" in name else (out - expected).abs().max().item()
                expected = out if expected is None else expected
                ms = time_ms(step, device, args.repeats)
            rows.append(dict(T=T, variant=name, ms=round(ms, 3), max_abs_err_vs_dense=err))
            print(f"T={T:6d}  {name:28s} {ms:10.2f} ms" + ("" if err is None else f"   |diff| {err:.1e}"))
        causal_tiles = count_visited_blocks(T, args.block)
        rows.append(
            dict(
                T=T,
                variant="tiles visited / causal tiles",
                fraction=round(count_visited_blocks(T, args.block, args.n_sink, args.window) / causal_tiles, 4),
            )
        )
    return rows


def plot(rows: list[dict], title: str, path: Path) -> None:
    """Left: time against T (log-log). Right: tiles the block-sparse kernels visit, over causal's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    lengths = [r["T"] for r in rows if "fraction" in r]
    fig, (ax, ax_tiles) = plt.subplots(1, 2, figsize=(10, 4.2), width_ratios=[3, 2])
    for name in dict.fromkeys(r["variant"] for r in rows if "ms" in r):
        pts = [(r["T"], r["ms"]) for r in rows if r["variant"] == name]
        ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="sequence length T", ylabel="time (ms)", title=title)
    ax_tiles.plot(lengths, [r["fraction"] for r in rows if "fraction" in r], marker="o", color="tab:green")
    ax_tiles.set(xscale="log", ylim=(0, 1.05), xlabel="sequence length T", title="tiles visited / causal tiles")
    for a in (ax, ax_tiles):
        a.xaxis.set_minor_locator(NullLocator())  # only our lengths as ticks
        a.set_xticks(lengths, [str(T) for T in lengths])
        a.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", type=device_arg, default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--lengths", type=positive_int, nargs="+", help="default: 512..8K on CPU, 1K..32K on CUDA")
    parser.add_argument("--window", type=positive_int, help="default: 256 on CPU, 1024 on CUDA")
    parser.add_argument("--n-sink", type=nonnegative_int, default=4)
    parser.add_argument("--batch", type=positive_int, default=1)
    parser.add_argument("--heads", type=positive_int, help="default: 4 on CPU, 16 on CUDA")
    parser.add_argument("--head-dim", type=positive_int, default=64)
    parser.add_argument("--block", type=positive_int, default=64, help="tile of the blocked torch version")
    parser.add_argument("--repeats", type=positive_int, default=3, help="CPU timing repeats (median)")
    parser.add_argument("--threads", type=positive_int, default=1, help="CPU threads (1: do not crowd other jobs)")
    parser.add_argument("--backward", action="store_true", help="time forward + backward")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.lengths is None:  # `is None`, not `or`: a given value is never replaced
        args.lengths = [1024, 2048, 4096, 8192, 16384, 32768] if cuda else [512, 1024, 2048, 4096, 8192]
    if args.window is None:
        args.window = 1024 if cuda else 256
    if args.heads is None:
        args.heads = 16 if cuda else 4
    if not cuda:
        torch.set_num_threads(args.threads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FlexAttention's and SDPA's notes on kernels they pick
        rows = run(args, device)

    name = device_name(device)
    setup = {k: v for k, v in vars(args).items() if k not in ("out", "device")}
    result = {
        "device": name,
        "device_type": device.type,
        "dtype": "float16" if cuda else "float32",
        "torch": torch.__version__,
        "threads": torch.get_num_threads() if not cuda else None,
        "setup": setup,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"attention_{device.type}" + ("_backward" if args.backward else "")
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    pass_ = "forward + backward" if args.backward else "forward"
    title = f"sink {args.n_sink} + window {args.window}, {pass_}, B={args.batch} H={args.heads} D={args.head_dim}"
    plot(rows, f"{title}\n{name}", out / f"{stem}.png")
    print(f"wrote {out / stem}.json and .png")


if __name__ == "__main__":
    main()
