"""Scaled dot-product attention, explicit and fast, with RoPE applied at explicit positions.

The explicit path is the one to read: scores, a boolean mask, softmax, a weighted sum of values.
It can return its weights (for pictures) and supports LM-Infinite's distance limit. The fast path
hands the same computation to `F.scaled_dot_product_attention`; a test checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .rope import apply_rope, rope_cos_sin, rotate


@dataclass
class AttentionStep:
    """Where this forward's queries and keys sit, and which keys each query may see.

    q_pos (T,) and k_pos (S,) are RoPE positions. mask is a bool (T, S) tensor (True = may
    attend), or None with is_causal telling whether to apply the causal rule (T == S).
    max_distance, when set, is LM-Infinite's distance limit: a pair farther apart than it is
    scored as if it sat exactly max_distance apart.
    """

    q_pos: torch.Tensor
    k_pos: torch.Tensor
    mask: torch.Tensor | None = None
    is_causal: bool = False
    max_distance: int | None = None

    def __post_init__(self) -> None:
        self._rotations: dict = {}  # every layer rotates at the same positions: compute once

    def rotations(self, head_dim: int, base: float, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """(cos_q, sin_q, cos_k, sin_k) of RoPE at q_pos and k_pos, cached for the step."""
        key = (head_dim, base, dtype)
        if key not in self._rotations:
            self._rotations[key] = (
                *rope_cos_sin(self.q_pos, head_dim, base, dtype),
                *rope_cos_sin(self.k_pos, head_dim, base, dtype),
            )
        return self._rotations[key]

    def full_mask(self) -> torch.Tensor | None:
        """The mask as a bool (T, S) tensor, or None when every key is visible."""
        if self.is_causal:
            T, S = len(self.q_pos), len(self.k_pos)
            return torch.ones(T, S, dtype=torch.bool, device=self.q_pos.device).tril(S - T)
        return self.mask


def softmax_attention(
    scores: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked softmax over keys, then the weighted sum of values. Returns (out, weights).

    scores (B, H, T, S), v (B, H, S, D), mask bool broadcastable to (B, H, T, S).
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, H, T, S); rows sum to 1
    return weights @ v, weights  # (B, H, T, D)


def reference_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(D) + mask) v, explicitly. q (B,H,T,D), k and v (B,H,S,D)."""
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, S)
    return softmax_attention(scores, v, mask)


def rope_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    step: AttentionStep,
    rope_base: float,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of un-rotated q (B,H,T,D) over un-rotated k, v (B,H,S,D) placed by `step`.

    Returns (out (B, H, T, D), weights (B, H, T, S) or None).
    """
    cos_q, sin_q, cos_k, sin_k = step.rotations(q.shape[-1], rope_base, q.dtype)
    q_rot, k_rot = rotate(q, cos_q, sin_q), rotate(k, cos_k, sin_k)
    if step.max_distance is None and not return_weights:
        out = F.scaled_dot_product_attention(q_rot, k_rot, v, attn_mask=step.mask, is_causal=step.is_causal)
        return out, None
    scores = q_rot @ k_rot.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, S)
    if step.max_distance is not None:
        # LM-Infinite: a far pair is scored at exactly max_distance. Since RoPE scores depend only
        # on the distance, that is the query rotated by max_distance against the un-rotated key.
        limit = step.max_distance
        q_far = apply_rope(q, torch.full_like(step.q_pos, limit), rope_base)
        far_scores = q_far @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, S)
        too_far = (step.q_pos[:, None] - step.k_pos[None, :]) > limit  # (T, S)
        scores = torch.where(too_far, far_scores, scores)
    out, weights = softmax_attention(scores, v, step.full_mask())
    return out, weights if return_weights else None
