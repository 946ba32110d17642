"""Checkers for chapter 08 (Triton: vector add, a masked 2-D load, row softmax, online softmax, block skipping).

The learner's kernels are `@triton.jit` functions. Each checker launches one on a few seeded cases
(in Triton's interpreter on CPU tensors when there is no GPU, compiled on CUDA otherwise) and
compares with the torch op it must equal. Outputs sit inside larger buffers filled with NaN, so a
store that forgets its mask is caught, and under the interpreter lands in memory we own instead of
corrupting the process. Without Triton (macOS, Windows) the kernel checkers say they were skipped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch

import kernels  # sets TRITON_INTERPRET=1 (no GPU) before Triton is imported
from kernels import block_map_from_mask, mask_mod_for

from .core import CheckFailed, run_check


def _device() -> str:
    return "cpu" if kernels.TRITON_INTERPRETED else "cuda"


def _skipped(title: str) -> bool:
    print(f"⏭ {title}: skipped. {kernels.TRITON_UNAVAILABLE_REASON}")
    return False


def _stub_or_cause(error: BaseException) -> BaseException | None:
    """None when `error` comes from a stub's NotImplementedError, else the learner's own error.

    The interpreter wraps errors raised inside a kernel in an InterpreterError (the original is its
    __cause__); a compiled kernel with `raise NotImplementedError` fails to compile and names it.
    """
    e, seen = error, set()
    while e is not None and id(e) not in seen:
        if isinstance(e, NotImplementedError) or "NotImplementedError" in str(e):
            return None
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return error.__cause__ if type(error).__name__ == "InterpreterError" and error.__cause__ else error


def _launch(kernel, grid: tuple[int, ...], *args, **meta) -> None:
    """kernel[grid](*args, **meta); a stub raises NotImplementedError, other errors come out unwrapped."""
    if not hasattr(kernel, "__getitem__"):
        raise CheckFailed(f"expected a @triton.jit function, got {type(kernel).__name__}: decorate it with @triton.jit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's notes on inf/NaN inside the interpreter
            kernel[grid](*args, **meta)
    except Exception as error:  # noqa: BLE001 - reported by run_check
        cause = _stub_or_cause(error)
        if cause is None:
            raise NotImplementedError from None
        raise cause from None


def _inside(buffer: torch.Tensor, view: torch.Tensor, what: str) -> torch.Tensor:
    """The view's values, after checking that every element of buffer outside the view is still NaN."""
    outside = torch.ones(buffer.numel(), dtype=torch.bool, device=buffer.device)
    index = torch.arange(buffer.numel(), device=buffer.device)
    index = index.as_strided(view.shape, view.stride(), view.storage_offset())  # buffer positions of the view
    outside[index.flatten()] = False
    written = ~torch.isnan(buffer.flatten()[outside])
    if written.any():
        raise CheckFailed(f"the kernel wrote {int(written.sum())} values outside {what}: mask your tl.store")
    return view.cpu()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------------
# Exercise 1: vector add
# ----------------------------------------------------------------------------------------------


def check_add_kernel(add_kernel) -> bool:
    """add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK) launched on cdiv(n, BLOCK) programs -> out = x + y."""
    if not kernels.TRITON_AVAILABLE:
        return _skipped("add_kernel")
    device, BLOCK = _device(), 64

    def student(x, y):
        n = x.numel()
        buffer = torch.full((n + BLOCK,), float("nan"), device=device)  # out, then a guard of NaN
        out = buffer[:n]
        _launch(add_kernel, (_cdiv(n, BLOCK),), x.to(device), y.to(device), out, n, BLOCK=BLOCK)
        return _inside(buffer, out, f"out[:{n}]")

    g = torch.Generator().manual_seed(0)
    cases = [tuple(torch.randn(2, n, generator=g).unbind(0)) for n in (1000, 64, 1, 130)]
    return run_check(
        "add_kernel",
        student,
        lambda x, y: x + y,
        cases,
        hint="offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK); mask = offs < n; "
        "load x and y with mask=mask, tl.store(out_ptr + offs, x + y, mask=mask)",
        describe=lambda c: f"n = {c[0].numel()}, BLOCK = {BLOCK}",
    )


# ----------------------------------------------------------------------------------------------
# Exercise 2: a masked 2-D load (transpose)
# ----------------------------------------------------------------------------------------------


def check_transpose_kernel(transpose_kernel) -> bool:
    """transpose_kernel(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M, BLOCK_N) -> out = x.T.

    x is (M, N) with row stride stride_x; out is (N, M) with row stride stride_out; the grid is
    (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)), one program per tile of x.
    """
    if not kernels.TRITON_AVAILABLE:
        return _skipped("transpose_kernel")
    device, BLOCK_M, BLOCK_N = _device(), 16, 32

    def student(x):
        M, N = x.shape
        wide = torch.randn(M, N + 5, generator=torch.Generator().manual_seed(M)).to(device)
        wide[:, :N] = x.to(device)
        x_view = wide[:, :N]  # row stride N + 5: the stride is not the width
        # out (N, M) inside a NaN buffer with BLOCK_M spare columns per row and BLOCK_N spare rows
        buffer = torch.full((N + BLOCK_N, M + BLOCK_M), float("nan"), device=device)
        out = buffer[:N, :M]
        grid = (_cdiv(M, BLOCK_M), _cdiv(N, BLOCK_N))
        _launch(transpose_kernel, grid, x_view, out, M, N, x_view.stride(0), out.stride(0),
                BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)  # fmt: skip
        return _inside(buffer, out, f"out[:{N}, :{M}]")

    g = torch.Generator().manual_seed(1)
    cases = [(torch.randn(M, N, generator=g),) for M, N in [(5, 7), (16, 32), (33, 17), (1, 40)]]
    return run_check(
        "transpose_kernel",
        student,
        lambda x: x.T.contiguous(),
        cases,
        hint="rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M), cols likewise along axis 1; "
        "mask = (rows[:, None] < M) & (cols[None, :] < N); load x_ptr + rows[:, None] * stride_x + cols[None, :]; "
        "store the same tile at out_ptr + cols[None, :] * stride_out + rows[:, None] with the same mask",
        describe=lambda c: f"x {tuple(c[0].shape)}, tiles {BLOCK_M} x {BLOCK_N}",
    )


# ----------------------------------------------------------------------------------------------
# Exercise 3: row softmax under a causal mask
# ----------------------------------------------------------------------------------------------


def causal_softmax_reference(x: torch.Tensor) -> torch.Tensor:
    """Row i of x (M, N) softmaxed over columns j <= i; zero for j > i."""
    M, N = x.shape
    allowed = torch.ones(M, N, dtype=torch.bool).tril()
    return torch.softmax(x.masked_fill(~allowed, float("-inf")), dim=-1)


def check_causal_softmax_kernel(causal_softmax_kernel) -> bool:
    """causal_softmax_kernel(x_ptr, out_ptr, N, stride, BLOCK) on M programs (one per row), BLOCK >= N."""
    if not kernels.TRITON_AVAILABLE:
        return _skipped("causal_softmax_kernel")
    device = _device()

    def student(x):
        M, N = x.shape
        BLOCK = 1 << (N - 1).bit_length()  # triton.next_power_of_2(N)
        # x and out share one row stride, wider than N, so an unmasked store lands in NaN padding
        x_buffer = torch.zeros(M, N + BLOCK, device=device)
        x_buffer[:, :N] = x.to(device)
        buffer = torch.full((M, N + BLOCK), float("nan"), device=device)
        out = buffer[:, :N]
        _launch(causal_softmax_kernel, (M,), x_buffer[:, :N], out, N, out.stride(0), BLOCK=BLOCK)
        return _inside(buffer, out, f"out[:, :{N}]")

    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(M, N, generator=g) * scale,) for M, N, scale in [(5, 5, 1.0), (12, 10, 30.0), (3, 64, 1.0)]]
    cases.append((-100.0 - torch.rand(4, 6, generator=g),))  # every score negative: padding must not count as 0
    return run_check(
        "causal_softmax_kernel",
        student,
        causal_softmax_reference,
        cases,
        hint="row = tl.program_id(0); cols = tl.arange(0, BLOCK); load with mask=(cols < N) & (cols <= row) and "
        "other=-float('inf') (so masked lanes add exp(-inf) = 0); subtract tl.max before tl.exp; "
        "store e / sum for every column < N",
        describe=lambda c: f"x {tuple(c[0].shape)}, scores in [{c[0].min().item():.0f}, {c[0].max().item():.0f}]",
    )


# ----------------------------------------------------------------------------------------------
# Exercise 4: the online softmax update (a row's log-sum-exp, one chunk at a time)
# ----------------------------------------------------------------------------------------------


def check_logsumexp_kernel(logsumexp_kernel) -> bool:
    """logsumexp_kernel(x_ptr, out_ptr, N, stride, BLOCK) on M programs -> out[i] = log sum_j exp(x[i, j]).

    BLOCK may be smaller than N: the kernel loops over the row in chunks of BLOCK.
    """
    if not kernels.TRITON_AVAILABLE:
        return _skipped("logsumexp_kernel")
    device = _device()

    def student(x, BLOCK):
        M, N = x.shape
        buffer = torch.full((M + BLOCK,), float("nan"), device=device)
        out = buffer[:M]
        _launch(logsumexp_kernel, (M,), x.to(device), out, N, x.stride(0), BLOCK=BLOCK)
        return _inside(buffer, out, f"out[:{M}]")

    g = torch.Generator().manual_seed(3)
    rising = torch.linspace(0, 400, 200)[None].expand(2, 200).contiguous()  # the max grows in every chunk
    cases = [
        (torch.randn(3, 100, generator=g) * 100, 16),  # exp(100 * randn) overflows float32 without the max
        (torch.randn(2, 16, generator=g), 16),  # exactly one chunk
        (torch.randn(4, 5, generator=g), 16),  # one partial chunk
        (rising, 32),
    ]
    return run_check(
        "logsumexp_kernel",
        student,
        lambda x, BLOCK: torch.logsumexp(x, dim=-1),
        cases,
        hint="m = -inf, l = 0 (scalars: tl.full([], ..., tl.float32)); for each chunk: load with other=-inf, "
        "m_new = max(m, tl.max(x)); l = l * exp(m - m_new) + sum(exp(x - m_new)); m = m_new; store m + log(l)",
        atol=1e-4,
        describe=lambda c: f"x {tuple(c[0].shape)}, BLOCK = {c[1]}",
    )


# ----------------------------------------------------------------------------------------------
# Exercise 5: block skipping
# ----------------------------------------------------------------------------------------------


def _tight_blocks(T: int, block: int, n_sink: int, window: int) -> list[list[int]]:
    """For each query block, the key blocks where masks.sink_window(n_sink, window) has any True."""
    bmap = block_map_from_mask(mask_mod_for(n_sink, window), T, block, block)  # (n_q, n_kv)
    return [row.nonzero().flatten().tolist() for row in bmap]


def check_visited_blocks(visited_blocks: Callable[[int, int, int, int], list[list[int]]]) -> bool:
    """visited_blocks(T, block, n_sink, window) -> for each query block, the key blocks it must visit."""

    def student(T, block, n_sink, window):
        got = visited_blocks(T, block, n_sink, window)
        expected = _tight_blocks(T, block, n_sink, window)
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            raise CheckFailed(f"expected a list of {len(expected)} lists (one per query block), got {n}")
        for m, (blocks, needed) in enumerate(zip(got, expected)):
            blocks = [int(b) for b in blocks]
            if len(blocks) != len(set(blocks)):
                raise CheckFailed(f"query block {m} visits a key block twice: {blocks} (sink blocks inside the band?)")
            missing, extra = sorted(set(needed) - set(blocks)), sorted(set(blocks) - set(needed))
            if missing or extra:
                raise CheckFailed(
                    f"query block {m} (queries {m * block}..{min(m * block + block, T) - 1}) visits {sorted(blocks)}, "
                    f"the mask needs {needed}"
                    + (f"; missing {missing} (wrong output)" if missing else "")
                    + (f"; {extra} hold no allowed pair (wasted work)" if extra else "")
                )
        return expected

    return run_check(
        "visited_blocks",
        student,
        _tight_blocks,
        [(128, 16, 4, 20), (100, 16, 0, 5), (64, 16, 20, 8), (96, 32, 1, 100), (200, 16, 16, 16), (48, 16, 1, 1)],
        hint="query block m: the band is key blocks max(m * block - window, 0) // block .. m (the diagonal); "
        "the sinks are key blocks 0 .. ceil(n_sink / block) - 1; don't list a block twice",
        describe=lambda c: f"T={c[0]}, block={c[1]}, n_sink={c[2]}, window={c[3]}",
    )
