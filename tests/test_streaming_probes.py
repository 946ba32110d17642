import pytest
import torch
import torch.nn.functional as F

from minillm.cache import DenseCache, SinkCache, WindowCache
from minillm.probes import attention_entropy, attention_scores, by_distance, sink_mass
from minillm.streaming import recompute_nll, stream_nll


def _full_nll(model, ids):
    logits = model(ids[None]).logits[0, :-1]
    return F.cross_entropy(logits, ids[1:], reduction="none")


def test_stream_nll_with_a_dense_cache_equals_one_full_forward(small_model):
    ids = torch.randint(0, 256, (40,))
    with torch.no_grad():
        torch.testing.assert_close(stream_nll(small_model, ids, DenseCache()).double(), _full_nll(small_model, ids))


def test_recompute_equals_a_fresh_forward_over_each_window(small_model):
    ids = torch.randint(0, 256, (30,))
    window = 6
    nll = recompute_nll(small_model, ids, window, batch_size=4)
    with torch.no_grad():
        for t in (0, 3, 6, 7, 18, 28):  # warm-up and full windows
            context = ids[max(0, t - window) : t + 1]
            expected = F.cross_entropy(small_model(context[None]).logits[0, -1], ids[t + 1])
            assert nll[t].item() == pytest.approx(expected.item(), rel=1e-6)


def test_recompute_differs_from_the_window_cache_after_eviction(small_model):
    """Both see the same tokens; only recompute rebuilds their keys without the evicted context."""
    ids = torch.randint(0, 256, (30,))
    recompute = recompute_nll(small_model, ids, 6)
    window = stream_nll(small_model, ids, WindowCache(6))
    torch.testing.assert_close(recompute[:6], window[:6].to(recompute.dtype))  # before any eviction
    assert (recompute[10:] - window[10:]).abs().max() > 1e-4


def test_a_stream_can_be_continued_in_pieces(small_model):
    ids = torch.randint(0, 256, (30,))
    whole = stream_nll(small_model, ids, SinkCache(1, 4))
    cache = SinkCache(1, 4)
    pieces = [stream_nll(small_model, ids[a : b + 1], cache, chunk_size=3) for a, b in ((0, 11), (11, 29))]
    torch.testing.assert_close(torch.cat(pieces), whole)


def test_stream_nll_rejects_bad_input(small_model):
    with pytest.raises(ValueError, match="at least 2 tokens"):
        stream_nll(small_model, [1], DenseCache())
    with pytest.raises(TypeError, match="cache must be a KVCache"):
        stream_nll(small_model, [1, 2], "dense")
    with pytest.raises(ValueError, match="window must be an int >= 1"):
        recompute_nll(small_model, [1, 2, 3], 0)
    vocab = small_model.config.vocab_size  # the last token is only a target: the model never sees it
    for ids in ([1, 2, vocab], [1, -1, 2]):
        with pytest.raises(ValueError, match=f"ids must lie in 0..{vocab - 1}"):
            stream_nll(small_model, ids, DenseCache())
        with pytest.raises(ValueError, match=f"ids must lie in 0..{vocab - 1}"):
            recompute_nll(small_model, ids, 2)


def test_sink_mass_is_the_mean_weight_on_key_zero(small_model):
    ids = torch.randint(0, 256, (3, 24))
    mass = sink_mass(small_model, ids, first_query=8)
    attn = small_model(ids, return_attn=True).attn
    assert mass.shape == (small_model.config.n_layers, small_model.config.n_heads)
    torch.testing.assert_close(mass[1, 2], attn[1][:, 2, 8:, 0].mean())
    with pytest.raises(ValueError, match="T > first_query"):
        sink_mass(small_model, ids[:, :8], first_query=8)


def test_attention_scores_softmax_to_the_returned_weights(small_model):
    ids = torch.randint(0, 256, (2, 20))
    scores = attention_scores(small_model, ids, layer=1)
    weights = small_model(ids, return_attn=True).attn[1]
    torch.testing.assert_close(scores.softmax(-1), weights)
    assert torch.isinf(scores[0, 0, 3, 4]) and not torch.isinf(scores[0, 0, 4, 3])
    with pytest.raises(ValueError, match="layer must be in"):
        attention_scores(small_model, ids, layer=5)


def test_entropy_and_by_distance_on_known_inputs():
    uniform = torch.full((1, 1, 1, 8), 1 / 8)
    assert attention_entropy(uniform).item() == pytest.approx(torch.log(torch.tensor(8.0)).item())
    one_hot = torch.zeros(1, 1, 1, 8)
    one_hot[..., 3] = 1
    assert attention_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-6)
    scores = torch.arange(16.0).view(1, 1, 4, 4)  # entry (q, k) = 4q + k; distance q - k
    torch.testing.assert_close(by_distance(scores, [0, 1, 3], "max"), torch.tensor([15.0, 14.0, 12.0]))
    torch.testing.assert_close(by_distance(scores, [3], "mean"), torch.tensor([12.0]))
