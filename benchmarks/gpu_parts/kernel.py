"""Part "kernel": our Triton block-sparse attention against FlexAttention and dense-masked SDPA.

For each mask (StreamingLLM's sink + window, LM-Infinite's Λ), dtype and length T, every
implementation is first checked against a float32 torch reference, then timed forward and forward +
backward. The reference is the explicit softmax over the materialized mask_mod, computed for a
subset of query rows when T is large (a (T, T) float32 score matrix at 64K is 16 GB per head): with
dO zero outside those rows, dK and dV depend on those rows only, so the reduced check still covers
every gradient. TFLOP/s count the work of the tiles the Triton kernel visits
(`minillm_kernels.count_visited_blocks`), the same numerator for every implementation, so the figures
compare speeds, not how much padding each one computes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

import minillm_kernels
from minillm import masks
from minillm_kernels.block_sparse import default_block_size

from .common import Budget, bench_ms

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
TOLERANCE = {"float32": 1e-3, "float16": 1e-2, "bfloat16": 3e-2}  # max |error| / max |reference|
BACKWARD_FLOP_RATIO = 2.5  # FlashAttention's convention: the backward does 5 matmuls to the forward's 2


def mask_specs(n_sink: int, window: int) -> dict[str, tuple[masks.MaskMod, int, int]]:
    """name -> (mask_mod, n_sink, window) as the Triton kernel takes them.

    Λ(n_global, n_local) counts the query among its n_local recent tokens, sink_window(n_sink,
    window) does not: the same mask is sink_window(n_global, n_local - 1), which the check proves.
    """
    return {
        "sink_window": (masks.sink_window(n_sink, window), n_sink, window),
        "lambda": (masks.lambda_shaped(n_sink, window), n_sink, window - 1),
    }


def check_rows(T: int, n_rows: int, device: torch.device) -> torch.Tensor:
    """All query rows when T <= n_rows, else n_rows (>= 9) of them: the first 8 (they see only
    sinks and each other), the last, and random rows between (seeded)."""
    if T <= n_rows:
        return torch.arange(T, device=device)
    g = torch.Generator().manual_seed(T)
    middle = 8 + torch.randperm(T - 9, generator=g)[: n_rows - 9]  # rows 8 .. T-2, no repeats
    return torch.cat([torch.arange(8), middle, torch.tensor([T - 1])]).sort().values.to(device)


def check_against_reference(
    attend: Attend, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_mod: masks.MaskMod,
    rows: torch.Tensor, tol: float, backward: bool,
) -> dict:  # fmt: skip
    """Compare attend(q, k, v) (and its gradients when `backward`) with the float32 reference on `rows`.

    Returns {"rows", "max_rel_err": {"out", "dq", "dk", "dv"}, "tol", "passed"}, with each error
    max |got - want| / max |want|.
    """
    B, H, T, D = q.shape
    g = torch.Generator().manual_seed(0)
    dout = torch.zeros_like(q)
    dout[:, :, rows] = torch.randn(B, H, len(rows), D, generator=g).to(q.device, q.dtype)
    leaves = [x.detach().requires_grad_(backward) for x in (q, k, v)]
    with torch.set_grad_enabled(backward):
        out = attend(*leaves)  # (B, H, T, D)
        got = {"out": out[:, :, rows]}
        if backward:
            dq, dk, dv = torch.autograd.grad(out, leaves, dout)
            got.update(dq=dq[:, :, rows], dk=dk, dv=dv)

    ref = [x.detach().float().requires_grad_(backward) for x in (q[:, :, rows], k, v)]
    with torch.set_grad_enabled(backward):
        scores = ref[0] @ ref[1].transpose(-2, -1) / math.sqrt(D)  # (B, H, R, T)
        zero = torch.zeros((), dtype=torch.long, device=q.device)
        allowed = mask_mod(zero, zero, rows[:, None], torch.arange(T, device=q.device)[None, :])  # (R, T)
        ref_out = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ ref[2]  # (B, H, R, D)
        want = {"out": ref_out}
        if backward:
            dq, dk, dv = torch.autograd.grad(ref_out, ref, dout[:, :, rows].float())
            want.update(dq=dq, dk=dk, dv=dv)

    errors = {
        name: ((got[name].float() - want[name]).abs().max() / want[name].abs().max().clamp_min(1e-30)).item()
        for name in want
    }
    return {
        "rows": len(rows),
        "max_rel_err": {name: float(f"{e:.3g}") for name, e in errors.items()},
        "tol": tol,
        "passed": all(e <= tol for e in errors.values()),  # NaN fails too
    }


def implementations(
    mask_mod: masks.MaskMod, kernel_mask: tuple[int, int], T: int, device: torch.device, dense_max_t: int,
    flex: Callable,
) -> dict[str, tuple[Attend | None, str | None, str | None]]:  # fmt: skip
    """name -> (attend or None, reason the whole row is skipped, reason the backward is skipped)."""
    from torch.nn.attention.flex_attention import create_block_mask

    n_sink, window = kernel_mask
    out: dict[str, tuple[Attend | None, str | None, str | None]] = {
        "triton": (
            lambda q, k, v: minillm_kernels.block_sparse_attention(q, k, v, n_sink=n_sink, window=window),
            None,
            None,
        ),
    }
    try:  # create_block_mask materializes the (T, T) mask and its int64 index arithmetic: ~40 GB at 64K
        block_mask = create_block_mask(mask_mod, None, None, T, T, device=device)
        no_backward = None if device.type == "cuda" else "skipped: FlexAttention has no backward on CPU"
        out["flex"] = (lambda q, k, v: flex(q, k, v, block_mask=block_mask), None, no_backward)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        out["flex"] = (None, "skipped: create_block_mask ran out of GPU memory", None)
    if T > dense_max_t:
        why = f"skipped: T > dense_max_t {dense_max_t} (a {T * T:,}-byte bool mask, O(T^2) work)"
        out["sdpa_dense"] = (None, why, None)
    else:
        dense = masks.materialize(mask_mod, T, T).to(device)  # (T, T), built once, outside the timing
        out["sdpa_dense"] = (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=dense), None, None)
    return out


def measure(
    attend: Attend, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, backward: bool, flops: float,
    peak: float | None, timed: bool,
) -> dict:  # fmt: skip
    """{"ms", "tflops", "fraction_of_peak"} of the forward (or forward + backward); None untimed."""
    if backward:
        leaves = [x.detach().requires_grad_(True) for x in (q, k, v)]
        dout = torch.randn_like(q)
        ms = bench_ms(lambda: torch.autograd.grad(attend(*leaves), leaves, dout), timed)
    else:
        with torch.no_grad():
            ms = bench_ms(lambda: attend(q, k, v), timed)
    tflops = None if ms is None else flops / (ms * 1e-3) / 1e12
    return {
        "ms": None if ms is None else round(ms, 4),
        "tflops": None if tflops is None else round(tflops, 2),
        "fraction_of_peak": None if tflops is None or peak is None else round(tflops / peak, 4),
    }


def guarded(fn: Callable[[], dict]) -> dict:
    """fn(), or {"skipped": why} when it runs out of GPU memory or fails: one bad row must not end the run."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError as e:
        torch.cuda.empty_cache()
        return {"skipped": f"skipped: out of GPU memory ({str(e).splitlines()[0]})"}
    except Exception as e:  # a compile or launch error: record it, go on with the next row
        return {"skipped": f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}


def run(settings: dict, budget: Budget, save: Callable[[dict], None]) -> dict:
    """Every (mask, dtype, T, implementation) row; `save` gets the part's result after each row."""
    device = torch.device(settings["device"])
    B, H, D = settings["batch"], settings["heads"], settings["head_dim"]
    flex = flex_function(device)
    result = {"rows": []}
    # dtype outermost: a run cut short by its budget still has both masks at every T in float16
    for dtype_name in settings["dtypes"]:
        dtype = getattr(torch, dtype_name)
        block = default_block_size(D, dtype, device)
        for mask_name, (mask_mod, *kernel_mask) in mask_specs(settings["n_sink"], settings["window"]).items():
            for T in settings["lengths"]:
                tiles = minillm_kernels.count_visited_blocks(T, block, *kernel_mask)
                flops = 4 * B * H * tiles * block * block * D  # QK^T and PV: 2 D flops each per visited score
                causal_tiles = minillm_kernels.count_visited_blocks(T, block)
                head = {"mask": mask_name, "dtype": dtype_name, "T": T, "block": block, "visited_tiles": tiles,
                        "causal_tiles": causal_tiles, "forward_flops": flops}  # fmt: skip
                g = torch.Generator().manual_seed(T)
                q, k, v = (torch.randn(B, H, T, D, generator=g).to(device, dtype) for _ in range(3))
                # the reference's (rows, T) float32 scores per head stay under check_scores elements
                rows = check_rows(T, max(9, settings["check_scores"] // T), device)
                for name, (attend, skip, skip_backward) in implementations(
                    mask_mod, kernel_mask, T, device, settings["dense_max_t"], flex
                ).items():
                    row = {**head, "impl": name}
                    if budget.spent() or skip:
                        row["skipped"] = skip or budget.reason()
                    else:
                        row.update(check_and_time(attend, skip_backward, (q, k, v), mask_mod, rows, flops, settings))
                    result["rows"].append(row)
                    save(result)
                    print(f"  kernel {mask_name:11s} {dtype_name:8s} T={T:6d} {name:10s} {brief(row)}", flush=True)
                del q, k, v
    checks = [r["check"] for r in result["rows"] if "check" in r]
    result["all_checks_passed"] = bool(checks) and all(c.get("passed", False) for c in checks)
    return result


def check_and_time(
    attend: Attend, skip_backward: str | None, qkv: tuple[torch.Tensor, ...], mask_mod: masks.MaskMod,
    rows: torch.Tensor, flops: float, settings: dict,
) -> dict:  # fmt: skip
    """{"check", "forward", "forward_backward"} of one implementation; no timing after a failed check."""
    dtype_name = str(qkv[0].dtype).removeprefix("torch.")
    backward = skip_backward is None
    check = guarded(lambda: check_against_reference(attend, *qkv, mask_mod, rows, TOLERANCE[dtype_name], backward))
    why = None if check.get("passed", False) else "skipped: correctness check failed"
    peak, timed = settings["peak_tflops"], settings["timed"]
    forward = {"skipped": why} if why else guarded(lambda: measure(attend, *qkv, False, flops, peak, timed))
    why = why or skip_backward
    flops_fb = flops * (1 + BACKWARD_FLOP_RATIO)
    both = {"skipped": why} if why else guarded(lambda: measure(attend, *qkv, True, flops_fb, peak, timed))
    return {"check": check, "forward": forward, "forward_backward": both}


def flex_function(device: torch.device) -> Callable:
    """FlexAttention compiled on CUDA (its eager path materializes the scores); eager on a CPU,
    where compiling takes ~20 s, too long for a dry run."""
    from torch.nn.attention.flex_attention import flex_attention

    if device.type != "cuda":
        # eager FlexAttention warns that it materializes the scores: expected at a dry run's sizes
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        return flex_attention
    import torch._dynamo

    # Each mask and dtype is one more compiled graph (lengths become dynamic after the first
    # change); past the default limit of 8, dynamo would silently fall back to the eager path,
    # which materializes (T, T) scores.
    torch._dynamo.config.recompile_limit = 64
    return torch.compile(flex_attention)


def brief(row: dict) -> str:
    """One progress line: check result, forward and forward + backward ms."""
    if "skipped" in row:
        return row["skipped"]
    check = row["check"]
    parts = ["check " + ("ok" if check.get("passed") else f"FAILED {check}")]
    for key in ("forward", "forward_backward"):
        r = row[key]
        if "skipped" in r:
            parts.append(f"{key} {r['skipped']}")
        else:
            parts.append(f"{key} " + ("ran (untimed)" if r["ms"] is None else f"{r['ms']} ms, {r['tflops']} TFLOP/s"))
    return "; ".join(parts)


def plot(result: dict, path, title: str) -> None:
    """ms against T, one panel per (mask, pass); colour = implementation, line style = dtype."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    mask_names = list(dict.fromkeys(r["mask"] for r in rows))
    fig, axes = plt.subplots(len(mask_names), 2, figsize=(11, 3.8 * len(mask_names)), squeeze=False)
    for i, mask_name in enumerate(mask_names):
        for j, key in enumerate(("forward", "forward_backward")):
            ax = axes[i][j]
            for c, impl in enumerate(("triton", "flex", "sdpa_dense")):
                for dtype_name, ls in (("float16", "-"), ("bfloat16", "--"), ("float32", ":")):
                    pts = [(r["T"], r[key]["ms"]) for r in rows if r["mask"] == mask_name and r["impl"] == impl
                           and r["dtype"] == dtype_name and (r.get(key) or {}).get("ms") is not None]  # fmt: skip
                    if pts:
                        ax.plot(*zip(*pts), ls, marker="o", color=f"C{c}", label=f"{impl} {dtype_name}")
            ax.set(xscale="log", yscale="log", xlabel="T", ylabel="ms (median)", title=f"{mask_name}, {key}")
            ax.grid(True, which="both", alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
            else:  # a dry run, or every row skipped: say so rather than show empty axes
                ax.text(0.5, 0.5, "no timings", transform=ax.transAxes, ha="center", color="gray")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
