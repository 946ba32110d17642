"""LM-Infinite's Λ-shaped attention, blockwise (Han et al., 2023, arXiv 2308.16137).

Every query sees the first `n_global` tokens and the `n_local` most recent ones (itself included),
and every pair farther apart than `max_distance` is scored as if it sat exactly that far apart.
A dense implementation builds the T x T score matrix and masks most of it away. Here queries go
in blocks of `n_local`: a block needs only the global keys and the keys from n_local - 1 before
its first query to its last one, so memory is O(T * (n_global + 2 * n_local)) instead of O(T^2).
The reference code (`models/lambda_attention.py`) tiles the same way.
"""

from __future__ import annotations

import torch

from . import masks
from .attention import AttentionStep, distance_limit, rope_attention


def lambda_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n_global: int,
    n_local: int,
    max_distance: int,
    rope_base: float = 10000.0,
    block_size: int | None = None,
) -> torch.Tensor:
    """Λ attention of un-rotated q, k, v (B, H, T, D) at positions 0..T-1: output (B, H, T, D)."""
    if q.dim() != 4 or q.shape != k.shape or k.shape != v.shape:
        raise ValueError(f"q, k, v must share one shape (B, H, T, D), got {tuple(q.shape)}, {tuple(k.shape)}")
    mask_mod = masks.lambda_shaped(n_global, n_local)  # also validates n_global and n_local
    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 1:
        raise ValueError(f"max_distance must be an int >= 1, got {max_distance!r}")
    T, device = q.shape[2], q.device
    block = block_size or n_local
    out = torch.empty_like(q)
    zero = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, T, block):
        stop = min(start + block, T)
        local_from = max(0, start - n_local + 1)  # the oldest key the block's first query sees
        keys = torch.cat(
            [
                torch.arange(min(n_global, local_from), device=device),  # (S,) global, then local
                torch.arange(local_from, stop, device=device),
            ]
        )
        queries = torch.arange(start, stop, device=device)  # (b,)
        mask = mask_mod(zero, zero, queries[:, None], keys[None, :])  # (b, S)
        step = AttentionStep(queries, keys, mask, **distance_limit(queries, keys, max_distance))
        out[:, :, start:stop], _ = rope_attention(q[:, :, start:stop], k[:, :, keys], v[:, :, keys], step, rope_base)
    return out
