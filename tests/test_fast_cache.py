"""The package's fast caches against independent references, and a cache's robustness.

The oracle for each fast cache is the readable `KVCache` path given the same policy (mask_mod,
keep, positions, far pairs): it stores keys before RoPE and re-rotates every kept key at every
forward, the implementation the fast caches replaced. Λ and window caches also meet a dense
forward under the equivalent mask. Everything runs in float64, so "equal" means 1e-10.
"""

import copy

import pytest
import torch

from minillm import masks
from minillm.cache import DenseCache, FastCache, KVCache, LambdaCache, SinkCache, WindowCache
from minillm.config import ModelConfig
from minillm.model import MiniLLM

NEVER = 10**9


def readable(fast: FastCache) -> KVCache:
    """The same policy on KVCache's readable path (chapter 03's MySinkCache is one of these)."""

    class Readable(KVCache):
        positions_in_cache = type(fast).positions_in_cache
        keep = type(fast).keep
        far_pairs = type(fast).far_pairs

    cache = Readable()
    for name in ("n_fixed", "n_recent", "n_sink", "window", "n_global", "n_local", "max_distance", "mode", "mask_mod"):
        if hasattr(fast, name):
            setattr(cache, name, getattr(fast, name))
    return cache


POLICIES = {
    "dense": lambda: DenseCache(),
    "window": lambda: WindowCache(5),
    "sink": lambda: SinkCache(2, 5),
    "no sinks": lambda: SinkCache(0, 6),
    "one sink, window 1": lambda: SinkCache(1, 1),
    "lambda": lambda: LambdaCache(2, 5, 3),  # local pairs beyond the limit too
    "lambda, limit = local": lambda: LambdaCache(3, 6, 6),
    "lambda, n_local 1": lambda: LambdaCache(2, 1, 2),
    "limit only": lambda: LambdaCache(NEVER, 6, 4),  # every token global: dense with a distance limit
    "lambda, no limit": lambda: LambdaCache(3, 5, NEVER),  # no far pair: chunks take the fused path over a gap
    "lambda, reference rule": lambda: LambdaCache(2, 5, 3, mode="reference"),  # far globals pinned at 3
    "lambda, reference rule, limit > local": lambda: LambdaCache(2, 4, 7, mode="reference"),
}


def models():
    torch.manual_seed(0)
    mha = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=4, max_seq_len=32)).double().eval()
    gqa = ModelConfig(d_model=48, n_layers=3, n_heads=6, n_kv_heads=2, norm="rmsnorm", mlp="swiglu", max_seq_len=32)
    return {"mha": mha, "gqa": MiniLLM(gqa).double().eval()}


MODELS = models()


def feed(model, cache, ids, chunks):
    out, start = [], 0
    with torch.no_grad():
        for size in chunks:
            out.append(model(ids[:, start : start + size], cache=cache).logits)
            start += size
    return torch.cat(out, dim=1)


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("name", list(POLICIES))
def test_fast_cache_equals_the_readable_cache_token_by_token_and_in_chunks(model_name, name):
    model = MODELS[model_name]
    ids = torch.randint(0, 256, (2, 40), generator=torch.Generator().manual_seed(1))
    for chunks in ([1] * 40, [3] * 13 + [1], [7, 1, 1, 9, 22], [40]):
        fast, slow = POLICIES[name](), readable(POLICIES[name]())
        torch.testing.assert_close(
            feed(model, fast, ids, chunks), feed(model, slow, ids, chunks), rtol=1e-10, atol=1e-10
        )
        assert fast.times.tolist() == slow.times.tolist() and fast.seen == slow.seen == 40
        for a, b in zip(fast.keys + fast.values, slow.keys + slow.values, strict=True):  # keys before RoPE
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("model_name", list(MODELS))
def test_fast_lambda_cache_equals_a_dense_forward_under_the_lambda_mask_and_the_limit(model_name):
    """An oracle that shares no code with any cache: one forward over the whole stream."""
    model = MODELS[model_name]
    ids = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids, mask_mod=masks.lambda_shaped(3, 7), max_distance=5).logits
    for chunks in ([1] * 30, [4] * 7 + [2], [30]):
        torch.testing.assert_close(feed(model, LambdaCache(3, 7, 5), ids, chunks), full, rtol=1e-10, atol=1e-10)


def test_fast_window_cache_equals_a_dense_forward_under_the_sliding_window_mask():
    model = MODELS["gqa"]
    ids = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids, mask_mod=masks.sliding_window(6)).logits
    for chunks in ([1] * 30, [5] * 6):
        torch.testing.assert_close(feed(model, WindowCache(6), ids, chunks), full, rtol=1e-10, atol=1e-10)


def test_chapter_03_sink_cache_from_scratch_equals_the_fast_sink_cache():
    class MySinkCache(KVCache):  # chapter 03's class, as the learner writes it
        positions_in_cache = True

        def __init__(self, n_sink, window):
            super().__init__()
            self.n_sink, self.window = n_sink, window
            self.mask_mod = masks.sink_window(n_sink, window)

        def keep(self, n_entries):
            if n_entries <= self.n_sink + self.window:
                return None
            return torch.cat([torch.arange(self.n_sink), torch.arange(n_entries - self.window, n_entries)])

    model = MODELS["mha"]
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(
        feed(model, SinkCache(4, 6), ids, [1] * 40),
        feed(model, MySinkCache(4, 6), ids, [1] * 40),
        rtol=1e-10,
        atol=1e-10,
    )


@pytest.mark.parametrize("name", ["sink", "window", "lambda", "dense"])
def test_a_kept_key_is_written_once_and_never_copied_or_rotated_again(name):
    """O(1) upkeep: between two reallocations, a stored key's buffer slot keeps its exact bits, and
    reallocations (each moves the live entries once) come at most once per len(cache) tokens."""
    model, cache = MODELS["mha"], POLICIES[name]()
    ids = torch.randint(0, 256, (1, 200), generator=torch.Generator().manual_seed(5))
    moves, before = 0, None
    with torch.no_grad():
        for t in range(200):
            model(ids[:, t : t + 1], cache=cache)
            buffer = cache._k[1]
            if before is not None and buffer.data_ptr() != before[0]:
                moves += 1
            elif before is not None:  # every entry still kept has the bits it was written with
                (f, start, _, _), (old_f, old_start, old_end, _) = cache._at, before[2]
                first = max(start, old_start)
                kept = torch.cat([torch.arange(min(f, old_f)), torch.arange(first, max(first, old_end))])
                assert torch.equal(buffer[:, :, kept], before[1][:, :, kept])
            before = (buffer.data_ptr(), buffer.clone(), cache._at)
    bounded = {"dense": 5, "sink": 200 // 7 + 1, "window": 200 // 5 + 1, "lambda": 200 // 6 + 1}[name]
    assert moves <= bounded  # doubling for dense; for the others every >= len(cache) tokens


@pytest.mark.parametrize("name", list(POLICIES))
def test_one_new_token_sees_every_kept_entry(name):
    """The fast path skips the mask for a one-token forward: keep() must leave exactly what the
    next query sees, under the cache's own mask_mod, after chunks of any size."""
    model, cache = MODELS["mha"], POLICIES[name]()
    ids = torch.randint(0, 256, (1, 60), generator=torch.Generator().manual_seed(6))
    start = 0
    for size in (1, 3, 1, 9, 1, 1, 17, 2, 1, 20):
        with torch.no_grad():
            model(ids[:, start : start + size], cache=cache)
        start += size
        q = torch.tensor([cache.seen])
        k = torch.cat([cache.times, q])
        zero = torch.zeros((), dtype=torch.long)
        assert bool(torch.broadcast_to(cache.mask_mod(zero, zero, q[:, None], k[None, :]), (1, len(k))).all())


# ---- robustness: a cache is tied to the model that filled it; an interrupted forward leaves no trace


class Interrupt(Exception):
    pass


def snapshot(cache):
    return cache.times.clone(), cache.seen, [t.clone() for t in cache.keys + cache.values]


@pytest.mark.parametrize("make", [*POLICIES.values(), lambda: readable(SinkCache(2, 5))], ids=[*POLICIES, "readable"])
@pytest.mark.parametrize("error", [KeyboardInterrupt, Interrupt])
def test_an_interrupted_forward_leaves_the_cache_as_it_was(make, error):
    model = MODELS["gqa"]
    ids = torch.randint(0, 256, (1, 30), generator=torch.Generator().manual_seed(7))
    cache, twin = make(), make()
    feed(model, cache, ids, [9, 1, 1])
    feed(model, twin, ids, [9, 1, 1])
    before = snapshot(cache)

    def stop(module, args):
        raise error

    handle = model.blocks[1].register_forward_pre_hook(stop)
    try:
        for chunk in (ids[:, 11:12], ids[:, 11:15]):
            with pytest.raises(error), torch.no_grad():
                model(chunk, cache=cache)
    finally:
        handle.remove()
    after = snapshot(cache)
    assert torch.equal(after[0], before[0]) and after[1] == before[1]
    assert all(torch.equal(a, b) for a, b in zip(after[2], before[2], strict=True))
    # and the cache goes on exactly as one that never saw the interrupted forwards
    torch.testing.assert_close(feed(model, cache, ids[:, 11:], [1, 5, 13]), feed(model, twin, ids[:, 11:], [1, 5, 13]))


@pytest.mark.parametrize("make", [DenseCache, lambda: SinkCache(2, 5), lambda: readable(SinkCache(2, 5))])
def test_a_cache_refuses_another_model(make):
    a, b = MODELS["mha"], copy.deepcopy(MODELS["mha"])  # the same config and weights, another model
    cache = make()
    ids = torch.randint(0, 256, (1, 8))
    with torch.no_grad():
        a(ids, cache=cache)
        state = snapshot(cache)
        for other in (lambda: b, lambda: MODELS["gqa"], a.float):  # a.float(): the same model in float32
            with pytest.raises(ValueError, match="another model"):
                other()(ids[:, :1], cache=cache)
            a.double()
        a(ids[:, :1], cache=cache)  # the model that filled it goes on
    assert cache.seen == state[1] + 1


@pytest.mark.parametrize("make", [DenseCache, lambda: SinkCache(2, 5), lambda: readable(SinkCache(2, 5))])
def test_the_cache_protocol_checks_layers_heads_and_dtype(make):
    cache = make()
    k = torch.zeros(1, 2, 3, 4)
    cache.begin(3)
    cache.update(0, k, k)
    cache.end()
    for layer, bad, message in (
        (1, k, "layer 1 does not exist in this cache: a model with 1 layers filled it"),
        (0, torch.zeros(1, 3, 1, 4), "key/value heads 3"),
        (0, torch.zeros(1, 2, 1, 8), "head dim 8"),
        (0, torch.zeros(1, 2, 1, 4, dtype=torch.float64), "dtype torch.float64"),
        (0, torch.zeros(2, 2, 1, 4), "batch size changed from 1 to 2"),
    ):
        cache.begin(1)
        with pytest.raises(ValueError, match=message):
            cache.update(layer, bad, bad)
        cache.abort()
    assert len(cache) == 3 and cache.seen == 3


def test_end_after_an_incomplete_forward_restores_the_cache_and_says_so():
    """Code that calls end() in a `finally` (MEGABYTE's run_blocks) after an interrupted layer."""
    cache = DenseCache()
    k = torch.zeros(1, 2, 3, 4)
    cache.begin(3)
    for layer in (0, 1):
        cache.update(layer, k, k)
    cache.end()
    cache.begin(1)
    cache.update(0, k[:, :, :1], k[:, :, :1])
    with pytest.raises(RuntimeError, match="wrote 1 of the cache's 2 layers"):
        cache.end()
    assert len(cache) == 3 and cache.seen == 3 and all(t.shape[2] == 3 for t in cache.keys + cache.values)


def test_a_fast_cache_subclass_cannot_change_the_eviction_rule():
    with pytest.raises(TypeError, match="overrides keep"):

        class Mine(SinkCache):
            def keep(self, n_entries):
                return None


@pytest.fixture(scope="module")
def smollm2():
    from minillm.pretrained import load_pretrained

    try:
        return load_pretrained("smollm2-135m")
    except RuntimeError as e:  # no network and no cache
        pytest.skip(f"smollm2-135m cannot be fetched: {e}")


@pytest.mark.parametrize("make", [lambda: SinkCache(4, 12), lambda: LambdaCache(4, 13, 8)], ids=["sink", "lambda"])
def test_fast_caches_equal_the_readable_ones_on_smollm2(smollm2, make):
    """A real GQA model (9 query heads, 3 key/value heads), in float32: equal to float32 rounding."""
    ids = torch.randint(0, 49152, (1, 30), generator=torch.Generator().manual_seed(8))
    for chunks in ([1] * 30, [7, 7, 7, 9]):
        got, want = feed(smollm2, make(), ids, chunks), feed(smollm2, readable(make()), ids, chunks)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["dense", "window"])
def test_a_multi_token_forward_takes_the_fused_path(name, monkeypatch):
    """Chunks of more than one token (no far pairs) go to SDPA over the buffer as it lies: the
    explicit score matrix (stored_attention) is built only for one-token steps. The logits are
    checked against the readable cache in the tests above."""
    import minillm.fast_cache as fast_cache

    calls = []
    explicit = fast_cache.stored_attention
    monkeypatch.setattr(fast_cache, "stored_attention", lambda *a: calls.append(a[-1]) or explicit(*a))
    ids = torch.randint(0, 256, (1, 40), generator=torch.Generator().manual_seed(7))
    feed(MODELS["gqa"], POLICIES[name](), ids, [9, 1, 7, 1, 22])
    assert calls == [1] * 3 * 2  # the two one-token forwards, 3 layers each


def test_rope_angles_come_from_the_table_at_any_position():
    from minillm import rope

    positions = torch.tensor([0, 1, 17, 1023, 1024, 70000])  # 70000: beyond the table, computed
    want = rope.rope_cos_sin(positions, 64, 1e4, torch.float64)
    for bound in (1025, 70001):
        got = rope.rope_cos_sin_at(positions[positions < bound], bound, 64, 1e4, torch.float64)
        assert torch.equal(got[0], want[0][positions < bound]) and torch.equal(got[1], want[1][positions < bound])
    assert all(len(t[0]) <= rope.TABLE_POSITIONS for t in rope._TABLES.values())  # bounded memory
    x = torch.randn(5, 64, dtype=torch.float64)
    for p in positions.tolist():
        m = rope.rope_matrix(p, 64, 1e4, torch.float64)
        torch.testing.assert_close(x @ m, rope.rotate(x, *rope.rope_cos_sin(torch.tensor([p]), 64, 1e4, torch.float64)))
