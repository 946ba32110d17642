"""Checkers for chapter 05 (Jacobi decoding and lookahead decoding)."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import torch

from ..config import ModelConfig
from ..lookahead import NGramPool, Verdict, lookahead_layout, ngrams_from_window, verify_greedy
from ..model import MiniLLM
from .core import CheckFailed, CheckResult, int_list_result, int_result, run_check


def _tiny_model(seed: int = 0) -> MiniLLM:
    """A random float64 model, weights scaled up so its argmax does not repeat one token."""
    torch.manual_seed(seed)
    model = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


def check_jacobi_iteration(jacobi_iteration: Callable, hint: int | None = None) -> CheckResult:
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
        lambda model, context, guess: int_list_result(jacobi_iteration(model, context, guess), "jacobi_iteration"),
        reference,
        cases,
        hints=(
            "return one token per guess token (m of them), each the model's argmax over the vocabulary, all from "
            "a single forward pass over the context followed by the guess",
            "the logits at input position t predict the token after position t: y'_0 comes from the row of the "
            "context's last token, y'_i from the row of guess[i-1]; the row of the guess's last token predicts "
            "nothing you need",
        ),
        describe=lambda c: f"{len(c[1])} context tokens, a guess of m={len(c[2])}",
        level=hint,
    )


def _pool_dict(pool: object, N: int) -> dict[int, list[tuple[int, ...]]]:
    """The learner's pool with its types checked: int keys, lists of (N-1)-tuples of ints."""
    if not isinstance(pool, dict):
        raise CheckFailed(f"the pool must stay a dict, got {type(pool).__name__}")
    for key, tails in pool.items():
        if type(key) is not int:
            raise CheckFailed(f"pool key {key!r} is a {type(key).__name__}: keys are token ids (int)")
        if not isinstance(tails, list):
            raise CheckFailed(f"pool[{key}] is a {type(tails).__name__}: each key holds a list of tails")
        for tail in tails:
            if not isinstance(tail, tuple):
                raise CheckFailed(f"pool[{key}] holds the tail {tail!r}, a {type(tail).__name__}: tails are tuples")
            if len(tail) != N - 1 or any(type(t) is not int for t in tail):
                raise CheckFailed(f"pool[{key}] holds the tail {tail!r}: a tail is N-1 = {N - 1} token ids (int)")
    return {key: list(tails) for key, tails in pool.items() if tails}


def _windows(seed: int, W: int, N: int, steps: int, vocab: int) -> list[tuple[int, list[list[int]], list[int]]]:
    """`steps` random (last, levels, new) triples: levels[0] has W-1 tokens, the N-2 others W."""
    g = torch.Generator().manual_seed(seed)

    def draw(n: int) -> list[int]:
        return torch.randint(0, vocab, (n,), generator=g).tolist()

    return [(draw(1)[0], [draw(W - 1)] + [draw(W) for _ in range(N - 2)], draw(W)) for _ in range(steps)]


def check_update_pool(update_pool: Callable, hint: int | None = None) -> CheckResult:
    """update_pool(pool, last, levels, new, guesses) adds one step's n-grams to a dict pool in place, LRU per key."""

    def reference(windows, N, G):
        return len(windows)

    def student(windows, N, G):
        """Run the learner's update step by step beside NGramPool; stop at the first difference."""
        pool, expected = {}, NGramPool(N, G)
        for step, (last, levels, new) in enumerate(windows):
            before = copy.deepcopy(pool)
            result = update_pool(pool, last, levels, new, G)
            for key, tail in ngrams_from_window(last, levels, new):
                expected.add(key, tail)
            want = {k: expected.get(k) for k in expected.keys() if expected.get(k)}
            if pool == before and want != _pool_dict(before, N):
                returned = f" and returned a new {type(result).__name__}" if result is not None else ""
                raise CheckFailed(
                    f"step {step} left `pool` as it was{returned}: change the dict you are given in place "
                    "(the decoder keeps using that one)"
                )
            got = _pool_dict(pool, N)
            for key in sorted(set(got) | set(want)):
                if got.get(key, []) != want.get(key, []):
                    raise CheckFailed(
                        f"after step {step} (last={last}, levels={levels}, new={new}), key {key} holds "
                        f"{got.get(key, [])} instead of {want.get(key, [])} (oldest first)"
                    )
        return len(windows)

    # W=4, N=3, G=2. Step 0: keys 7, 1, 7, 1 get tails (2, 2), (2, 3), (2, 2), (2, 3): each tail twice, kept once.
    # Step 1: key 7 gets (4, 4), (2, 2) again (it becomes the newest), then (5, 5), which drops (4, 4).
    repeats = [(7, [[1, 7, 1], [2, 2, 2, 2]], [2, 3, 2, 3]), (7, [[7, 7, 0], [4, 2, 5, 0]], [4, 2, 5, 0])]
    cases = [
        (_windows(0, 3, 3, 1, 50), 3, 4),  # one step, no collisions: every column adds one n-gram
        (repeats, 3, 2),
        (_windows(1, 5, 4, 4, 4), 4, 2),  # few tokens: keys collide and the LRU drops the oldest
        (_windows(4, 4, 3, 6, 2), 3, 3),  # two tokens: tails repeat all the time
        (_windows(2, 4, 5, 6, 3), 5, 3),
        (_windows(3, 2, 3, 5, 2), 3, 1),
        (_windows(5, 3, 3, 2, 4), 3, 0),  # no guesses: the pool stays empty (tails[-0:] keeps everything)
    ]
    return run_check(
        "update_pool",
        student,
        reference,
        cases,
        hints=(
            "compare your pool with the expected one after the step named above: each key's list runs oldest "
            "first, a tail appears at most once per key, and a key keeps at most `guesses` tails",
            "for each column, in order: find its key (the level-0 token before the column, `last` for column 0) "
            "and its tail (the column read down every level after the first, then new), a tuple; if the key's "
            "list already holds that tail, take it out; append it; if the list is now longer than `guesses`, drop "
            "its first element. Do all this in the dict you were passed",
        ),
        describe=lambda c: f"{len(c[0])} step{'s' if len(c[0]) > 1 else ''}, W={len(c[0][0][2])}, N={c[1]}, G={c[2]}",
        level=hint,
    )


def check_verify(verify: Callable, hint: int | None = None) -> CheckResult:
    """verify(candidates, first, preds) -> (candidate, n_matched, tokens), as minillm.lookahead.verify_greedy."""

    def as_tuple(v):
        if isinstance(v, Verdict):
            v = dataclasses.astuple(v)
        if not isinstance(v, tuple) or len(v) != 3:
            raise CheckFailed(f"return a tuple (candidate, n_matched, tokens), got {type(v).__name__}")
        best, n, tokens = v
        best = None if best is None else int_result(best, "the candidate index (item 0)")
        return (best, int_result(n, "n_matched (item 1)"), int_list_result(tokens, "the settled tokens (item 2)"))

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
        hints=(
            "n_matched is the length of the matching *prefix* (it stops at the first mismatch); among equal "
            "lengths the first candidate wins; the settled tokens always end with one token of the model's own",
            "candidate g's token i is right when it equals the model's token at that place, which is `first` "
            "for i = 0 and preds[g, i-1] after it; the token settled after the matched prefix is the model's token "
            "at the first mismatch (or after the whole candidate); with G = 0 only `first` is settled",
        ),
        describe=lambda c: f"candidates {c[0].tolist()}, first {c[1]}, preds {c[2].tolist()}",
        level=hint,
    )


def _token(W: int, N: int, index: int) -> str:
    """Where token `index` of one lookahead step sits: x, a window level and column, or a candidate's token."""
    if index == 0:
        return "x"
    if index < (N - 1) * W:
        return f"level {index // W}, column {index % W}"
    return f"candidate {(index - (N - 1) * W) // (N - 1)}, token {(index - (N - 1) * W) % (N - 1)}"


def check_lookahead_mask(
    lookahead_mask: Callable[[int, int, int], torch.Tensor], hint: int | None = None
) -> CheckResult:
    """lookahead_mask(W, N, G) -> bool (T, T), T = (N-1)*W + G*(N-1), equal to lookahead_layout's mask."""

    def student(W, N, G):
        mask = lookahead_mask(W, N, G)
        if not isinstance(mask, torch.Tensor):
            raise CheckFailed(f"return a bool tensor, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise CheckFailed(f"return a bool tensor, got dtype {mask.dtype}: attention negates the mask with ~")
        expected = lookahead_layout(W, N, G).mask
        if mask.shape == expected.shape and (mask != expected).any():
            q, k = (mask != expected).nonzero()[0].tolist()
            raise CheckFailed(
                f"{int((mask != expected).sum())} of {mask.numel()} entries differ; the first is mask[{q}, {k}] = "
                f"{bool(mask[q, k])}, should be {bool(expected[q, k])}: query {q} is {_token(W, N, q)}, "
                f"key {k} is {_token(W, N, k)}"
            )
        return mask

    return run_check(
        "lookahead_mask",
        student,
        lambda W, N, G: lookahead_layout(W, N, G).mask.clone(),
        [(3, 2, 0), (4, 3, 0), (3, 3, 2), (5, 4, 2), (2, 5, 3), (1, 3, 1)],
        hints=(
            "the first entry that differs names a (query, key) pair: find which level and column (or which "
            "candidate and token) each of the two is, then reread the rule for that pair",
            "give every token three labels (its level, its column or token index, its candidate; -1 where it has "
            "none), then decide each pair from the labels alone: window tokens read level 0 up to their own column "
            "and levels 1 up to their own in their own column; candidates read x and their own earlier tokens",
        ),
        describe=lambda c: f"W={c[0]}, N={c[1]}, G={c[2]}",
        level=hint,
    )


def _greedy_tokens(model: MiniLLM, prompt: list[int], n: int) -> list[int]:
    """Greedy's next n tokens, one full forward per token (no cache: the plainest reference)."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
    return seq[len(prompt) :]


def _guesser(kind: str, k: int, prompt: list[int], truth: list[int], seed: int) -> Callable[[list[int]], list[int]]:
    """A source of k guesses for the tokens after a sequence: greedy's own ("right"), random ("random"),
    right then wrong ("half"), or none at all ("none")."""
    g = torch.Generator().manual_seed(seed)

    def guess(sequence: list[int]) -> list[int]:
        done = len(sequence) - len(prompt)  # tokens settled so far
        right = truth[done : done + k]
        wrong = torch.randint(0, 256, (k,), generator=g).tolist()
        return {"right": right, "random": wrong, "half": right[: k // 2] + wrong[k // 2 :], "none": []}[kind]

    return guess


def check_guided_decode(guided_decode: Callable, hint: int | None = None) -> CheckResult:
    """guided_decode(model, prompt, max_new_tokens, guess) -> list[int]: greedy's tokens whatever the guesses,
    at most one forward per token, and every right guess a forward is given settled by that forward."""
    model = _tiny_model(1)
    g = torch.Generator().manual_seed(7)
    prompts = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (1, 5, 9)]
    truths = [_greedy_tokens(model, p, 24) for p in prompts]
    cases = [  # (prompt index, new tokens, kind of guesses, guesses per forward)
        (0, 6, "none", 0),
        (1, 10, "random", 3),
        (2, 12, "right", 3),
        (0, 9, "half", 4),
        (1, 7, "right", 5),  # guesses past the last token asked for
        (2, 16, "random", 1),
    ]

    def student(i, n, kind, k):
        forwards = []
        handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
        try:
            tokens = guided_decode(model, list(prompts[i]), n, _guesser(kind, k, prompts[i], truths[i], seed=i))
        finally:
            handle.remove()
        tokens = int_list_result(tokens, "guided_decode")
        if tokens[:n] != truths[i][:n] or len(tokens) != n:
            return tokens  # the comparison with greedy's tokens reports it
        if len(forwards) > n:
            raise CheckFailed(f"greedy's {n} tokens, but in {len(forwards)} forward passes: more forwards than tokens")
        if kind == "right" and len(forwards) > -(-n // (k + 1)):
            raise CheckFailed(
                f"given {k} right guesses a forward, {len(forwards)} forward passes settled {n} tokens: a forward "
                f"that is given k right guesses settles k + 1 tokens, so {-(-n // (k + 1))} would do"
            )
        return tokens

    return run_check(
        "guided_decode",
        student,
        lambda i, n, kind, k: truths[i][:n],
        cases,
        hints=(
            "compare your tokens with greedy's in the case named above: a guess may be kept only where it is the "
            "model's own argmax after everything before it, and the answer holds exactly max_new_tokens tokens; "
            "count your forward passes too, since each one must settle at least one token and every right guess",
            "one forward over the sequence followed by the guesses gives the model's token after the sequence "
            "and after each guess; keep the guesses while they equal those tokens, then add the model's own token "
            "at the first disagreement (or after the last guess); repeat until enough tokens, then cut to size",
        ),
        describe=lambda c: f"prompt of {len(prompts[c[0]])} tokens, {c[1]} new, {c[3]} {c[2]} guesses a forward",
        level=hint,
    )
