"""Rotary position embeddings (Su et al., 2021, arXiv 2104.09864) at explicit positions.

RoPE rotates each pair of channels (x_i, x_{i+D/2}) of a query or key by the angle pos * theta_i.
A rotation by a then by b is a rotation by a + b, so <R(p) q, R(s) k> = <R(p - s) q, k>: attention
scores depend only on the distance p - s. Every cache in the course leans on that fact: keys are
stored *before* rotation and rotated at attention time, at whatever positions the cache assigns.
"""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=16)
def rope_frequencies(head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """theta_i = base ** (-2i / D) for i < D/2, in float64 (angles grow large on long streams)."""
    return base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the angles pos * theta_i, laid out for `rotate`: (..., T, D) each.

    Angles are computed in float64 and cast afterwards: at position 1e5 a float16 angle is noise.
    """
    theta = rope_frequencies(head_dim, base).to(positions.device)
    angles = positions.to(torch.float64)[..., None] * theta  # (..., T, D/2)
    angles = torch.cat((angles, angles), dim=-1)  # (..., T, D): pair i is channels i and i + D/2
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate every channel pair of x by the angles whose cos and sin are given."""
    return x * cos + rotate_half(x) * sin


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
    cos, sin = rope_cos_sin(positions, x.shape[-1], base, x.dtype)  # (T, D) or (B, T, D)
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, D): the same positions for every head
    return rotate(x, cos, sin)


_TABLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (D, base, dtype, device) -> cos, sin


def rope_table(
    n_positions: int, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32, device="cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of `rope_cos_sin` at positions 0..n_positions-1 (at least), (N, D) each, kept and
    grown by doubling: a cache that writes one position per step looks its angles up (float64 and
    the trigonometry paid once per position, not once per step). Row p is `rope_cos_sin` at p."""
    key = (head_dim, float(base), dtype, torch.device(device))
    table = _TABLES.get(key)
    if table is None or len(table[0]) < n_positions:
        size = max(1024, 1 << (n_positions - 1).bit_length())
        table = _TABLES[key] = rope_cos_sin(torch.arange(size, device=device), head_dim, base, dtype)
    return table


@lru_cache(maxsize=16)
def _rotate_half_matrix(head_dim: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """P with x @ P == rotate_half(x): column j < D/2 takes -x_{j + D/2}, column j >= D/2 takes x_{j - D/2}."""
    half, i = head_dim // 2, torch.arange(head_dim)
    p = torch.zeros(head_dim, head_dim, dtype=torch.float64)
    p[i[half:], i[:half]], p[i[:half], i[half:]] = -1.0, 1.0
    return p.to(dtype=dtype, device=device)


def rope_matrix(
    position: int, head_dim: int, base: float = 1e4, dtype: torch.dtype = torch.float32, device="cpu"
) -> torch.Tensor:
    """RoPE at one position as a (D, D) matrix, x @ M == rotate(x) at that position: one matmul
    instead of five elementwise ops, which is what a decoding step of one token pays for. Its
    cos and sin come from `rope_table`, so a new position each step costs no trigonometry."""
    cos, sin = (t[position] for t in rope_table(position + 1, head_dim, base, dtype, device))  # (D,) each
    rotate_half_matrix = _rotate_half_matrix(head_dim, dtype, torch.device(device))
    return torch.diag(cos) + rotate_half_matrix * sin  # x cos + rotate_half(x) sin
