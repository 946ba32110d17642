"""LM-Infinite: the Λ mask, the distance limit, blockwise attention and the Λ cache."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm import masks
from minillm.attention import AttentionStep, distance_limit, rope_attention
from minillm.cache import LambdaCache
from minillm.lambda_attention import block_keys, lambda_attention, lambda_forward, topk_middle_attention
from minillm.rope import apply_rope
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
        (lambda q: lambda_attention(q, q, q, -1, 4, 4), "n_global must be an int >= 0"),
        (lambda q: lambda_attention(q, q, q, 1, 0, 4), "n_local must be an int >= 1"),
        (lambda q: lambda_attention(q, q, q, 1, 4, 0), "max_distance must be an int >= 1"),
        (lambda q: lambda_attention(q, q[:, :, :3], q, 1, 4, 4), "must share one shape"),
    ],
)
def test_bad_lambda_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(torch.randn(1, 1, 6, 4))


def test_model_rejects_a_bad_distance_limit(small_model):
    with pytest.raises(ValueError, match="max_distance must be an int >= 1"):
        small_model(torch.ones(1, 3, dtype=torch.long), max_distance=0)
    with pytest.raises(TypeError, match="max_distance must be an int"):
        small_model(torch.ones(1, 3, dtype=torch.long), max_distance=2.5)


@settings(max_examples=40, deadline=None)
@given(start=st.integers(0, 60), size=st.integers(1, 20), n_global=st.integers(0, 8), n_local=st.integers(1, 20))
def test_block_keys_are_exactly_the_keys_some_query_of_the_block_may_see(start, size, n_global, n_local):
    stop = start + size
    mask = masks.materialize(masks.lambda_shaped(n_global, n_local), stop)[start:stop]  # (size, stop)
    assert torch.equal(block_keys(start, stop, n_global, n_local), mask.any(0).nonzero().flatten())


def test_lambda_forward_without_top_k_equals_the_dense_masked_model(small_model):
    ids = torch.randint(0, 256, (2, 70))
    expected = small_model(ids, mask_mod=masks.lambda_shaped(3, 8), max_distance=8).logits
    torch.testing.assert_close(lambda_forward(small_model, ids, 3, 8, 8), expected)
    more_layers_than_the_model = lambda_forward(small_model, ids, 3, 8, 8, top_k=4, from_layer=2)
    torch.testing.assert_close(more_layers_than_the_model, expected)


def test_top_k_with_every_middle_key_at_the_limit_is_the_limit_without_the_lambda(small_model):
    """All middle keys re-admitted, scored at insert_at = max_distance = n_local: every key is seen,
    far ones at the limit, which is `model(ids, max_distance=n_local)` with the causal mask."""
    ids = torch.randint(0, 256, (1, 60))
    got = lambda_forward(small_model, ids, 2, 8, 8, top_k=100, insert_at=8, first_query=0)
    torch.testing.assert_close(got, small_model(ids, max_distance=8).logits)


def test_top_k_changes_only_the_chosen_queries(small_model):
    ids = torch.randint(0, 256, (1, 60))
    plain = lambda_forward(small_model, ids, 2, 8, 8)
    topk = lambda_forward(small_model, ids, 2, 8, 8, top_k=3, from_layer=1, first_query=50)
    torch.testing.assert_close(topk[:, :50], plain[:, :50])
    assert not torch.allclose(topk[:, 50:], plain[:, 50:])


def _middle_case(T=50, n_global=3, n_local=8):
    g = torch.Generator().manual_seed(7)
    q, k, v = (torch.randn(1, 2, T, 8, generator=g, dtype=torch.float64) for _ in range(3))
    return q, k, v, torch.arange(T), n_global, n_local


def test_top_k_adds_exactly_the_best_k_middle_keys_at_the_pseudo_distance():
    q, k, v, pos, n_global, n_local = _middle_case()
    _, w = topk_middle_attention(q, k, v, pos, n_global, n_local, 8, top_k=2, insert_at=5, return_weights=True)
    lam = masks.materialize(masks.lambda_shaped(n_global, n_local), len(pos))  # (T, T)
    middle = (pos[:, None] >= pos[None, :]) & ~lam
    extra = (w > 0) & middle  # (B, H, T, T)
    assert torch.equal(extra.sum(-1), middle.sum(-1).clamp(max=2).expand_as(extra.sum(-1)))
    assert ((w > 0) | ~lam).all()  # every Λ key keeps a weight
    pseudo = (apply_rope(q, torch.full_like(pos, 5)) @ k.transpose(-2, -1)).masked_fill(~middle, float("-inf"))
    best = pseudo[0, :, 40].topk(2).indices.sort().values  # query 40: its two best middle keys, at distance 5
    assert torch.equal(extra[0, :, 40].nonzero()[:, 1].view(2, 2), best)


def test_top_k_zero_is_plain_lambda_attention():
    q, k, v, pos, n_global, n_local = _middle_case()
    out, _ = topk_middle_attention(q, k, v, pos, n_global, n_local, 8, top_k=0, insert_at=4)
    torch.testing.assert_close(out, lambda_attention(q, k, v, n_global, n_local, 8))


def test_bad_top_k_arguments(small_model):
    q, k, v, pos, n_global, n_local = _middle_case()
    with pytest.raises(ValueError, match="top_k must be an int >= 0"):
        topk_middle_attention(q, k, v, pos, n_global, n_local, 8, top_k=-1, insert_at=4)
    with pytest.raises(ValueError, match="first_query must lie in 0..9"):
        lambda_forward(small_model, torch.ones(1, 10, dtype=torch.long), 2, 4, 4, top_k=1, first_query=10)


# ---------------------------------------------------------------- the reference's two-branch rule


def _two_branch(q, k, v, q_pos, n_global, n_local, limit):
    """The reference's Λ attention written out as its two branches (models/llama.py + lambda_attention.py):
    a rotary branch over the local window at true distances, a stationary branch over the global
    keys outside the window (query rotated by `limit`, key un-rotated), one softmax over both.
    q (B, H, N, D) at positions q_pos (N,), k and v (B, H, S, D) at positions 0..S-1."""
    S, D = k.shape[2], q.shape[-1]
    k_pos = torch.arange(S)
    d = q_pos[:, None] - k_pos[None, :]  # (N, S)
    rot = apply_rope(q, q_pos) @ apply_rope(k, k_pos).mT / D**0.5  # (B, H, N, S)
    rot = rot.masked_fill(~((d >= 0) & (d < n_local)), float("-inf"))
    g = min(n_global, S)
    stationary = apply_rope(q, torch.full_like(q_pos, limit)) @ k[:, :, :g].mT / D**0.5  # (B, H, N, g)
    stationary = stationary.masked_fill(~(d[:, :g] >= n_local), float("-inf"))
    w = torch.cat([stationary, rot], dim=-1).softmax(-1)  # a global key is in one branch or the other
    return w[..., :g] @ v[:, :, :g] + w[..., g:] @ v


@pytest.mark.parametrize(("n_global", "n_local", "limit"), [(3, 8, 5), (3, 8, 7), (3, 8, 8), (3, 8, 13), (0, 6, 3)])
def test_reference_mode_attention_equals_the_two_branch_reference(n_global, n_local, limit):
    g = torch.Generator().manual_seed(limit)
    q, k, v = (torch.randn(1, 2, 50, 8, generator=g, dtype=torch.float64) for _ in range(3))
    expected = _two_branch(q, k, v, torch.arange(50), n_global, n_local, limit)
    for block in (None, 1, 7):
        got = lambda_attention(q, k, v, n_global, n_local, limit, block_size=block, mode="reference")
        torch.testing.assert_close(got, expected)
    clamp = lambda_attention(q, k, v, n_global, n_local, limit)
    assert torch.allclose(clamp, expected) == (limit in (n_local - 1, n_local))  # where the two rules agree


def _two_branch_logits(model, ids, n_global, n_local, limit):
    """A MiniLLM forward with `_two_branch` in every layer: (B, T, V)."""
    from minillm.model import repeat_kv

    x = model.embed(ids)
    pos = torch.arange(ids.shape[1])
    for block in model.blocks:
        q, k, v = block.attn.project(block.norm1(x))
        k, v = repeat_kv(k, block.attn.n_heads), repeat_kv(v, block.attn.n_heads)
        y = _two_branch(q, k, v, pos, n_global, n_local, limit)
        x = x + block.attn.proj(y.transpose(1, 2).reshape(x.shape))
        x = x + block.mlp(block.norm2(x))
    return model.head(model.norm(x))


@pytest.mark.parametrize(("n_global", "n_local", "limit"), [(3, 8, 5), (3, 8, 12), (2, 10, 10)])
@torch.no_grad()
def test_reference_mode_model_chunked_and_token_by_token_equals_the_two_branch_model(
    small_model, n_global, n_local, limit
):
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(limit))
    expected = _two_branch_logits(small_model, ids, n_global, n_local, limit)
    torch.testing.assert_close(lambda_forward(small_model, ids, n_global, n_local, limit, mode="reference"), expected)
    for chunk in (1, 7, 40):
        cache = LambdaCache(n_global, n_local, limit, mode="reference")
        got = torch.cat([small_model(ids[:, s : s + chunk], cache=cache).logits for s in range(0, 40, chunk)], 1)
        torch.testing.assert_close(got, expected)
    clamp = lambda_forward(small_model, ids, n_global, n_local, limit)
    assert torch.allclose(clamp, expected) == (limit == n_local)


def test_distance_mode_is_checked():
    q = torch.randn(1, 1, 5, 4)
    with pytest.raises(ValueError, match="mode must be one of"):
        lambda_attention(q, q, q, 1, 4, 4, mode="paper")
    with pytest.raises(ValueError, match="mode must be"):
        LambdaCache(1, 4, 4, mode="Reference")
