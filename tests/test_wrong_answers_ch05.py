"""Chapter 05's wrong-answer suite: plausible mistakes for every exercise, each rejected by its checker.

Each exercise has a right answer (the solution notebook's) that its checker must accept, and at
least three wrong ones (off by one, ignored argument, wrong type, a rule of the spec dropped) that
it must reject with ❌, not with a crash or ⏳.
"""

from __future__ import annotations

import pytest
import torch

from minillm.checks import ch05

# ---------------------------------------------------------------------------------------------
# Exercise 1: one Jacobi iteration
# ---------------------------------------------------------------------------------------------


def _logits(model, tokens):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0]


def jacobi_right(model, context, guess):
    return _logits(model, context + guess)[len(context) - 1 : -1].argmax(-1).tolist()


def jacobi_one_late(model, context, guess):  # the rows after each guess token: predictions one step late
    return _logits(model, context + guess)[len(context) :].argmax(-1).tolist()


def jacobi_wrong_axis(model, context, guess):  # argmax over positions instead of the vocabulary
    return _logits(model, context + guess)[len(context) - 1 : -1].argmax(0).tolist()[: len(guess)]


def jacobi_returns_guess(model, context, guess):  # no update at all
    return list(guess)


def jacobi_ignores_context(model, context, guess):  # forward over the guess alone
    return [context[-1]] + _logits(model, guess)[:-1].argmax(-1).tolist()


def jacobi_last_row_only(model, context, guess):  # one prediction repeated
    return [int(_logits(model, context + guess)[-1].argmax())] * len(guess)


def jacobi_tensor(model, context, guess):  # the right tokens, as a tensor (spec: list[int])
    return _logits(model, context + guess)[len(context) - 1 : -1].argmax(-1)


def jacobi_tensor_items(model, context, guess):  # a list of 0-d tensors: still not list[int]
    return list(_logits(model, context + guess)[len(context) - 1 : -1].argmax(-1))


# ---------------------------------------------------------------------------------------------
# Exercise 2: the pool update
# ---------------------------------------------------------------------------------------------


def _columns(last, levels, new):
    for j in range(len(new)):
        yield (last if j == 0 else levels[0][j - 1]), tuple(level[j] for level in levels[1:]) + (new[j],)


def pool_right(pool, last, levels, new, guesses):
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        if tail in tails:
            tails.remove(tail)
        tails.append(tail)
        if len(tails) > guesses:
            tails.pop(0)


def pool_no_lru(pool, last, levels, new, guesses):  # appends everything, never drops
    for key, tail in _columns(last, levels, new):
        pool.setdefault(key, []).append(tail)


def pool_no_dedup(pool, last, levels, new, guesses):  # a repeated tail is stored twice
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        tails.append(tail)
        if len(tails) > guesses:
            tails.pop(0)


def pool_no_move_to_end(pool, last, levels, new, guesses):  # a repeat keeps its old place
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        if tail not in tails:
            tails.append(tail)
        if len(tails) > guesses:
            tails.pop(0)


def pool_new_dict(pool, last, levels, new, guesses):  # returns a copy, `pool` unchanged
    out = {k: list(v) for k, v in pool.items()}
    pool_right(out, last, levels, new, guesses)
    return out


def pool_lists(pool, last, levels, new, guesses):  # tails as lists
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        if list(tail) in tails:
            tails.remove(list(tail))
        tails.append(list(tail))
        if len(tails) > guesses:
            tails.pop(0)


def pool_drops_newest(pool, last, levels, new, guesses):
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        if tail in tails:
            tails.remove(tail)
        tails.append(tail)
        if len(tails) > guesses:
            tails.pop()


def pool_key_off_by_one(pool, last, levels, new, guesses):  # column j keyed by levels[0][j]
    keys = levels[0] + [last]
    for j, (_, tail) in enumerate(_columns(last, levels, new)):
        tails = pool.setdefault(keys[j], [])
        if tail in tails:
            tails.remove(tail)
        tails.append(tail)
        if len(tails) > guesses:
            tails.pop(0)


def pool_tail_without_new(pool, last, levels, new, guesses):  # the tail stops at the last level
    for j in range(len(new)):
        key = last if j == 0 else levels[0][j - 1]
        tails = pool.setdefault(key, [])
        tails.append(tuple(level[j] for level in levels[1:]))
        if len(tails) > guesses:
            tails.pop(0)


def pool_one_too_many(pool, last, levels, new, guesses):  # keeps guesses + 1 tails
    for key, tail in _columns(last, levels, new):
        tails = pool.setdefault(key, [])
        if tail in tails:
            tails.remove(tail)
        tails.append(tail)
        if len(tails) > guesses + 1:
            tails.pop(0)


def pool_slices_to_guesses(pool, last, levels, new, guesses):  # tails[-guesses:] keeps everything at 0
    for key, tail in _columns(last, levels, new):
        tails = [t for t in pool.get(key, []) if t != tail] + [tail]
        pool[key] = tails[-guesses:]


# ---------------------------------------------------------------------------------------------
# Exercise 3: verification
# ---------------------------------------------------------------------------------------------


def _prefix(cand, truth):
    n = 0
    while n < len(cand) and cand[n] == truth[n]:
        n += 1
    return n


def verify_right(candidates, first, preds):
    best = (None, 0, [first])
    for g, (cand, pred) in enumerate(zip(candidates.tolist(), preds.tolist())):
        truth = [first] + pred
        n = _prefix(cand, truth)
        if best[0] is None or n > best[1]:
            best = (g, n, cand[:n] + [truth[n]])
    return best


def verify_tensor_tokens(candidates, first, preds):  # the settled tokens as a tensor (spec: list[int])
    g, n, tokens = verify_right(candidates, first, preds)
    return g, n, torch.tensor(tokens)


def verify_tensor_counts(candidates, first, preds):  # index and length as 0-d tensors (spec: int)
    g, n, tokens = verify_right(candidates, first, preds)
    return (None if g is None else torch.tensor(g)), torch.tensor(n), tokens


def verify_no_bonus(candidates, first, preds):  # drops the model's own token
    g, n, tokens = verify_right(candidates, first, preds)
    return g, n, tokens[:-1] if n else tokens


def verify_last_of_equals(candidates, first, preds):  # ties go to the last candidate
    best = (None, 0, [first])
    for g, (cand, pred) in enumerate(zip(candidates.tolist(), preds.tolist())):
        truth = [first] + pred
        n = _prefix(cand, truth)
        if best[0] is None or n >= best[1]:
            best = (g, n, cand[:n] + [truth[n]])
    return best


def verify_counts_all_matches(candidates, first, preds):  # matches anywhere, not a prefix
    best = (None, 0, [first])
    for g, (cand, pred) in enumerate(zip(candidates.tolist(), preds.tolist())):
        truth = [first] + pred
        n = sum(c == t for c, t in zip(cand, truth))
        if best[0] is None or n > best[1]:
            best = (g, n, cand[:n] + [truth[n]])
    return best


def verify_forgets_first(candidates, first, preds):  # compares candidate token i with preds[g, i]
    best = (None, 0, [first])
    for g, (cand, pred) in enumerate(zip(candidates.tolist(), preds.tolist())):
        n = _prefix(cand, pred + [None])
        if best[0] is None or n > best[1]:
            best = (g, n, cand[:n] + [([first] + pred)[n]])
    return best


def verify_none_without_match(candidates, first, preds):  # no candidate index when nothing matches
    g, n, tokens = verify_right(candidates, first, preds)
    return (g if n else None), n, tokens


@pytest.mark.parametrize(
    "check, wrong, says",
    [
        ("check_jacobi_iteration", "jacobi_tensor", "must be a list of Python ints (list[int]), got a tensor ("),
        ("check_jacobi_iteration", "jacobi_tensor_items", "but item 0 is a tensor ()"),
        ("check_verify", "verify_tensor_tokens", "the settled tokens (item 2) must be a list of Python ints"),
        ("check_verify", "verify_tensor_counts", "must be a Python int, got a tensor () int64 (.item()"),
        ("check_guided_decode", "guided_tensor", "guided_decode must be a list of Python ints (list[int]), got a"),
    ],
)
def test_a_tensor_where_the_spec_says_int_or_list_of_int_fails_with_a_message_that_says_so(
    check, wrong, says, checker_contract
):
    """The right values in the wrong type: the checker says what the spec asks for, so the learner's next
    cell (`if new == guess:` on a tensor raises; `tokens + [x]` adds elementwise) never meets them."""
    checker_contract.rejects(getattr(ch05, check), globals()[wrong], says=says)


# ---------------------------------------------------------------------------------------------
# Exercise 4: the lookahead mask
# ---------------------------------------------------------------------------------------------


def _labels(W, N, G):
    m = N - 1
    level = [lvl for lvl in range(m) for _ in range(W)] + [-1] * (G * m)
    column = [j for _ in range(m) for j in range(W)] + [i for _ in range(G) for i in range(m)]
    cand = [-1] * (m * W) + [g for g in range(G) for _ in range(m)]
    return level, column, cand


def _mask(W, N, G, rule):
    level, column, cand = _labels(W, N, G)
    T = len(level)
    mask = torch.zeros(T, T, dtype=torch.bool)
    for q in range(T):
        for k in range(T):
            mask[q, k] = rule(level[q], column[q], cand[q], level[k], column[k], cand[k], k)
    return mask


def _right_rule(lq, jq, gq, lk, jk, gk, k):
    if lq >= 0 and lk == 0:
        return jk <= jq
    if lq >= 0 and lk >= 1:
        return lk <= lq and jk == jq
    if gq >= 0:
        return k == 0 or (gk == gq and jk <= jq)
    return False


def mask_right(W, N, G):
    return _mask(W, N, G, _right_rule)


def mask_plain_causal(W, N, G):
    T = (N - 1) * (W + G)
    return torch.ones(T, T, dtype=torch.bool).tril()


def mask_float(W, N, G):  # right pattern, float dtype
    return mask_right(W, N, G).float()


def mask_levels_see_earlier_columns(W, N, G):  # levels >= 1 seen at every column <= j
    return _mask(W, N, G, lambda lq, jq, gq, lk, jk, gk, k: (
        lk <= lq and jk <= jq if lq >= 0 and lk >= 1 else _right_rule(lq, jq, gq, lk, jk, gk, k)))  # fmt: skip


def mask_candidates_see_level0(W, N, G):  # candidates read the whole first level
    return _mask(W, N, G, lambda lq, jq, gq, lk, jk, gk, k: (
        lk == 0 or (gk == gq and jk <= jq) if gq >= 0 else _right_rule(lq, jq, gq, lk, jk, gk, k)))  # fmt: skip


def mask_candidates_miss_x(W, N, G):  # candidates do not see x
    return _mask(W, N, G, lambda lq, jq, gq, lk, jk, gk, k: (
        gk == gq and jk <= jq if gq >= 0 else _right_rule(lq, jq, gq, lk, jk, gk, k)))  # fmt: skip


def mask_transposed(W, N, G):  # keys and queries swapped
    return mask_right(W, N, G).T.contiguous()


# ---------------------------------------------------------------------------------------------
# Exercise 7: a decoder that is greedy whatever its guesses (the property, not the formula)
# ---------------------------------------------------------------------------------------------


def _model_tokens(model, seq, draft):
    """The model's token after seq and after each draft token, from one forward."""
    with torch.no_grad():
        return model(torch.tensor([seq + draft])).logits[0, len(seq) - 1 :].argmax(-1).tolist()


def _guided(model, prompt, max_new_tokens, guess, settle):
    """The loop every answer below shares; `settle(draft, truth)` says what one forward settles."""
    seq = list(prompt)
    while len(seq) - len(prompt) < max_new_tokens:
        draft = list(guess(seq))
        seq += settle(draft, _model_tokens(model, seq, draft))
    return seq[len(prompt) : len(prompt) + max_new_tokens]


def _matched(draft, truth):
    n = 0
    while n < len(draft) and draft[n] == truth[n]:
        n += 1
    return n


def guided_right(model, prompt, max_new_tokens, guess):
    return _guided(model, prompt, max_new_tokens, guess, lambda d, t: t[: _matched(d, t) + 1])


def guided_trusts_guesses(model, prompt, max_new_tokens, guess):  # keeps every guess, checked or not
    return _guided(model, prompt, max_new_tokens, guess, lambda d, t: d + [t[len(d)]])


def guided_no_bonus(model, prompt, max_new_tokens, guess):  # a matched prefix without the model's token after it
    return _guided(model, prompt, max_new_tokens, guess, lambda d, t: t[: max(_matched(d, t), 1)])


def guided_ignores_guesses(model, prompt, max_new_tokens, guess):  # plain greedy: one token a forward
    return _guided(model, prompt, max_new_tokens, lambda seq: [], lambda d, t: t[:1])


def guided_one_late(model, prompt, max_new_tokens, guess):  # reads the row after each token: one too late
    return _guided(model, prompt, max_new_tokens, guess, lambda d, t: (t[1:] + t[-1:])[: _matched(d, t[1:]) + 1])


def guided_keeps_going(model, prompt, max_new_tokens, guess):  # the last forward's extra tokens not cut off
    seq = list(prompt)
    while len(seq) - len(prompt) < max_new_tokens:
        draft = list(guess(seq))
        truth = _model_tokens(model, seq, draft)
        seq += truth[: _matched(draft, truth) + 1]
    return seq[len(prompt) :]


def guided_with_prompt(model, prompt, max_new_tokens, guess):  # returns the prompt too
    return list(prompt) + guided_right(model, prompt, max_new_tokens, guess)


def guided_checks_twice(model, prompt, max_new_tokens, guess):  # a separate forward for the model's own token
    seq = list(prompt)
    while len(seq) - len(prompt) < max_new_tokens:
        draft = list(guess(seq))
        n = _matched(draft, _model_tokens(model, seq, draft))
        seq += draft[:n]
        seq += _model_tokens(model, seq, [])[:1]
    return seq[len(prompt) : len(prompt) + max_new_tokens]


def guided_tensor(model, prompt, max_new_tokens, guess):  # the right tokens, as a tensor
    return torch.tensor(guided_right(model, prompt, max_new_tokens, guess))


EXERCISES = {
    "check_jacobi_iteration": (
        jacobi_right,
        [
            jacobi_one_late,
            jacobi_wrong_axis,
            jacobi_returns_guess,
            jacobi_ignores_context,
            jacobi_last_row_only,
            jacobi_tensor,
            jacobi_tensor_items,
        ],
    ),
    "check_update_pool": (
        pool_right,
        [
            pool_no_lru,
            pool_no_dedup,
            pool_no_move_to_end,
            pool_new_dict,
            pool_lists,
            pool_drops_newest,
            pool_key_off_by_one,
            pool_tail_without_new,
            pool_one_too_many,
            pool_slices_to_guesses,
        ],
    ),  # fmt: skip
    "check_verify": (
        verify_right,
        [
            verify_no_bonus,
            verify_last_of_equals,
            verify_counts_all_matches,
            verify_forgets_first,
            verify_none_without_match,
            verify_tensor_tokens,
            verify_tensor_counts,
        ],
    ),  # fmt: skip
    "check_lookahead_mask": (
        mask_right,
        [
            mask_plain_causal,
            mask_float,
            mask_levels_see_earlier_columns,
            mask_candidates_see_level0,
            mask_candidates_miss_x,
            mask_transposed,
        ],
    ),  # fmt: skip
    "check_guided_decode": (
        guided_right,
        [
            guided_trusts_guesses,
            guided_no_bonus,
            guided_ignores_guesses,
            guided_one_late,
            guided_keeps_going,
            guided_with_prompt,
            guided_checks_twice,
            guided_tensor,
        ],
    ),  # fmt: skip
}
WRONG = [(check, wrong) for check, (_, wrongs) in EXERCISES.items() for wrong in wrongs]


@pytest.mark.parametrize("check", list(EXERCISES))
def test_the_solution_passes(check, checker_contract):
    checker_contract.accepts(getattr(ch05, check), EXERCISES[check][0])


@pytest.mark.parametrize("check, wrong", WRONG, ids=[w.__name__ for _, w in WRONG])
def test_a_wrong_answer_is_rejected(check, wrong, checker_contract):
    checker_contract.rejects(getattr(ch05, check), wrong)


def test_every_exercise_has_three_wrong_answers():
    assert all(len(wrongs) >= 3 for _, wrongs in EXERCISES.values())
