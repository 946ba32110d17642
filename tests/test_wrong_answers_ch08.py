"""Chapter 08's wrong-answer suite: plausible mistakes for every exercise, each rejected by its checker.

Each exercise has a right answer (the solution notebook's) that its checker must accept, and at
least three wrong ones (a missing or wrong mask, a wrong stride or offset, a padding value, a
forgotten rescale, an unsorted or uncapped list) that it must reject with ❌, not with a crash or ⏳.
For the kernels the suite also asserts *what* the checker says, since the issue was a wrong
diagnosis: a missing store mask and a wrong store address are different mistakes.

The kernels run in Triton's interpreter on CPU (the checkers' small sizes); they skip without Triton.
"""

from __future__ import annotations

import pytest

import minillm_kernels
from minillm.checks import ch08

needs_triton = pytest.mark.skipif(
    not minillm_kernels.TRITON_AVAILABLE, reason=minillm_kernels.TRITON_UNAVAILABLE_REASON
)

KERNELS: dict[str, tuple] = {}  # check name -> (right kernel, [(wrong kernel, what the checker must say)])

if minillm_kernels.TRITON_AVAILABLE:
    import triton
    import triton.language as tl

    # -----------------------------------------------------------------------------------------
    # Exercise 1: vector add
    # -----------------------------------------------------------------------------------------

    @triton.jit
    def add_right(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    @triton.jit
    def add_unmasked_store(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask, other=0.0) + tl.load(y_ptr + offs, mask=mask))

    @triton.jit
    def add_mask_one_too_far(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):  # offs <= n
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs <= n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    @triton.jit
    def add_forgets_program_id(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):  # every program does block 0
        offs = tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    @triton.jit
    def add_store_shifted(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):  # masked, but one element late
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs + 1, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)

    @triton.jit
    def add_loads_x_twice(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(x_ptr + offs, mask=mask), mask=mask)

    KERNELS["check_add_kernel"] = (
        add_right,
        [
            (add_unmasked_store, "mask your tl.store"),
            (add_mask_one_too_far, "mask your tl.store"),
            (add_forgets_program_id, "never wrote"),
            (add_store_shifted, "addresses are wrong"),
            (add_loads_x_twice, "entries differ"),
        ],
    )

    # -----------------------------------------------------------------------------------------
    # Exercise 2: transpose
    # -----------------------------------------------------------------------------------------

    @triton.jit
    def transpose_right(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask)
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile, mask=mask)

    @triton.jit
    def transpose_ignores_stride_x(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                   BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * N + cols[None, :], mask=mask)  # assumes contiguous rows
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile, mask=mask)

    @triton.jit
    def transpose_store_stride_m(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                 BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask)
        tl.store(out_ptr + cols[None, :] * M + rows[:, None], tile, mask=mask)  # masked, but out's width as stride

    @triton.jit
    def transpose_unmasked_store(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                 BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask, other=0.0)
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile)

    @triton.jit
    def transpose_masks_rows_only(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                  BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < BLOCK_N * 1024)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask)
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile, mask=mask)

    @triton.jit
    def transpose_not_transposed(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                 BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask)
        tl.store(out_ptr + rows[:, None] * stride_out + cols[None, :], tile, mask=mask)  # x's layout, not x.T's

    KERNELS["check_transpose_kernel"] = (
        transpose_right,
        [
            (transpose_ignores_stride_x, "entries differ"),
            (transpose_store_stride_m, "addresses are wrong"),
            (transpose_unmasked_store, "mask your tl.store"),
            (transpose_masks_rows_only, "mask your tl.store"),
            (transpose_not_transposed, "addresses are wrong"),
        ],
    )

    # -----------------------------------------------------------------------------------------
    # Exercise 3: causal row softmax
    # -----------------------------------------------------------------------------------------

    @triton.jit
    def softmax_right(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def softmax_pads_with_zero(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=0.0)
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def softmax_no_max(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # exp overflows at scores ~90
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=float("-inf"))
        e = tl.exp(x)
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def softmax_not_causal(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def softmax_stores_the_triangle_only(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # zeros never stored
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        keep = (cols < N) & (cols <= row)
        x = tl.load(x_ptr + row * stride + cols, mask=keep, other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=keep)

    @triton.jit
    def softmax_unmasked_store(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0))

    @triton.jit
    def softmax_row_stride_n(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # rows assumed N apart
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * N + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def softmax_diagonal_excluded(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # cols < row
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols < row + 0), other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    KERNELS["check_causal_softmax_kernel"] = (
        softmax_right,
        [
            (softmax_pads_with_zero, "entries differ"),
            (softmax_no_max, "entries differ"),
            (softmax_not_causal, "entries differ"),
            (softmax_stores_the_triangle_only, "never wrote"),
            (softmax_unmasked_store, "mask your tl.store"),
            (softmax_row_stride_n, "addresses are wrong"),
            (softmax_diagonal_excluded, "entries differ"),
        ],
    )

    # -----------------------------------------------------------------------------------------
    # Exercise 4: online log-sum-exp
    # -----------------------------------------------------------------------------------------

    @triton.jit
    def lse_right(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m = tl.full([], float("-inf"), tl.float32)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)  # noqa: E741
            m = m_new
        tl.store(out_ptr + row, m + tl.log(l))

    @triton.jit
    def lse_forgets_to_rescale(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m = tl.full([], float("-inf"), tl.float32)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l + tl.sum(tl.exp(x - m_new), axis=0)  # noqa: E741
            m = m_new
        tl.store(out_ptr + row, m + tl.log(l))

    @triton.jit
    def lse_no_max(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # exp(100 * randn) overflows
        row = tl.program_id(0)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
            l = l + tl.sum(tl.exp(x), axis=0)  # noqa: E741
        tl.store(out_ptr + row, tl.log(l))

    @triton.jit
    def lse_first_chunk_only(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # no loop
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
        m = tl.max(x, axis=0)
        tl.store(out_ptr + row, m + tl.log(tl.sum(tl.exp(x - m), axis=0)))

    @triton.jit
    def lse_pads_with_zero(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m = tl.full([], float("-inf"), tl.float32)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=0.0)
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)  # noqa: E741
            m = m_new
        tl.store(out_ptr + row, m + tl.log(l))

    @triton.jit
    def lse_stores_at_row_stride(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):  # out indexed like x
        row = tl.program_id(0)
        m = tl.full([], float("-inf"), tl.float32)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), axis=0)  # noqa: E741
            m = m_new
        tl.store(out_ptr + row * stride, m + tl.log(l))

    KERNELS["check_logsumexp_kernel"] = (
        lse_right,
        [
            (lse_forgets_to_rescale, "entries differ"),
            (lse_no_max, "entries differ"),
            (lse_first_chunk_only, "entries differ"),
            (lse_pads_with_zero, "entries differ"),
            (lse_stores_at_row_stride, "addresses are wrong"),
        ],
    )


# ---------------------------------------------------------------------------------------------
# Exercise 5: block skipping (plain Python: runs without Triton)
# ---------------------------------------------------------------------------------------------


def _cdiv(a, b):
    return -(-a // b)


def visited_right(T, block, n_sink, window):
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block - window, 0) // block
        visited.append(list(range(min(_cdiv(n_sink, block), lo))) + list(range(lo, m + 1)))
    return visited


def visited_causal_only(T, block, n_sink, window):  # right but wasteful
    return [list(range(m + 1)) for m in range(_cdiv(T, block))]


def visited_band_only(T, block, n_sink, window):  # forgets the sinks
    return [list(range(max(m * block - window, 0) // block, m + 1)) for m in range(_cdiv(T, block))]


def visited_unsorted(T, block, n_sink, window):  # the band first, then the sinks
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block - window, 0) // block
        visited.append(list(range(lo, m + 1)) + list(range(min(_cdiv(n_sink, block), lo))))
    return visited


def visited_sinks_uncapped(T, block, n_sink, window):  # sink blocks past the diagonal (the old hint's answer)
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block - window, 0) // block
        visited.append(sorted(set(range(_cdiv(n_sink, block))) | set(range(lo, m + 1))))
    return visited


def visited_band_from_last_query(T, block, n_sink, window):  # the band of the block's last query: too short
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block + block - 1 - window, 0) // block
        visited.append(list(range(min(_cdiv(n_sink, block), lo))) + list(range(lo, m + 1)))
    return visited


def visited_duplicates(T, block, n_sink, window):  # sinks and band concatenated
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block - window, 0) // block
        visited.append(list(range(min(_cdiv(n_sink, block), m + 1))) + list(range(lo, m + 1)))
    return visited


def visited_floats(T, block, n_sink, window):  # true division somewhere
    return [[float(b) for b in row] for row in visited_right(T, block, n_sink, window)]


def visited_drops_the_partial_block(T, block, n_sink, window):  # T // block query blocks
    return visited_right(T, block, n_sink, window)[: T // block]


def visited_sinks_floor(T, block, n_sink, window):  # n_sink // block sink blocks: 4 sinks in blocks of 16 -> none
    visited = []
    for m in range(_cdiv(T, block)):
        lo = max(m * block - window, 0) // block
        visited.append(list(range(min(n_sink // block, lo))) + list(range(lo, m + 1)))
    return visited


VISITED_WRONG = [
    (visited_causal_only, "wasted work"),
    (visited_band_only, "wrong output"),
    (visited_unsorted, "list them sorted"),
    (visited_sinks_uncapped, "wasted work"),
    (visited_band_from_last_query, "wrong output"),
    (visited_duplicates, "twice"),
    (visited_floats, "key blocks are ints"),
    (visited_drops_the_partial_block, "one per query block"),
    (visited_sinks_floor, "wrong output"),
]

KERNEL_WRONG = [(check, wrong, says) for check, (_, wrongs) in KERNELS.items() for wrong, says in wrongs]


@needs_triton
@pytest.mark.parametrize("check", ["check_add_kernel", "check_transpose_kernel", "check_causal_softmax_kernel",
                                   "check_logsumexp_kernel"])  # fmt: skip
def test_the_solution_kernel_passes(check, checker_contract):
    checker_contract.accepts(getattr(ch08, check), KERNELS[check][0])


@needs_triton
@pytest.mark.parametrize("check, wrong, says", KERNEL_WRONG, ids=[w.__name__ for _, w, _ in KERNEL_WRONG])
def test_a_wrong_kernel_is_rejected_with_the_right_diagnosis(check, wrong, says, checker_contract):
    checker_contract.rejects(getattr(ch08, check), wrong, says=says)


def test_the_solution_visited_blocks_passes(checker_contract):
    checker_contract.accepts(ch08.check_visited_blocks, visited_right)


@pytest.mark.parametrize("wrong, says", VISITED_WRONG, ids=[w.__name__ for w, _ in VISITED_WRONG])
def test_a_wrong_visited_blocks_is_rejected(wrong, says, checker_contract):
    checker_contract.rejects(ch08.check_visited_blocks, wrong, says=says)


def test_the_second_hint_followed_literally_passes(capsys):
    """Hint 2 of visited_blocks, coded word for word, is accepted (the old hint, without the cap, was not)."""

    def from_hint(T, block, n_sink, window):
        visited = []
        for m in range(_cdiv(T, block)):
            first = max(m * block - window, 0) // block  # "the block holding key max(m * block - window, 0)"
            sinks = {k // block for k in range(n_sink)}  # "the blocks holding keys 0 ... n_sink - 1"
            visited.append(sorted(b for b in sinks if b < first) + list(range(first, m + 1)))
        return visited

    assert ch08.check_visited_blocks(from_hint)
    ch08.check_visited_blocks(visited_band_only, hint=2)
    assert "keep only those before the band's first block" in capsys.readouterr().out


@needs_triton
def test_every_exercise_has_three_wrong_answers():
    assert all(len(wrongs) >= 3 for _, wrongs in KERNELS.values()) and len(VISITED_WRONG) >= 3
