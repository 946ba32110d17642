"""Scaled dot-product attention, explicit and fast, with RoPE applied at explicit positions.

The explicit path is the one to read: scores, a boolean mask, softmax, a weighted sum of values.
It can return its weights (for pictures) and supports LM-Infinite's distance limit. The fast path
hands the same computation to `F.scaled_dot_product_attention`; a test checks that they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from . import validate
from .rope import rope_cos_sin, rotate


@dataclass
class AttentionStep:
    """Where this forward's queries and keys sit, and which keys each query may see.

    q_pos (T,) and k_pos (S,) are RoPE positions. mask is a bool (T, S) tensor (True = may
    attend), or None with is_causal telling whether to apply the causal rule (T == S only).

    far (T, S) marks pairs scored at other positions, far_q_pos (T,) against far_k_pos (S,): a
    pair's RoPE score depends only on the distance, so this is how a pair is made to look closer
    than it is. LM-Infinite's distance limit (`distance_limit`) and StreamingLLM's sinks seen from
    inside the cache (`cache.SinkCache`) are both written this way.
    """

    q_pos: torch.Tensor
    k_pos: torch.Tensor
    mask: torch.Tensor | None = None
    is_causal: bool = False
    far: torch.Tensor | None = None
    far_q_pos: torch.Tensor | None = None
    far_k_pos: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.is_causal and len(self.q_pos) > len(self.k_pos):  # the first queries would see nothing
            raise ValueError(f"is_causal needs T <= S (queries <= keys), got T={len(self.q_pos)}, S={len(self.k_pos)}")
        if self.mask is not None:
            _check_mask("mask", self.mask, (len(self.q_pos), len(self.k_pos)))
        if self.far is not None and not self.far.any():
            self.far = None  # nothing to re-score: keep the fast path
        self._rotations: dict = {}  # every layer rotates at the same positions: compute once

    def rotations(self, head_dim: int, base: float, dtype: torch.dtype) -> dict[str, tuple[torch.Tensor, ...]]:
        """cos and sin of RoPE at each set of positions ("q", "k", "far_q", "far_k"), cached."""
        key = (head_dim, base, dtype)
        if key not in self._rotations:
            named = {"q": self.q_pos, "k": self.k_pos, "far_q": self.far_q_pos, "far_k": self.far_k_pos}
            self._rotations[key] = {
                name: rope_cos_sin(pos, head_dim, base, dtype) for name, pos in named.items() if pos is not None
            }
        return self._rotations[key]

    def full_mask(self) -> torch.Tensor | None:
        """The mask as a bool (T, S) tensor, or None when every key is visible."""
        if self.is_causal:
            T, S = len(self.q_pos), len(self.k_pos)
            return torch.ones(T, S, dtype=torch.bool, device=self.q_pos.device).tril(S - T)
        return self.mask


def _check_mask(name: str, mask: object, shape: tuple[int, ...] | None = None) -> None:
    """A bool mask (True = may attend) of `shape` (or broadcastable to the scores) in which every
    query row sees at least one key."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor (True = may attend), got {getattr(mask, 'dtype', type(mask))}")
    if shape is not None and tuple(mask.shape) != shape:
        raise ValueError(f"{name} must have shape (T, S) = {shape}, got {tuple(mask.shape)}")
    validate.check_mask_rows(name, mask)


DISTANCE_MODES = ("clamp", "reference")  # LM-Infinite's two distance rules (see distance_limit)


def distance_limit(
    q_pos: torch.Tensor, k_pos: torch.Tensor, limit: int, mode: str = "clamp", n_local: int | None = None
) -> dict[str, torch.Tensor]:
    """LM-Infinite's distance limit as AttentionStep fields: which pairs are far, scored at exactly
    `limit`, i.e. the query rotated by `limit` against the un-rotated key.

    "clamp" (the paper's formula): every pair more than `limit` apart. "reference" (the reference
    code's two branches): every pair at least `n_local` apart, i.e. outside the local window and
    so visible only if its key is global; pairs inside the window keep their true distance.
    """
    validate.check_choice("mode", mode, DISTANCE_MODES)
    distance = q_pos[:, None] - k_pos[None, :]  # (T, S)
    return {
        "far": distance > limit if mode == "clamp" else distance >= n_local,  # masked pairs are never read
        "far_q_pos": torch.full_like(q_pos, limit),
        "far_k_pos": torch.zeros_like(k_pos),
    }


def repeat_kv(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Grouped-query attention's sharing: (B, H_kv, S, D) -> (B, H, S, D), query head h reading
    key/value head h // (H // H_kv), as in Llama's `repeat_kv`. A no-op (same tensor) when H_kv = H."""
    if x.shape[1] == n_heads:
        return x
    return x.repeat_interleave(n_heads // x.shape[1], dim=1)


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
    """softmax(q k^T / sqrt(D) + mask) v, explicitly. q (B,H,T,D), k and v (B,H,S,D) (or any leading
    dims that broadcast, e.g. (T, D)), mask bool broadcastable to (B, H, T, S). NaN or inf in q, k, v
    and a query row that sees no key are refused."""
    validate.check_qkv(q, k, v, same_length=False, any_batch=True)
    if mask is not None:
        _check_mask("mask", mask)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, S)
    return softmax_attention(scores, v, mask)


def rope_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    step: AttentionStep,
    rope_base: float,
    return_weights: bool = False,
    *,
    check_inputs: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Attention of un-rotated q (B,H,T,D) over un-rotated k, v (B,H,S,D) placed by `step`.

    Returns (out (B, H, T, D), weights (B, H, T, S) or None). q, k, v must be finite (see
    `validate.check_finite`). The model's layers, its caches and `lambda_attention`'s blocks pass
    check_inputs=False: their q, k, v are their own activations, and on a GPU the check would
    stop the pipeline at every layer to read one number back.
    """
    if check_inputs:
        validate.check_qkv(q, k, v, same_length=False, any_batch=True)
        if not isinstance(step, AttentionStep):
            raise TypeError(f"step must be an AttentionStep, got {type(step).__name__}")
        if (len(step.q_pos), len(step.k_pos)) != (q.shape[-2], k.shape[-2]):
            raise ValueError(
                f"step's positions ({len(step.q_pos)}, {len(step.k_pos)}) must match q's T and k's S, "
                f"got T={q.shape[-2]}, S={k.shape[-2]}"
            )
    rot = step.rotations(q.shape[-1], rope_base, q.dtype)
    q_rot, k_rot = rotate(q, *rot["q"]), rotate(k, *rot["k"])
    if step.far is None and not return_weights:
        out = F.scaled_dot_product_attention(q_rot, k_rot, v, attn_mask=step.mask, is_causal=step.is_causal)
        return out, None
    scores = q_rot @ k_rot.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, S)
    if step.far is not None:  # re-score the far pairs at their stand-in positions
        far_scores = rotate(q, *rot["far_q"]) @ rotate(k, *rot["far_k"]).transpose(-2, -1) / q.shape[-1] ** 0.5
        scores = torch.where(step.far, far_scores, scores)  # (B, H, T, S)
    out, weights = softmax_attention(scores, v, step.full_mask())
    return out, weights if return_weights else None


def group_heads(x: torch.Tensor, n_kv_heads: int) -> torch.Tensor:
    """(B, H, T, D) -> (B, H_kv, G*T, D): the G = H / H_kv query heads that share a key/value head
    (grouped-query attention) as one batch of rows, so shared keys are read once, never repeated."""
    B, H, T, D = x.shape
    return x.reshape(B, n_kv_heads, (H // n_kv_heads) * T, D)


def stored_attention(
    q_near: torch.Tensor,
    q_far: torch.Tensor | None,
    views: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    far: list[torch.Tensor | bool | None],
    mask: torch.Tensor | None,
    n_queries: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention over keys stored already rotated, in pieces (`views`), as the fast caches keep them.

    q_near and q_far (B, H_kv, G*T, D) are the queries rotated and scaled, q_near for pairs at
    their distance, q_far for the far pairs; each view is (keys, far keys, values) (B, H_kv, S_i, D).
    far[i] says which of view i's pairs are far: None (none), True (all) or a bool (T, S_i).
    mask (T, S) over all views' keys in order, or None. Returns (out (B, H_kv, G*T, D), weights
    (B, H_kv, G*T, S)): the same softmax(q k^T) v as `rope_attention`, without re-rotating a key.
    """
    pieces = []
    for (k, k_far, _), is_far in zip(views, far, strict=True):
        if is_far is True:
            pieces.append(q_far @ k_far.transpose(-2, -1))
            continue
        s = q_near @ k.transpose(-2, -1)  # (B, H_kv, G*T, S_i)
        if is_far is not None:  # some pairs of this view are far: re-score them
            s_far = (q_far @ k_far.transpose(-2, -1)).unflatten(2, (-1, n_queries))
            s = torch.where(is_far, s_far, s.unflatten(2, (-1, n_queries))).flatten(2, 3)
        pieces.append(s)
    scores = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=-1)  # (B, H_kv, G*T, S)
    if mask is not None:  # rows are (head in group, query): the mask repeats for each head
        scores = scores.unflatten(2, (-1, n_queries)).masked_fill(~mask, float("-inf")).flatten(2, 3)
    weights = torch.softmax(scores, dim=-1)
    out, start = None, 0
    for _, _, v in views:
        part = weights[..., start : start + v.shape[2]] @ v  # (B, H_kv, G*T, D)
        out = part if out is None else out + part
        start += v.shape[2]
    return out, weights
