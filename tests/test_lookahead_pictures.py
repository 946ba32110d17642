"""The picture of one lookahead step shows what the decoder really feeds its forward."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from minillm.decoding import LookaheadDecoder, greedy  # noqa: E402
from minillm.lookahead import LookaheadLayout, lookahead_layout, step_input  # noqa: E402
from minillm.lookahead_pictures import (  # noqa: E402
    EMPTY,
    plot_step,
    row_of,
    sees_one_token_per_position,
    token_grid,
    traced_step,
)

W, N, G = 4, 3, 4


@pytest.fixture
def decoder(small_model):
    """A warmed-up decoder whose next step verifies at least one pooled candidate (prompt lookup)."""
    prompt = [5, 6, 7, 5, 6, 7, 5, 6, 7, 5, 6]  # repeats: the pool holds tails after its last token
    dec = LookaheadDecoder(small_model, prompt, window=W, ngram=N, guesses=G, pool_from_prompt=True, seed=0)
    for _ in range(N - 2):
        dec.step()
    assert dec.pool.get(dec.sequence[-1]), "the fixture needs candidates for the next step"
    return dec


def test_the_drawn_input_is_what_the_step_feeds_its_forward(decoder):
    ids, layout = decoder.next_input()
    fed = traced_step(decoder)
    assert fed.ids == ids
    assert torch.equal(fed.positions, layout.positions) and torch.equal(fed.mask, layout.mask)


def test_the_grid_places_x_the_window_diagonals_and_the_candidates_where_the_paper_does(decoder):
    last, levels, tails = decoder.sequence[-1], decoder.levels, decoder.pool.get(decoder.sequence[-1])
    grid = token_grid(*decoder.next_input())
    assert grid.shape == (N - 1 + len(tails), W + N - 2)
    assert grid[0, :W].tolist() == [last] + levels[0]  # level 0: x, then W-1 guesses at positions 1..W-1
    for lvl in range(1, N - 1):  # level l, column j at position j + l: the columns are diagonals
        assert grid[lvl, lvl : lvl + W].tolist() == levels[lvl]
        assert (grid[lvl, :lvl] == EMPTY).all()
    for g, tail in enumerate(tails):  # candidate g at positions 1..N-1, where it would go if accepted
        assert grid[N - 1 + g].tolist() == [EMPTY, *tail] + [EMPTY] * (W - 2)


def test_every_token_of_a_step_sees_one_token_at_each_earlier_position():
    for w, n, g in [(1, 2, 0), (4, 3, 2), (5, 4, 2), (7, 5, 7)]:
        lay = lookahead_layout(w, n, g)
        assert sees_one_token_per_position(lay.positions, lay.mask)


def _with_mask(layout: LookaheadLayout, mask: torch.Tensor) -> LookaheadLayout:
    return LookaheadLayout(layout.positions, mask, layout.level, layout.column, layout.candidate, layout.labels)


def test_a_wrong_layout_fails_the_checks(decoder):
    ids, layout = decoder.next_input()
    fed = traced_step(decoder)
    leaky = layout.mask.clone()
    leaky[W, W + 1] = True  # level 1, column 0 reads level 1, column 1: a guess of another trajectory
    candidates_see_window = layout.mask.clone()
    candidates_see_window[layout.candidate_rows[0], 1] = True  # a candidate that reads a window guess
    causal = torch.ones_like(layout.mask).tril()  # the plain causal mask over the input order
    for wrong in (leaky, candidates_see_window, causal):
        assert not sees_one_token_per_position(layout.positions, wrong)
        assert not torch.equal(_with_mask(layout, wrong).mask, fed.mask)
    shifted = layout.positions.clone()
    shifted[layout.candidate_rows] -= 1  # candidates one position early: where x already is
    assert not sees_one_token_per_position(shifted, layout.mask)
    assert not torch.equal(shifted, fed.positions)
    assert not torch.equal(token_grid(ids[::-1], layout), token_grid(fed.ids, layout))


def test_the_decoder_still_returns_greedy_tokens(small_model):
    prompt = [1, 2, 3, 1, 2, 3, 1, 2]
    dec = LookaheadDecoder(small_model, prompt, window=W, ngram=N, guesses=G, pool_from_prompt=True, seed=0)
    while len(dec.tokens) < 12:
        traced_step(dec)
    assert dec.tokens[:12] == greedy(small_model, prompt, 12).tokens


def test_plot_step_writes_every_token_once_and_the_mask(decoder):
    ids, layout = decoder.next_input()
    axes = plot_step(ids, layout, str)
    assert sorted(t.get_text() for t in axes[0].texts) == sorted(str(t) for t in ids)
    image = axes[1].get_images()[0].get_array()
    assert torch.equal(torch.tensor((image != 1.0).any(-1)), layout.mask)
    plt.close("all")


def test_bad_inputs_are_refused(decoder):
    ids, layout = decoder.next_input()
    with pytest.raises(TypeError, match="decoder"):
        traced_step(object())
    with pytest.raises(ValueError, match="ids"):
        token_grid(ids[:-1], layout)
    with pytest.raises(ValueError, match="levels and candidates"):
        step_input(1, [[2, 3]], [], window=4, ngram=3)
    assert row_of(layout).max() == N - 2 + len(layout.candidate_rows) // (N - 1)
