"""Chapter 03's picture of sinks draws what the package's SinkCache really does: which keys each query
sees (the sink-window mask) and at which RoPE position (its slot inside the cache)."""

import pytest
import torch

from minillm import masks
from minillm.cache import DenseCache, SinkCache, WindowCache
from minillm.cache_pictures import EMPTY
from minillm.sink_pictures import keys_seen

N_SINK, WINDOW, STEPS = 4, 3, 10  # the paper's §3.2 example: query 9 sees [0, 1, 2, 3, 6, 7, 8] and itself


def assert_streaming_llm(tokens, positions, n_sink, window):
    """The picture StreamingLLM's paper describes, written from the paper, not from the package:
    query t sees the first n_sink tokens, the `window` before it and itself, in that order, each key
    at its index inside the cache (positions 0, 1, 2, ...)."""
    for t, (row, pos) in enumerate(zip(tokens, positions)):
        held = row[row != EMPTY].tolist()
        sinks = list(range(min(n_sink, t)))
        recent = list(range(max(len(sinks), t - window), t))
        assert held == sinks + recent + [t], f"query {t} sees {held}"
        assert pos[pos != EMPTY].tolist() == list(range(len(held))), f"query {t}'s keys at {pos.tolist()}"


@pytest.fixture
def ids():
    return torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(0))


def test_the_sink_cache_is_drawn_as_the_paper_describes(small_model, ids):
    tokens, positions = keys_seen(small_model, ids, SinkCache(N_SINK, WINDOW), STEPS)
    assert_streaming_llm(tokens, positions, N_SINK, WINDOW)
    assert tokens[9].tolist() == [0, 1, 2, 3, 6, 7, 8, 9] and positions[9, -1] == 7  # paper §3.2
    seen = masks.materialize(masks.sink_window(N_SINK, WINDOW), STEPS)
    for t, row in enumerate(tokens):  # the keys drawn are the keys the package's mask lets query t see
        assert row[row != EMPTY].tolist() == seen[t].nonzero().flatten().tolist()


def test_a_dense_cache_keeps_true_positions(small_model, ids):
    tokens, positions = keys_seen(small_model, ids, DenseCache(), 6)
    assert torch.equal(tokens, positions)  # no re-positioning: a key's position is its stream index
    assert torch.equal(tokens != EMPTY, masks.materialize(masks.causal(), 6))


def test_a_drawing_that_evicts_the_sinks_fails(small_model, ids):
    tokens, positions = keys_seen(small_model, ids, WindowCache(N_SINK + WINDOW), STEPS)
    with pytest.raises(AssertionError, match="query 8 sees"):
        assert_streaming_llm(tokens, positions, N_SINK, WINDOW)


def test_a_drawing_with_positions_by_stream_index_fails(small_model, ids):
    tokens, _ = keys_seen(small_model, ids, SinkCache(N_SINK, WINDOW), STEPS)
    with pytest.raises(AssertionError, match="query 8's keys"):
        assert_streaming_llm(tokens, tokens.clone(), N_SINK, WINDOW)


def test_the_cache_is_left_as_a_plain_cache(small_model, ids):
    cache = SinkCache(2, 2)
    keys_seen(small_model, ids, cache, 5)
    assert "begin" not in vars(cache)  # the recording hook is gone
    assert cache.times.tolist() == [0, 1, 3, 4]


def test_bad_inputs_are_refused(small_model, ids):
    with pytest.raises(TypeError, match="cache"):
        keys_seen(small_model, ids, object(), 3)
    with pytest.raises(ValueError, match="ids"):
        keys_seen(small_model, ids[None], SinkCache(1, 2), 3)
    with pytest.raises(ValueError, match="n_steps"):
        keys_seen(small_model, ids, SinkCache(1, 2), 13)
    used = SinkCache(1, 2)
    keys_seen(small_model, ids, used, 2)
    with pytest.raises(ValueError, match="fresh"):
        keys_seen(small_model, ids, used, 2)
