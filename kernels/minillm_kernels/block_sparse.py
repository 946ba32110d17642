"""Block-sparse flash attention for sink + sliding-window masks: the public entry point.

`block_sparse_attention(q, k, v, n_sink=, window=, causal=)` runs the Triton kernels of
`minillm_kernels.block_sparse_triton` (FlashAttention, Dao et al. 2022, arXiv 2205.14135, after Triton's
fused-attention tutorial, skipping tiles the way FlexAttention's BlockMask does) through a
`torch.autograd.Function`, so it trains. Its mask is `minillm_kernels.block_map.mask_mod_for(...)`, i.e.
`minillm.masks.sink_window(n_sink, window)` (or `causal()`, or full attention): one mask, everywhere.

On a machine without CUDA the kernels run in Triton's interpreter (`TRITON_INTERPRET=1`, set by
`kernels/minillm_kernels/__init__.py`) on CPU float32 tensors: slow, but exact, and fine for small shapes. On CUDA
they compile and take float16, bfloat16 or float32. Without Triton (macOS, Windows) this function
raises and explains; `reference_attention` and `blocked_attention` work everywhere.
"""

from __future__ import annotations

import torch

from minillm.validate import check_finite, check_int

from .attention_torch import blocked_attention, reference_attention
from .backend import TRITON_AVAILABLE, TRITON_INTERPRETED, TRITON_UNAVAILABLE_REASON
from .block_map import check_mask_args, kinds_from_splits

__all__ = [
    "block_sparse_attention",
    "blocked_attention",
    "reference_attention",
    "default_block_size",
    "kernel_tile_kinds",
]

HEAD_DIMS = (16, 32, 64, 128)  # powers of two: tl.arange needs one, tl.dot needs >= 16


def default_block_size(head_dim: int, dtype: torch.dtype, device: torch.device | str) -> int:
    """The tile size (queries = keys) the wrapper picks.

    In the interpreter: 16, the smallest tile `tl.dot` takes, so the skipping shows at small T.
    On a GPU: 64, halved while the backward's tiles might not fit in shared memory. Compiling
    the kernels for sm_75..sm_90 measured at most 6 * block * D * itemsize bytes (q, k, v, dO tiles,
    double-buffered): 82 KB for float16, D = 128, block 64, which fits an A100 or H100 but not a T4.
    """
    if TRITON_INTERPRETED:
        return 16
    # bytes one program may use; 48 KB (every CUDA GPU) where torch does not report it (older torch, ROCm)
    shared = getattr(torch.cuda.get_device_properties(device), "shared_memory_per_block_optin", 49152)
    block, itemsize = 64, torch.empty((), dtype=dtype).element_size()
    while block > 16 and 6 * block * head_dim * itemsize > shared:
        block //= 2
    return block


def _check_block(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 16 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= 16 (tl.dot tiles), got {value}")


def _check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise a TypeError/ValueError that names the rule a bad q, k, v breaks."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(f"{name} must be 4-D (B, H, T, D), got shape {tuple(x.shape)}")
    if not (q.shape == k.shape == v.shape):
        raise ValueError(
            f"q, k, v must have the same shape (B, H, T, D), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"q, k, v must have the same dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on the same device, got {q.device}, {k.device}, {v.device}")
    if q.shape[-1] not in HEAD_DIMS:
        raise ValueError(f"head dim D must be one of {HEAD_DIMS}, got {q.shape[-1]}")
    if q.numel() == 0:
        raise ValueError(f"q, k, v must not be empty, got shape {tuple(q.shape)}")
    if not q.is_floating_point():
        raise TypeError(f"q, k, v must be floating tensors, got {q.dtype}")
    if TRITON_INTERPRETED:
        if q.device.type != "cpu":
            raise ValueError(
                f"Triton runs in its interpreter (TRITON_INTERPRET=1), which takes CPU tensors; got {q.device}"
            )
        if q.dtype != torch.float32:
            raise TypeError(f"the Triton interpreter runs float32 only (numpy has no bfloat16), got {q.dtype}")
    else:
        if q.device.type != "cuda":
            raise ValueError(f"compiled Triton kernels take CUDA tensors, got {q.device}")
        if q.dtype not in (torch.float16, torch.bfloat16, torch.float32):
            raise TypeError(f"dtype must be float16, bfloat16 or float32, got {q.dtype}")
    # a NaN key in a visited tile reaches rows that never attend to it (0 * NaN): the same rule as
    # minillm.attention and the torch references, so every path refuses it
    check_finite(q=q, k=k, v=v)


class BlockSparseAttention(torch.autograd.Function):
    """Forward and backward by the Triton kernels; saves q, k, v, out and the row log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v, n_sink, window, causal, block_m, block_n):
        from . import block_sparse_triton as kernels_triton

        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()  # the kernels assume stride 1 along D
        out, lse = kernels_triton.forward(q, k, v, n_sink, window, causal, block_m, block_n)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.mask_args = (n_sink, window, causal, block_m, block_n)
        return out

    @staticmethod
    def backward(ctx, dout):
        from . import block_sparse_triton as kernels_triton

        q, k, v, out, lse = ctx.saved_tensors
        # dout is often not contiguous (e.g. the gradient of .sum() is an expanded tensor)
        dq, dk, dv = kernels_triton.backward(q, k, v, out, lse, dout.contiguous(), *ctx.mask_args)
        return dq, dk, dv, None, None, None, None, None


def block_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    n_sink: int = 0,
    window: int | None = None,
    causal: bool = True,
    block_m: int | None = None,
    block_n: int | None = None,
) -> torch.Tensor:
    """Attention of q over k, v (each (B, H, T, D)) under a sink + sliding-window mask -> (B, H, T, D).

    Query i sees key j when j <= i and (j < n_sink or i - j <= window): `minillm.masks.sink_window`.
    window=None gives causal attention (n_sink then changes nothing), and with causal=False full
    attention; a window with causal=False raises ValueError. D must be 16, 32, 64 or 128; T need
    not be a multiple of the block. block_m, block_n (powers of two >= 16) override the tile size.
    Differentiable (Triton backward).
    """
    check_mask_args(n_sink, window, causal)
    if not TRITON_AVAILABLE:
        raise RuntimeError(
            f"block_sparse_attention needs Triton: {TRITON_UNAVAILABLE_REASON} "
            "Use minillm_kernels.reference_attention or minillm_kernels.blocked_attention (plain torch) instead."
        )
    _check_inputs(q, k, v)
    default = default_block_size(q.shape[-1], q.dtype, q.device) if block_m is None or block_n is None else None
    block_m = default if block_m is None else block_m
    block_n = default if block_n is None else block_n
    _check_block("block_m", block_m)
    _check_block("block_n", block_n)
    return BlockSparseAttention.apply(q, k, v, n_sink, window, causal, block_m, block_n)


def kernel_tile_kinds(
    T: int, block_m: int, block_n: int, n_sink: int = 0, window: int | None = None, causal: bool = True
) -> torch.Tensor:
    """Int (n_q_blocks, n_kv_blocks): 0 skipped, 1 full (run without a mask), 2 partial (masked), as the
    forward kernel's own Triton code decides it (`_kv_block_splits`, launched), not a Python copy of it.

    `minillm_kernels.tile_kinds` is the same arithmetic in Python; the tests check both against the mask.
    """
    check_mask_args(n_sink, window, causal)
    check_int("T", T, 1)
    _check_block("block_m", block_m)
    _check_block("block_n", block_n)
    if not TRITON_AVAILABLE:
        raise RuntimeError(f"kernel_tile_kinds needs Triton: {TRITON_UNAVAILABLE_REASON}")
    from . import block_sparse_triton as kernels_triton

    device = "cpu" if TRITON_INTERPRETED else "cuda"
    kv_splits, _ = kernels_triton.block_splits(T, n_sink, window, causal, block_m, block_n, device)
    return kinds_from_splits([tuple(row) for row in kv_splits.tolist()], -(-T // block_n))
