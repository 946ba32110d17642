"""LM-Infinite: the Λ mask, the distance limit, blockwise attention and the Λ cache."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import masks
from minillm.attention import AttentionStep, distance_limit, rope_attention
from minillm.cache import LambdaCache
from minillm.lambda_attention import lambda_attention
from minillm.streaming import stream_nll


def _dense_lambda(q, k, v, n_global, n_local, limit, return_weights=False):
    pos = torch.arange(q.shape[2])
    mask = masks.materialize(masks.lambda_shaped(n_global, n_local), q.shape[2])
    step = AttentionStep(pos, pos, mask, **distance_limit(pos, pos, limit))
    return rope_attention(q, k, v, step, 10000.0, return_weights)


@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 70), n_global=st.integers(0, 5), n_local=st.integers(1, 20), limit=st.integers(1, 30),
       block=st.sampled_from([None, 1, 7, 16]))  # fmt: skip
def test_blockwise_lambda_attention_equals_the_dense_masked_reference(T, n_global, n_local, limit, block):
    g = torch.Generator().manual_seed(T)
    q, k, v = (torch.randn(1, 2, T, 8, generator=g, dtype=torch.float64) for _ in range(3))
    expected, _ = _dense_lambda(q, k, v, n_global, n_local, limit)
    torch.testing.assert_close(lambda_attention(q, k, v, n_global, n_local, limit, block_size=block), expected)


def test_lambda_weights_zero_in_the_middle_and_at_most_global_plus_local_keys():
    q, k, v = (torch.randn(1, 2, 60, 8, dtype=torch.float64) for _ in range(3))
    _, w = _dense_lambda(q, k, v, 3, 10, 10, return_weights=True)
    assert ((w > 0).sum(-1) <= 3 + 10).all()
    assert (w[..., 40, 3:31] == 0).all()  # query 40: keys 3..30 are the dark middle
    assert (w[..., 40, :3] > 0).all() and (w[..., 40, 31:41] > 0).all()


def test_no_effective_distance_exceeds_the_limit():
    """Scores of a far pair equal those of the same pair placed exactly `limit` apart."""
    q, k, v = (torch.randn(1, 1, 40, 8, dtype=torch.float64) for _ in range(3))
    _, w = _dense_lambda(q, k, v, 2, 5, 6, return_weights=True)
    k_near = k.clone()
    # query 39 sees key 0 at distance 39 > 6; move key 0's content next to a query 6 away: same score
    pos = torch.tensor([6, 0])
    step = AttentionStep(pos[:1], pos[1:])
    score_limit = rope_attention(q[:, :, 39:40], k_near[:, :, :1], v[:, :, :1], step, 10000.0, True)
    assert score_limit[1].shape == (1, 1, 1, 1)  # one key: weight 1, the check is on the logits below
    d = q.shape[-1] ** 0.5
    from minillm.rope import apply_rope

    far = (apply_rope(q[:, :, 39:40], torch.tensor([6])) * k[:, :, :1]).sum(-1) / d
    near = (apply_rope(q[:, :, 39:40], torch.tensor([6])) * apply_rope(k[:, :, :1], torch.tensor([0]))).sum(-1) / d
    torch.testing.assert_close(far, near)
    assert w[0, 0, 39, 0] > 0


def test_lambda_model_equals_the_plain_model_when_the_sequence_fits_the_local_window(small_model):
    ids = torch.randint(0, 256, (1, 20))
    plain = small_model(ids).logits
    torch.testing.assert_close(small_model(ids, mask_mod=masks.lambda_shaped(4, 20), max_distance=20).logits, plain)
    assert not torch.allclose(small_model(ids, mask_mod=masks.lambda_shaped(4, 8), max_distance=8).logits, plain)


@pytest.mark.parametrize("chunk_size", [1, 5, 16])
def test_lambda_cache_streaming_equals_the_full_masked_forward_with_the_limit(small_model, chunk_size):
    ids = torch.randint(0, 256, (45,))
    full = small_model(ids[None], mask_mod=masks.lambda_shaped(3, 8), max_distance=8).logits[0, :-1]
    expected = F.cross_entropy(full, ids[1:], reduction="none")
    got = stream_nll(small_model, ids, LambdaCache(3, 8, 8), chunk_size)  # float32 losses
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


def test_lambda_cache_memory_is_constant(small_model):
    cache = LambdaCache(4, 16, 16)
    for t in range(60):
        small_model(torch.tensor([[t % 256]]), cache=cache)
        assert len(cache) == min(t + 1, 4 + 15)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda q: lambda_attention(q, q, q, -1, 4, 4), "n_global must be >= 0"),
        (lambda q: lambda_attention(q, q, q, 1, 0, 4), "n_local must be >= 1"),
        (lambda q: lambda_attention(q, q, q, 1, 4, 0), "max_distance must be an int >= 1"),
        (lambda q: lambda_attention(q, q[:, :, :3], q, 1, 4, 4), "must share one shape"),
    ],
)
def test_bad_lambda_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(1, 1, 6, 4))


def test_model_rejects_a_bad_distance_limit(small_model):
    with pytest.raises(ValueError, match="max_distance must be >= 1"):
        small_model(torch.ones(1, 3, dtype=torch.long), max_distance=0)
    with pytest.raises(TypeError, match="max_distance must be an int"):
        small_model(torch.ones(1, 3, dtype=torch.long), max_distance=2.5)
