"""The kernel's split of its tiles into full (no mask), partial (masked) and skipped, against the mask.

`minillm_kernels.block_map.kv_block_splits` (the forward and dQ loops) and `q_block_splits` (the
dK, dV loop) say which tiles the Triton kernel runs without a mask. A tile called full must have
every (real query, key) pair allowed, else the kernel would let a query see a key it must not; a
tile called partial must hold a forbidden pair (else the mask is wasted work); a skipped tile must
hold no allowed pair. The oracle is the materialized mask (`tile_kinds_from_mask`); the Triton
helpers are launched in a probe kernel and compared with the Python ones number for number.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

import minillm_kernels
from minillm_kernels import block_sparse_attention, kernel_tile_kinds, mask_mod_for, reference_attention
from minillm_kernels.block_map import kv_block_splits, q_block_splits, tile_kinds, tile_kinds_from_mask

needs_triton = pytest.mark.skipif(
    not minillm_kernels.TRITON_AVAILABLE, reason=minillm_kernels.TRITON_UNAVAILABLE_REASON
)
MANY = settings(max_examples=300, deadline=None, derandomize=True, database=None)  # pure index arithmetic
SKIPPED, FULL, PARTIAL = 0, 1, 2

# (T, n_sink, window, causal): causal, sliding window, sinks alone, the Λ mask (sinks + window) with
# sinks shorter, equal to and longer than a block, windows below / at / past a block, odd lengths.
MASKS = [
    (96, 0, None, False),
    (96, 0, None, True),
    (77, 4, None, True),
    (96, 0, 20, True),
    (17, 1, 15, True),  # odd: one real query in the last block
    (32, 1, 30, True),  # tile (1, 0): key 0 is a sink, keys 1..15 within query 31's window: full
    (93, 4, 20, True),
    (80, 16, 16, True),
    (100, 20, 31, True),
    (64, 40, 5, True),  # sinks span blocks beyond the band's start
    (33, 4, 40, True),  # window past the sequence: causal
    (1, 0, 1, True),
]
TILES = [(16, 16), (16, 32), (32, 16)]


def kinds_from_q_splits(T, block_m, block_n, n_sink, window, causal) -> torch.Tensor:
    """The dK, dV loop's kinds, key block by key block, in `tile_kinds`' (query block, key block) layout."""
    n_q, n_kv = -(-T // block_m), -(-T // block_n)
    kinds = torch.zeros(n_q, n_kv, dtype=torch.int64)
    for n in range(n_kv):
        lo, f0, f1, hi = q_block_splits(n, T, block_m, block_n, n_sink, window, causal)
        kinds[lo:f0, n], kinds[f0:f1, n], kinds[f1:hi, n] = PARTIAL, FULL, PARTIAL
    return kinds


def expected_q_kinds(T, block_m, block_n, n_sink, window, causal) -> torch.Tensor:
    """The dK, dV loop also masks tiles with padding queries (it zeroes their weights there)."""
    kinds = tile_kinds_from_mask(mask_mod_for(n_sink, window, causal), T, block_m, block_n)
    if T % block_m:
        kinds[-1][kinds[-1] == FULL] = PARTIAL
    return kinds


def dense_kinds(T, block_m, block_n, n_sink, window, causal) -> torch.Tensor:
    """The oracle written out pair by pair, independent of `tile_kinds_from_mask`'s tensor tricks.

    Skipped: no real query (< T) sees a key of the tile. Full: every pair is allowed, keys past T
    counting as forbidden and the last block's padding queries counting like real ones.
    """
    allowed = mask_mod_for(n_sink, window, causal)

    def sees(q: int, k: int) -> bool:
        return k < T and bool(allowed(0, 0, torch.tensor(q), torch.tensor(k)))

    n_q, n_kv = -(-T // block_m), -(-T // block_n)
    kinds = torch.zeros(n_q, n_kv, dtype=torch.int64)
    for m in range(n_q):
        for n in range(n_kv):
            keys = range(n * block_n, (n + 1) * block_n)
            if all(sees(q, k) for q in range(m * block_m, (m + 1) * block_m) for k in keys):
                kinds[m, n] = FULL
            elif any(sees(q, k) for q in range(m * block_m, min((m + 1) * block_m, T)) for k in keys):
                kinds[m, n] = PARTIAL
    return kinds


@pytest.mark.parametrize("T, n_sink, window, causal", MASKS)
@pytest.mark.parametrize("block_m, block_n", TILES)
def test_every_full_tile_is_all_allowed_and_every_skipped_tile_none(T, n_sink, window, causal, block_m, block_n):
    expected = dense_kinds(T, block_m, block_n, n_sink, window, causal)
    assert torch.equal(tile_kinds_from_mask(mask_mod_for(n_sink, window, causal), T, block_m, block_n), expected)
    assert torch.equal(tile_kinds(T, block_m, block_n, n_sink, window, causal), expected)
    assert torch.equal(
        kinds_from_q_splits(T, block_m, block_n, n_sink, window, causal),
        expected_q_kinds(T, block_m, block_n, n_sink, window, causal),
    )


@st.composite
def split_params(draw) -> tuple:
    T = draw(st.integers(1, 200))
    kind = draw(st.sampled_from(["lambda", "lambda", "causal", "full"]))
    n_sink = draw(st.integers(0, 70))
    window = draw(st.integers(1, T + 20)) if kind == "lambda" else None
    return T, n_sink, window, kind != "full"


@MANY
@given(p=split_params(), block_m=st.sampled_from([16, 32, 64]), block_n=st.sampled_from([16, 32, 64]))
@example(p=(32, 1, 30, True), block_m=16, block_n=16)
def test_the_split_equals_the_materialized_masks_tiles(p, block_m, block_n):
    T, n_sink, window, causal = p
    kinds = tile_kinds(T, block_m, block_n, n_sink, window, causal)
    assert torch.equal(kinds, tile_kinds_from_mask(mask_mod_for(n_sink, window, causal), T, block_m, block_n))
    assert torch.equal(
        kinds_from_q_splits(T, block_m, block_n, n_sink, window, causal),
        expected_q_kinds(T, block_m, block_n, n_sink, window, causal),
    )


def test_the_masks_leave_full_tiles_in_every_run():
    """Else the tests above would hold for a kernel that masks everything: each run of full tiles occurs."""
    runs = set()
    for T, n_sink, window, causal in MASKS:
        for block_m, block_n in TILES:
            for m in range(-(-T // block_m)):
                s, _, lo, a, b, c, _ = kv_block_splits(m, T, block_m, block_n, n_sink, window, causal)
                found = (("sinks", s > 0), ("band sinks", a > lo), ("band", c > b))
                runs |= {name for name, nonempty in found if nonempty}
    assert runs == {"sinks", "band sinks", "band"}


@pytest.mark.parametrize(
    "wrong",
    [
        lambda k: torch.where(k == FULL, PARTIAL, k),  # the old kernel: every visited tile masked
        lambda k: torch.where(k == PARTIAL, FULL, k),  # no mask at all
        lambda k: torch.where(k > 0, FULL, k).tril(),  # causal-only thinking: the diagonal called full
        lambda k: torch.where(k == FULL, SKIPPED, k),  # full tiles dropped
    ],
)
def test_a_wrong_classification_fails_the_oracle(wrong):
    for T, n_sink, window, causal in MASKS:
        oracle = dense_kinds(T, 16, 16, n_sink, window, causal)
        if not torch.equal(wrong(oracle), oracle):
            return
    pytest.fail("no mask tells this wrong classification from the right one")


def test_a_tile_is_full_when_the_keys_outside_the_window_are_sinks():
    """Tile (1, 0): key 0 is a sink, keys 1..15 are in query 31's window of 30: full, though neither all
    its keys are sinks nor all are in the window. With no sink it is partial."""
    assert tile_kinds(32, 16, 16, n_sink=1, window=30)[1, 0] == FULL
    assert tile_kinds(32, 16, 16, n_sink=0, window=30)[1, 0] == PARTIAL


# ----------------------------------------------------------------------------------------------
# The Triton helpers compute the same runs, and the kernel needs them right
# ----------------------------------------------------------------------------------------------


if minillm_kernels.TRITON_AVAILABLE:
    import triton
    import triton.language as tl

    from minillm_kernels import block_sparse_triton as kt
    from minillm_kernels.block_sparse_triton import _kv_block_range

    @triton.jit
    def _all_full(start_m, T, n_sink, window, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                  CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):  # fmt: skip
        """A wrong split: every visited tile called full (no mask anywhere)."""
        n_sink_blocks, lo, hi = _kv_block_range(start_m, T, n_sink, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
        return n_sink_blocks, n_sink_blocks, lo, hi, hi, hi, hi


@needs_triton
@pytest.mark.parametrize("T, n_sink, window, causal", MASKS)
def test_the_triton_helpers_compute_the_python_runs(T, n_sink, window, causal):
    for block_m, block_n in TILES:
        out_kv, out_q = kt.block_splits(T, n_sink, window, causal, block_m, block_n, "cpu")
        for m in range(-(-T // block_m)):
            assert tuple(out_kv[m].tolist()) == kv_block_splits(m, T, block_m, block_n, n_sink, window, causal)
        for n in range(-(-T // block_n)):
            assert tuple(out_q[n].tolist()) == q_block_splits(n, T, block_m, block_n, n_sink, window, causal)
        assert torch.equal(
            kernel_tile_kinds(T, block_m, block_n, n_sink, window, causal),
            tile_kinds_from_mask(mask_mod_for(n_sink, window, causal), T, block_m, block_n),
        )


@needs_triton
@pytest.mark.parametrize("T, n_sink, window", [(32, 1, 30), (80, 16, 16), (64, 40, 5), (100, 20, 31)])
def test_the_split_kernel_equals_the_reference_where_full_tiles_run_unmasked(T, n_sink, window):
    assert (tile_kinds(T, 16, 16, n_sink, window) == FULL).any()
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(1, 1, T, 16, generator=g).requires_grad_(True) for _ in range(3))
    dout = torch.randn(1, 1, T, 16, generator=g)
    outs = []
    for fn in (block_sparse_attention, reference_attention):
        out = fn(q, k, v, n_sink=n_sink, window=window)
        outs.append([out.detach(), *torch.autograd.grad(out, (q, k, v), dout)])
    for a, b in zip(*outs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@needs_triton
def test_a_kernel_that_calls_partial_tiles_full_is_wrong(monkeypatch):
    """The same kernel with every visited tile run unmasked: the comparison above catches it."""
    monkeypatch.setattr(kt, "_kv_block_splits", _all_full)
    q, k, v = (torch.randn(1, 1, 64, 16, generator=torch.Generator().manual_seed(i)) for i in range(3))
    out, _ = kt.forward(q, k, v, 4, 20, True, 16, 16)
    assert not torch.allclose(out, reference_attention(q, k, v, n_sink=4, window=20), atol=1e-3)


@needs_triton
@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(T=0, block_m=16, block_n=16), ValueError),
        (dict(T=2.5, block_m=16, block_n=16), TypeError),
        (dict(T=32, block_m=24, block_n=16), ValueError),
        (dict(T=32, block_m=16, block_n=16, window=4, causal=False), ValueError),
    ],
)
def test_kernel_tile_kinds_refuses_bad_arguments(kwargs, error):
    with pytest.raises(error):
        kernel_tile_kinds(**kwargs)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(T=0, block_m=16, block_n=16), ValueError),
        (dict(T=16, block_m=16.0, block_n=16), TypeError),
        (dict(T=16, block_m=16, block_n=0), ValueError),
    ],
)
def test_tile_kinds_refuse_bad_arguments(kwargs, error):
    with pytest.raises(error):
        tile_kinds(**kwargs)
    with pytest.raises(error):
        tile_kinds_from_mask(mask_mod_for(), **kwargs)
