import pytest
import torch
import torch.nn.functional as F

from minillm import masks
from minillm.attention import AttentionStep, distance_limit, reference_attention, rope_attention
from minillm.cache import DenseCache
from minillm.config import ModelConfig
from minillm.model import MiniLLM


def test_reference_attention_equals_sdpa_with_and_without_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, dtype=torch.float64) for _ in range(3))
    mask = masks.materialize(masks.sink_window(1, 3), 7)
    for m in (None, mask):
        out, weights = reference_attention(q, k, v, m)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=m))
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 7, dtype=torch.float64))
    assert (weights[..., ~mask] == 0).all()


def test_explicit_and_fast_paths_agree_inside_the_model(small_model):
    ids = torch.randint(0, 256, (2, 24))
    for mask_mod in (None, masks.sliding_window(5), masks.lambda_shaped(2, 6)):
        fast = small_model(ids, mask_mod=mask_mod).logits
        explicit = small_model(ids, mask_mod=mask_mod, return_attn=True)
        torch.testing.assert_close(fast, explicit.logits)
        assert len(explicit.attn) == small_model.config.n_layers
        assert explicit.attn[0].shape == (2, small_model.config.n_heads, 24, 24)


def test_returned_attention_is_zero_outside_the_mask_and_rows_sum_to_one(small_model):
    ids = torch.randint(0, 256, (1, 20))
    mask = masks.materialize(masks.sink_window(2, 3), 20)
    attn = small_model(ids, mask_mod=masks.sink_window(2, 3), return_attn=True).attn
    for a in attn:
        assert (a[..., ~mask] == 0).all()
        torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))


def test_model_is_causal_under_perturbation(small_model):
    ids = torch.randint(0, 256, (1, 20))
    changed = ids.clone()
    changed[0, 12] = (ids[0, 12] + 1) % 256
    a, b = small_model(ids).logits, small_model(changed).logits
    torch.testing.assert_close(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_shifting_every_position_changes_nothing(small_model):
    ids = torch.randint(0, 256, (1, 16))
    shifted = small_model(ids, positions=torch.arange(16) + 5000).logits
    torch.testing.assert_close(shifted, small_model(ids).logits, rtol=1e-7, atol=1e-7)


def test_cached_decoding_equals_the_full_forward(small_model):
    ids = torch.randint(0, 256, (2, 40))
    full = small_model(ids).logits
    cache = DenseCache()
    pieces = [small_model(ids[:, :9], cache=cache).logits]  # a prompt, then chunks of varied size
    for start, stop in ((9, 10), (10, 17), (17, 18), (18, 40)):
        pieces.append(small_model(ids[:, start:stop], cache=cache).logits)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full)
    assert len(cache) == 40 and cache.seen == 40
    assert all(k.shape == (2, small_model.config.n_heads, 40, small_model.config.head_dim) for k in cache.keys)


def test_cached_attention_weights_cover_all_cached_keys(small_model):
    ids = torch.randint(0, 256, (1, 10))
    cache = DenseCache()
    small_model(ids[:, :6], cache=cache)
    attn = small_model(ids[:, 6:], cache=cache, return_attn=True).attn
    full = small_model(ids, return_attn=True).attn
    for a, b in zip(attn, full):
        torch.testing.assert_close(a, b[:, :, 6:])


def test_distance_limit_scores_far_pairs_at_the_limit():
    """LM-Infinite's clamp: a pair 50 apart with limit 8 scores exactly like a pair 8 apart."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 1, 8, dtype=torch.float64) for _ in range(3))
    k2 = torch.cat([k, torch.randn_like(k)], dim=2)
    v2 = torch.cat([v, torch.randn_like(v)], dim=2)
    q_pos, k_pos = torch.tensor([50]), torch.tensor([0, 49])
    limited = AttentionStep(q_pos, k_pos, **distance_limit(q_pos, k_pos, 8))
    at_limit = AttentionStep(torch.tensor([8]), torch.tensor([0, -41]))  # same distances, 8 and 49 -> 8
    _, w_limited = rope_attention(q, k2, v2, limited, 10000.0, return_weights=True)
    _, w_true = rope_attention(q, k2, v2, AttentionStep(torch.tensor([8]), torch.tensor([0, 7])), 10000.0, True)
    torch.testing.assert_close(w_limited, w_true)
    _, w_unlimited = rope_attention(q, k2, v2, at_limit, 10000.0, return_weights=True)
    assert not torch.allclose(w_limited, w_unlimited)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda m: m(torch.randint(0, 256, (5,))), ValueError, r"ids must have shape \(B, T\)"),
        (lambda m: m(torch.rand(1, 5)), TypeError, "ids must be an integer tensor"),
        (lambda m: m(torch.tensor([[1, 2, 999]])), ValueError, "ids must lie in 0..258"),
        (lambda m: m(torch.tensor([[1, -2]])), ValueError, "ids must lie in"),
        (lambda m: m(torch.ones(1, 4, dtype=torch.long), positions=torch.arange(3)), ValueError, "positions must"),
        (lambda m: m(torch.ones(1, 4, dtype=torch.long), cache="dense"), TypeError, "cache must be a KVCache"),
        (
            lambda m: m(torch.ones(1, 4, dtype=torch.long), cache=DenseCache(), mask_mod=masks.causal()),
            ValueError,
            "leave positions, mask_mod and max_distance to the cache",
        ),
        (lambda m: m(torch.ones(1, 0, dtype=torch.long)), ValueError, "T >= 1"),
    ],
)
def test_bad_model_input_raises_a_clear_error(small_model, call, error, message):
    with pytest.raises(error, match=message):
        call(small_model)


def test_a_cache_rejects_a_changed_batch_size(small_model):
    cache = DenseCache()
    small_model(torch.ones(2, 3, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="batch size changed from 2 to 1"):
        small_model(torch.ones(1, 1, dtype=torch.long), cache=cache)


def test_model_requires_a_config():
    with pytest.raises(TypeError, match="config must be a ModelConfig"):
        MiniLLM({"d_model": 32})


def test_tied_embedding_and_parameter_count():
    model = MiniLLM(ModelConfig())
    assert model.head.weight is model.embed.weight
    C, V, L = 128, 259, 4
    assert model.num_parameters() == V * C + L * (4 * C * C + 8 * C * C + 2 * C) + C
