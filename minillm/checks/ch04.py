"""Checkers for chapter 04 (LM-Infinite: the Λ-shaped mask, the distance limit, blockwise attention)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import masks
from ..attention import distance_limit
from ..fast_cache import FastCache
from ..kv_cache import KVCache
from ..lambda_attention import block_keys, lambda_attention
from ..rope import apply_rope
from .ch02 import _tiny_model, draw_mask_mod
from .core import CheckFailed, CheckResult, feed_cache, random_tensors, run_check, tensor_result

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
    return random_tensors(seed, *[(B, H, T, D)] * 3)


def _long(x, name: str) -> torch.Tensor:
    x = tensor_result(x, name)
    if x.dtype.is_floating_point or x.dtype == torch.bool:
        raise CheckFailed(f"{name} returned a {x.dtype} tensor: counts and indices must be integers (a LongTensor)")
    return x.long()


def check_lambda_mask(lambda_mask: Callable, hint: int | None = None) -> CheckResult:
    """lambda_mask(n_global, n_local) -> a mask_mod(b, h, q_idx, kv_idx), drawn with masks.materialize."""
    return run_check(
        "lambda_mask",
        lambda n_global, n_local, n: draw_mask_mod(lambda_mask(n_global, n_local), n, "lambda_mask"),
        lambda n_global, n_local, n: masks.materialize(masks.lambda_shaped(n_global, n_local), n),
        [(1, 1, 6), (0, 5, 20), (3, 8, 32), (10, 4, 30), (40, 8, 30)],
        hints=(
            "row q is True for two groups of keys, never in the future: the first n_global keys, and the "
            "n_local most recent keys counting the query itself (so n_local = 1 is the query alone)",
            "causality AND (global OR recent), all with tensor operators: a key is recent when its distance "
            "to the query is strictly below n_local, and global when its index is strictly below n_global; "
            "the causal condition must hold for the global keys too",
        ),
        level=hint,
        describe=lambda c: f"n_global={c[0]}, n_local={c[1]}, {c[2]} tokens",
    )


def check_keys_per_query(keys_per_query: Callable, hint: int | None = None) -> CheckResult:
    """keys_per_query(T, n_global, n_local) -> LongTensor (T,): keys each query sees under the Λ."""
    return run_check(
        "keys_per_query",
        lambda T, g, n_local: _long(keys_per_query(T, g, n_local), "keys_per_query"),
        lambda T, g, n_local: masks.materialize(masks.lambda_shaped(g, n_local), T).sum(-1),
        [(6, 10, 4), (20, 0, 5), (32, 3, 8), (50, 40, 8), (300, 10, 128)],
        hints=(
            "entry i counts the True entries of row i of the Λ mask: the recent keys (itself included, at most "
            "n_local) plus the global keys that are not already among them; a global key inside the window "
            "counts once, and there are never more than i + 1 keys",
            "the window of query i starts at max(0, i - n_local + 1); only the global keys before that start "
            "are extra, and there are at most n_global of them. Work on torch.arange(T) with clamp/minimum "
            "and return integers",
        ),
        level=hint,
        describe=lambda c: f"T={c[0]}, n_global={c[1]}, n_local={c[2]}",
    )


def _limited_scores(q, k, limit, base=10000.0):
    pos = torch.arange(q.shape[2])
    far = distance_limit(pos, pos, limit)
    D = q.shape[-1]
    near = apply_rope(q, pos, base) @ apply_rope(k, pos, base).transpose(-2, -1) / D**0.5
    pinned = apply_rope(q, far["far_q_pos"], base) @ apply_rope(k, far["far_k_pos"], base).transpose(-2, -1) / D**0.5
    return torch.where(far["far"], pinned, near)


def check_limited_scores(limited_scores: Callable, hint: int | None = None) -> CheckResult:
    """limited_scores(q, k, limit, base) -> scores (B, H, T, T) with every distance above `limit` set to it."""
    cases = [(*_qkv(0, 1, 1, 6, 4)[:2], 2, 10000.0), (*_qkv(1, 1, 1, 12, 8)[:2], 4, 10000.0)]
    cases += [(*_qkv(2, 1, 2, 30, 4)[:2], 1, 500.0), (*_qkv(3, 2, 3, 40, 16)[:2], 10, 10000.0)]
    cases += [(*_qkv(4, 1, 1, 9, 8)[:2], 50, 10000.0)]
    return run_check(
        "limited_scores",
        lambda *c: tensor_result(limited_scores(*c), "limited_scores"),
        _limited_scores,
        cases,
        hints=(
            "every (query i, key j) pair gets a RoPE score divided by sqrt(D), the whole (T, T) grid with no "
            "mask (j > i included, at their true negative distance); only pairs with i - j > limit change: they "
            "must score as if exactly `limit` apart, using the given base",
            "two score grids and a choice per pair: the ordinary one (both rotated at their own positions) and "
            "a far one in which every query is rotated by `limit` and the keys are not rotated at all; choose "
            "the far one only where i - j exceeds limit",
        ),
        level=hint,
        describe=lambda c: f"q {tuple(c[0].shape)}, limit {c[2]}, base {c[3]}",
    )


def check_lambda_attention(attention: Callable, hint: int | None = None) -> CheckResult:
    """attention(q, k, v, n_global, n_local, limit) -> (B, H, T, D): Λ mask + distance limit, like the package."""
    cases = [
        (*_qkv(0, 1, 1, 10, 8), 2, 4, 4),
        (*_qkv(1, 1, 2, 12, 8), 1, 6, 3),  # limit < n_local: recent keys are pinned too
        (*_qkv(2, 1, 1, 20, 8), 2, 4, 8),  # limit > n_local: only the global keys are far
        (*_qkv(3, 2, 2, 60, 16), 3, 16, 16),
        (*_qkv(4, 1, 3, 40, 8), 0, 8, 12),
    ]
    return run_check(
        "lambda_attention",
        lambda *c: tensor_result(attention(*c), "lambda_attention_dense"),
        lambda q, k, v, g, n_local, limit: lambda_attention(q, k, v, g, n_local, limit),
        cases,
        hints=(
            "the output is softmax attention over the keys that the Λ mask allows (n_global, n_local), with "
            "the distance-limited scores of exercise 3 (limit); n_local and limit are separate numbers: the "
            "cases with limit != n_local show which one is used where",
            "three steps: the limited scores for `limit`, minus infinity wherever lambda_mask(n_global, "
            "n_local) is False (draw it as a bool (T, T) tensor), then a softmax over the key axis and the "
            "weighted sum of v",
        ),
        level=hint,
        describe=lambda c: f"T={c[0].shape[2]}, n_global={c[3]}, n_local={c[4]}, limit={c[5]}",
    )


def check_block_keys(block_keys_fn: Callable, hint: int | None = None) -> CheckResult:
    """block_keys(start, stop, n_global, n_local) -> LongTensor of the key indices a query block needs."""
    cases = [(5, 6, 10, 4), (0, 8, 3, 8), (8, 16, 3, 8), (16, 24, 3, 8), (40, 50, 0, 8), (100, 128, 10, 32)]
    return run_check(
        "block_keys",
        lambda *c: _long(block_keys_fn(*c), "block_keys"),
        lambda *c: block_keys(*c),
        cases,
        hints=(
            "increasing key indices, each once: the global keys that lie before the first query's window, then "
            "every key from that window's start through the last query (stop - 1); no key after stop - 1, and "
            "no global key twice",
            "the first query (start) sees back to max(0, start - n_local + 1); the global keys are the indices "
            "below both n_global and that start; join the two integer ranges, globals first",
        ),
        level=hint,
        describe=lambda c: f"queries {c[0]}..{c[1] - 1}, n_global={c[2]}, n_local={c[3]}",
    )


def check_unfixed_factors(unfixed_factors: Callable, hint: int | None = None) -> CheckResult:
    """unfixed_factors(variant) -> the set of LM-Infinite factors (1, 2, 3) the variant leaves unfixed."""

    def student(variant):
        got = unfixed_factors(variant)
        if not isinstance(got, (set, frozenset)):
            raise CheckFailed(f"unfixed_factors must return a set of factor numbers, got {type(got).__name__}")
        if not all(isinstance(f, int) and not isinstance(f, bool) for f in got):
            raise CheckFailed(f"the factors are the ints 1, 2, 3, got {sorted(map(repr, got))}")
        return set(got)

    return run_check(
        "unfixed_factors",
        student,
        lambda variant: UNFIXED[variant],
        [(v,) for v in UNFIXED],
        hints=(
            "for each variant ask three questions: can a query meet a distance longer than training "
            "(factor 1)? can it see more keys than in training (factor 2)? are the first tokens hidden from it "
            "(factor 3)? The set holds the numbers answered yes; an empty set is allowed",
            "a window bounds both the distances and the key count; the limit bounds only the distances; the Λ "
            "bounds the key count and keeps the first tokens; StreamingLLM's positions inside the cache never "
            "exceed the cache size",
        ),
        level=hint,
        describe=lambda c: f"variant {c[0]!r}",
    )


def check_lambda_cache(make_cache: Callable[[int, int, int], KVCache], hint: int | None = None) -> CheckResult:
    """make_cache(n_global, n_local, limit) -> a KVCache of the learner's own whose logits, fed one
    token at a time or in chunks, equal one forward under the Λ with the distance limit, holding
    after each step only the entries a later query can still see, and no fewer."""
    model = _tiny_model()
    ids = torch.randint(0, 256, (18,), generator=torch.Generator().manual_seed(4))

    def reference(n_global, n_local, limit):
        with torch.no_grad():
            mask_mod = masks.lambda_shaped(n_global, n_local)
            logits = model(ids[None], mask_mod=mask_mod, max_distance=limit).logits[0]
        # After step t the next query sees the first n_global tokens and the n_local - 1 before it;
        # every later query sees a subset of those and its own newer tokens.
        held = torch.tensor([min(t + 1, n_global + n_local - 1) for t in range(len(ids))])
        return logits, logits, held

    def student(n_global, n_local, limit):
        caches = [make_cache(n_global, n_local, limit) for _ in range(2)]
        for cache in caches:
            if isinstance(cache, FastCache) or not isinstance(cache, KVCache):
                raise CheckFailed(
                    f"make_cache must return your own subclass of KVCache, got {type(cache).__name__} "
                    "(the package's LambdaCache is the thing this exercise rebuilds)"
                )
        one_by_one, held = feed_cache(model, ids, caches[0])
        return one_by_one, feed_cache(model, ids, caches[1], chunk=5)[0], held

    return run_check(
        "lambda_cache", student, reference, [(1, 3, 3), (2, 4, 4), (3, 5, 2), (0, 4, 3), (2, 3, 6)],
        hints=(
            "item 0 compares your logits, token by token, with one forward under masks.lambda_shaped(n_global, "
            "n_local) and max_distance=limit; item 1 the same fed in chunks of 5 (so the mask matters, not only "
            "what the cache holds); item 2 counts the entries held after each step: an entry may leave only when "
            "no later query will see it",
            "a KVCache subclass sets, in __init__, the mask_mod a new query is checked against, the first entries "
            "kept for good (n_fixed) and how many recent ones survive a step (n_recent: the next query sees them "
            "and itself); far_pairs(q_pos, k_pos) returns which pairs are scored at another distance, as the "
            "lecture's distance_limit does",
        ),
        level=hint,
        describe=lambda c: f"n_global={c[0]}, n_local={c[1]}, limit={c[2]}, {len(ids)} tokens",
    )  # fmt: skip
