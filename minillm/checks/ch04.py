"""Checkers for chapter 04 (LM-Infinite: the Λ-shaped mask, the distance limit, blockwise attention)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import masks
from ..attention import distance_limit
from ..lambda_attention import block_keys, lambda_attention
from ..rope import apply_rope
from .core import CheckFailed, run_check

# The three out-of-distribution factors of LM-Infinite, and which each attention variant leaves unfixed.
FACTORS = {1: "unseen distances", 2: "more tokens than ever seen", 3: "the starting tokens are missing"}
UNFIXED = {
    "dense": {1, 2},
    "window only": {3},
    "Λ, no limit": {1},
    "limit, no Λ": {2},
    "Λ + limit": set(),
    "StreamingLLM": set(),
}


def _qkv(seed: int, B: int, H: int, T: int, D: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, T, D, generator=g, dtype=torch.float64) for _ in range(3))


def _tensor(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{name} must return a tensor, got {type(x).__name__}")
    return x


def check_lambda_mask(lambda_mask: Callable) -> bool:
    """lambda_mask(n_global, n_local) -> a mask_mod(b, h, q_idx, kv_idx), drawn with masks.materialize."""

    def student(n_global, n_local, n):
        mask_mod = lambda_mask(n_global, n_local)
        if not callable(mask_mod):
            raise CheckFailed(f"lambda_mask must return a mask_mod (a function), got {type(mask_mod).__name__}")
        return _tensor(masks.materialize(mask_mod, n), "the mask_mod")

    return run_check(
        "lambda_mask",
        student,
        lambda n_global, n_local, n: masks.materialize(masks.lambda_shaped(n_global, n_local), n),
        [(3, 8, 32), (0, 5, 20), (1, 1, 6), (10, 4, 30), (40, 8, 30)],
        hint="causal (q_idx >= kv_idx) AND (kv_idx < n_global OR q_idx - kv_idx < n_local): n_local counts "
        "the query itself, so use a strict <",
        describe=lambda c: f"n_global={c[0]}, n_local={c[1]}, {c[2]} tokens",
    )


def check_keys_per_query(keys_per_query: Callable) -> bool:
    """keys_per_query(T, n_global, n_local) -> LongTensor (T,): keys each query sees under the Λ."""
    return run_check(
        "keys_per_query",
        lambda T, g, n_local: _tensor(keys_per_query(T, g, n_local), "keys_per_query").long(),
        lambda T, g, n_local: masks.materialize(masks.lambda_shaped(g, n_local), T).sum(-1),
        [(32, 3, 8), (20, 0, 5), (6, 10, 4), (300, 10, 128), (50, 40, 8)],
        hint="query i sees min(i + 1, n_local) recent keys, plus the global keys before its window starts: "
        "min(n_global, max(0, i - n_local + 1))",
        describe=lambda c: f"T={c[0]}, n_global={c[1]}, n_local={c[2]}",
    )


def _limited_scores(q, k, limit, base=10000.0):
    pos = torch.arange(q.shape[2])
    far = distance_limit(pos, pos, limit)
    D = q.shape[-1]
    near = apply_rope(q, pos, base) @ apply_rope(k, pos, base).transpose(-2, -1) / D**0.5
    pinned = apply_rope(q, far["far_q_pos"], base) @ apply_rope(k, far["far_k_pos"], base).transpose(-2, -1) / D**0.5
    return torch.where(far["far"], pinned, near)


def check_limited_scores(limited_scores: Callable) -> bool:
    """limited_scores(q, k, limit, base) -> scores (B, H, T, T) with every distance above `limit` set to it."""
    cases = [(*_qkv(0, 1, 1, 12, 8)[:2], 4, 10000.0), (*_qkv(1, 2, 3, 40, 16)[:2], 10, 10000.0)]
    cases += [(*_qkv(2, 1, 2, 30, 4)[:2], 1, 500.0), (*_qkv(3, 1, 1, 9, 8)[:2], 50, 10000.0)]
    return run_check(
        "limited_scores",
        lambda *c: _tensor(limited_scores(*c), "limited_scores"),
        _limited_scores,
        cases,
        hint="near pairs: rope(q, pos) @ rope(k, pos).T / sqrt(D). Far pairs (i - j > limit): the query rotated "
        "by `limit`, the key not rotated at all (position 0). Pick with torch.where(i - j > limit, far, near)",
        describe=lambda c: f"q {tuple(c[0].shape)}, limit {c[2]}, base {c[3]}",
    )


def check_lambda_attention(attention: Callable) -> bool:
    """attention(q, k, v, n_global, n_local, limit) -> (B, H, T, D): Λ mask + distance limit, like the package."""
    cases = [(*_qkv(0, 1, 1, 10, 8), 2, 4, 4), (*_qkv(1, 2, 2, 60, 16), 3, 16, 16), (*_qkv(2, 1, 3, 40, 8), 0, 8, 12)]
    return run_check(
        "lambda_attention",
        lambda *c: _tensor(attention(*c), "lambda_attention_dense"),
        lambda q, k, v, g, n_local, limit: lambda_attention(q, k, v, g, n_local, limit),
        cases,
        hint="scores = limited_scores(q, k, limit); masked_fill where the Λ mask is False with -inf; "
        "softmax over keys; @ v",
        describe=lambda c: f"T={c[0].shape[2]}, n_global={c[3]}, n_local={c[4]}, limit={c[5]}",
    )


def check_block_keys(block_keys_fn: Callable) -> bool:
    """block_keys(start, stop, n_global, n_local) -> LongTensor of the key indices a query block needs."""
    cases = [(16, 24, 3, 8), (0, 8, 3, 8), (8, 16, 3, 8), (100, 128, 10, 32), (5, 6, 10, 4), (40, 50, 0, 8)]
    return run_check(
        "block_keys",
        lambda *c: _tensor(block_keys_fn(*c), "block_keys").long(),
        lambda *c: block_keys(*c),
        cases,
        hint="the first query's window starts at max(0, start - n_local + 1); take the global keys before it "
        "(arange(min(n_global, that start))), then every key from there to stop - 1, in increasing order",
        describe=lambda c: f"queries {c[0]}..{c[1] - 1}, n_global={c[2]}, n_local={c[3]}",
    )


def check_unfixed_factors(unfixed_factors: Callable) -> bool:
    """unfixed_factors(variant) -> the set of LM-Infinite factors (1, 2, 3) the variant leaves unfixed."""

    def student(variant):
        got = unfixed_factors(variant)
        if not isinstance(got, (set, frozenset, list, tuple)):
            raise CheckFailed(f"unfixed_factors must return a set of factor numbers, got {type(got).__name__}")
        return {int(f) for f in got}

    return run_check(
        "unfixed_factors",
        student,
        lambda variant: UNFIXED[variant],
        [(v,) for v in UNFIXED],
        hint="factor 1 is fixed when no distance exceeds the training context (a window, the limit, or "
        "StreamingLLM's positions inside the cache); factor 2 when a query sees a bounded number of keys; "
        "factor 3 when the first tokens stay visible",
        describe=lambda c: f"variant {c[0]!r}",
    )
