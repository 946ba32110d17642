"""Chapter 08's checkers pass right kernels, fail wrong ones with a hint, and report stubs as not implemented.

The kernels run in Triton's interpreter on CPU (tiny shapes); the Triton cases skip without Triton.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

import minillm_kernels
from minillm.checks import ch08

needs_triton = pytest.mark.skipif(
    not minillm_kernels.TRITON_AVAILABLE, reason=minillm_kernels.TRITON_UNAVAILABLE_REASON
)

if minillm_kernels.TRITON_AVAILABLE:
    import triton
    import triton.language as tl

    @triton.jit
    def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n)
        y = tl.load(y_ptr + offs, mask=offs < n)
        tl.store(out_ptr + offs, x + y, mask=offs < n)

    @triton.jit
    def add_kernel_unmasked_store(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
        y = tl.load(y_ptr + offs, mask=offs < n, other=0.0)
        tl.store(out_ptr + offs, x + y)  # writes past n

    @triton.jit
    def stub_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
        # YOUR CODE HERE (the solution takes 5 lines)
        raise NotImplementedError

    @triton.jit
    def transpose_kernel(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * stride_x + cols[None, :], mask=mask)
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile, mask=mask)

    @triton.jit
    def transpose_kernel_ignores_stride(x_ptr, out_ptr, M, N, stride_x, stride_out, BLOCK_M: tl.constexpr,
                                        BLOCK_N: tl.constexpr):  # fmt: skip
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        mask = (rows[:, None] < M) & (cols[None, :] < N)
        tile = tl.load(x_ptr + rows[:, None] * N + cols[None, :], mask=mask)  # assumes contiguous rows
        tl.store(out_ptr + cols[None, :] * stride_out + rows[:, None], tile, mask=mask)

    @triton.jit
    def causal_softmax_kernel(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=float("-inf"))
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def causal_softmax_kernel_pads_with_zero(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        cols = tl.arange(0, BLOCK)
        x = tl.load(x_ptr + row * stride + cols, mask=(cols < N) & (cols <= row), other=0.0)
        e = tl.exp(x - tl.max(x, axis=0))
        tl.store(out_ptr + row * stride + cols, e / tl.sum(e, axis=0), mask=cols < N)

    @triton.jit
    def logsumexp_kernel(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
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
    def logsumexp_kernel_forgets_to_rescale(x_ptr, out_ptr, N, stride, BLOCK: tl.constexpr):
        row = tl.program_id(0)
        m = tl.full([], float("-inf"), tl.float32)
        l = tl.full([], 0.0, tl.float32)  # noqa: E741
        for start in range(0, N, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            x = tl.load(x_ptr + row * stride + cols, mask=cols < N, other=float("-inf"))
            m_new = tl.maximum(m, tl.max(x, axis=0))
            l = l + tl.sum(tl.exp(x - m_new), axis=0)  # noqa: E741 - old terms keep the old max
            m = m_new
        tl.store(out_ptr + row, m + tl.log(l))


def visited_blocks(T, block, n_sink, window):
    return [list(range(min(-(-n_sink // block), max(m * block - window, 0) // block))) +
            list(range(max(m * block - window, 0) // block, m + 1)) for m in range(-(-T // block))]  # fmt: skip


@needs_triton
def test_triton_checkers_pass_right_kernels(capsys):
    assert ch08.check_add_kernel(add_kernel)
    assert ch08.check_transpose_kernel(transpose_kernel)
    assert ch08.check_causal_softmax_kernel(causal_softmax_kernel)
    assert ch08.check_logsumexp_kernel(logsumexp_kernel)
    out = capsys.readouterr().out
    assert out.count("✅") == 4, out


@needs_triton
@pytest.mark.parametrize(
    "check, kernel, says",
    [
        ("check_add_kernel", "add_kernel_unmasked_store", "past the edge of out[:1000]"),
        ("check_transpose_kernel", "transpose_kernel_ignores_stride", "entries differ"),
        ("check_causal_softmax_kernel", "causal_softmax_kernel_pads_with_zero", "entries differ"),
        ("check_logsumexp_kernel", "logsumexp_kernel_forgets_to_rescale", "entries differ"),
    ],
)
def test_triton_checkers_fail_wrong_kernels_with_a_hint(check, kernel, says, capsys):
    assert not getattr(ch08, check)(globals()[kernel])
    out = capsys.readouterr().out
    assert "❌" in out and says in out and "hint:" in out, out


@needs_triton
def test_triton_checkers_report_a_stub_as_not_implemented_and_errors_do_not_escape(capsys):
    assert not ch08.check_add_kernel(stub_kernel)
    assert not ch08.check_add_kernel(lambda *args: None)  # not a @triton.jit function
    assert not ch08.check_transpose_kernel(add_kernel)  # wrong signature: the error is reported, not raised
    out = capsys.readouterr().out
    assert "⏳ TODO add_kernel: not implemented yet" in out
    assert "decorate it with @triton.jit" in out
    assert "❌ FAIL transpose_kernel" in out and "raised" in out, out


def test_visited_blocks_checker_passes_the_tight_blocks_and_says_what_is_missing_or_extra(capsys):
    def stub(*args):
        raise NotImplementedError

    def causal_only(T, block, n_sink, window):  # visits every block up to the diagonal: correct but wasteful
        return [list(range(m + 1)) for m in range(-(-T // block))]

    def band_only(T, block, n_sink, window):  # forgets the sinks
        return [list(range(max(m * block - window, 0) // block, m + 1)) for m in range(-(-T // block))]

    assert ch08.check_visited_blocks(visited_blocks)
    assert not ch08.check_visited_blocks(causal_only)
    assert not ch08.check_visited_blocks(band_only)
    assert not ch08.check_visited_blocks(stub)
    out = capsys.readouterr().out
    assert "✅ PASS visited_blocks" in out
    assert "hold no allowed pair (wasted work)" in out
    assert "missing [0] (wrong output)" in out
    assert "⏳ TODO visited_blocks: not implemented yet" in out


def test_without_triton_the_kernel_checkers_say_skipped():
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "from minillm.checks import ch08\n"
        "assert not ch08.check_add_kernel(None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "⏭ add_kernel: skipped" in result.stdout
