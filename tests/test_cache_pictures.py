"""The mechanism pictures draw what the package's caches and re-computation really do."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from minillm import masks  # noqa: E402
from minillm.cache import DenseCache, SinkCache, WindowCache  # noqa: E402
from minillm.cache_pictures import EMPTY, cache_slots, plot_slots, recompute_windows  # noqa: E402
from minillm.streaming import recompute_nll  # noqa: E402


@pytest.fixture
def ids():
    return torch.randint(0, 256, (12,), generator=torch.Generator().manual_seed(0))


def test_a_dense_cache_grows_as_the_causal_mask(small_model, ids):
    table = cache_slots(small_model, ids, DenseCache(), 8)
    assert torch.equal(table != EMPTY, masks.materialize(masks.causal(), 8))
    assert all(torch.equal(row[: t + 1], torch.arange(t + 1)) for t, row in enumerate(table))  # slot s: token s


def test_a_window_cache_holds_what_the_next_query_sees_beside_itself(small_model, ids):
    W, n = 3, 10
    table = cache_slots(small_model, ids, WindowCache(W), n)
    assert table.shape == (n, W)
    window = masks.materialize(masks.sliding_window(W), n)
    for t in range(1, n):  # query t sees the cache after step t - 1, and itself
        held = table[t - 1][table[t - 1] != EMPTY].tolist()
        assert held + [t] == window[t].nonzero().flatten().tolist()
    assert table[-1].tolist() == [n - 3, n - 2, n - 1]  # oldest first: slot 0 is the next to leave


def test_a_sink_cache_keeps_its_first_tokens_in_the_first_slots(small_model, ids):
    table = cache_slots(small_model, ids, SinkCache(2, 3), 9)
    assert table[-1].tolist() == [0, 1, 6, 7, 8]


def test_recompute_windows_are_the_forwards_of_recompute_nll(small_model, ids):
    W = 4
    table = recompute_windows(len(ids), W)
    nll = recompute_nll(small_model, ids, W)
    for t, row in enumerate(table):
        seen = (row != EMPTY).nonzero().flatten()
        assert seen[-1] == t and torch.equal(row[seen], torch.arange(len(seen)))  # positions from 0, in order
        with torch.no_grad():
            logits = small_model(ids[None, seen]).logits[0, -1]
        torch.testing.assert_close(F.cross_entropy(logits, ids[t + 1]).float(), nll[t], rtol=1e-4, atol=1e-5)
    assert (table != EMPTY).sum(1).max() == W + 1


def test_plot_slots_labels_every_filled_cell_and_greys_the_rest(small_model, ids):
    table = cache_slots(small_model, ids, WindowCache(3), 6)
    ax = plot_slots(table, title="rolling")
    image = ax.get_images()[0].get_array()
    assert torch.equal(torch.tensor(~image.mask), table != EMPTY)
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(table[table != EMPTY].tolist())
    plt.close("all")


def test_bad_inputs_are_refused(small_model, ids):
    with pytest.raises(TypeError, match="cache"):
        cache_slots(small_model, ids, object(), 3)
    with pytest.raises(ValueError, match="n_steps"):
        cache_slots(small_model, ids, DenseCache(), 13)
    with pytest.raises(ValueError, match="ids"):
        cache_slots(small_model, ids[None], DenseCache(), 3)
    with pytest.raises(ValueError, match="window"):
        recompute_windows(8, 0)
    with pytest.raises(ValueError, match="table"):
        plot_slots(torch.zeros(3, 3))
