"""Chapter 07's exercise on the ∞-former layer itself (a query's read of the long-term memory): the
solution passes, and plausible mistakes (no 1/sqrt(D), no variance floor, no sigmoid, keys and values
swapped, widths added as variances, heads split the wrong way) are rejected with ❌ and a hint.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from minillm.checks import ch07


def _read(q, coef, W_K, W_V, w_mu, w_sigma, basis_mu, basis_sigma, min_sigma_sq, bug=""):
    B, H, T, D = q.shape

    def split(t):  # (B, N, C) -> (B, H, N, D)
        return t.view(B, H, -1, D) if bug == "heads" else t.view(B, -1, H, D).transpose(1, 2)

    k, v = split(coef @ W_K.T), split(coef @ W_V.T)
    if bug == "swapped":
        k, v = v, k
    scores = q @ k.transpose(-2, -1) / (1.0 if bug == "unscaled" else D**0.5)  # (B, H, T, N)
    mu = scores @ w_mu if bug == "no_sigmoid" else torch.sigmoid(scores @ w_mu)
    sigma_sq = F.softplus(scores @ w_sigma)
    if bug != "no_floor":
        sigma_sq = sigma_sq.clamp(min=min_sigma_sq)
    var = sigma_sq[..., None] + (basis_sigma if bug == "widths" else basis_sigma**2)
    r = torch.exp(-0.5 * (mu[..., None] - basis_mu) ** 2 / var) / torch.sqrt(2 * math.pi * var)  # (B, H, T, N)
    return r @ v  # (B, H, T, D)


def read_right(*args):
    return _read(*args)


WRONG = []
for _bug in ("unscaled", "no_floor", "no_sigmoid", "swapped", "widths", "heads"):

    def _wrong(*args, bug=_bug):
        return _read(*args, bug=bug)

    _wrong.__name__ = f"read_{_bug}"
    WRONG.append(_wrong)


def test_the_solution_passes(checker_contract):
    checker_contract.accepts(ch07.check_long_term_read, read_right)


@pytest.mark.parametrize("wrong", WRONG, ids=[w.__name__ for w in WRONG])
def test_a_wrong_read_is_rejected(wrong, checker_contract):
    checker_contract.rejects(ch07.check_long_term_read, wrong)


def test_a_float32_read_is_rejected(checker_contract):
    checker_contract.rejects(ch07.check_long_term_read, lambda *a: read_right(*a).float(), says="float64")


def test_both_hints_are_given_and_neither_holds_solution_code(capsys):
    from test_hints_ch05_08 import CODE, _solution_lines

    assert not ch07.check_long_term_read(WRONG[0], hint=2)
    out = capsys.readouterr().out
    hints = [line for line in out.splitlines() if line.lstrip().startswith(("hint:", "hint 2:"))]
    assert len(hints) == 2, out
    text = " ".join(" ".join(hints).split())
    assert not [line for line in _solution_lines("07_infinite_former.ipynb") if line in text]
    assert not re.findall(CODE, text)
