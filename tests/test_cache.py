"""KV caches: bounds, eviction, positions, and equality with the references they must equal."""

import copy

import pytest
import torch

from minillm import masks
from minillm.cache import DenseCache, LambdaCache, SinkCache, WindowCache
from minillm.streaming import stream_nll

CACHES = {
    "dense": lambda: DenseCache(),
    "window": lambda: WindowCache(5),
    "sink": lambda: SinkCache(2, 5),
    "lambda": lambda: LambdaCache(2, 5, 4),
}


@pytest.mark.parametrize("n_sink, window", [(4, 6), (1, 3), (0, 5)])
def test_sink_cache_length_is_min_seen_and_size_and_keeps_sinks_then_recent(small_model, n_sink, window):
    cache = SinkCache(n_sink, window)
    ids = torch.randint(0, 256, (1, 30))
    for t in range(30):
        small_model(ids[:, t : t + 1], cache=cache)
        seen = t + 1
        assert len(cache) == min(seen, n_sink + window)
        assert all(k.shape[2] == len(cache) for k in cache.keys + cache.values)  # every layer, K and V
        expected = list(range(seen)) if seen <= n_sink + window else [*range(n_sink), *range(seen - window, seen)]
        assert cache.times.tolist() == expected


def test_sink_cache_equals_dense_before_the_first_eviction(small_model):
    ids = torch.randint(0, 256, (1, 9))
    sink, dense = SinkCache(4, 5), DenseCache()
    for t in range(9):
        a = small_model(ids[:, t : t + 1], cache=sink).logits
        b = small_model(ids[:, t : t + 1], cache=dense).logits
        assert torch.equal(a, b)
    for _ in (9, 10):  # the 10th token still sees all 9 + itself; eviction follows it
        a = small_model(ids[:, :1], cache=sink).logits
        b = small_model(ids[:, :1], cache=dense).logits
    assert not torch.allclose(a, b)  # the 11th token no longer sees tokens 4 and 5


def test_sink_cache_logits_depend_on_contents_not_on_absolute_time(small_model):
    """StreamingLLM caches keys before RoPE and places them inside the cache: step 100 and step
    10 000 with the same cache contents give the same logits, bit for bit."""
    cache = SinkCache(2, 6)
    with torch.no_grad():
        for t in torch.randint(0, 256, (20,)):
            small_model(t.view(1, 1), cache=cache)
    later = copy.deepcopy(cache)
    later.times[2:] += 10_000
    later.seen += 10_000
    token = torch.tensor([[65]])
    assert torch.equal(small_model(token, cache=cache).logits, small_model(token, cache=later).logits)


def test_the_cache_positions_never_exceed_the_cache_size():
    cache = SinkCache(4, 8)
    for _ in range(40):
        step = cache.begin(1)
        cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
        cache.end()
        assert step.k_pos.max() <= 4 + 8 and step.q_pos.item() == min(int(cache.seen) - 1, 12)


@pytest.mark.parametrize("name", list(CACHES))
def test_chunked_streaming_equals_token_by_token(small_model, name):
    ids = torch.randint(0, 256, (41,))
    one = stream_nll(small_model, ids, CACHES[name]())
    for chunk_size in (3, 7, 64):
        chunked = stream_nll(small_model, ids, CACHES[name](), chunk_size=chunk_size)
        torch.testing.assert_close(chunked, one, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", list(CACHES))
def test_every_cache_stays_bounded_by_its_policy(small_model, name):
    bound = {"dense": 40, "window": 5, "sink": 7, "lambda": 2 + 4}[name]
    cache = CACHES[name]()
    small_model(torch.randint(0, 256, (1, 40)), cache=cache)
    assert len(cache) == bound and cache.seen == 40


def test_window_cache_equals_the_sliding_window_mask_over_the_full_sequence(small_model):
    """Both are window attention: every token's keys were computed under its own window."""
    ids = torch.randint(0, 256, (1, 25))
    full = small_model(ids, mask_mod=masks.sliding_window(5)).logits
    cache = WindowCache(5)
    steps = [small_model(ids[:, t : t + 1], cache=cache).logits for t in range(25)]
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert not torch.allclose(full, small_model(ids).logits)  # and it is not dense attention


def test_lambda_cache_equals_dense_while_the_stream_fits_the_local_window(small_model):
    ids = torch.randint(0, 256, (1, 6))
    cache = LambdaCache(2, 8, 8)
    lam = torch.cat([small_model(ids[:, t : t + 1], cache=cache).logits for t in range(6)], 1)
    torch.testing.assert_close(lam, small_model(ids).logits)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: SinkCache(-1, 4), "n_sink must be an int >= 0"),
        (lambda: SinkCache(4, 0), "window must be an int >= 1"),
        (lambda: WindowCache(0), "window must be an int >= 1"),
        (lambda: LambdaCache(4, 0, 8), "n_local must be an int >= 1"),
        (lambda: LambdaCache(4, 8, 0), "max_distance must be an int >= 1"),
    ],
)
def test_impossible_cache_sizes_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cache_sizes_must_be_integers():
    with pytest.raises(TypeError, match="window must be an int"):
        SinkCache(4, 10.5)
    with pytest.raises(ValueError, match="chunk_size must be an int >= 1"):
        stream_nll(None, [1, 2], DenseCache(), chunk_size=0)
