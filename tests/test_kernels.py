"""Block-sparse attention: the Triton kernel, the blocked torch version and the block map against
the one mask (`minillm.masks`), the dense reference and FlexAttention.

The Triton kernels run in the interpreter on CPU (slow), so shapes stay tiny: T <= 96, D = 16.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

import minillm_kernels
from minillm import masks
from minillm_kernels import (
    block_map,
    block_map_from_mask,
    block_sparse_attention,
    blocked_attention,
    count_visited_blocks,
    mask_mod_for,
    reference_attention,
    visited_kv_blocks,
)
from minillm_kernels.block_map import q_block_ranges

needs_triton = pytest.mark.skipif(
    not minillm_kernels.TRITON_AVAILABLE, reason=minillm_kernels.TRITON_UNAVAILABLE_REASON
)
# The interpreter is slow: few examples, and no shrinking (it would rerun the kernel hundreds of times).
FEW = settings(max_examples=10, deadline=None, derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
MANY = settings(max_examples=100, deadline=None, derandomize=True, database=None)  # pure index arithmetic


def random_qkv(B: int, H: int, T: int, D: int, seed: int, requires_grad: bool = False) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, H, T, D, generator=g).requires_grad_(requires_grad) for _ in range(3)]


def value_and_grads(fn, q, k, v, dout, **mask_args) -> list[torch.Tensor]:
    out = fn(q, k, v, **mask_args)
    return [out.detach(), *torch.autograd.grad(out, (q, k, v), dout)]


@st.composite
def mask_params(draw, max_len: int = 96) -> dict:
    """A length and a mask: sink_window (most often), causal, or full attention."""
    T = draw(st.integers(1, max_len))
    kind = draw(st.sampled_from(["sink_window", "sink_window", "causal", "full"]))
    n_sink = draw(st.sampled_from([0, 1, 4]))
    if kind == "sink_window":
        return dict(T=T, n_sink=n_sink, window=draw(st.integers(1, T + 8)), causal=True)  # > T: causal
    return dict(T=T, n_sink=n_sink, window=None, causal=kind == "causal")


# ----------------------------------------------------------------------------------------------
# One mask: the mask_mod, the block map and its closed-form count
# ----------------------------------------------------------------------------------------------


def test_mask_mod_for_is_sink_window_rule():
    T, n_sink, window = 20, 3, 4
    expected = torch.tensor([[j <= i and (j < n_sink or i - j <= window) for j in range(T)] for i in range(T)])
    assert torch.equal(masks.materialize(mask_mod_for(n_sink, window, True), T), expected)
    assert torch.equal(masks.materialize(mask_mod_for(2, None, True), T), torch.ones(T, T, dtype=torch.bool).tril())
    assert masks.materialize(mask_mod_for(0, None, False), T).all()


@MANY
@given(p=mask_params(max_len=200), block_m=st.sampled_from([16, 32, 64]), block_n=st.sampled_from([16, 32, 64]))
def test_block_map_equals_tiles_where_materialized_mask_has_any_true(p, block_m, block_n):
    T, mask_args = p.pop("T"), p
    visited = block_map(T, block_m, block_n, **mask_args)
    assert torch.equal(visited, block_map_from_mask(mask_mod_for(**mask_args), T, block_m, block_n))
    # the backward's inverse map (query blocks per key block) is the same set of tiles
    inverse = torch.zeros_like(visited)
    for n in range(visited.shape[1]):
        lo, hi = q_block_ranges(n, T, block_m, block_n, **mask_args)
        inverse[lo:hi, n] = True
    assert torch.equal(inverse, visited)
    # no tile is visited twice
    assert all(len(blocks) == len(set(blocks)) for blocks in visited_kv_blocks(T, block_m, block_n, **mask_args))


@MANY
@given(p=mask_params(max_len=2000), block=st.sampled_from([16, 32, 64, 128]))
def test_visited_block_count_equals_closed_form(p, block):
    T, mask_args = p.pop("T"), p
    assert count_visited_blocks(T, block, **mask_args) == int(block_map(T, block, block, **mask_args).sum())


def test_visited_blocks_grow_linearly_with_length_under_a_window():
    block, n_sink, window = 64, 4, 1024
    counts = [count_visited_blocks(T, block, n_sink, window) for T in (8192, 16384, 32768)]
    per_block = (window // block + 1) + 1  # band blocks + the one sink block, per query block
    assert counts[1] - counts[0] == (16384 - 8192) // block * per_block  # each query block adds the same
    assert counts[2] - counts[1] == (32768 - 16384) // block * per_block
    assert count_visited_blocks(32768, block) == 512 * 513 // 2  # causal: quadratic


# ----------------------------------------------------------------------------------------------
# The kernel and the blocked torch version against the reference and FlexAttention
# ----------------------------------------------------------------------------------------------


@needs_triton
@FEW
@given(p=mask_params(), B=st.integers(1, 2), H=st.integers(1, 2), seed=st.integers(0, 2**16))
@example(p=dict(T=93, n_sink=4, window=20, causal=True), B=1, H=2, seed=0)  # sinks, band, skipped blocks
@example(p=dict(T=77, n_sink=1, window=5, causal=True), B=2, H=1, seed=1)
def test_kernel_forward_and_backward_equal_reference(p, B, H, seed):
    T, mask_args = p.pop("T"), p
    q, k, v = random_qkv(B, H, T, 16, seed, requires_grad=True)
    dout = torch.randn(B, H, T, 16, generator=torch.Generator().manual_seed(seed + 1))
    got = value_and_grads(block_sparse_attention, q, k, v, dout, **mask_args)
    expected = value_and_grads(reference_attention, q, k, v, dout, **mask_args)
    for name, a, b in zip(("out", "dq", "dk", "dv"), got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")


@needs_triton
@pytest.mark.parametrize(
    "T, D, n_sink, window, block_m, block_n",
    [
        (50, 16, 4, 7, 32, 16),  # tall tiles; T not a multiple of either block
        (50, 16, 1, 7, 16, 32),  # wide tiles
        (33, 32, 4, 40, 16, 16),  # window longer than the sequence: causal
        (70, 64, 0, 1, 16, 16),  # the narrowest window, a bigger head
    ],
)
def test_kernel_equals_reference_with_uneven_tiles_and_head_dims(T, D, n_sink, window, block_m, block_n):
    q, k, v = random_qkv(1, 2, T, D, seed=T + D, requires_grad=True)
    dout = torch.randn_like(q)
    tiles = dict(block_m=block_m, block_n=block_n)
    got = value_and_grads(block_sparse_attention, q, k, v, dout, n_sink=n_sink, window=window, **tiles)
    expected = value_and_grads(reference_attention, q, k, v, dout, n_sink=n_sink, window=window)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@needs_triton
def test_kernel_accepts_non_contiguous_inputs():
    B, T, H, D = 1, 20, 2, 16
    q, k, v = (x.transpose(1, 2) for x in random_qkv(B, T, H, D, seed=3))  # (B, H, T, D) views of (B, T, H, D)
    for x in (q, k, v):
        x.requires_grad_(True)
    dout = torch.randn(B, H, T, D)
    got = value_and_grads(block_sparse_attention, q, k, v, dout, n_sink=1, window=4)
    expected = value_and_grads(reference_attention, q, k, v, dout, n_sink=1, window=4)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask_mod) -> torch.Tensor:
    """Eager FlexAttention (no torch.compile: it warns that it is slow; on CPU it has no backward)."""
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    T = q.shape[2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        block_mask = create_block_mask(mask_mod, None, None, T, T, device=str(q.device))
        return flex_attention(q, k, v, block_mask=block_mask)


@needs_triton
@FEW
@given(p=mask_params(), seed=st.integers(0, 2**16))
@example(p=dict(T=90, n_sink=4, window=9, causal=True), seed=0)
def test_kernel_forward_equals_flex_attention(p, seed):
    T, mask_args = p.pop("T"), p
    q, k, v = random_qkv(1, 2, T, 16, seed)
    expected = flex(q, k, v, mask_mod_for(**mask_args))
    torch.testing.assert_close(block_sparse_attention(q, k, v, **mask_args), expected, atol=1e-5, rtol=1e-4)


@FEW
@given(p=mask_params(max_len=200), block=st.sampled_from([16, 32, 64]), seed=st.integers(0, 2**16))
def test_blocked_torch_forward_and_backward_equal_reference(p, block, seed):
    T, mask_args = p.pop("T"), p
    q, k, v = random_qkv(2, 2, T, 16, seed, requires_grad=True)
    dout = torch.randn_like(q)
    blocked = lambda q, k, v, **kw: blocked_attention(q, k, v, block=block, **kw)  # noqa: E731
    got = value_and_grads(blocked, q, k, v, dout, **mask_args)
    expected = value_and_grads(reference_attention, q, k, v, dout, **mask_args)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert torch.isfinite(got[1]).all()


@needs_triton
@pytest.mark.parametrize("n_sink, window", [(4, 9), (0, 20)])
def test_kernel_reads_only_the_visited_kv_blocks(n_sink, window):
    """Poison (NaN) the values of every key block a query block must skip: its rows stay exact.

    A kernel that reads one block too many gets 0 * NaN = NaN; one that reads too few is wrong.
    The wrapper refuses NaN input (every attention path does), so this launches the kernel directly.
    """
    from minillm_kernels import block_sparse_triton

    T, block = 80, 16
    q, k, v = random_qkv(1, 1, T, 16, seed=7)
    expected = reference_attention(q, k, v, n_sink=n_sink, window=window)
    for m, blocks in enumerate(visited_kv_blocks(T, block, block, n_sink, window)):
        poisoned = torch.full_like(v, float("nan"))
        for n in blocks:
            poisoned[:, :, n * block : (n + 1) * block] = v[:, :, n * block : (n + 1) * block]
        out, _ = block_sparse_triton.forward(q, k, poisoned, n_sink, window, True, block, block)
        rows = slice(m * block, (m + 1) * block)
        torch.testing.assert_close(out[:, :, rows], expected[:, :, rows], atol=1e-5, rtol=1e-4)
    assert len(blocks) < T // block  # the last query block does skip blocks (else this test proves nothing)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------


@needs_triton
@pytest.mark.parametrize(
    "make, kwargs, error",
    [
        (lambda: [torch.randn(2, 8, 16)] * 3, {}, ValueError),  # 3-D
        (lambda: [torch.randn(1, 1, 8, 16), torch.randn(1, 1, 9, 16), torch.randn(1, 1, 8, 16)], {}, ValueError),
        (lambda: [torch.randn(1, 1, 8, 24)] * 3, {}, ValueError),  # head dim not a power of two
        (lambda: [torch.randn(1, 1, 8, 256)] * 3, {}, ValueError),  # head dim too big
        (lambda: [torch.randn(1, 1, 8, 16, dtype=torch.float64)] * 3, {}, TypeError),
        (lambda: [torch.randn(1, 1, 8, 16), torch.randn(1, 1, 8, 16).half(), torch.randn(1, 1, 8, 16)], {}, TypeError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(n_sink=-1, window=4), ValueError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(window=0), ValueError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(window=4, causal=False), ValueError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(window=2.5), TypeError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(block_m=24), ValueError),
        (lambda: [torch.randn(1, 1, 8, 16)] * 3, dict(block_n=8), ValueError),
    ],
)
def test_bad_input_raises(make, kwargs, error):
    with pytest.raises(error):
        block_sparse_attention(*make(), **kwargs)


@needs_triton
@pytest.mark.skipif(not minillm_kernels.TRITON_INTERPRETED, reason="only the interpreter refuses CUDA tensors")
def test_interpreter_refuses_non_cpu_tensors():
    q = torch.randn(1, 1, 8, 16, device="meta")
    with pytest.raises(ValueError, match="interpreter"):
        block_sparse_attention(q, q, q)


def test_without_triton_the_package_imports_and_the_kernel_explains():
    code = (
        "import sys; sys.modules['triton'] = None\n"  # makes `import triton` raise ImportError
        "import torch, minillm_kernels\n"
        "assert not minillm_kernels.TRITON_AVAILABLE and 'Triton' in minillm_kernels.TRITON_UNAVAILABLE_REASON\n"
        "q = torch.randn(1, 1, 8, 16)\n"
        "minillm_kernels.reference_attention(q, q, q, n_sink=1, window=2)\n"
        "minillm_kernels.blocked_attention(q, q, q, window=2)\n"
        "try:\n    minillm_kernels.block_sparse_attention(q, q, q)\nexcept RuntimeError as e:\n    print(e)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "needs Triton" in result.stdout
