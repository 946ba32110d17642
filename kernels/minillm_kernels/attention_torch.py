"""Sink + sliding-window attention in plain PyTorch: the dense reference and a blocked version.

`reference_attention` is the definition: materialize the mask_mod (one mask, everywhere) and run
the explicit softmax of `minillm.attention`; it costs O(T^2) time and memory. `blocked_attention`
does what the Triton kernel does (FlashAttention's tiling, Dao et al. 2022, arXiv 2205.14135, and
FlexAttention's block sparsity) with torch ops only: it gathers, for each query block, the key blocks
of `minillm_kernels.block_map.visited_kv_blocks` and attends over those alone, so its cost grows like
T * (window + n_sink). Unlike the kernel it keeps a whole softmax row per query (no online softmax),
which is simple and fast on a CPU and differentiable by autograd.
"""

from __future__ import annotations

import torch

from minillm import masks
from minillm.attention import reference_attention as explicit_attention
from minillm.validate import check_int, check_qkv

from .block_map import mask_mod_for, visited_kv_blocks


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    n_sink: int = 0,
    window: int | None = None,
    causal: bool = True,
) -> torch.Tensor:
    """softmax(q k^T / sqrt(D) + mask) v with the mask of `mask_mod_for(n_sink, window, causal)`.

    q, k, v (B, H, T, D) -> (B, H, T, D). The definition that the kernels must equal.
    """
    check_qkv(q, k, v)
    T = q.shape[-2]
    mask = masks.materialize(mask_mod_for(n_sink, window, causal), T, T).to(q.device)  # (T, T)
    out, _ = explicit_attention(q, k, v, mask)  # (B, H, T, D)
    return out


def blocked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    n_sink: int = 0,
    window: int | None = None,
    causal: bool = True,
    block: int = 64,
) -> torch.Tensor:
    """The kernel's block skipping in torch: each query block attends only to its visited key blocks.

    q, k, v (B, H, T, D) -> (B, H, T, D). `block` is the tile size (queries and keys alike).
    """
    check_qkv(q, k, v)
    check_int("block", block, 1)
    mask_mod = mask_mod_for(n_sink, window, causal)
    B, H, T, D = q.shape
    M = -(-T // block)  # number of query blocks (= key blocks)
    pad = M * block - T
    if pad:  # pad to whole blocks; padded keys are masked below, padded queries dropped at the end
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))

    # Every query block visits up to L key blocks; shorter lists are padded with block 0 and masked.
    visited = visited_kv_blocks(T, block, block, n_sink, window, causal)
    L = max(len(blocks) for blocks in visited)
    idx = torch.zeros(M, L, dtype=torch.long)
    real = torch.zeros(M, L, dtype=torch.bool)  # False on padding entries of the lists
    for m, blocks in enumerate(visited):
        idx[m, : len(blocks)] = torch.tensor(blocks, dtype=torch.long)
        real[m, : len(blocks)] = True

    # Key index of every gathered key, and the mask there: the same mask_mod, at gathered indices.
    kv_idx = (idx[:, :, None] * block + torch.arange(block)).view(M, 1, L * block)  # (M, 1, L*block)
    q_idx = (torch.arange(M)[:, None] * block + torch.arange(block)).view(M, block, 1)  # (M, block, 1)
    zero = torch.zeros((), dtype=torch.long)
    allowed = mask_mod(zero, zero, q_idx, kv_idx) & (kv_idx < T)  # (M, block, L*block)
    allowed = allowed & real.repeat_interleave(block, dim=1)[:, None, :]
    # A padded query row may see no key, and softmax over a row of -inf is NaN (also in the
    # backward); let padded rows see everything instead, since their output is dropped anyway.
    allowed = allowed | (q_idx >= T)
    allowed = allowed.to(q.device)

    qb = (q / D**0.5).view(B, H, M, block, D)  # (B, H, M, block, D); scaling q is cheaper than the scores
    kb = k.view(B, H, M, block, D)[:, :, idx].reshape(B, H, M, L * block, D)  # (B, H, M, L*block, D)
    vb = v.view(B, H, M, block, D)[:, :, idx].reshape(B, H, M, L * block, D)  # (B, H, M, L*block, D)
    scores = qb @ kb.transpose(-2, -1)  # (B, H, M, block, L*block)
    scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, M, block, L*block)
    out = (weights @ vb).view(B, H, M * block, D)  # (B, H, M*block, D)
    return out[:, :, :T]
