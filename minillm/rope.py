"""Rotary position embeddings (Su et al., 2021, arXiv 2104.09864) at explicit positions.

RoPE rotates each pair of channels (x_i, x_{i+D/2}) of a query or key by the angle pos * theta_i.
A rotation by a then by b is a rotation by a + b, so <R(p) q, R(s) k> = <R(p - s) q, k>: attention
scores depend only on the distance p - s. Every cache in the course leans on that fact: keys are
stored *before* rotation and rotated at attention time, at whatever positions the cache assigns.
"""

from __future__ import annotations

import torch


def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base ** (-2i / D) for i < D/2, in float64 (angles grow large on long streams)."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dim: multiplication by i."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate x (B, H, T, D) at `positions`, shape (T,) or (B, T); integer or float positions."""
    if x.dim() != 4:
        raise ValueError(f"x must have shape (B, H, T, D), got {tuple(x.shape)}")
    if positions.shape[-1] != x.shape[-2] or positions.dim() not in (1, 2):
        raise ValueError(f"positions must have shape (T,) or (B, T) with T={x.shape[-2]}, got {tuple(positions.shape)}")
    theta = rope_frequencies(x.shape[-1], base).to(x.device)
    angles = positions.to(torch.float64)[..., None] * theta  # (T, D/2) or (B, T, D/2)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B, 1, T, D/2): the same positions for every head
    cos = torch.cat((angles.cos(), angles.cos()), dim=-1).to(x.dtype)
    sin = torch.cat((angles.sin(), angles.sin()), dim=-1).to(x.dtype)
    return x * cos + rotate_half(x) * sin
