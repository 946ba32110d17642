"""Greedy, sampling, Jacobi and lookahead decoding: exactness, progress bounds, pool, mask, cache."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from minillm.cache import DenseCache
from minillm.config import ModelConfig
from minillm.decoding import (
    LookaheadDecoder,
    NGramPool,
    forward_cost_curve,
    greedy,
    jacobi_decode,
    lookahead_decode,
    lookahead_layout,
    sample,
)
from minillm.lookahead import LookaheadCache, ngrams_from_window, verify_greedy, verify_sample
from minillm.model import MiniLLM

CONFIG = ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)
CODE = "for i in range(8):\n    total += i * 2\n"  # the tiny model's whole world


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny forwards are dominated by thread hand-offs; with other jobs on the CPU, 2 threads can
    # be 50x slower than 1.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_model(seed: int, scale: float = 10.0) -> MiniLLM:
    """A random float32 model; weights scaled up so it does not just repeat one token."""
    torch.manual_seed(seed)
    model = MiniLLM(CONFIG).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def trained_model() -> MiniLLM:
    """A tiny model trained for ~1 s on repeated code, so that lookahead's pool really hits."""
    torch.manual_seed(0)
    model = MiniLLM(CONFIG)
    data = torch.tensor(list((CODE * 40).encode()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        starts = torch.randint(0, len(data) - 33, (8,), generator=gen).tolist()
        batch = torch.stack([data[s : s + 33] for s in starts])  # (8, 33)
        loss = F.cross_entropy(model(batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.3, "the tiny model did not learn its text"
    return model.eval()


def code_prompt(start: int, length: int = 20) -> list[int]:
    return list((CODE * 3).encode())[start : start + length]


def check_progress(result, max_new_tokens: int, most: int) -> None:
    assert len(result.tokens) == max_new_tokens == sum(result.accepted)
    assert result.steps == len(result.accepted) <= max_new_tokens
    assert all(1 <= a <= most for a in result.accepted)


# ---- greedy and sampling --------------------------------------------------------------------


def test_greedy_is_the_argmax_of_a_full_forward_one_token_per_step():
    model = random_model(0)
    prompt = torch.randint(0, 256, (9,), generator=torch.Generator().manual_seed(1)).tolist()
    result = greedy(model, prompt, 20)
    assert result.steps == 20 and result.accepted == [1] * 20
    logits = model(torch.tensor([prompt + result.tokens])).logits[0]  # (T, V)
    assert result.tokens == logits[len(prompt) - 1 : -1].argmax(-1).tolist()


def test_sampling_is_seeded_and_tends_to_greedy_as_temperature_goes_to_zero(trained_model):
    prompt = code_prompt(3)
    reference = greedy(trained_model, prompt, 30).tokens
    assert sample(trained_model, prompt, 30, temperature=1e-8).tokens == reference
    assert sample(trained_model, prompt, 30, temperature=2.0, top_k=1, seed=5).tokens == reference
    a = sample(trained_model, prompt, 30, temperature=2.0, seed=1).tokens
    assert a == sample(trained_model, prompt, 30, temperature=2.0, generator=torch.Generator().manual_seed(1)).tokens
    assert a != sample(trained_model, prompt, 30, temperature=2.0, seed=2).tokens
    assert a != reference


def test_top_k_sampling_only_draws_among_the_k_most_likely_tokens():
    model = random_model(3, scale=1.0)  # flat logits: without top-k, draws would spread out
    prompt = [1, 2, 3]
    for seed in range(3):
        tokens = sample(model, prompt, 12, temperature=5.0, top_k=3, seed=seed).tokens
        logits = model(torch.tensor([prompt + tokens])).logits[0, len(prompt) - 1 : -1]  # (12, V)
        top3 = logits.topk(3, dim=-1).indices
        assert all(t in row.tolist() for t, row in zip(tokens, top3, strict=True))


# ---- Jacobi ---------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("window", [1, 4, 9])
def test_jacobi_returns_exactly_the_greedy_tokens(seed, window):
    model = random_model(seed)
    prompt = torch.randint(0, 256, (1 + 4 * seed,), generator=torch.Generator().manual_seed(seed)).tolist()
    result = jacobi_decode(model, prompt, 30, window=window, seed=seed)
    assert result.tokens == greedy(model, prompt, 30).tokens
    check_progress(result, 30, window + 1)


def test_jacobi_trajectory_records_the_guess_of_every_iteration(trained_model):
    prompt = code_prompt(0)
    result = jacobi_decode(trained_model, prompt, 40, window=6)
    assert result.tokens == greedy(trained_model, prompt, 40).tokens
    assert len(result.trajectory) == result.steps
    assert max(result.accepted) > 1  # converged prefixes do happen on this text
    assert set(result.trajectory[0][1]) <= set(prompt)  # the first guess is copied from the prompt
    settled = 0
    for step, ((start, guess), n) in enumerate(zip(result.trajectory, result.accepted, strict=True)):
        assert start == settled and len(guess) == 6
        # a step settles the longest converged prefix of its guess and the token after it
        assert guess[: n - 1] == result.tokens[start : start + n - 1]
        if step < result.steps - 1 and n - 1 < len(guess):  # (the last step may be cut short)
            assert guess[n - 1] != result.tokens[start + n - 1]
        settled += n
    grid = result.trajectory_grid()
    assert grid.shape == (result.steps, 40)
    assert (grid[0, :6] == torch.tensor(result.trajectory[0][1])).all() and (grid[0, 6:] == -1).all()


# ---- lookahead: exactness and progress ------------------------------------------------------

SETTINGS = [(1, 2, 1), (3, 2, 3), (5, 3, 5), (4, 4, 2), (7, 5, 7), (2, 6, 9), (5, 3, 0)]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("W", "N", "G"), SETTINGS)
def test_lookahead_returns_exactly_the_greedy_tokens_on_random_models(seed, W, N, G):
    model = random_model(seed)
    prompt = torch.randint(0, 256, (1 + 5 * seed,), generator=torch.Generator().manual_seed(seed)).tolist()
    result = lookahead_decode(model, prompt, 30, window=W, ngram=N, guesses=G, seed=seed)
    assert result.tokens == greedy(model, prompt, 30).tokens
    check_progress(result, 30, N)


@settings(max_examples=20, deadline=None)
@given(
    W=st.integers(1, 6),
    N=st.integers(2, 5),
    G=st.integers(0, 6),
    start=st.integers(0, 30),
    length=st.integers(1, 24),
    pool_from_prompt=st.booleans(),
)
def test_lookahead_equals_greedy_on_the_trained_model_for_any_setting(
    trained_model, W, N, G, start, length, pool_from_prompt
):
    prompt = code_prompt(start, length)
    result = lookahead_decode(
        trained_model, prompt, 24, window=W, ngram=N, guesses=G, pool_from_prompt=pool_from_prompt
    )
    assert result.tokens == greedy(trained_model, prompt, 24).tokens
    check_progress(result, 24, N)
    if G == 0:
        assert result.accepted == [1] * 24


@pytest.mark.parametrize(("W", "N", "G", "pool_from_prompt"), [(5, 3, 5, False), (7, 5, 7, False), (4, 4, 4, True)])
def test_lookahead_accepts_several_tokens_per_step_and_stays_exact(trained_model, W, N, G, pool_from_prompt):
    for start in (0, 7, 19):
        prompt = code_prompt(start)
        result = lookahead_decode(
            trained_model, prompt, 60, window=W, ngram=N, guesses=G, pool_from_prompt=pool_from_prompt
        )
        assert result.tokens == greedy(trained_model, prompt, 60).tokens
        check_progress(result, 60, N)
        assert max(result.accepted) > 1 and result.compression > 1.3


def test_a_fully_matched_candidate_settles_n_tokens(trained_model):
    # our departure from the reference: the bonus token after a full match is kept
    result = lookahead_decode(trained_model, code_prompt(0), 60, window=7, ngram=5, guesses=7)
    assert max(result.accepted) == 5


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("W", "N", "G"), [(3, 2, 3), (5, 3, 5), (4, 4, 2), (7, 5, 7)])
def test_reference_rule_is_exact_and_settles_at_most_n_minus_one_per_step(seed, W, N, G):
    model = random_model(seed)
    prompt = torch.randint(0, 256, (1 + 5 * seed,), generator=torch.Generator().manual_seed(seed)).tolist()
    result = lookahead_decode(model, prompt, 30, window=W, ngram=N, guesses=G, seed=seed, accept="reference")
    assert result.tokens == greedy(model, prompt, 30).tokens
    assert max(result.accepted) <= max(1, N - 1)


@pytest.mark.parametrize("start", [0, 7, 19])
def test_reference_rule_never_compresses_more_than_the_bonus_rule(trained_model, start):
    prompt = code_prompt(start)
    expected = greedy(trained_model, prompt, 60).tokens
    runs = {
        rule: lookahead_decode(trained_model, prompt, 60, window=7, ngram=5, guesses=7, accept=rule)
        for rule in ("reference", "bonus")
    }
    assert runs["reference"].tokens == runs["bonus"].tokens == expected
    assert max(runs["reference"].accepted) == 4 < max(runs["bonus"].accepted) == 5  # the rule is not ignored
    assert runs["reference"].compression <= runs["bonus"].compression


def test_reference_rule_cache_equals_the_greedy_cache(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(0), window=7, ngram=5, guesses=7, accept="reference")
    settled = [len(decoder.step().tokens) for _ in range(20)]
    assert max(settled) == 4  # full matches happened and dropped their bonus token
    cache = DenseCache()
    trained_model(torch.tensor([decoder.sequence[:-1]]), cache=cache)
    assert len(decoder.cache) == len(cache) == len(decoder.sequence) - 1
    for ours, theirs in zip(decoder.cache.keys, cache.keys, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_guesses_zero_settles_exactly_one_token_per_step(trained_model):
    prompt = code_prompt(0)
    result = lookahead_decode(trained_model, prompt, 40, window=7, ngram=5, guesses=0)
    assert result.accepted == [1] * 40 and result.steps == 40
    assert result.tokens == greedy(trained_model, prompt, 40).tokens


def test_a_step_with_no_pooled_candidate_settles_exactly_one_token(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(0), window=5, ngram=4, guesses=5)
    empty = 0
    for _ in range(25):
        had_candidates = bool(decoder.pool.get(decoder.sequence[-1]))
        verdict = decoder.step()
        if not had_candidates:
            empty += 1
            assert len(verdict.tokens) == 1 and verdict.candidate is None
    assert empty >= 2  # the N-2 warm-up steps at least
    assert empty < 25  # and the pool did fill


def test_warm_up_grows_the_window_to_n_minus_one_levels(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(0), window=4, ngram=5, guesses=3)
    sizes = []
    for _ in range(5):
        sizes.append((len(decoder.levels), len(decoder.pool)))
        decoder.step()
    assert [s[0] for s in sizes] == [1, 2, 3, 4, 4]
    assert [s[1] for s in sizes[:4]] == [0, 0, 0, 0] and sizes[4][1] > 0  # n-grams only once warm
    assert [len(level) for level in decoder.levels] == [3, 4, 4, 4]  # x is level 0's column 0


def test_a_warm_step_drops_the_oldest_level_and_pools_the_column_ngrams(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(0), window=4, ngram=4, guesses=50)
    for _ in range(3):
        decoder.step()
    old, last = [list(level) for level in decoder.levels], decoder.sequence[-1]
    decoder.step()
    new = decoder.levels[-1]
    assert decoder.levels[:-1] == [old[1][1:], old[2]]  # the next x takes column 0 of level 0
    assert len(new) == 4
    assert (old[1][0], old[2][0], new[0]) in decoder.pool.get(last)  # column 0 starts at x
    assert (old[1][3], old[2][3], new[3]) in decoder.pool.get(old[0][2])


def test_each_window_column_yields_the_ngram_along_its_diagonal():
    levels = [[1, 2], [3, 4, 5], [6, 7, 8]]  # W=3, N=4: level 0 holds W-1 tokens after x=0
    new = [9, 10, 11]
    assert list(ngrams_from_window(0, levels, new)) == [(0, (3, 6, 9)), (1, (4, 7, 10)), (2, (5, 8, 11))]


# ---- the n-gram pool ------------------------------------------------------------------------


def test_pool_keeps_at_most_g_tails_per_key_dropping_the_least_recently_used():
    pool = NGramPool(ngram=3, guesses=2)
    pool.add(1, (2, 3))
    pool.add(1, (4, 5))
    pool.add(1, (2, 3))  # refreshed: now the newest
    pool.add(1, (6, 7))  # full: drops (4, 5), the least recently used
    assert pool.get(1) == [(2, 3), (6, 7)]
    pool.add(9, (1, 1))
    assert pool.get(9) == [(1, 1)] and pool.get(5) == [] and len(pool) == 3
    with pytest.raises(ValueError, match="tail"):
        pool.add(1, (1, 2, 3))
    empty = NGramPool(ngram=3, guesses=0)
    empty.add(1, (2, 3))
    assert len(empty) == 0 and empty.get(1) == []


def test_pool_from_a_sequence_holds_its_ngrams_keyed_by_first_token():
    pool = NGramPool(ngram=3, guesses=4)
    pool.add_sequence([5, 1, 2, 5, 1, 3, 5])
    assert pool.get(5) == [(1, 2), (1, 3)]
    assert pool.get(1) == [(2, 5), (3, 5)] and pool.get(2) == [(5, 1)] and 3 not in pool


def test_pool_stays_bounded_during_decoding(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(2), window=8, ngram=4, guesses=3, pool_from_prompt=True)
    for _ in range(20):
        decoder.step()
        for key in decoder.pool.keys():
            tails = decoder.pool.get(key)
            assert 1 <= len(tails) <= 3 and all(len(t) == 3 for t in tails)
            assert len(set(tails)) == len(tails)


# ---- the step's mask and positions ----------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(W=st.integers(1, 6), N=st.integers(2, 6), G=st.integers(0, 5), data=st.data())
def test_candidates_and_window_never_see_each_other(W, N, G, data):
    levels = data.draw(st.integers(1, N - 1))
    layout = lookahead_layout(W, N, G, levels)
    T = levels * W + G * (N - 1)
    assert layout.mask.shape == (T, T) and len(layout.positions) == T == len(layout.labels)
    mask, cand, lvl, col = layout.mask, layout.candidate, layout.level, layout.column
    assert mask[:, 0].all() and not mask[0, 1:].any()  # everything sees x; x sees only itself
    assert mask.diagonal().all()
    window, candidates = lvl >= 0, cand >= 0  # x is the window's level 0, column 0
    guesses = window & (torch.arange(T) > 0)
    assert not mask[window][:, candidates].any()  # the window never sees a candidate
    assert not mask[candidates][:, guesses].any()  # nor a candidate the window's guesses
    same = cand[:, None] == cand[None, :]
    assert not (mask & candidates[:, None] & candidates[None, :] & ~same).any()  # nor each other
    chain = candidates[:, None] & same & (col[None, :] <= col[:, None])
    assert torch.equal(mask[candidates][:, candidates], chain[candidates][:, candidates])
    assert torch.equal(layout.positions[candidates], 1 + col[candidates])
    assert torch.equal(layout.positions[window], col[window] + lvl[window])


def test_window_mask_follows_the_diagonal_trajectories():
    # W=3, N=4 (3 levels), no candidates; tokens: x (= L0.0), L0.1-2, L1.0-2, L2.0-2
    layout = lookahead_layout(3, 4, 0)
    expected = {
        "x": ["x"],
        "L0.2": ["x", "L0.1", "L0.2"],
        "L1.0": ["x", "L1.0"],
        "L1.2": ["x", "L0.1", "L0.2", "L1.2"],
        "L2.1": ["x", "L0.1", "L1.1", "L2.1"],
    }
    for row, seen in expected.items():
        q = layout.labels.index(row)
        assert [layout.labels[k] for k in layout.mask[q].nonzero().flatten()] == seen
    assert layout.positions.tolist() == [0, 1, 2, 1, 2, 3, 2, 3, 4]


def test_every_row_of_a_step_equals_a_plain_forward_over_what_it_sees():
    """Mask + positions are right iff each row's logits equal a causal forward over the prompt and
    the step tokens it may see: the candidates' KV is then the KV greedy decoding would compute."""
    model = random_model(4)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, 256, (7,), generator=gen).tolist()
    W, N, G = 3, 4, 2
    layout = lookahead_layout(W, N, G)
    ids = prompt[-1:] + torch.randint(0, 256, (len(layout.positions) - 1,), generator=gen).tolist()
    cache = LookaheadCache()
    model(torch.tensor([prompt[:-1]]), cache=cache)
    cache.plan(layout.positions, layout.mask)
    logits = model(torch.tensor([ids]), cache=cache).logits[0]  # (T, V)
    for row in range(len(ids)):
        seen = layout.mask[row].nonzero().flatten()
        assert torch.equal(layout.positions[seen], torch.arange(len(seen)))  # consecutive positions
        context = prompt[:-1] + [ids[k] for k in seen.tolist()]
        plain = model(torch.tensor([context])).logits[0, -1]
        torch.testing.assert_close(logits[row], plain, rtol=1e-4, atol=1e-4)


def test_cache_after_lookahead_steps_equals_the_greedy_cache(trained_model):
    decoder = LookaheadDecoder(trained_model, code_prompt(5), window=5, ngram=4, guesses=5)
    settled = [len(decoder.step().tokens) for _ in range(15)]
    assert max(settled) > 1  # committed candidates, not just one token per step
    sequence = decoder.sequence
    cache = DenseCache()  # what greedy builds: the prompt, then one token at a time
    trained_model(torch.tensor([sequence[: decoder.n_prompt - 1]]), cache=cache)
    for token in sequence[decoder.n_prompt - 1 : -1]:
        trained_model(torch.tensor([[token]]), cache=cache)
    assert len(decoder.cache) == len(cache) == len(sequence) - 1
    assert torch.equal(decoder.cache.times, cache.times)
    for ours, theirs in zip(decoder.cache.keys + decoder.cache.values, cache.keys + cache.values, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)


def test_lookahead_steps_neither_copy_nor_rerotate_the_cache(trained_model):
    """The cache of lookahead's steps is a fast one: between two reallocations (doubling, so a few)
    every committed entry keeps its buffer slot and its bits, step after step, in every layer."""
    decoder = LookaheadDecoder(trained_model, code_prompt(5), window=5, ngram=4, guesses=5)
    cache, moves, before, settled = decoder.cache, 0, None, []
    for _ in range(15):
        settled.append(len(decoder.step().tokens))
        n_kept = len(cache)
        if before is not None and cache._k[0].data_ptr() != before[0]:
            moves += 1
        elif before is not None:
            for old, new in zip(before[1], cache._k + cache._v, strict=True):
                assert torch.equal(new[:, :, : before[2]], old[:, :, : before[2]])
        before = (cache._k[0].data_ptr(), [b.clone() for b in cache._k + cache._v], n_kept)
    assert max(settled) > 1 and moves <= 2  # candidates were committed; the buffer grew by doubling


def test_forward_cost_curve_times_each_size_over_the_same_context():
    model, seen = random_model(0), []
    hook = model.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((args[0].shape[1], len(kwargs["cache"]))), with_kwargs=True
    )
    try:
        curve = forward_cost_curve(model, n_new=(1, 4, 2), context=6, repeats=3)
    finally:
        hook.remove()
    assert list(curve) == [1, 4, 2] and all(ms > 0 for ms in curve.values())
    assert seen == [(6, 0)] + [(n, 6) for _ in range(3) for n in (1, 4, 2)]  # interleaved, context kept
    with pytest.raises(ValueError, match="n_new"):
        forward_cost_curve(model, n_new=(), context=6)


def test_cache_only_commits_a_causal_chain_starting_at_the_last_token():
    model = random_model(0)
    layout = lookahead_layout(2, 3, 1)
    cache = LookaheadCache()
    cache.plan(layout.positions, layout.mask)
    model(torch.randint(0, 256, (1, len(layout.positions))), cache=cache)
    with pytest.raises(RuntimeError, match="commit"):
        model(torch.tensor([[1]]), cache=cache)
    with pytest.raises(ValueError, match="consecutive"):
        cache.commit([0, 3])  # L1.1 sits at offset 2, not 1
    cache.commit([0, 4, 5])  # x and candidate 0 (offsets 0, 1, 2)
    assert len(cache) == 3 and cache.seen == 3 and cache.times.tolist() == [0, 1, 2]


# ---- acceptance rules -----------------------------------------------------------------------


def test_greedy_verification_takes_the_longest_matching_prefix_plus_the_models_token():
    candidates = torch.tensor([[7, 8, 1], [7, 9, 9], [7, 8, 2]])  # (G=3, N-1=3)
    preds = torch.tensor([[8, 2, 4], [9, 9, 5], [8, 2, 6]])  # the model's token after each one
    verdict = verify_greedy(candidates, 7, preds)
    assert (verdict.candidate, verdict.n_matched, verdict.tokens) == (1, 3, [7, 9, 9, 5])  # full match + bonus
    verdict = verify_greedy(candidates, 3, preds)
    assert (verdict.n_matched, verdict.tokens) == (0, [3])
    verdict = verify_greedy(candidates[[0, 2]], 7, preds[[0, 2]])
    assert (verdict.candidate, verdict.tokens) == (1, [7, 8, 2, 6])
    assert verify_greedy(torch.empty(0, 3, dtype=torch.long), 4, torch.empty(0, 3, dtype=torch.long)).tokens == [4]
    # the reference's rule: a full match settles its N-1 tokens and drops the bonus; partial ones are unchanged
    verdict = verify_greedy(candidates, 7, preds, bonus=False)
    assert (verdict.candidate, verdict.n_matched, verdict.tokens) == (1, 3, [7, 9, 9])
    assert verify_greedy(candidates[[0, 2]], 7, preds[[0, 2]], bonus=False).tokens == [7, 8, 2]
    partial = torch.tensor([[7, 8, 5]])  # matches 2 of 3: the model's token is still appended
    assert verify_greedy(partial, 7, preds[[0]], bonus=False).tokens == [7, 8, 2]
    assert verify_greedy(partial, 7, preds[[0]], bonus=True).tokens == [7, 8, 2]
    with pytest.raises(TypeError, match="bonus"):
        verify_greedy(candidates, 7, preds, bonus=1)


def test_sampling_verification_draws_each_token_from_the_model_distribution():
    """Drafts 2, 1, 2 (dedup: 2 then 1): accepting draft d with p(d), renormalising after each
    rejection and drawing from the residual must leave the first token distributed as p, and the
    second, after an accepted 2, as the distribution after 2."""
    first = torch.tensor([0.1, 0.2, 0.3, 0.15, 0.25], dtype=torch.float64)
    after2 = torch.tensor([0.5, 0.1, 0.1, 0.2, 0.1], dtype=torch.float64)
    after1 = torch.tensor([0.2, 0.2, 0.2, 0.2, 0.2], dtype=torch.float64)
    candidates = torch.tensor([[2, 0], [1, 4], [2, 3]])  # (G=3, N-1=2)
    probs = torch.stack([torch.stack([after2, first]), torch.stack([after1, first]), torch.stack([after2, first])])
    gen = torch.Generator().manual_seed(0)
    n = 4000
    firsts, seconds = torch.zeros(5), torch.zeros(5)
    for _ in range(n):
        tokens = verify_sample(candidates, first, probs, gen).tokens
        firsts[tokens[0]] += 1
        if tokens[0] == 2:
            seconds[tokens[1]] += 1
    torch.testing.assert_close(firsts / n, first.float(), atol=0.03, rtol=0)
    torch.testing.assert_close(seconds / seconds.sum(), after2.float(), atol=0.05, rtol=0)


def test_lookahead_sampling_is_greedy_at_top_k_one_and_seeded_otherwise(trained_model):
    prompt = code_prompt(1)
    reference = greedy(trained_model, prompt, 40).tokens
    for kwargs in ({"temperature": 1.0, "top_k": 1}, {"temperature": 1e-8}):
        result = lookahead_decode(trained_model, prompt, 40, window=5, ngram=4, guesses=5, **kwargs)
        assert result.tokens == reference and max(result.accepted) > 1
    hot = {"window": 5, "ngram": 4, "guesses": 5, "temperature": 1.5}
    a = lookahead_decode(trained_model, prompt, 40, seed=3, **hot)
    assert a.tokens == lookahead_decode(trained_model, prompt, 40, seed=3, **hot).tokens
    check_progress(a, 40, 4)
    # this model knows its code by heart, so a single hot draw may still be greedy's; five seeds may not all be
    outputs = [tuple(lookahead_decode(trained_model, prompt, 40, seed=s, **hot).tokens) for s in range(5)]
    assert any(list(out) != reference for out in outputs) and len(set(outputs)) > 1


# ---- bad arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"window": 0}, ValueError, "window"),
        ({"window": 2.0}, TypeError, "window"),
        ({"window": True}, TypeError, "window"),
        ({"ngram": 1}, ValueError, "ngram"),
        ({"ngram": "3"}, TypeError, "ngram"),
        ({"guesses": -1}, ValueError, "guesses"),
        ({"guesses": 1.5}, TypeError, "guesses"),
        ({"temperature": -0.5}, ValueError, "temperature"),
        ({"top_k": 0}, ValueError, "top_k"),
        ({"pool_from_prompt": 1}, TypeError, "pool_from_prompt"),
        ({"accept": "paper"}, ValueError, "accept"),
        ({"max_new_tokens": -1}, ValueError, "max_new_tokens"),
        ({"prompt_ids": []}, ValueError, "prompt_ids"),
        ({"prompt_ids": [1, 300]}, ValueError, "prompt_ids"),
        ({"prompt_ids": "abc"}, TypeError, "prompt_ids"),
        ({"prompt_ids": [1.0, 2.0]}, TypeError, "prompt_ids"),
        ({"prompt_ids": torch.tensor([1.0])}, TypeError, "prompt_ids"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, name):
    model = random_model(0)
    call = {"model": model, "prompt_ids": [1, 2, 3], "max_new_tokens": 5, **kwargs}
    with pytest.raises(error, match=name):
        lookahead_decode(**call)


def test_bad_arguments_of_the_other_decoders():
    model = random_model(0)
    with pytest.raises(ValueError, match="window"):
        jacobi_decode(model, [1, 2], 5, window=0)
    with pytest.raises(TypeError, match="prompt_ids"):
        greedy(model, [True], 5)
    with pytest.raises(TypeError, match="model"):
        greedy(object(), [1], 5)
    with pytest.raises(TypeError, match="max_new_tokens"):
        sample(model, [1], 2.5)
    assert greedy(model, torch.tensor([1, 2]), 0).tokens == []


def test_draw_follows_the_weights_never_picks_a_zero_weight_and_uses_one_uniform():
    from minillm.sampling import draw

    weights = torch.tensor([0.0, 3.0, 0.0, 1.0, 0.0])  # unnormalized on purpose
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([draw(weights, g) for _ in range(4000)]), minlength=5)
    assert counts[[0, 2, 4]].sum() == 0
    assert abs(counts[1].item() / 4000 - 0.75) < 0.03
    # one uniform per draw, mapped through the CDF: the same uniform by hand gives the same index
    g, by_hand = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    for _ in range(20):
        u = torch.rand((), generator=by_hand, dtype=torch.float64).item() * 4
        assert draw(weights, g) == (1 if u < 3 else 3)
