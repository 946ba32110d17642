"""Checkers for chapter 01 (dense attention, RoPE, the KV cache)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..attention import reference_attention
from ..rope import apply_rope
from .core import CheckFailed, CheckResult, random_tensors, run_check, tensor_result


def _qkv(seed: int, B: int, H: int, T: int, S: int, D: int) -> tuple[torch.Tensor, ...]:
    return random_tensors(seed, (B, H, T, D), (B, H, S, D), (B, H, S, D))


def _random_mask(seed: int, T: int, S: int) -> torch.Tensor:
    """Not causal, so only a function that uses the mask it is given gets it right; every row keeps a key."""
    mask = torch.rand(T, S, generator=torch.Generator().manual_seed(seed)) < 0.5
    mask[torch.arange(T), torch.arange(T) % S] = True
    return mask


def check_attention(attention: Callable, hint: int | None = None) -> CheckResult:
    """attention(q, k, v, mask) -> output (B, H, T, D), mask bool (T, S) or None."""
    cases = []
    for seed, (B, H, T, S, D, kind) in enumerate(
        [(1, 1, 3, 3, 8, None), (1, 2, 3, 7, 4, "causal"), (2, 3, 5, 5, 16, "causal"), (1, 2, 4, 6, 8, "random")]
    ):
        q, k, v = _qkv(seed, B, H, T, S, D)
        mask = {None: None, "causal": torch.ones(T, S, dtype=torch.bool).tril(S - T), "random": None}[kind]
        if kind == "random":
            mask = _random_mask(seed, T, S)
        cases.append((q, k, v, mask, kind))
    return run_check(
        "attention",
        lambda q, k, v, m, kind: tensor_result(attention(q, k, v, m), "attention"),
        lambda q, k, v, m, kind: reference_attention(q, k, v, m)[0],
        cases,
        hints=(
            "each output row is a weighted average of the value rows, with weights from a softmax over the "
            "keys (the last axis of the scores) of the query-key dot products divided by sqrt(D), D the head "
            "dimension; keys where the given mask is False get weight exactly 0 (the last case's mask is "
            "not causal: use the mask you are given)",
            "the scores are (B, H, T, S): q times k with its last two axes swapped. The scale is the square "
            "root of q's last dimension, not of T or S. A masked key needs a score of minus infinity before "
            "the softmax (a score of 0 still gets weight); ~mask selects the keys to hide",
        ),
        level=hint,
        describe=lambda c: f"q {tuple(c[0].shape)}, k {tuple(c[1].shape)}, mask {c[4] or 'None'}",
    )


def check_causal_mask(causal_mask: Callable[[int, int], torch.Tensor], hint: int | None = None) -> CheckResult:
    """causal_mask(T, S): the last T of S tokens are the queries; True where query may see key."""
    return run_check(
        "causal_mask",
        lambda T, S: tensor_result(causal_mask(T, S), "causal_mask"),
        lambda T, S: torch.ones(T, S, dtype=torch.bool).tril(S - T),
        [(1, 1), (1, 6), (4, 4), (3, 8), (5, 5), (2, 9)],
        hints=(
            "a bool (T, S) tensor: row i is query i, which is token S - T + i, so it sees keys 0 .. S - T + i "
            "(itself included). With T < S the last row is all True and the first row has S - T + 1 Trues",
            "a lower-triangular matrix whose diagonal is shifted right by S - T (torch.tril takes that shift "
            "as its diagonal argument); tril of a square matrix with no shift is what is_causal=True does, and "
            "it is wrong when T < S. Make the dtype torch.bool",
        ),
        level=hint,
        describe=lambda c: f"T={c[0]}, S={c[1]}",
    )


def check_rope(rope: Callable, hint: int | None = None) -> CheckResult:
    """rope(x, positions, base) rotates x (..., T, D) at positions (T,) like minillm.rope.apply_rope."""
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.randn(1, 1, 1, 4, generator=g, dtype=torch.float64), torch.tensor([1]), 10000.0),
        (torch.randn(1, 1, 4, 8, generator=g, dtype=torch.float64), torch.arange(4), 10000.0),
        (torch.randn(1, 2, 3, 4, generator=g, dtype=torch.float64), torch.arange(3) + 10, 500.0),
        (torch.randn(2, 3, 5, 16, generator=g, dtype=torch.float64), torch.tensor([0, 7, 100, 3, 5000]), 10000.0),
        (torch.randn(1, 1, 3, 8, generator=g), torch.tensor([4000, 60000, 3]), 10000.0),  # float32 x
    ]
    return run_check(
        "rope",
        lambda x, p, b: tensor_result(rope(x, p, b), "rope"),
        apply_rope,
        cases,
        hints=(
            "channel i (i < D/2) and channel i + D/2 form a pair, rotated by the angle position × base^(-2i/D); "
            "position 0 leaves x unchanged, and the positions are the ones given (not 0..T-1), the base too. "
            "Large positions (60000) need the angles in float64",
            "build the D/2 frequencies from base, an outer product of positions and frequencies gives the "
            "angles (T, D/2); take their cos and sin, repeat each for both halves of the last axis, and combine "
            "x·cos with the half-swapped x, (−second half, first half), times sin",
        ),
        level=hint,
        describe=lambda c: f"x {tuple(c[0].shape)} {str(c[0].dtype)[6:]}, positions {c[1].tolist()}, base {c[2]}",
    )


def _cache_cases(sizes: list[tuple[int, int]]) -> list[tuple[torch.Tensor, ...]]:
    """(k_cache, v_cache, q, k, v) for each (cached tokens, new tokens) in `sizes`."""
    cases = []
    for seed, (S, T) in enumerate(sizes):
        q, k, v = _qkv(seed, 1, 2, T, T, 8)
        k_cache, v_cache = _qkv(seed + 10, 1, 2, S, S, 8)[1:]
        cases.append((k_cache, v_cache, q, k, v))
    return cases


def _after_the_cache(k_cache, v_cache, q, k, v) -> tuple[torch.Tensor, ...]:
    """The new tokens' rows of one causal forward over cache + new tokens, and the grown caches."""
    k_all, v_all = torch.cat([k_cache, k], dim=2), torch.cat([v_cache, v], dim=2)
    T, S = q.shape[2], k_all.shape[2]
    return reference_attention(q, k_all, v_all, torch.ones(T, S, dtype=torch.bool).tril(S - T))[0], k_all, v_all


def _step_result(result: object, name: str) -> tuple[torch.Tensor, ...]:
    if not isinstance(result, tuple) or len(result) != 3:
        raise CheckFailed(f"{name} must return a tuple (out, k_cache, v_cache)")
    return tuple(tensor_result(x, f"{name}'s {part}") for part, x in zip(("out", "k_cache", "v_cache"), result))


def check_decode_step(decode_step: Callable, hint: int | None = None) -> CheckResult:
    """decode_step(k_cache, v_cache, q, k, v) -> (out, k_cache, v_cache): append then attend."""
    return run_check(
        "decode_step",
        lambda *case: _step_result(decode_step(*case), "decode_step"),
        _after_the_cache,
        _cache_cases([(0, 1), (1, 1), (6, 1)]),
        hints=(
            "after the step the caches hold one more token, the new one LAST (shape (B, H, S + 1, D)), and "
            "the output is the new query attending over all S + 1 keys, its own included; item 0 is the "
            "output, items 1 and 2 the grown caches",
            "join along the token axis (dim 2 of (B, H, S, D)), cache first then the new token; then attend "
            "with no mask at all: a causal mask built as if the query were token 0 would hide the cache",
        ),
        level=hint,
        describe=lambda c: f"{c[0].shape[2]} cached tokens",
    )


def check_cached_attention(cached_attention: Callable, hint: int | None = None) -> CheckResult:
    """cached_attention(k_cache, v_cache, q, k, v) with T >= 1 new tokens -> (out, k_cache, v_cache):
    out is what the same T tokens' rows of one causal forward over all S = cached + T tokens give."""
    return run_check(
        "cached_attention",
        lambda *case: _step_result(cached_attention(*case), "cached_attention"),
        _after_the_cache,
        _cache_cases([(0, 1), (3, 1), (0, 4), (5, 3), (2, 6)]),
        hints=(
            "compare with one causal forward over all S tokens: there, new token i (token S - T + i) sees every "
            "cached token and the new tokens up to itself, never a later new one; the caches afterwards hold all "
            "S tokens in stream order. With one new token any answer that attends over everything passes, so "
            "look at a case with several",
            "the step needs a mask of shape (T, S) as soon as T > 1. The one is_causal=True builds puts the "
            "triangle at the top-left, as if the new tokens were the first ones, and hides the cache from them; "
            "exercise 2 built the mask for queries that come after a cache",
        ),
        level=hint,
        describe=lambda c: f"{c[0].shape[2]} cached tokens, {c[2].shape[2]} new",
    )
