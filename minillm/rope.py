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
TABLE_POSITIONS = 1 << 15  # the table's limit: 16 MB at D = 64 in float32; a longer stream computes


def rope_cos_sin_at(
    positions: torch.Tensor, bound: int, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """`rope_cos_sin` at integer positions in 0..bound-1, looked up in a table kept per (D, base,
    dtype, device) and grown by doubling, so a cache that writes a new position every step pays
    no float64 trigonometry for it. Beyond TABLE_POSITIONS (a stream longer than any context) the
    angles are computed, so the table's memory stays bounded."""
    if bound > TABLE_POSITIONS:
        return rope_cos_sin(positions, head_dim, base, dtype)
    key = (head_dim, float(base), dtype, positions.device)
    table = _TABLES.get(key)
    if table is None or len(table[0]) < bound:
        size = min(TABLE_POSITIONS, max(1024, 1 << (bound - 1).bit_length()))
        table = _TABLES[key] = rope_cos_sin(torch.arange(size, device=positions.device), head_dim, base, dtype)
    return table[0][positions], table[1][positions]


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
    cos and sin come from `rope_cos_sin_at`'s table, so a new position costs no trigonometry."""
    at = torch.tensor([position], device=device)
    cos, sin = (t[0] for t in rope_cos_sin_at(at, position + 1, head_dim, base, dtype))  # (D,) each
    rotate_half_matrix = _rotate_half_matrix(head_dim, dtype, torch.device(device))
    return torch.diag(cos) + rotate_half_matrix * sin  # x cos + rotate_half(x) sin
