"""Checkers for chapter 08 (Triton: vector add, a masked 2-D load, row softmax, online softmax, block skipping,
the flash-attention forward loop and the block-sparse kernel with its full/partial tile split).

The learner's kernels are `@triton.jit` functions. Each checker launches one on a few seeded cases
(in Triton's interpreter on CPU tensors when there is no GPU, compiled on CUDA otherwise) and
compares with the torch op it must equal. Outputs sit inside larger guard buffers filled with a
marked NaN, so the checker sees every store: one that forgets its mask (it writes just past the
edge, where the extra lanes point) is told apart from one whose offsets or strides are wrong (it
writes elsewhere, or leaves entries unwritten), and under the interpreter either lands in memory we
own instead of corrupting the process. Without Triton (macOS, Windows) the kernel checkers say
they were skipped.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable

import torch

import minillm_kernels  # sets TRITON_INTERPRET=1 (no GPU) before Triton is imported
from minillm_kernels import block_map_from_mask, mask_mod_for, tile_kinds_from_mask

from .core import CheckFailed, CheckResult, run_check


def _device() -> str:
    return "cpu" if minillm_kernels.TRITON_INTERPRETED else "cuda"


def _skipped(title: str) -> CheckResult:
    print(f"⏭ {title}: skipped. {minillm_kernels.TRITON_UNAVAILABLE_REASON}")
    return CheckResult(title, False, "skipped: Triton is not available")


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


# The guard buffers hold a NaN with its own bit pattern: a store of any value, NaN included (a softmax that
# overflows), changes the bits, so "never written" and "wrote NaN" can be told apart.
_UNWRITTEN = 0x7FC0DEAD


def _unwritten(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous().view(torch.int32) == _UNWRITTEN


def _guarded(shape: tuple[int, ...], strides: tuple[int, ...], padded: tuple[int, ...], device: str, reach: int = 0):
    """(buffer, view, lanes): a view of `shape` and `strides` inside a flat guard buffer, and a view of the
    same strides over `padded` (the shape rounded up to whole blocks: where the lanes past the edge point).

    The buffer leaves room on both sides (a padded span before; after, four spans or twice `reach`, the
    extent of the inputs, whichever is larger), so that a store with a wrong offset or stride (such as
    an input's) lands in memory we own, where it can be seen, instead of corrupting the process under
    the interpreter.
    """
    span = 1 + sum((n - 1) * s for n, s in zip(padded, strides))
    size = 2 * span + max(4 * span, 2 * reach)
    buffer = torch.full((size,), _UNWRITTEN, dtype=torch.int32, device=device).view(torch.float32)
    return buffer, buffer.as_strided(shape, strides, span), buffer.as_strided(padded, strides, span)


def _positions(view: torch.Tensor, size: int) -> torch.Tensor:
    """A bool (size,) mask of the buffer positions that `view` covers."""
    covered = torch.zeros(size, dtype=torch.bool, device=view.device)
    index = torch.arange(size, device=view.device).as_strided(view.shape, view.stride(), view.storage_offset())
    covered[index.flatten()] = True
    return covered


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}" if n == 1 else f"{n} {thing[:-1]}ies" if thing.endswith("y") else f"{n} {thing}s"


def _inside(buffer: torch.Tensor, view: torch.Tensor, lanes: torch.Tensor, what: str, address: str) -> torch.Tensor:
    """The view's values, after checking what the kernel's stores touched.

    Writes outside the view are a missing store mask when they all fall where the lanes past the edge
    point (and the view is complete); otherwise the store's addresses are wrong (an offset or a stride).
    Entries of the view that still hold the marked NaN were never stored.
    """
    inside, padding = _positions(view, buffer.numel()), _positions(lanes, buffer.numel())
    stray = ~_unwritten(buffer) & ~inside
    unwritten = _unwritten(view)
    n_stray, n_unwritten = _count(int(stray.sum()), "value"), _count(int(unwritten.sum()), "entry")
    if stray.any():
        if not (stray & ~padding).any() and not unwritten.any():
            raise CheckFailed(
                f"the kernel wrote {n_stray} just past the edge of {what}, where the lanes beyond the bounds "
                "point: mask your tl.store (those lanes must not store)"
            )
        first = int(stray.nonzero()[0]) - view.storage_offset()  # element offset from out_ptr
        at = f"out_ptr + {first}" if first >= 0 else f"out_ptr - {-first}"
        missing = f", and left {n_unwritten} of {what} unwritten" if unwritten.any() else ""
        raise CheckFailed(
            f"the kernel wrote {n_stray} outside {what} (the first at {at}){missing}: the store's addresses are "
            f"wrong, not just its mask ({address})"
        )
    if unwritten.any():
        first = tuple(unwritten.nonzero()[0].tolist())
        raise CheckFailed(
            f"{what} has {n_unwritten} the kernel never wrote, the first at index {first}: the store's mask (or its "
            f"offsets) skips them ({address})"
        )
    return view.cpu()


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ----------------------------------------------------------------------------------------------
# Exercise 1: vector add
# ----------------------------------------------------------------------------------------------


def check_add_kernel(add_kernel, hint: int | None = None) -> CheckResult:
    """add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK) launched on cdiv(n, BLOCK) programs -> out = x + y."""
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("add_kernel")
    device, BLOCK = _device(), 64

    def student(x, y):
        n = x.numel()
        buffer, out, lanes = _guarded((n,), (1,), (_cdiv(n, BLOCK) * BLOCK,), device, reach=n)
        _launch(add_kernel, (_cdiv(n, BLOCK),), x.to(device), y.to(device), out, n, BLOCK=BLOCK)
        return _inside(buffer, out, lanes, f"out[:{n}]", "element i of out is at out_ptr + i")

    g = torch.Generator().manual_seed(0)
    cases = [tuple(torch.randn(2, n, generator=g).unbind(0)) for n in (1000, 64, 1, 130)]
    return run_check(
        "add_kernel",
        student,
        lambda x, y: x + y,
        cases,
        hints=(
            "each program handles its own BLOCK consecutive elements, chosen by its program id; lanes whose "
            "index is n or more exist in the last program and must neither load nor store",
            "build the BLOCK indices of this program from tl.program_id(0), BLOCK and tl.arange; compare them "
            "with n to get one bool mask; pass that mask to both loads and to the store, at the same indices",
        ),
        describe=lambda c: f"n = {c[0].numel()}, BLOCK = {BLOCK}",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 2: a masked 2-D load (transpose)
# ----------------------------------------------------------------------------------------------


def check_transpose_kernel(transpose_kernel, hint: int | None = None) -> CheckResult:
    """transpose_kernel(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M, BLOCK_N) -> out = x.T.

    x is (M, N) with row stride stride_x; out is (N, M) with row stride stride_out; the grid is
    (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N)), one program per tile of x.
    """
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("transpose_kernel")
    device, BLOCK_M, BLOCK_N = _device(), 16, 32

    def student(x):
        M, N = x.shape
        wide = torch.randn(M, N + 5, generator=torch.Generator().manual_seed(M)).to(device)
        wide[:, :N] = x.to(device)
        x_view = wide[:, :N]  # row stride N + 5: the stride is not the width
        # out (N, M) with row stride M + BLOCK_M: a store past column M lands in the row's own padding
        padded = (_cdiv(N, BLOCK_N) * BLOCK_N, _cdiv(M, BLOCK_M) * BLOCK_M)
        buffer, out, lanes = _guarded((N, M), (M + BLOCK_M, 1), padded, device, reach=wide.numel())
        grid = (_cdiv(M, BLOCK_M), _cdiv(N, BLOCK_N))
        _launch(transpose_kernel, grid, x_view, out, M, N, x_view.stride(0), out.stride(0),
                BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N)  # fmt: skip
        return _inside(buffer, out, lanes, f"out[:{N}, :{M}]", "out[j, i] is at out_ptr + j * stride_out + i")

    g = torch.Generator().manual_seed(1)
    cases = [(torch.randn(M, N, generator=g),) for M, N in [(5, 7), (16, 32), (33, 17), (1, 40)]]
    return run_check(
        "transpose_kernel",
        student,
        lambda x: x.T.contiguous(),
        cases,
        hints=(
            "x's rows are stride_x elements apart (here more than N) and out's rows stride_out apart (more than "
            "M); a tile that sticks out past row M or column N must not load or store those lanes",
            "one program = one tile: its row indices come from program id 0, its column indices from program id "
            "1; a 2-D block of addresses is a column of row offsets times the row stride plus a row of column "
            "offsets; the mask needs the row *and* the column in range; store the tile with the roles of rows and "
            "columns swapped in out's addresses",
        ),
        describe=lambda c: f"x {tuple(c[0].shape)}, tiles {BLOCK_M} x {BLOCK_N}",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 3: row softmax under a causal mask
# ----------------------------------------------------------------------------------------------


def causal_softmax_reference(x: torch.Tensor) -> torch.Tensor:
    """Row i of x (M, N) softmaxed over columns j <= i; zero for j > i."""
    M, N = x.shape
    allowed = torch.ones(M, N, dtype=torch.bool).tril()
    return torch.softmax(x.masked_fill(~allowed, float("-inf")), dim=-1)


def check_causal_softmax_kernel(causal_softmax_kernel, hint: int | None = None) -> CheckResult:
    """causal_softmax_kernel(x_ptr, out_ptr, N, stride, BLOCK) on M programs (one per row), BLOCK >= N."""
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("causal_softmax_kernel")
    device = _device()

    def student(x):
        M, N = x.shape
        BLOCK = 1 << (N - 1).bit_length()  # triton.next_power_of_2(N)
        # x and out share one row stride, wider than N, so an unmasked store lands in the row's padding
        stride = N + BLOCK
        x_buffer = torch.zeros(M, stride, device=device)
        x_buffer[:, :N] = x.to(device)
        buffer, out, lanes = _guarded((M, N), (stride, 1), (M, BLOCK), device, reach=x_buffer.numel())
        _launch(causal_softmax_kernel, (M,), x_buffer[:, :N], out, N, stride, BLOCK=BLOCK)
        return _inside(buffer, out, lanes, f"out[:, :{N}]", "out[row, j] is at out_ptr + row * stride + j")

    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(M, N, generator=g) * scale,) for M, N, scale in [(5, 5, 1.0), (12, 10, 30.0), (3, 64, 1.0)]]
    cases.append((-100.0 - torch.rand(4, 6, generator=g),))  # every score negative: padding must not count as 0
    return run_check(
        "causal_softmax_kernel",
        student,
        causal_softmax_reference,
        cases,
        hints=(
            "a lane that must not count (past N, or after the diagonal) has to load -inf, not 0, so it drops out of "
            "the max and adds nothing to the sum; the max comes off before the exponential; every column < N is "
            "stored, the zeros after the diagonal included",
            "two masks: the load's (column in range and not after the row, with a -inf fill value) and the store's "
            "(column in range only); in between, the usual stable softmax over the block (max, shift, exp, divide by "
            "the sum)",
        ),
        describe=lambda c: f"x {tuple(c[0].shape)}, scores in [{c[0].min().item():.0f}, {c[0].max().item():.0f}]",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 4: the online softmax update (a row's log-sum-exp, one chunk at a time)
# ----------------------------------------------------------------------------------------------


def check_logsumexp_kernel(logsumexp_kernel, hint: int | None = None) -> CheckResult:
    """logsumexp_kernel(x_ptr, out_ptr, N, stride, BLOCK) on M programs -> out[i] = log sum_j exp(x[i, j]).

    BLOCK may be smaller than N: the kernel loops over the row in chunks of BLOCK.
    """
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("logsumexp_kernel")
    device = _device()

    def student(x, BLOCK):
        M, N = x.shape
        buffer, out, lanes = _guarded((M,), (1,), (M,), device, reach=x.numel())
        _launch(logsumexp_kernel, (M,), x.to(device), out, N, x.stride(0), BLOCK=BLOCK)
        return _inside(buffer, out, lanes, f"out[:{M}]", "out[row] is at out_ptr + row: one scalar per program")

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
        hints=(
            "when a chunk raises the running max, the sum collected so far was taken relative to the old max and "
            "must be rescaled to the new one; padding lanes of the last chunk must add nothing; exponentials are "
            "always of (x - max), never of x alone",
            "keep two scalars across the loop, the max so far and the sum of exp(x - that max); per chunk: the new "
            "max is the larger of the old one and the chunk's; multiply the old sum by exp(old max - new max) before "
            "adding the chunk's terms; at the end the answer is the max plus the log of the sum",
        ),
        atol=1e-4,
        describe=lambda c: f"x {tuple(c[0].shape)}, BLOCK = {c[1]}",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercise 5: block skipping
# ----------------------------------------------------------------------------------------------


def _tight_blocks(T: int, block: int, n_sink: int, window: int) -> list[list[int]]:
    """For each query block, the key blocks where masks.sink_window(n_sink, window) has any True."""
    bmap = block_map_from_mask(mask_mod_for(n_sink, window), T, block, block)  # (n_q, n_kv)
    return [row.nonzero().flatten().tolist() for row in bmap]


def check_visited_blocks(
    visited_blocks: Callable[[int, int, int, int], list[list[int]]], hint: int | None = None
) -> CheckResult:
    """visited_blocks(T, block, n_sink, window) -> for each query block, the key blocks it must visit."""

    def student(T, block, n_sink, window):
        got = visited_blocks(T, block, n_sink, window)
        expected = _tight_blocks(T, block, n_sink, window)
        if not isinstance(got, (list, tuple)) or len(got) != len(expected):
            n = len(got) if isinstance(got, (list, tuple)) else type(got).__name__
            raise CheckFailed(f"expected a list of {len(expected)} lists (one per query block), got {n}")
        for m, (blocks, needed) in enumerate(zip(got, expected)):
            if not isinstance(blocks, (list, tuple)):
                raise CheckFailed(f"query block {m}'s entry is a {type(blocks).__name__}: give a list of key blocks")
            if any(isinstance(b, bool) or not isinstance(b, numbers.Integral) for b in blocks):
                raise CheckFailed(f"query block {m} visits {list(blocks)}: key blocks are ints")
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
            if blocks != needed:
                raise CheckFailed(f"query block {m} visits {blocks}: the right blocks, but list them sorted")
        return expected

    return run_check(
        "visited_blocks",
        student,
        _tight_blocks,
        [(128, 16, 4, 20), (100, 16, 0, 5), (64, 16, 20, 8), (96, 32, 1, 100), (200, 16, 16, 16), (48, 16, 1, 1)],
        hints=(
            "list, for each query block, every key block holding at least one allowed (query, key) pair, each "
            "once, in increasing order: the band (from the block of the oldest key the block's *first* query still "
            "sees, up to the diagonal block m) and the sink blocks left of the band",
            "the band runs from the block holding key max(m * block - window, 0) to block m; the sink blocks are "
            "those holding keys 0 ... n_sink - 1, but keep only those before the band's first block (the others "
            "are in the band already, or lie past the diagonal block m, where query block m sees nothing)",
        ),
        describe=lambda c: f"T={c[0]}, block={c[1]}, n_sink={c[2]}, window={c[3]}",
        level=hint,
    )


# ----------------------------------------------------------------------------------------------
# Exercises 8 and 9: the flash-attention forward loop, then the block-sparse kernel
# ----------------------------------------------------------------------------------------------

FLASH_BLOCK, FLASH_D = 16, 16  # tl.dot's smallest tile is 16 x 16: the smallest shapes a kernel can use

# What a block-sparse kernel records for the tile (query block m, key block n): not visited, visited
# without a mask (every pair of the tile is allowed), visited with the mask applied.
SKIPPED, FULL, PARTIAL = 0, 1, 2


def tile_kinds(T: int, block: int, n_sink: int, window: int | None = None) -> torch.Tensor:
    """(M, M) int, M = ceil(T / block): SKIPPED, FULL or PARTIAL for each tile under mask_mod_for(n_sink, window).

    Decided on the padded grid: a key past T is never allowed (a tile holding one is partial), and the
    padding queries of the last block count like real ones (their rows are computed, never stored).
    """
    # the package's rule, the one its own kernel's split is tested against (same codes)
    return tile_kinds_from_mask(mask_mod_for(n_sink, window), T, block, block).to(torch.int32)


def flex_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_sink: int = 0, window: int | None = None):
    """FlexAttention (eager, on the CPU) under mask_mod_for(n_sink, window), with its block mask of 16 x 16 tiles."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    T = q.shape[-2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "flex_attention called without torch.compile()": expected, tiny shapes
        block_mask = create_block_mask(mask_mod_for(n_sink, window), None, None, T, T, device="cpu", BLOCK_SIZE=16)
        return flex_attention(q.cpu(), k.cpu(), v.cpu(), block_mask=block_mask)


def _flash_out(q: torch.Tensor, device: str):
    """(buffer, out): out (B, H, T, D) at the start of a marked buffer with BLOCK rows of room after it."""
    B, H, T, D = q.shape
    buffer = torch.full((B * H * T * D + 4 * FLASH_BLOCK * D,), _UNWRITTEN, dtype=torch.int32, device=device)
    buffer = buffer.view(torch.float32)
    return buffer, buffer[: B * H * T * D].view(B, H, T, D)


def _check_out_written(buffer: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    past = ~_unwritten(buffer[out.numel() :])
    if past.any():
        raise CheckFailed(
            f"the kernel wrote {_count(int(past.sum()), 'value')} past the end of Out (rows at or past T of the last "
            "query block): mask the output's tl.store with the query index < T"
        )
    unwritten = _unwritten(out)
    if unwritten.any():
        first = tuple(unwritten.nonzero()[0].tolist())
        raise CheckFailed(
            f"Out has {_count(int(unwritten.sum()), 'entry')} the kernel never wrote, the first at (b, h, t, d) = "
            f"{first}: every query row < T must be stored (Out + bh * T * D + row * D + d)"
        )
    return out.cpu()


def launch_flash(flash_kernel, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Causal attention by the learner's flash_kernel(Q, K, V, Out, T, scale, BLOCK, D), one program per
    (query block, batch * head); q, k, v (B, H, T, D) float32 -> (B, H, T, D) on the CPU."""
    device = _device()
    B, H, T, D = q.shape
    q, k, v = (x.to(device).contiguous() for x in (q, k, v))
    buffer, out = _flash_out(q, device)
    _launch(flash_kernel, (_cdiv(T, FLASH_BLOCK), B * H), q, k, v, out, T, D**-0.5, BLOCK=FLASH_BLOCK, D=D)
    return _check_out_written(buffer, out)


def launch_block_sparse(block_sparse_kernel, q, k, v, n_sink: int, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, record): the learner's block_sparse_kernel(Q, K, V, Out, Record, T, n_sink, window, scale, BLOCK, D)
    on q, k, v (B, H, T, D) float32, and what it recorded for each tile, (M, M) int32 (SKIPPED, FULL, PARTIAL)."""
    device = _device()
    B, H, T, D = q.shape
    M = _cdiv(T, FLASH_BLOCK)
    q, k, v = (x.to(device).contiguous() for x in (q, k, v))
    buffer, out = _flash_out(q, device)
    records = torch.zeros(5 * M * M, dtype=torch.int32, device=device)  # room on both sides for a stray record
    record = records[2 * M * M : 3 * M * M].view(M, M)
    grid = (M, B * H)
    _launch(block_sparse_kernel, grid, q, k, v, out, record, T, n_sink, window, D**-0.5, BLOCK=FLASH_BLOCK, D=D)
    if records[: 2 * M * M].any() or records[3 * M * M :].any():
        raise CheckFailed(
            f"the kernel stored into memory around Record, not in it: Record is ({M}, {M}), M = cdiv(T, BLOCK), and "
            "the entry of tile (query block m, key block n) is at Record + m * M + n"
        )
    return _check_out_written(buffer, out), record.cpu()


def _compare_with_flex(got: torch.Tensor, q, k, v, n_sink: int, window: int | None) -> None:
    """CheckFailed when got differs from FlexAttention's output on the same inputs and mask."""
    flex = flex_reference(q, k, v, n_sink, window)
    if got.isnan().any():
        t = int(got.isnan().nonzero()[0][2])
        raise CheckFailed(
            f"the output has NaN, the first in query row {t}: a row whose running max is still -inf after a tile "
            "(no allowed key yet) gives exp(-inf - (-inf)) = NaN, or the kernel read a NaN it should have skipped"
        )
    if not torch.allclose(got, flex, atol=1e-4, rtol=1e-4):
        t = int(((got - flex).abs() > 1e-4).any(-1).nonzero()[0][2])
        raise CheckFailed(
            f"the output differs from FlexAttention's (and from the reference) by up to "
            f"{(got - flex).abs().max().item():.3g}, the first in query row {t} (query block {t // FLASH_BLOCK})"
        )


def check_flash_kernel(flash_kernel, hint: int | None = None) -> CheckResult:
    """flash_kernel(Q, K, V, Out, T, scale, BLOCK, D) -> causal attention, one program per (query block, b * h)."""
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("flash_kernel")

    def student(q, k, v):
        got = launch_flash(flash_kernel, q, k, v)
        _compare_with_flex(got, q, k, v, 0, None)
        return got

    g = torch.Generator().manual_seed(8)
    cases = [tuple(torch.randn(3, 1, 2, T, FLASH_D, generator=g).unbind(0)) for T in (16, 64, 50)]
    rising = (torch.arange(48.0) / 2)[None, None, :, None] * torch.ones(1, 1, 48, FLASH_D)  # scores grow key by key
    cases.append((rising, rising, torch.randn(1, 1, 48, FLASH_D, generator=g)))
    return run_check(
        "flash_kernel",
        student,
        lambda q, k, v: minillm_kernels.reference_attention(q, k, v),
        cases,
        hints=(
            "each program owns BLOCK queries of one (batch, head) and must see every key up to its own last query, "
            "one key tile at a time; a row's weights are only known at the end, so the running max, the running sum "
            "and the running output must all be re-expressed whenever a tile raises the max; keys after a query, "
            "and keys at or past T, get weight 0",
            "load the query tile once; loop over key blocks from 0 to the diagonal block; per tile: scores by tl.dot "
            "times scale, -inf where the key is after the query or past T, the new max, the factor exp(old max - "
            "new max) that multiplies both the old sum and the old output, then add this tile's exponentials and "
            "their product with the value tile; store output / sum for the rows below T",
        ),
        atol=1e-4,
        rtol=1e-4,
        describe=lambda c: f"q, k, v {tuple(c[0].shape)}, BLOCK = {FLASH_BLOCK}",
        level=hint,
    )


def _tiles(kinds: torch.Tensor, which: torch.Tensor) -> str:
    tiles = [tuple(t) for t in which.nonzero().tolist()]
    shown = ", ".join(f"({m}, {n})" for m, n in tiles[:4]) + (", ..." if len(tiles) > 4 else "")
    return f"{_count(len(tiles), 'tile')} (query block, key block) = {shown}"


def check_block_sparse_kernel(block_sparse_kernel, hint: int | None = None) -> CheckResult:
    """block_sparse_kernel(Q, K, V, Out, Record, T, n_sink, window, scale, BLOCK, D) -> sink + window attention.

    Besides the output, three things are checked: the kernel's own record of each tile (visited without a
    mask, visited with one) against tile_kinds; and, by filling the values of the key blocks that the last
    query block must skip with NaN, that it never reads them (a read tile poisons its row even at weight 0).
    """
    if not minillm_kernels.TRITON_AVAILABLE:
        return _skipped("block_sparse_kernel")

    def student(q, k, v, n_sink, window):
        T = q.shape[2]
        got, record = launch_block_sparse(block_sparse_kernel, q, k, v, n_sink, window)
        kinds = tile_kinds(T, FLASH_BLOCK, n_sink, window)
        if not record.any():
            raise CheckFailed(
                "Record is all 0: store 1 (visited, no mask) or 2 (visited, masked) at Record + m * M + n for each "
                "tile (query block m, key block n) that the program visits, M = cdiv(T, BLOCK)"
            )
        if ((record < 0) | (record > 2)).any():
            raise CheckFailed(f"Record holds {sorted(set(record.flatten().tolist()))}: only 0, 1 and 2 are defined")
        problems = [
            (kinds.eq(SKIPPED) & record.ne(SKIPPED), "holding no allowed pair were visited (wasted work)"),
            (kinds.ne(SKIPPED) & record.eq(SKIPPED), "holding allowed pairs were never visited (wrong output)"),
            (kinds.eq(PARTIAL) & record.eq(FULL), "were visited without the mask, but some of their pairs are not "
             "allowed: a partial tile needs its mask"),
            (kinds.eq(FULL) & record.eq(PARTIAL), "were masked, but every pair in them is allowed: a full tile "
             "needs no mask (that is the point of the split)"),
        ]  # fmt: skip
        for which, what in problems:
            if which.any():
                raise CheckFailed(f"your Record says {_tiles(kinds, which)} {what}")
        _compare_with_flex(got, q, k, v, n_sink, window)
        # Poison the key blocks that the last query block must skip; its rows must stay finite and right.
        last = kinds.shape[0] - 1
        skipped = kinds[last].eq(SKIPPED).nonzero().flatten().tolist()
        if skipped:
            poisoned = v.clone()
            for n in skipped:
                poisoned[:, :, n * FLASH_BLOCK : (n + 1) * FLASH_BLOCK] = float("nan")
            rows = slice(last * FLASH_BLOCK, T)
            out, _ = launch_block_sparse(block_sparse_kernel, q, k, poisoned, n_sink, window)
            if out[:, :, rows].isnan().any():
                raise CheckFailed(
                    f"with the values of key blocks {skipped} set to NaN, query block {last}'s output has NaN: the "
                    "kernel read tiles it must skip (your Record does not say so: record every tile you load)"
                )
        return got

    g = torch.Generator().manual_seed(9)
    # (H, T, n_sink, window): a row with no key in its first tile, T not a multiple of 16, a sink block that is
    # all sinks (full), full tiles in the band, sinks spanning two blocks
    configs = [(2, 64, 0, 5), (1, 100, 4, 20), (1, 64, 16, 40), (1, 80, 4, 50), (1, 112, 20, 8)]
    cases = [
        (*torch.randn(3, 1, H, T, FLASH_D, generator=g).unbind(0), n_sink, window) for H, T, n_sink, window in configs
    ]
    return run_check(
        "block_sparse_kernel",
        student,
        lambda q, k, v, n_sink, window: minillm_kernels.reference_attention(q, k, v, n_sink=n_sink, window=window),
        cases,
        hints=(
            "a program visits only the key tiles holding at least one pair the mask allows (the sink tiles left of "
            "the band, then the band up to the diagonal), and records each; inside a visited tile the mask is "
            "needed only when some pair of the tile is not allowed: decide that from the tile's corners, before "
            "building any mask",
            "a tile is full when its last key is not after its first query, and every key of it that is not a sink "
            "is within the window of its last query (the oldest non-sink key decides); query i sees key j when "
            "j <= i and (j < n_sink or i - j <= window); a row may still have no allowed key after its first tile, "
            "so subtract 0 instead of a max that is still -inf",
        ),
        atol=1e-4,
        rtol=1e-4,
        describe=lambda c: f"T = {c[0].shape[2]}, n_sink = {c[3]}, window = {c[4]}, BLOCK = {FLASH_BLOCK}",
        level=hint,
    )
