"""Triton kernels of block-sparse flash attention under a sink + sliding-window mask.

FlashAttention (Dao et al. 2022, arXiv 2205.14135) computes softmax(Q K^T / sqrt(D)) V tile by
tile with an online softmax, so the (T, T) score matrix never exists in memory. The forward here
follows the layout of Triton's fused-attention tutorial (one program per query block and
(batch, head); scores in base 2 with exp2), and adds FlexAttention's idea: a program loops only over
the key blocks that its mask can reach (`minillm_kernels.block_map.kv_block_ranges`), so a sink + window
mask costs O(T * (window + n_sink)) instead of O(T^2). Inside a visited tile, `_allowed` applies
the same rule as `minillm.masks.sink_window` element by element.

The backward is FlashAttention-2's: one kernel walks key blocks and accumulates dK, dV over the
query blocks that see them (`q_block_ranges`); one walks query blocks and accumulates dQ over the
same key blocks as the forward. Both recompute P = exp2(S - LSE) from the saved log-sum-exp.
As in the tutorial, a loop runs the tiles in which every pair is allowed (full tiles) without
building the mask, and only the partial tiles with it (`minillm_kernels.block_map.kv_block_splits`,
`q_block_splits`; FlexAttention's `full_kv_indices` beside `kv_indices`). Departure from the
tutorial, for teaching: plain pointer arithmetic with masked loads (any T, not only multiples of the
block), where the tutorial uses block pointers.

Importing this module needs Triton; `minillm_kernels.block_sparse` imports it only when Triton is there.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

LOG2E = 1.0 / math.log(2.0)  # exp(x) = exp2(x * LOG2E); exp2 is the cheaper instruction on a GPU


@triton.jit
def _allowed(q_idx, k_idx, T, n_sink, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """The mask inside a tile: True where query q_idx may see key k_idx (broadcast 2-D indices).

    Element for element `minillm.masks.sink_window` (or `causal`, or full), plus `k_idx < T` for
    the padding keys of the last block.
    """
    allowed = k_idx < T
    if CAUSAL:
        allowed = allowed & (q_idx >= k_idx)
    if HAS_WINDOW:
        allowed = allowed & ((k_idx < n_sink) | (q_idx - k_idx <= window))
    return allowed


@triton.jit
def _kv_block_range(start_m, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    """Key blocks for query block start_m: sinks [0, n_sink_blocks), then the band [lo, hi).

    The same arithmetic as `minillm_kernels.block_map.kv_block_ranges`, which the tests check.
    """
    n_sink_blocks = 0
    lo = 0
    hi = tl.cdiv(T, BLOCK_N)
    if CAUSAL:
        last_q = tl.minimum(start_m * BLOCK_M + BLOCK_M, T) - 1
        hi = last_q // BLOCK_N + 1  # one past the diagonal block
        if HAS_WINDOW:
            lo = tl.maximum(start_m * BLOCK_M - window, 0) // BLOCK_N  # oldest key of the first row
            n_sink_blocks = tl.minimum(tl.cdiv(n_sink, BLOCK_N), lo)  # sink blocks left of the band
    return n_sink_blocks, lo, hi


@triton.jit
def _kv_block_splits(start_m, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    """`_kv_block_range` cut into full and partial runs: (s, n_sink_blocks, lo, a, b, c, hi).

    [0, s), [lo, a), [b, c) are full; [s, n_sink_blocks), [a, b), [c, hi) partial. The same
    arithmetic as `minillm_kernels.block_map.kv_block_splits`, which the tests check.
    """
    n_sink_blocks, lo, hi = _kv_block_range(start_m, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    first_q = start_m * BLOCK_M
    last_q = first_q + BLOCK_M - 1  # padding queries count like real ones
    causal_full = T // BLOCK_N  # key blocks before this hold no padding key
    if CAUSAL:
        causal_full = tl.minimum(causal_full, (first_q + 1) // BLOCK_N)  # last key <= first query
    sink_full = 0
    window_full = 0
    if HAS_WINDOW:
        sink_full = n_sink // BLOCK_N  # all keys are sinks
        # the first block whose first non-sink key is within the last query's window (0: the sinks reach it)
        window_full = tl.where(n_sink >= last_q - window, 0, tl.cdiv(tl.maximum(last_q - window, 0), BLOCK_N))
    s = tl.minimum(tl.minimum(n_sink_blocks, sink_full), causal_full)
    c = tl.maximum(lo, tl.minimum(causal_full, hi))
    a = tl.maximum(lo, tl.minimum(sink_full, c))
    b = tl.maximum(a, tl.minimum(window_full, c))
    return s, n_sink_blocks, lo, a, b, c, hi


@triton.jit
def _q_block_range(start_n, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    """Query blocks [lo, hi) that visit key block start_n (`minillm_kernels.block_map.q_block_ranges`)."""
    lo = 0
    hi = tl.cdiv(T, BLOCK_M)
    if CAUSAL:
        first_k = start_n * BLOCK_N
        lo = first_k // BLOCK_M  # no query before the block's first key sees it
        if HAS_WINDOW:
            last_k = tl.minimum(first_k + BLOCK_N, T) - 1
            band_hi = tl.minimum(last_k + window, T - 1) // BLOCK_M + 1
            hi = tl.where(first_k < n_sink, hi, band_hi)  # a sink key is seen by every later query
    return lo, hi


@triton.jit
def _q_block_splits(start_n, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    """`_q_block_range` cut into runs (lo, f0, f1, hi): [lo, f0) partial, [f0, f1) full, [f1, hi) partial.

    The same arithmetic as `minillm_kernels.block_map.q_block_splits`, which the tests check.
    """
    lo, hi = _q_block_range(start_n, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    first_k = start_n * BLOCK_N
    last_k = first_k + BLOCK_N - 1
    f0 = 0
    if CAUSAL:
        f0 = tl.cdiv(last_k, BLOCK_M)  # the first query block whose first query sees the last key
    f1 = T // BLOCK_M  # query blocks before this hold no padding query
    if HAS_WINDOW:
        band_end = tl.minimum(f1, (tl.maximum(first_k, n_sink) + window + 1) // BLOCK_M)  # sees the first non-sink key
        f1 = tl.where(last_k < n_sink, f1, band_end)
    f1 = tl.where(last_k < T, f1, 0)  # padding keys: every tile of this key block is partial
    f0 = tl.maximum(lo, tl.minimum(f0, hi))
    f1 = tl.maximum(f0, tl.minimum(f1, hi))
    return lo, f0, f1, hi


# ----------------------------------------------------------------------------------------------
# Forward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _load_kv(K, V, kv_ptrs, offs_n, T, MASKED: tl.constexpr):
    """A block of keys and values; only a partial tile can hold padding keys (>= T), read as 0."""
    if MASKED:
        return tl.load(K + kv_ptrs, mask=offs_n[:, None] < T, other=0.0), tl.load(
            V + kv_ptrs, mask=offs_n[:, None] < T, other=0.0
        )
    return tl.load(K + kv_ptrs), tl.load(V + kv_ptrs)


@triton.jit
def _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, block_start, block_end, stride_t, T, n_sink, window,
               qk_scale, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_N: tl.constexpr,
               DOT_PRECISION: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """Online softmax over key blocks [block_start, block_end) for one query block.

    MASKED: the tiles are partial and need the mask; else they are full, and the loop builds none.

    Keeps per row the running max m_i and running sum l_i of exp2(scores - m_i), and the
    accumulator acc = sum_j exp2(s_j - m_i) v_j; when the max grows, old terms are rescaled by
    alpha = exp2(m_old - m_new). A row may have seen only masked keys so far (m_i = -inf): then we
    subtract 0 instead of -inf, so that exp2 gives 0 and never NaN.
    """
    for kv_block in range(block_start, block_end):
        offs_n = kv_block * BLOCK_N + tl.arange(0, BLOCK_N)  # key indices of this block
        kv_ptrs = offs_n[:, None] * stride_t + offs_d[None, :]
        k, v = _load_kv(K, V, kv_ptrs, offs_n, T, MASKED)  # (BLOCK_N, D) each
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N), log2 units
        if MASKED:
            allowed = _allowed(offs_m[:, None], offs_n[None, :], T, n_sink, window, CAUSAL, HAS_WINDOW)
            s = tl.where(allowed, s, -float("inf"))  # masked keys get weight exp2(-inf) = 0
        m_new = tl.maximum(m_i, tl.max(s, 1))  # (BLOCK_M,)
        m_safe = tl.where(m_new == -float("inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)  # (BLOCK_M,) rescales what was summed under the old max
        p = tl.exp2(s - m_safe[:, None])  # (BLOCK_M, BLOCK_N) unnormalized weights
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PRECISION)  # (BLOCK_M, D)
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _fwd_kernel(
    Q,  # pointer to Q, shape (B, H, T, D), contiguous
    K,  # pointer to K, shape (B, H, T, D), contiguous
    V,  # pointer to V, shape (B, H, T, D), contiguous
    Out,  # pointer to the output O, shape (B, H, T, D), contiguous
    LSE,  # pointer to the log2-sum-exp2 of each row's scaled scores, shape (B, H, T), float32
    stride_b, stride_h, stride_t,  # strides of Q, K, V, O (elements); the stride of D is 1
    H, T,  # number of heads, sequence length (queries = keys)
    n_sink, window,  # mask parameters (ignored unless HAS_WINDOW)
    qk_scale,  # log2(e) / sqrt(D): scores in base 2
    CAUSAL: tl.constexpr,  # keys after the query are masked
    HAS_WINDOW: tl.constexpr,  # the sink + window rule applies
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,  # tile: queries x keys
    HEAD_DIM: tl.constexpr,  # D, a power of two
    DOT_PRECISION: tl.constexpr,  # "ieee" for float32 (exact), "tf32" otherwise (ignored for 16-bit)
):  # fmt: skip
    """One program = one query block of one (batch, head); grid (cdiv(T, BLOCK_M), B * H).

    Loads its BLOCK_M queries once, then runs the online softmax over the sink blocks and the band
    blocks of `_kv_block_range` (never the blocks in between), full tiles without the mask and
    partial ones with it (`_kv_block_splits`), and writes the normalized output rows and their
    log-sum-exp (for the backward).
    """
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    # int64: B * H * T * D can pass 2^31 at long contexts
    base = (off_bh // H).to(tl.int64) * stride_b + (off_bh % H).to(tl.int64) * stride_h
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)  # query indices of this block
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = base + offs_m[:, None] * stride_t + offs_d[None, :]
    q = tl.load(Q + q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BLOCK_M, D)

    m_i = tl.full([BLOCK_M], -float("inf"), dtype=tl.float32)  # running max of each row
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)  # running sum of exp2(s - m_i)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)  # running sum of exp2(s - m_i) v

    # Six runs of key blocks, full (no mask) and partial (masked) in turn; most are empty for a given block.
    s, n_sink_blocks, lo, a, b, c, hi = _kv_block_splits(start_m, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL,
                                                         HAS_WINDOW)  # fmt: skip
    K, V = K + base, V + base
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, 0, s, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, s, n_sink_blocks, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, lo, a, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, a, b, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, b, c, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, K, V, offs_m, offs_d, c, hi, stride_t, T, n_sink, window,
                               qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip

    # Padding rows past T may have seen no key (l_i = 0); they are never stored, but avoid 0/0.
    l_safe = tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(Out + q_ptrs, (acc / l_safe[:, None]).to(Out.dtype.element_ty), mask=offs_m[:, None] < T)
    tl.store(LSE + off_bh.to(tl.int64) * T + offs_m, m_i + tl.log2(l_safe), mask=offs_m < T)


# ----------------------------------------------------------------------------------------------
# Backward
# ----------------------------------------------------------------------------------------------


@triton.jit
def _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, offs_n, offs_d, block_start, block_end, stride_t, T, n_sink,
                    window, qk_scale, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_M: tl.constexpr,
                    DOT_PRECISION: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """dV += P^T dO and dK += dS^T Q (unscaled) over query blocks [block_start, block_end), for one key block.

    MASKED: partial tiles (the mask, and padding queries >= T get P = 0); else full tiles, no mask.
    """
    for q_block in range(block_start, block_end):
        offs_m = q_block * BLOCK_M + tl.arange(0, BLOCK_M)  # query indices
        q_ptrs = offs_m[:, None] * stride_t + offs_d[None, :]
        if MASKED:
            q = tl.load(Q + q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BLOCK_M, D)
            do = tl.load(DO + q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BLOCK_M, D)
            lse = tl.load(LSE + offs_m, mask=offs_m < T, other=0.0)  # (BLOCK_M,)
            delta = tl.load(DELTA + offs_m, mask=offs_m < T, other=0.0)  # (BLOCK_M,)
        else:
            q, do = tl.load(Q + q_ptrs), tl.load(DO + q_ptrs)
            lse, delta = tl.load(LSE + offs_m), tl.load(DELTA + offs_m)
        s_t = tl.dot(k, tl.trans(q), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_N, BLOCK_M)
        p_t = tl.exp2(s_t - lse[None, :])  # (BLOCK_N, BLOCK_M)
        if MASKED:  # the transposed mask
            allowed = _allowed(offs_m[None, :], offs_n[:, None], T, n_sink, window, CAUSAL, HAS_WINDOW)
            p_t = tl.where(allowed & (offs_m[None, :] < T), p_t, 0.0)
        dv += tl.dot(p_t.to(do.dtype), do, input_precision=DOT_PRECISION)  # (BLOCK_N, D)
        dp_t = tl.dot(v, tl.trans(do), input_precision=DOT_PRECISION)  # (BLOCK_N, BLOCK_M)
        ds_t = p_t * (dp_t - delta[None, :])  # (BLOCK_N, BLOCK_M) softmax backward
        dk += tl.dot(ds_t.to(q.dtype), q, input_precision=DOT_PRECISION)  # (BLOCK_N, D)
    return dk, dv


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V,  # pointers to the inputs, shape (B, H, T, D), contiguous
    DO,  # pointer to dL/dO, shape (B, H, T, D), contiguous
    DK, DV,  # pointers to the outputs dL/dK, dL/dV, shape (B, H, T, D), contiguous
    LSE,  # pointer to the forward's log2-sum-exp2, shape (B, H, T), float32
    DELTA,  # pointer to rowsum(dO * O), shape (B, H, T), float32
    stride_b, stride_h, stride_t,  # strides of all (B, H, T, D) tensors (elements)
    H, T, n_sink, window,  # heads, length, mask parameters
    sm_scale, qk_scale,  # 1 / sqrt(D) and log2(e) / sqrt(D)
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One program = one key block of one (batch, head); grid (cdiv(T, BLOCK_N), B * H).

    Holds its keys and values, loops over the query blocks of `_q_block_range` (partial, full, partial:
    `_q_block_splits`), and accumulates
    dV = P^T dO and dK = dS^T Q / sqrt(D) with dS = P * (dO V^T - delta). Everything is computed
    transposed (keys on rows) so the accumulators need no transpose.
    """
    start_n = tl.program_id(0)
    off_bh = tl.program_id(1)
    base = (off_bh // H).to(tl.int64) * stride_b + (off_bh % H).to(tl.int64) * stride_h
    row_base = off_bh.to(tl.int64) * T  # offset into LSE and DELTA
    offs_n = start_n * BLOCK_N + tl.arange(0, BLOCK_N)  # key indices of this block
    offs_d = tl.arange(0, HEAD_DIM)
    kv_ptrs = base + offs_n[:, None] * stride_t + offs_d[None, :]
    k = tl.load(K + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
    v = tl.load(V + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)  # (BLOCK_N, D)
    dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)

    lo, f0, f1, hi = _q_block_splits(start_n, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    Q, DO, LSE, DELTA = Q + base, DO + base, LSE + row_base, DELTA + row_base
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, offs_n, offs_d, lo, f0, stride_t, T, n_sink, window,
                             qk_scale, CAUSAL, HAS_WINDOW, BLOCK_M, DOT_PRECISION, MASKED=True)  # fmt: skip
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, offs_n, offs_d, f0, f1, stride_t, T, n_sink, window,
                             qk_scale, CAUSAL, HAS_WINDOW, BLOCK_M, DOT_PRECISION, MASKED=False)  # fmt: skip
    dk, dv = _bwd_dkdv_inner(dk, dv, k, v, Q, DO, LSE, DELTA, offs_n, offs_d, f1, hi, stride_t, T, n_sink, window,
                             qk_scale, CAUSAL, HAS_WINDOW, BLOCK_M, DOT_PRECISION, MASKED=True)  # fmt: skip

    tl.store(DK + kv_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < T)
    tl.store(DV + kv_ptrs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < T)


@triton.jit
def _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, block_start, block_end, stride_t, T, n_sink, window,
                  qk_scale, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, BLOCK_N: tl.constexpr,
                  DOT_PRECISION: tl.constexpr, MASKED: tl.constexpr):  # fmt: skip
    """dQ += dS K over key blocks [block_start, block_end), recomputing P from the saved LSE.

    MASKED: partial tiles, masked; else full tiles, no mask (padding query rows are never stored).
    """
    for kv_block in range(block_start, block_end):
        offs_n = kv_block * BLOCK_N + tl.arange(0, BLOCK_N)
        kv_ptrs = offs_n[:, None] * stride_t + offs_d[None, :]
        k, v = _load_kv(K, V, kv_ptrs, offs_n, T, MASKED)  # (BLOCK_N, D) each
        s = tl.dot(q, tl.trans(k), input_precision=DOT_PRECISION) * qk_scale  # (BLOCK_M, BLOCK_N)
        p = tl.exp2(s - lse[:, None])  # (BLOCK_M, BLOCK_N)
        if MASKED:
            allowed = _allowed(offs_m[:, None], offs_n[None, :], T, n_sink, window, CAUSAL, HAS_WINDOW)
            p = tl.where(allowed & (offs_m[:, None] < T), p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PRECISION)  # (BLOCK_M, BLOCK_N)
        ds = p * (dp - delta[:, None])  # (BLOCK_M, BLOCK_N)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PRECISION)  # (BLOCK_M, D)
    return dq


@triton.jit
def _bwd_dq_kernel(
    Q, K, V,  # pointers to the inputs, shape (B, H, T, D), contiguous
    DO,  # pointer to dL/dO, shape (B, H, T, D), contiguous
    DQ,  # pointer to the output dL/dQ, shape (B, H, T, D), contiguous
    LSE, DELTA,  # pointers to the forward's log2-sum-exp2 and rowsum(dO * O), shape (B, H, T), float32
    stride_b, stride_h, stride_t,  # strides of all (B, H, T, D) tensors (elements)
    H, T, n_sink, window,  # heads, length, mask parameters
    sm_scale, qk_scale,  # 1 / sqrt(D) and log2(e) / sqrt(D)
    CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, DOT_PRECISION: tl.constexpr,
):  # fmt: skip
    """One program = one query block of one (batch, head); grid (cdiv(T, BLOCK_M), B * H).

    Visits the same key blocks as the forward, in the same full and partial runs, and accumulates
    dQ = dS K / sqrt(D).
    """
    start_m = tl.program_id(0)
    off_bh = tl.program_id(1)
    base = (off_bh // H).to(tl.int64) * stride_b + (off_bh % H).to(tl.int64) * stride_h
    row_base = off_bh.to(tl.int64) * T
    offs_m = start_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    q_ptrs = base + offs_m[:, None] * stride_t + offs_d[None, :]
    q = tl.load(Q + q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BLOCK_M, D)
    do = tl.load(DO + q_ptrs, mask=offs_m[:, None] < T, other=0.0)  # (BLOCK_M, D)
    lse = tl.load(LSE + row_base + offs_m, mask=offs_m < T, other=0.0)  # (BLOCK_M,)
    delta = tl.load(DELTA + row_base + offs_m, mask=offs_m < T, other=0.0)  # (BLOCK_M,)
    dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)

    s, n_sink_blocks, lo, a, b, c, hi = _kv_block_splits(start_m, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL,
                                                         HAS_WINDOW)  # fmt: skip
    K, V = K + base, V + base
    # The forward's six runs: full ones without the mask, partial ones with it.
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, 0, s, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, s, n_sink_blocks, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, lo, a, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, a, b, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, b, c, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=False)  # fmt: skip
    dq = _bwd_dq_inner(dq, q, do, lse, delta, K, V, offs_m, offs_d, c, hi, stride_t, T, n_sink, window,
                       qk_scale, CAUSAL, HAS_WINDOW, BLOCK_N, DOT_PRECISION, MASKED=True)  # fmt: skip
    tl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < T)


@triton.jit
def _splits_kernel(Out_kv, Out_q, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
    """Program i writes the kernels' own runs for query block i (7 numbers) and key block i (4 numbers)."""
    i = tl.program_id(0)
    s, n_sink_blocks, lo, a, b, c, hi = _kv_block_splits(i, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    Out_kv += i * 7  # one store per number: plain scalar stores compile everywhere
    tl.store(Out_kv, s)
    tl.store(Out_kv + 1, n_sink_blocks)
    tl.store(Out_kv + 2, lo)
    tl.store(Out_kv + 3, a)
    tl.store(Out_kv + 4, b)
    tl.store(Out_kv + 5, c)
    tl.store(Out_kv + 6, hi)
    q_lo, f0, f1, q_hi = _q_block_splits(i, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    Out_q += i * 4
    tl.store(Out_q, q_lo)
    tl.store(Out_q + 1, f0)
    tl.store(Out_q + 2, f1)
    tl.store(Out_q + 3, q_hi)


# ----------------------------------------------------------------------------------------------
# Host side: allocate, pick the grid, launch
# ----------------------------------------------------------------------------------------------


def _launch_options(q: torch.Tensor, block_m: int, block_n: int) -> dict:
    """Compile-time options shared by the three kernels."""
    D = q.shape[-1]
    return dict(
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        HEAD_DIM=D,
        DOT_PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        num_warps=4 if D <= 64 else 8,  # more warps share the (BLOCK, 128) accumulators' registers
        num_stages=2,  # double-buffered loads; fits shared memory for D = 128 at 64 x 64 tiles
    )


def forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_sink: int, window: int | None, causal: bool,
    block_m: int, block_n: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Launch the forward on contiguous q, k, v (B, H, T, D). Returns (out (B, H, T, D), lse (B, H, T))."""
    B, H, T, D = q.shape
    out = torch.empty_like(q)
    lse = torch.empty(B, H, T, device=q.device, dtype=torch.float32)
    sm_scale = 1.0 / math.sqrt(D)
    grid = (triton.cdiv(T, block_m), B * H)
    _fwd_kernel[grid](
        q, k, v, out, lse, q.stride(0), q.stride(1), q.stride(2), H, T, n_sink, window or 0, sm_scale * LOG2E,
        CAUSAL=causal, HAS_WINDOW=window is not None, **_launch_options(q, block_m, block_n),
    )  # fmt: skip
    return out, lse


def backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, dout: torch.Tensor,
    n_sink: int, window: int | None, causal: bool, block_m: int, block_n: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """Launch the backward on contiguous tensors. Returns (dq, dk, dv), each (B, H, T, D)."""
    B, H, T, D = q.shape
    # delta_i = sum_d dO_i O_i = sum_j P_ij dP_ij: the softmax backward's row term (a cheap torch op).
    delta = (dout.float() * out.float()).sum(-1).contiguous()  # (B, H, T)
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    sm_scale = 1.0 / math.sqrt(D)
    args = (q.stride(0), q.stride(1), q.stride(2), H, T, n_sink, window or 0, sm_scale, sm_scale * LOG2E)
    options = dict(CAUSAL=causal, HAS_WINDOW=window is not None, **_launch_options(q, block_m, block_n))
    _bwd_dkdv_kernel[(triton.cdiv(T, block_n), B * H)](q, k, v, dout, dk, dv, lse, delta, *args, **options)
    _bwd_dq_kernel[(triton.cdiv(T, block_m), B * H)](q, k, v, dout, dq, lse, delta, *args, **options)
    return dq, dk, dv


def block_splits(
    T: int, n_sink: int, window: int | None, causal: bool, block_m: int, block_n: int, device: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The runs the kernels compute, launched: ((n_q_blocks, 7) of `_kv_block_splits`, (n_kv_blocks, 4) of
    `_q_block_splits`), int32 on the CPU, so that a picture or a test can show what the kernel itself decides."""
    n_q, n_kv = triton.cdiv(T, block_m), triton.cdiv(T, block_n)
    out_kv = torch.full((max(n_q, n_kv), 7), -1, dtype=torch.int32, device=device)
    out_q = torch.full((max(n_q, n_kv), 4), -1, dtype=torch.int32, device=device)
    _splits_kernel[(max(n_q, n_kv),)](
        out_kv, out_q, T, n_sink, window or 0, BLOCK_M=block_m, BLOCK_N=block_n, CAUSAL=causal,
        HAS_WINDOW=window is not None,
    )  # fmt: skip
    return out_kv[:n_q].cpu(), out_q[:n_kv].cpu()
