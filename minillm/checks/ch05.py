"""Checkers for chapter 05 (Jacobi decoding and lookahead decoding)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from ..config import ModelConfig
from ..lookahead import NGramPool, Verdict, lookahead_layout, ngrams_from_window, verify_greedy
from ..model import MiniLLM
from .core import CheckFailed, run_check


def _tiny_model(seed: int = 0) -> MiniLLM:
    """A random float64 model, weights scaled up so its argmax does not repeat one token."""
    torch.manual_seed(seed)
    model = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


def _ints(x) -> list[int]:
    """A list of ints from a list or a 1-D tensor (what a learner may return)."""
    if isinstance(x, torch.Tensor):
        x = x.tolist()
    if not isinstance(x, (list, tuple)):
        raise CheckFailed(f"expected a list of token ids, got {type(x).__name__}")
    return [int(t) for t in x]


def check_jacobi_iteration(jacobi_iteration: Callable) -> bool:
    """jacobi_iteration(model, context, guess) -> the m tokens y'_i = argmax p(. | context, guess[:i])."""

    def reference(model, context, guess):
        with torch.no_grad():
            logits = model(torch.tensor([context + guess])).logits[0]  # (len(context) + m, V)
        return logits[len(context) - 1 : -1].argmax(-1).tolist()  # predictions after context[-1], y_0, ..., y_m-2

    model = _tiny_model()
    g = torch.Generator().manual_seed(5)
    cases = []
    for n_context, m in [(1, 1), (6, 4), (3, 8), (10, 5)]:
        context = torch.randint(0, 256, (n_context,), generator=g).tolist()
        cases.append((model, context, torch.randint(0, 256, (m,), generator=g).tolist()))
    return run_check(
        "jacobi_iteration",
        lambda model, context, guess: _ints(jacobi_iteration(model, context, guess)),
        reference,
        cases,
        hint="run model(torch.tensor([context + guess])) once, take argmax(-1) of the logits; the prediction "
        "for guess[i] is made at input position len(context) - 1 + i, so slice [len(context) - 1 : -1]",
        describe=lambda c: f"{len(c[1])} context tokens, a guess of m={len(c[2])}",
    )


def _pool_dict(pool) -> dict[int, list[tuple[int, ...]]]:
    if not isinstance(pool, dict):
        raise CheckFailed(f"the pool must stay a dict, got {type(pool).__name__}")
    return {int(k): [tuple(int(t) for t in tail) for tail in tails] for k, tails in pool.items() if len(tails)}


def _windows(seed: int, W: int, N: int, steps: int, vocab: int) -> list[tuple[int, list[list[int]], list[int]]]:
    """`steps` random (last, levels, new) triples: levels[0] has W-1 tokens, the N-2 others W."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    return [(draw(1)[0], [draw(W - 1)] + [draw(W) for _ in range(N - 2)], draw(W)) for _ in range(steps)]


def check_update_pool(update_pool: Callable) -> bool:
    """update_pool(pool, last, levels, new, guesses) adds one step's n-grams to a dict pool, LRU per key."""

    def reference(windows, N, G):
        return len(windows)

    def student(windows, N, G):
        """Run the learner's update step by step beside NGramPool; stop at the first difference."""
        pool, expected = {}, NGramPool(N, G)
        for step, (last, levels, new) in enumerate(windows):
            result = update_pool(pool, last, levels, new, G)
            if result is not None and result is not pool:
                pool = result  # returning a new dict is fine too
            for key, tail in ngrams_from_window(last, levels, new):
                expected.add(key, tail)
            got, want = _pool_dict(pool), {k: expected.get(k) for k in expected.keys() if expected.get(k)}
            for key in sorted(set(got) | set(want)):
                if got.get(key, []) != want.get(key, []):
                    raise CheckFailed(
                        f"after step {step} (last={last}, levels={levels}, new={new}), key {key} holds "
                        f"{got.get(key, [])} instead of {want.get(key, [])} (oldest first)"
                    )
        return len(windows)

    cases = [
        (_windows(0, 3, 3, 1, 50), 3, 4),  # one step, no collisions: every column adds one n-gram
        (_windows(1, 5, 4, 4, 4), 4, 2),  # few tokens: keys collide and the LRU drops the oldest
        (_windows(2, 4, 5, 6, 3), 5, 3),
        (_windows(3, 2, 3, 5, 2), 3, 1),
    ]
    return run_check(
        "update_pool",
        student,
        reference,
        cases,
        hint="column j's key is last for j = 0 and levels[0][j-1] after it; its tail is (levels[1][j], ..., "
        "levels[-1][j], new[j]). Adding a tail already there moves it to the end of the key's list; when a "
        "key holds more than `guesses` tails, drop the first (oldest)",
        describe=lambda c: f"{len(c[0])} steps, W={len(c[0][0][2])}, N={c[1]}, G={c[2]}",
    )


def check_verify(verify: Callable) -> bool:
    """verify(candidates, first, preds) -> (candidate, n_matched, tokens), as minillm.lookahead.verify_greedy."""

    def as_tuple(v):
        if isinstance(v, Verdict):
            v = dataclasses.astuple(v)
        if not isinstance(v, tuple) or len(v) != 3:
            raise CheckFailed(f"return a tuple (candidate, n_matched, tokens), got {type(v).__name__}")
        best, n, tokens = v
        return (None if best is None else int(best), int(n), _ints(tokens))

    g = torch.Generator().manual_seed(0)
    cases = [(torch.zeros(0, 3, dtype=torch.long), 7, torch.zeros(0, 3, dtype=torch.long))]  # an empty pool
    full = torch.tensor([[5, 6, 7], [5, 9, 9]])  # candidate 0 matches in full: N tokens settle
    cases.append((full, 5, torch.tensor([[6, 7, 8], [1, 2, 3]])))
    cases.append((torch.tensor([[1, 2], [3, 4]]), 9, torch.tensor([[2, 0], [4, 0]])))  # no match at all
    for G, m, vocab in [(4, 3, 3), (6, 4, 2), (3, 2, 3)]:  # small vocabularies: partial matches and ties
        cand = torch.randint(0, vocab, (G, m), generator=g)
        cases.append(
            (cand, int(torch.randint(0, vocab, (), generator=g)), torch.randint(0, vocab, (G, m), generator=g))
        )
    return run_check(
        "verify",
        lambda c, f, p: as_tuple(verify(c, f, p)),
        lambda c, f, p: as_tuple(verify_greedy(c, f, p)),
        cases,
        hint="the model's token at candidate position i is truth[i] = ([first] + preds[g])[i]; count the matched "
        "prefix, keep the first candidate with the longest one, settle its matched tokens + truth[n_matched]; "
        "with no candidates return (None, 0, [first])",
        describe=lambda c: f"candidates {c[0].tolist()}, first {c[1]}, preds {c[2].tolist()}",
    )


def check_lookahead_mask(lookahead_mask: Callable[[int, int, int], torch.Tensor]) -> bool:
    """lookahead_mask(W, N, G) -> bool (T, T), T = (N-1)*W + G*(N-1), equal to lookahead_layout's mask."""

    def student(W, N, G):
        mask = lookahead_mask(W, N, G)
        if not isinstance(mask, torch.Tensor):
            raise CheckFailed(f"return a bool tensor, got {type(mask).__name__}")
        return mask.bool()

    return run_check(
        "lookahead_mask",
        student,
        lambda W, N, G: lookahead_layout(W, N, G).mask.clone(),
        [(3, 2, 0), (4, 3, 0), (3, 3, 2), (5, 4, 2), (2, 5, 3), (1, 3, 1)],
        hint="give every token its level, column and candidate (-1 where none); a window token at (l, j) sees "
        "level 0 at columns <= j and levels 1..l at column j; candidate tokens see x and their own earlier "
        "tokens; everything sees x (index 0)",
        describe=lambda c: f"W={c[0]}, N={c[1]}, G={c[2]}",
    )
