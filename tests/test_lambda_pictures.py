"""The Λ picture draws what the model's attention really does: which keys a query sees and at which
distance RoPE scores them (minillm/lambda_pictures.py, drawn in chapter 04 §3)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm import masks  # noqa: E402
from minillm.attention import AttentionStep, distance_limit, rope_attention  # noqa: E402
from minillm.lambda_pictures import GLOBAL, HIDDEN, LOCAL, lambda_branches, lambda_distances, plot_lambda  # noqa: E402
from minillm.rope import apply_rope  # noqa: E402

BASE = 10000.0
# (n, n_global, n_local, limit, mode): the limit below, at and above the window; both distance rules
CASES = [
    (14, 3, 5, 5, "clamp"),
    (14, 2, 6, 3, "clamp"),
    (16, 3, 4, 9, "clamp"),
    (12, 0, 4, 2, "clamp"),
    (14, 2, 6, 3, "reference"),
    (16, 3, 4, 9, "reference"),
]


def _weights_from_table(q, k, distance):
    """Softmax over the keys a table shows, each pair scored with the query rotated by the table's
    distance against the un-rotated key: a RoPE score depends only on the distance."""
    n, D = q.shape[-2], q.shape[-1]
    seen = ~distance.isnan()
    scores = torch.full((n, n), float("-inf"), dtype=q.dtype)
    for i, j in seen.nonzero().tolist():
        rotated = apply_rope(q[..., i : i + 1, :], torch.tensor([int(distance[i, j])]), BASE)  # (1, 1, 1, D)
        scores[i, j] = (rotated @ k[..., j : j + 1, :].mT).item() / D**0.5
    return scores.softmax(-1)


def _agrees_with_attention(table_fn, n, n_global, n_local, limit, mode) -> bool:
    """Whether table_fn's picture gives the attention weights of the model's own Λ + limit path."""
    g = torch.Generator().manual_seed(n + n_local)
    q, k, v = (torch.randn(1, 1, n, 8, generator=g, dtype=torch.float64) for _ in range(3))
    pos = torch.arange(n)
    seen = masks.materialize(masks.lambda_shaped(n_global, n_local), n)
    step = AttentionStep(pos, pos, seen, **distance_limit(pos, pos, limit, mode, n_local))
    weights = rope_attention(q, k, v, step, BASE, return_weights=True)[1][0, 0]
    drawn = table_fn(n, n_global, n_local, limit, mode)
    return torch.allclose(_weights_from_table(q, k, drawn), weights, atol=1e-10)


def _true(n):
    return (torch.arange(n)[:, None] - torch.arange(n)[None, :]).double()


def _hide(d, mask):
    return d.masked_fill(~mask, float("nan"))


def no_limit(n, g, n_local, limit, mode):
    return _hide(_true(n), masks.materialize(masks.lambda_shaped(g, n_local), n))


def clamped_one_short(n, g, n_local, limit, mode):
    return _hide(_true(n).clamp(max=limit - 1), masks.materialize(masks.lambda_shaped(g, n_local), n))


def clamp_rule_always(n, g, n_local, limit, mode):  # ignores the reference rule
    return lambda_distances(n, g, n_local, limit, "clamp")


def window_without_the_query(n, g, n_local, limit, mode):
    return _hide(_true(n).clamp(max=limit), masks.materialize(masks.lambda_shaped(g, n_local + 1), n))


def one_global_too_many(n, g, n_local, limit, mode):
    return _hide(_true(n).clamp(max=limit), masks.materialize(masks.lambda_shaped(g + 1, n_local), n))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_picture_gives_the_attention_of_the_models_lambda_path(case):
    assert _agrees_with_attention(lambda_distances, *case)


@pytest.mark.parametrize("wrong", [no_limit, clamped_one_short, clamp_rule_always, window_without_the_query,
                                   one_global_too_many], ids=lambda f: f.__name__)  # fmt: skip
def test_a_wrong_drawing_function_fails_the_same_check(wrong):
    assert not all(_agrees_with_attention(wrong, *case) for case in CASES)


@pytest.mark.parametrize("n_global, n_local", [(3, 5), (0, 4), (6, 3), (2, 1)])
def test_the_two_branches_split_the_lambda_mask(n_global, n_local):
    n = 14
    branch = lambda_branches(n, n_global, n_local)
    assert torch.equal(branch != HIDDEN, masks.materialize(masks.lambda_shaped(n_global, n_local), n))
    distance = _true(n)
    assert torch.equal(branch == LOCAL, (distance >= 0) & (distance < n_local))  # the query counts
    j = torch.arange(n)[None, :].expand(n, n)
    assert torch.equal(branch == GLOBAL, (j < n_global) & (distance >= n_local))  # global only outside the window


def test_plot_lambda_labels_every_seen_pair_bolds_the_limited_ones_and_hatches_the_global_branch():
    n, n_global, n_local, limit = 12, 2, 4, 4
    ax = plot_lambda(n, n_global, n_local, limit)
    distance = lambda_distances(n, n_global, n_local, limit)
    seen = ~distance.isnan()
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(distance[seen].long().tolist())
    bold = sum(t.get_fontweight() == "bold" for t in ax.texts)
    assert bold == int((seen & (distance != _true(n))).sum()) > 0
    assert len(ax.patches) == int((lambda_branches(n, n_global, n_local) == GLOBAL).sum())
    plt.close("all")


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="limit"):
        lambda_distances(8, 2, 3, 0)
    with pytest.raises(ValueError, match="n"):
        lambda_branches(0, 2, 3)
    with pytest.raises(ValueError, match="n_local"):
        lambda_branches(8, 2, 0)
    with pytest.raises(ValueError, match="mode"):
        lambda_distances(8, 2, 3, 3, mode="clip")
