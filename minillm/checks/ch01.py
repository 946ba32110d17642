"""Checkers for chapter 01 (dense attention, RoPE, the KV cache)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import reference_attention
from ..rope import apply_rope
from .core import CheckFailed, run_check


def _qkv(seed: int, B: int, H: int, T: int, S: int, D: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(B, H, T, D, generator=g, dtype=torch.float64),
        torch.randn(B, H, S, D, generator=g, dtype=torch.float64),
        torch.randn(B, H, S, D, generator=g, dtype=torch.float64),
    )


def check_attention(attention: Callable) -> bool:
    """attention(q, k, v, mask) -> output (B, H, T, D), mask bool (T, S) or None."""
    cases = []
    for seed, (B, H, T, S, D) in enumerate([(1, 1, 4, 4, 8), (2, 3, 5, 5, 16), (1, 2, 3, 7, 4)]):
        q, k, v = _qkv(seed, B, H, T, S, D)
        mask = None if seed == 0 else torch.ones(T, S, dtype=torch.bool).tril(S - T)
        cases.append((q, k, v, mask))
    return run_check(
        "attention",
        attention,
        lambda q, k, v, m: reference_attention(q, k, v, m)[0],
        cases,
        hint="scores = q @ k.transpose(-2, -1) / sqrt(D); masked_fill(~mask, -inf); softmax(dim=-1); @ v",
        describe=lambda c: f"q {tuple(c[0].shape)}, k {tuple(c[1].shape)}, mask {'None' if c[3] is None else 'causal'}",
    )


def check_causal_mask(causal_mask: Callable[[int, int], torch.Tensor]) -> bool:
    """causal_mask(T, S): the last T of S tokens are the queries; True where query may see key."""
    return run_check(
        "causal_mask",
        causal_mask,
        lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T),
        [(4, 4), (1, 6), (3, 8), (5, 5)],
        hint="query i is token S - T + i, so it sees keys j <= S - T + i: torch.ones(T, S).tril(S - T), as bool",
        describe=lambda c: f"T={c[0]}, S={c[1]}",
    )


def check_rope(rope: Callable) -> bool:
    """rope(x, positions, base) rotates x (..., T, D) at positions (T,) like minillm.rope.apply_rope."""
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.randn(1, 1, 4, 8, generator=g, dtype=torch.float64), torch.arange(4), 10000.0),
        (torch.randn(2, 3, 5, 16, generator=g, dtype=torch.float64), torch.tensor([0, 7, 100, 3, 5000]), 10000.0),
        (torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64), torch.arange(3) + 10, 500.0),
    ]
    return run_check(
        "rope",
        rope,
        apply_rope,
        cases,
        hint="theta_i = base ** (-2i/D); angles = pos[:, None] * theta; pair i is channels i and i + D/2: "
        "x * cos + cat(-x2, x1) * sin with cos, sin repeated twice along the last dim",
        describe=lambda c: f"x {tuple(c[0].shape)}, positions {c[1].tolist()}, base {c[2]}",
    )


def check_decode_step(decode_step: Callable) -> bool:
    """decode_step(k_cache, v_cache, q, k, v) -> (out, k_cache, v_cache): append then attend."""

    def reference(k_cache, v_cache, q, k, v):
        k_all, v_all = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
        return reference_attention(q, k_all, v_all)[0], k_all, v_all

    def student(k_cache, v_cache, q, k, v):
        result = decode_step(k_cache, v_cache, q, k, v)
        if not isinstance(result, tuple) or len(result) != 3:
            raise CheckFailed("decode_step must return a tuple (out, k_cache, v_cache)")
        return result

    cases = []
    for seed, S in enumerate([0, 1, 6]):
        q, k, v = _qkv(seed, 1, 2, 1, 1, 8)
        k_cache, v_cache = _qkv(seed + 10, 1, 2, S, S, 8)[1:]
        cases.append((k_cache, v_cache, q, k, v))
    return run_check(
        "decode_step",
        student,
        reference,
        cases,
        hint="torch.cat the new k and v to the caches along the token dim (dim=2), then attend with no mask: "
        "the new token may see every cached token and itself",
        describe=lambda c: f"{c[0].shape[2]} cached tokens",
    )
