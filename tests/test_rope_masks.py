import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import masks
from minillm.rope import apply_rope


def test_rope_scores_depend_only_on_relative_distance():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 1, 16, dtype=torch.float64)
    k = torch.randn(1, 2, 1, 16, dtype=torch.float64)
    base_score = None
    for shift in (0, 7, 1000, 123456):
        qr = apply_rope(q, torch.tensor([shift + 5]))
        kr = apply_rope(k, torch.tensor([shift + 2]))
        score = (qr * kr).sum(-1)
        if base_score is None:
            base_score = score
        torch.testing.assert_close(score, base_score, rtol=0, atol=1e-9)


def test_rope_is_a_rotation_and_position_zero_is_identity():
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, torch.zeros(5, dtype=torch.long)), x)
    rotated = apply_rope(x, torch.arange(5) * 11)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    assert not torch.allclose(rotated[:, :, 1:], x[:, :, 1:])


def test_rope_accepts_per_batch_positions():
    x = torch.randn(2, 1, 4, 8, dtype=torch.float64)
    pos = torch.tensor([[0, 1, 2, 3], [10, 11, 12, 13]])
    out = apply_rope(x, pos)
    torch.testing.assert_close(out[1], apply_rope(x[1:], pos[1])[0])


def test_rope_rejects_wrong_shapes():
    with pytest.raises(ValueError, match=r"x must have shape \(B, H, T, D\)"):
        apply_rope(torch.randn(3, 4, 8), torch.arange(4))
    with pytest.raises(ValueError, match="positions must have shape"):
        apply_rope(torch.randn(1, 1, 4, 8), torch.arange(5))


def _brute_force(kind, q, k, a, b):
    if k > q:
        return False
    if kind == "causal":
        return True
    if kind == "sliding_window":
        return q - k <= a
    if kind == "sink_window":
        return k < a or q - k <= b
    return k < a or q - k < b  # lambda_shaped


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(["causal", "sliding_window", "sink_window", "lambda_shaped"]),
    a=st.integers(1, 6),
    b=st.integers(1, 6),
    q_len=st.integers(1, 20),
    kv_len=st.integers(1, 20),
)
def test_materialized_masks_match_their_definition(kind, a, b, q_len, kv_len):
    mask_mod = {
        "causal": lambda: masks.causal(),
        "sliding_window": lambda: masks.sliding_window(a),
        "sink_window": lambda: masks.sink_window(a, b),
        "lambda_shaped": lambda: masks.lambda_shaped(a, b),
    }[kind]()
    mask = masks.materialize(mask_mod, q_len, kv_len)
    assert mask.shape == (q_len, kv_len) and mask.dtype == torch.bool
    expected = torch.tensor([[_brute_force(kind, q, k, a, b) for k in range(kv_len)] for q in range(q_len)])
    assert torch.equal(mask, expected)


def test_lambda_mask_sees_at_most_n_global_plus_n_local_keys():
    mask = masks.materialize(masks.lambda_shaped(3, 5), 64)
    assert mask.sum(1).max() == 3 + 5
    assert mask[40, 10:36].sum() == 0  # the middle is dark


def test_window_mask_sees_the_query_and_window_previous_tokens():
    mask = masks.materialize(masks.sink_window(2, 4), 30)
    assert mask.sum(1).tolist()[-1] == 2 + 4 + 1


@pytest.mark.parametrize(
    "mask_mod",
    [masks.causal(), masks.sliding_window(5), masks.sink_window(4, 8), masks.lambda_shaped(2, 6)],
    ids=["causal", "window", "sink", "lambda"],
)
def test_mask_mods_agree_with_flex_attention_masks(mask_mod):
    flex = pytest.importorskip("torch.nn.attention.flex_attention")
    n = 48
    dense = masks.materialize(mask_mod, n)
    torch.testing.assert_close(flex.create_mask(mask_mod, None, None, n, n, device="cpu")[0, 0], dense)
    block = flex.create_block_mask(mask_mod, None, None, n, n, device="cpu", BLOCK_SIZE=16)
    # a block is visited exactly when some entry of it is True
    visited = block.to_dense()[0, 0].bool()
    expected = dense.view(3, 16, 3, 16).any(dim=3).any(dim=1)
    assert torch.equal(visited, expected)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: masks.sliding_window(0), "window must be an int >= 1"),
        (lambda: masks.sink_window(-1, 4), "n_sink must be an int >= 0"),
        (lambda: masks.lambda_shaped(2, 0), "n_local must be an int >= 1"),
        (lambda: masks.materialize(masks.causal(), 0), "q_len must be an int >= 1"),
    ],
)
def test_bad_mask_sizes_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_mask_sizes_must_be_integers_and_mask_mod_callable():
    with pytest.raises(TypeError, match="window must be an int"):
        masks.sliding_window(2.5)
    with pytest.raises(TypeError, match="mask_mod must be callable"):
        masks.materialize("causal", 4)
