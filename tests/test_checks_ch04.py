"""Chapter 04's checkers pass the package's functions, fail wrong ones, and report stubs."""

import pytest
import torch

from minillm import masks
from minillm.checks import ch04
from minillm.lambda_attention import block_keys, lambda_attention
from minillm.rope import apply_rope


def package_keys_per_query(T, n_global, n_local):
    return masks.materialize(masks.lambda_shaped(n_global, n_local), T).sum(-1)


def package_limited_scores(q, k, limit, base=10000.0):
    return ch04._limited_scores(q, k, limit, base)


def package_unfixed_factors(variant):
    return ch04.UNFIXED[variant]


def window_off_by_one(n_global, n_local):  # n_local recent keys *besides* the query
    return lambda b, h, q, kv: (q >= kv) & ((kv < n_global) | (q - kv <= n_local))


def globals_counted_twice(T, n_global, n_local):  # a global key inside the window counted again
    i = torch.arange(T)
    return torch.minimum(i + 1, torch.tensor(n_local)) + torch.minimum(i + 1, torch.tensor(n_global))


def far_keys_rotated_too(q, k, limit, base=10000.0):  # the far key keeps its own rotation
    pos, D = torch.arange(q.shape[2]), q.shape[-1]
    near = apply_rope(q, pos, base) @ apply_rope(k, pos, base).transpose(-2, -1) / D**0.5
    far = apply_rope(q, torch.full_like(pos, limit), base) @ apply_rope(k, pos, base).transpose(-2, -1) / D**0.5
    return torch.where(pos[:, None] - pos[None, :] > limit, far, near)


def lambda_without_limit(q, k, v, n_global, n_local, limit):
    return lambda_attention(q, k, v, n_global, n_local, max_distance=10**9)


def every_global_key(start, stop, n_global, n_local):  # globals inside the window appear twice
    return torch.cat([torch.arange(n_global), torch.arange(max(0, start - n_local + 1), stop)])


def window_fixes_everything(variant):
    return set() if variant == "window only" else ch04.UNFIXED[variant]


CASES = [
    (ch04.check_lambda_mask, masks.lambda_shaped, window_off_by_one),
    (ch04.check_keys_per_query, package_keys_per_query, globals_counted_twice),
    (ch04.check_limited_scores, package_limited_scores, far_keys_rotated_too),
    (ch04.check_lambda_attention, lambda_attention, lambda_without_limit),
    (ch04.check_block_keys, block_keys, every_global_key),
    (ch04.check_unfixed_factors, package_unfixed_factors, window_fixes_everything),
]


@pytest.mark.parametrize("check, right, wrong", CASES, ids=lambda f: getattr(f, "__name__", ""))
def test_checker_passes_the_package_function_and_fails_a_wrong_one(check, right, wrong, checker_contract):
    checker_contract.passes_right_fails_wrong(check, right, wrong)


WRONG_TYPE_MESSAGES = {
    ch04.check_lambda_mask: "must return a mask_mod",
    ch04.check_unfixed_factors: "must return a set",
}


@pytest.mark.parametrize("check", [c[0] for c in CASES], ids=lambda f: f.__name__)
def test_checker_reports_a_stub_as_not_implemented_and_catches_errors(check, checker_contract):
    checker_contract.reports_stubs_and_errors(check, 1.5, WRONG_TYPE_MESSAGES.get(check, "must return a tensor"))


def test_a_mask_mod_whose_body_is_a_stub_is_reported_as_not_implemented(capsys):
    """The exercise's stub sits inside the inner mask_mod, so it raises only when the mask is drawn."""

    def lambda_mask(n_global, n_local):
        def mask_mod(b, h, q_idx, kv_idx):
            raise NotImplementedError

        return mask_mod

    assert not ch04.check_lambda_mask(lambda_mask)
    assert "not implemented yet" in capsys.readouterr().out


def test_the_ablation_answers_cover_the_lecture_variants_and_only_the_three_factors():
    assert set(ch04.UNFIXED) == {"dense", "window only", "Λ, no limit", "limit, no Λ", "Λ + limit", "StreamingLLM"}
    assert set().union(*ch04.UNFIXED.values()) == set(ch04.FACTORS) == {1, 2, 3}
