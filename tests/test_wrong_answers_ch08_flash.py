"""Chapter 08's flash-attention exercises (8: the forward loop; 9: the block-sparse kernel with its
full/partial tile split): the solution passes, and plausible wrong kernels are rejected with ❌ and the
right diagnosis.

One kernel per exercise carries each mistake behind a `tl.constexpr` switch, so that every wrong kernel
differs from the right one by exactly that mistake. They run in Triton's interpreter on the CPU (the
checkers' tiny shapes); the tests skip without Triton.
"""

from __future__ import annotations

import pytest
import torch

import minillm_kernels
from minillm.checks import ch08

needs_triton = pytest.mark.skipif(
    not minillm_kernels.TRITON_AVAILABLE, reason=minillm_kernels.TRITON_UNAVAILABLE_REASON
)


class Bound:
    """kernel with some constexpr switches fixed: `Bound(k, BUG=1)[grid](...)` is `k[grid](..., BUG=1)`."""

    def __init__(self, kernel, **switches):
        self.kernel, self.switches = kernel, switches
        self.__name__ = "_".join(f"{k.lower()}{v}" for k, v in switches.items()) or "right"

    def __getitem__(self, grid):
        return lambda *args, **meta: self.kernel[grid](*args, **meta, **self.switches)


if minillm_kernels.TRITON_AVAILABLE:
    import triton
    import triton.language as tl

    @triton.jit
    def load_rows(ptr, rows, T, D: tl.constexpr):
        return tl.load(ptr + rows[:, None] * D + tl.arange(0, D)[None, :], mask=rows[:, None] < T, other=0.0)

    @triton.jit
    def flash(Q, K, V, Out, T, scale, BLOCK: tl.constexpr, D: tl.constexpr, NO_RESCALE: tl.constexpr = 0,
              NO_CAUSAL: tl.constexpr = 0, NO_SCALE: tl.constexpr = 0, UNMASKED_STORE: tl.constexpr = 0,
              STRICT: tl.constexpr = 0):  # fmt: skip
        start_m, bh = tl.program_id(0), tl.program_id(1)
        Q, K, V, Out = Q + bh * T * D, K + bh * T * D, V + bh * T * D, Out + bh * T * D
        offs_m = start_m * BLOCK + tl.arange(0, BLOCK)
        q = load_rows(Q, offs_m, T, D)
        m_i = tl.full([BLOCK], float("-inf"), tl.float32)
        l_i, acc = tl.zeros([BLOCK], tl.float32), tl.zeros([BLOCK, D], tl.float32)
        for kv_block in range(0, start_m + 1):
            offs_n = kv_block * BLOCK + tl.arange(0, BLOCK)
            k, v = load_rows(K, offs_n, T, D), load_rows(V, offs_n, T, D)
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
            if not NO_SCALE:
                s = s * scale
            allowed = offs_n[None, :] < T
            if not NO_CAUSAL:
                if STRICT:  # keys strictly before the query: the first query sees nothing
                    allowed = allowed & (offs_m[:, None] > offs_n[None, :])
                else:
                    allowed = allowed & (offs_m[:, None] >= offs_n[None, :])
            s = tl.where(allowed, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha, p = tl.exp(m_i - m_safe), tl.exp(s - m_safe[:, None])
            if NO_RESCALE:  # adds the new tile's terms to the old ones as if the max had not moved
                alpha = tl.full([BLOCK], 1.0, tl.float32)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
            m_i = m_new
        out_ptrs = Out + offs_m[:, None] * D + tl.arange(0, D)[None, :]
        if UNMASKED_STORE:
            tl.store(out_ptrs, acc / l_i[:, None])
        else:
            tl.store(out_ptrs, acc / l_i[:, None], mask=offs_m[:, None] < T)

    @triton.jit
    def tile(acc, l_i, m_i, q, offs_m, K, V, Record, start_m, kv_block, T, n_sink, window, scale,
             BLOCK: tl.constexpr, D: tl.constexpr, SPLIT: tl.constexpr, OFF_BY_ONE: tl.constexpr,
             NO_RESCALE: tl.constexpr, NO_SAFE: tl.constexpr):  # fmt: skip
        offs_n = kv_block * BLOCK + tl.arange(0, BLOCK)
        k, v = load_rows(K, offs_n, T, D), load_rows(V, offs_n, T, D)
        s = tl.dot(q, tl.trans(k), input_precision="ieee") * scale
        reach = window - OFF_BY_ONE  # OFF_BY_ONE: i - j < window, window keys instead of window + 1
        oldest = tl.maximum(kv_block * BLOCK, n_sink)
        full = (kv_block * BLOCK + BLOCK - 1 <= start_m * BLOCK) & (
            (oldest >= kv_block * BLOCK + BLOCK) | (start_m * BLOCK + BLOCK - 1 - oldest <= reach)
        )
        if SPLIT == 1:  # masks nothing
            full = kv_block >= 0
        if SPLIT == 2:  # masks every tile
            full = kv_block < 0
        n_blocks = tl.cdiv(T, BLOCK)
        if full:
            tl.store(Record + start_m * n_blocks + kv_block, 1)
        else:
            q_idx, k_idx = offs_m[:, None], offs_n[None, :]
            allowed = (q_idx >= k_idx) & ((k_idx < n_sink) | (q_idx - k_idx <= reach)) & (k_idx < T)
            s = tl.where(allowed, s, float("-inf"))
            tl.store(Record + start_m * n_blocks + kv_block, 2)
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        m_safe = m_new if NO_SAFE else tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha, p = tl.exp(m_i - m_safe), tl.exp(s - m_safe[:, None])
        if NO_RESCALE:
            alpha = tl.full([BLOCK], 1.0, tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + tl.dot(p, v, input_precision="ieee")
        return acc, l_i, m_new

    @triton.jit
    def block_sparse(Q, K, V, Out, Record, T, n_sink, window, scale, BLOCK: tl.constexpr, D: tl.constexpr,
                     SPLIT: tl.constexpr = 0, OFF_BY_ONE: tl.constexpr = 0, NO_RESCALE: tl.constexpr = 0,
                     NO_SAFE: tl.constexpr = 0, VISIT_ALL: tl.constexpr = 0, HIDE_EXTRA: tl.constexpr = 0,
                     NO_RECORD: tl.constexpr = 0):  # fmt: skip
        start_m, bh = tl.program_id(0), tl.program_id(1)
        Q, K, V, Out = Q + bh * T * D, K + bh * T * D, V + bh * T * D, Out + bh * T * D
        offs_m = start_m * BLOCK + tl.arange(0, BLOCK)
        q = load_rows(Q, offs_m, T, D)
        m_i = tl.full([BLOCK], float("-inf"), tl.float32)
        l_i, acc = tl.zeros([BLOCK], tl.float32), tl.zeros([BLOCK, D], tl.float32)
        lo = tl.maximum(start_m * BLOCK - (window - OFF_BY_ONE), 0) // BLOCK
        n_sink_blocks = tl.minimum(tl.cdiv(n_sink, BLOCK), lo)
        if VISIT_ALL:  # every causal tile: right output, wasted work
            lo, n_sink_blocks = 0, 0
        if NO_RECORD:
            Record = Record + tl.cdiv(T, BLOCK) * tl.cdiv(T, BLOCK)  # one row stride too far: past Record's end
        for kv_block in range(0, n_sink_blocks):
            acc, l_i, m_i = tile(acc, l_i, m_i, q, offs_m, K, V, Record, start_m, kv_block, T, n_sink, window,
                                 scale, BLOCK, D, SPLIT, OFF_BY_ONE, NO_RESCALE, NO_SAFE)  # fmt: skip
        for kv_block in range(lo, start_m + 1):
            acc, l_i, m_i = tile(acc, l_i, m_i, q, offs_m, K, V, Record, start_m, kv_block, T, n_sink, window,
                                 scale, BLOCK, D, SPLIT, OFF_BY_ONE, NO_RESCALE, NO_SAFE)  # fmt: skip
        if HIDE_EXTRA:  # reads every causal tile, but records only what it should have read
            for kv_block in range(n_sink_blocks, lo):
                k = load_rows(K, kv_block * BLOCK + tl.arange(0, BLOCK), T, D)
                v = load_rows(V, kv_block * BLOCK + tl.arange(0, BLOCK), T, D)
                acc += tl.dot(tl.zeros([BLOCK, BLOCK], tl.float32), v, input_precision="ieee") * tl.sum(k)
        tl.store(Out + offs_m[:, None] * D + tl.arange(0, D)[None, :], acc / l_i[:, None], mask=offs_m[:, None] < T)

    FLASH_WRONG = [
        (Bound(flash, NO_RESCALE=1), "differs from FlexAttention"),
        (Bound(flash, NO_CAUSAL=1), "differs from FlexAttention"),
        (Bound(flash, NO_SCALE=1), "differs from FlexAttention"),
        (Bound(flash, UNMASKED_STORE=1), "past the end of Out"),
        (Bound(flash, STRICT=1), "NaN"),
    ]
    SPARSE_WRONG = [
        (Bound(block_sparse, SPLIT=1), "a partial tile needs its mask"),
        (Bound(block_sparse, SPLIT=2), "a full tile needs no mask"),
        (Bound(block_sparse, NO_RESCALE=1), "differs from FlexAttention"),
        (Bound(block_sparse, OFF_BY_ONE=1), "differs from FlexAttention"),
        (Bound(block_sparse, NO_SAFE=1), "NaN"),
        (Bound(block_sparse, VISIT_ALL=1), "wasted work"),
        (Bound(block_sparse, HIDE_EXTRA=1), "read tiles it must skip"),
        (Bound(block_sparse, NO_RECORD=1), "not in it"),
    ]
else:
    FLASH_WRONG = SPARSE_WRONG = []


@needs_triton
def test_the_solution_flash_kernel_passes(checker_contract):
    checker_contract.accepts(ch08.check_flash_kernel, Bound(flash))


@needs_triton
@pytest.mark.parametrize("wrong, says", FLASH_WRONG, ids=[w.__name__ for w, _ in FLASH_WRONG])
def test_a_wrong_flash_kernel_is_rejected(wrong, says, checker_contract):
    checker_contract.rejects(ch08.check_flash_kernel, wrong, says=says)


@needs_triton
def test_the_solution_block_sparse_kernel_passes(checker_contract):
    checker_contract.accepts(ch08.check_block_sparse_kernel, Bound(block_sparse))


@needs_triton
@pytest.mark.parametrize("wrong, says", SPARSE_WRONG, ids=[w.__name__ for w, _ in SPARSE_WRONG])
def test_a_wrong_block_sparse_kernel_is_rejected(wrong, says, checker_contract):
    checker_contract.rejects(ch08.check_block_sparse_kernel, wrong, says=says)


def test_tile_kinds_agree_with_the_block_map_and_split_it():
    """Visited tiles are the package's block map; full ones are exactly those whose every pair is allowed."""
    for T, n_sink, window in [(96, 4, 20), (100, 4, 20), (64, 16, 40), (128, 20, 8), (80, 4, 50)]:
        kinds = ch08.tile_kinds(T, 16, n_sink, window)
        assert torch.equal(kinds.ne(ch08.SKIPPED), minillm_kernels.block_map(T, 16, 16, n_sink, window))
    kinds = ch08.tile_kinds(64, 16, 16, 40)  # 16 sinks fill key block 0: that tile is full wherever visited
    assert kinds[1:, 0].eq(ch08.FULL).all() and kinds.diagonal().eq(ch08.PARTIAL).all()
    assert ch08.tile_kinds(64, 16, 0, 64)[3].tolist() == [1, 1, 1, 2]  # a window as long as T: causal's split


@needs_triton
def test_every_flash_exercise_has_three_wrong_answers():
    assert len(FLASH_WRONG) >= 3 and len(SPARSE_WRONG) >= 3


@needs_triton
@pytest.mark.parametrize("check, wrong", [("check_flash_kernel", 0), ("check_block_sparse_kernel", 0)])
def test_both_hints_are_given_and_neither_holds_solution_code(check, wrong, capsys):
    """The same standard as tests/test_hints_ch05_08.py, for the two flash exercises."""
    import re

    from test_hints_ch05_08 import CODE, _solution_lines

    suite = FLASH_WRONG if check == "check_flash_kernel" else SPARSE_WRONG
    assert not getattr(ch08, check)(suite[wrong][0], hint=2)
    out = capsys.readouterr().out
    hints = [line for line in out.splitlines() if line.lstrip().startswith(("hint:", "hint 2:"))]
    assert len(hints) == 2, out
    text = " ".join(" ".join(hints).split())
    assert not [line for line in _solution_lines("08_triton_kernels.ipynb") if line in text]
    assert not re.findall(CODE, text)
