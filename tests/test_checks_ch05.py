"""Chapter 05's checkers pass the package's functions, fail wrong ones, and report stubs."""

import dataclasses

import torch

from minillm.checks import ch05
from minillm.lookahead import NGramPool, lookahead_layout, ngrams_from_window, verify_greedy


def package_jacobi_iteration(model, context, guess):
    with torch.no_grad():
        logits = model(torch.tensor([context + guess])).logits[0]  # (len(context) + m, V)
    return logits[len(context) - 1 : -1].argmax(-1).tolist()


def package_update_pool(pool, last, levels, new, guesses):
    """The package's NGramPool + ngrams_from_window, mirrored into the learner's dict."""
    shadow = NGramPool(len(levels) + 1, guesses)
    for key, tails in pool.items():
        for tail in tails:
            shadow.add(key, tail)
    for key, tail in ngrams_from_window(last, levels, new):
        shadow.add(key, tail)
    pool.clear()
    pool.update({k: shadow.get(k) for k in shadow.keys()})


def package_guided_decode(model, prompt, max_new_tokens, guess):
    """One forward over sequence + guesses a step, judged by the package's verify_greedy."""
    seq = list(prompt)
    while len(seq) - len(prompt) < max_new_tokens:
        draft = torch.tensor([list(guess(seq))], dtype=torch.long).view(1, -1)  # (1, k): one candidate
        with torch.no_grad():
            preds = model(torch.tensor([seq + draft[0].tolist()])).logits[0, len(seq) - 1 :].argmax(-1)
        seq += verify_greedy(draft, int(preds[0]), preds[None, 1:]).tokens
    return seq[len(prompt) : len(prompt) + max_new_tokens]


def stub(*args):
    raise NotImplementedError


def test_checkers_pass_the_package_functions(capsys):
    assert ch05.check_jacobi_iteration(package_jacobi_iteration)
    assert ch05.check_update_pool(package_update_pool)
    assert ch05.check_verify(verify_greedy)
    assert ch05.check_verify(lambda c, f, p: dataclasses.astuple(verify_greedy(c, f, p)))
    assert ch05.check_lookahead_mask(lambda W, N, G: lookahead_layout(W, N, G).mask)
    assert ch05.check_guided_decode(package_guided_decode)
    assert capsys.readouterr().out.count("✅") == 6


def test_checkers_fail_the_classic_mistakes_with_a_hint(capsys):
    def off_by_one(model, context, guess):  # predictions one position too late
        return package_jacobi_iteration(model, context + guess[:1], guess[1:] + [0])

    def no_lru(pool, last, levels, new, guesses):  # appends without refreshing or dropping
        for key, tail in ngrams_from_window(last, levels, new):
            pool.setdefault(key, []).append(tail)

    def no_bonus(c, f, p):  # drops the model's own token after the match
        v = verify_greedy(c, f, p)
        return v.candidate, v.n_matched, v.tokens[:-1]

    def plain_causal(W, N, G):  # one causal mask over the whole step: tokens see other levels and candidates
        T = (N - 1) * (W + G)
        return torch.ones(T, T, dtype=torch.bool).tril()

    assert not ch05.check_jacobi_iteration(off_by_one)
    assert not ch05.check_update_pool(no_lru)
    assert not ch05.check_verify(no_bonus)
    assert not ch05.check_lookahead_mask(lambda W, N, G: torch.ones(2, 2, dtype=torch.bool).tril())
    assert not ch05.check_lookahead_mask(lambda W, N, G: ~lookahead_layout(W, N, G).mask)
    out = capsys.readouterr().out
    assert out.count("❌") == 5 and out.count("hint:") == 5
    assert "expected:" in out and "shape (2, 2) instead of" in out


def test_stubs_are_reported_as_not_implemented(capsys):
    checks = (ch05.check_update_pool, ch05.check_verify, ch05.check_lookahead_mask, ch05.check_guided_decode)
    for check in (ch05.check_jacobi_iteration, *checks):
        assert not check(stub)
    out = capsys.readouterr().out
    for name in ("jacobi_iteration", "update_pool", "verify", "lookahead_mask", "guided_decode"):
        assert f"⏳ TODO {name}: not implemented yet" in out
