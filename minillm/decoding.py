"""Decoders that count forward passes: greedy, sampling, Jacobi and lookahead decoding.

Jacobi decoding (Santilli et al., 2023, arXiv 2305.10427) guesses a block of future tokens and
refines them all in one forward per iteration; its fixed point is the greedy output. Lookahead
decoding (Fu, Bailis, Stoica, Zhang, ICML 2024, arXiv 2402.02057) keeps N-1 Jacobi iterates as a
2-D window, collects n-grams from their trajectories and verifies pooled n-grams in the same
forward, so one step may settle several tokens and the output is still exactly greedy's.

Conventions and departures from the reference code (hao-ai-lab/LookaheadDecoding):
- The prompt minus its last token is prefilled; every step then feeds the last settled token, so
  `steps` counts forward passes after the prompt and greedy takes exactly `max_new_tokens` steps.
- A candidate that matches in full also yields the model's token after it: a step settles 1..N
  tokens (the reference drops that bonus token and settles at most N-1).
- Pooled candidates are verified from the first step on, warm-up included (the reference waits
  until all N-1 levels are filled; that only matters with `pool_from_prompt`). The warm-up itself
  is simpler: level 0 starts as W-1 prompt tokens and each warm-up step appends a level of W.
- Jacobi commits its converged prefix every iteration (the KV-cached form of Santilli's block
  iteration) and refills the guess with tokens copied from the prompt, as lookahead's window is
  initialised; `trajectory` records every guess, for the heatmap of how guesses converge.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .cache import DenseCache, KVCache
from .guard import all_or_nothing
from .lookahead import (
    LookaheadCache,
    LookaheadLayout,
    NGramPool,
    Verdict,
    lookahead_layout,
    ngrams_from_window,
    step_input,
    verify_greedy,
    verify_sample,
)
from .model import MiniLLM
from .sampling import check_sampling, choose, next_token_probs
from .validate import (
    check_bool,
    check_choice,
    check_elements,
    check_instance,
    check_int,
    check_ints,
    check_token_ids,
)

__all__ = [
    "DecodeResult",
    "greedy",
    "sample",
    "jacobi_decode",
    "lookahead_decode",
    "LookaheadDecoder",
    "NGramPool",
    "lookahead_layout",
    "next_token_probs",
    "forward_cost_curve",
]


@dataclass
class DecodeResult:
    tokens: list[int]  # the new tokens only
    steps: int  # forward passes after the prompt
    accepted: list[int]  # tokens settled by each step; sums to len(tokens)
    trajectory: list[tuple[int, list[int]]] | None = None  # Jacobi: (first new-token index, guess) per step

    @property
    def compression(self) -> float:
        """Tokens per step: greedy steps / these steps, the paper's step compression ratio."""
        return len(self.tokens) / self.steps if self.steps else 0.0

    def trajectory_grid(self) -> torch.Tensor:
        """(steps, len(tokens)) long: the token each iteration's guess held at each new position,
        -1 where it held none. Compare with `tokens` to see the guesses converge."""
        if self.trajectory is None:
            raise ValueError("this result has no trajectory (only jacobi_decode records one)")
        grid = torch.full((len(self.trajectory), len(self.tokens)), -1, dtype=torch.long)
        for row, (start, guess) in enumerate(self.trajectory):
            guess = guess[: max(0, len(self.tokens) - start)]
            grid[row, start : start + len(guess)] = torch.tensor(guess, dtype=torch.long)
        return grid


# ---- argument checks and sampling ----------------------------------------------------------


def _check_model(model: MiniLLM) -> torch.device:
    return next(check_instance("model", model, MiniLLM).parameters()).device


def _check_prompt(model: MiniLLM, prompt_ids: Sequence[int] | torch.Tensor) -> list[int]:
    prompt = check_token_ids("prompt_ids", prompt_ids, model.config.vocab_size)
    if not prompt:
        raise ValueError("prompt_ids must hold at least one token (e.g. BOS)")
    return prompt


def _generator(generator: torch.Generator | None, seed: int | None) -> torch.Generator:
    if generator is not None:
        return check_instance("generator", generator, torch.Generator)
    check_int("seed", seed, 0, optional=True)
    return torch.Generator().manual_seed(0 if seed is None else seed)


def _prefill(model: MiniLLM, cache: KVCache, prompt: list[int], device: torch.device) -> None:
    """Cache every prompt token but the last, which the first step feeds."""
    if len(prompt) > 1:
        model(torch.tensor([prompt[:-1]], device=device), cache=cache)


def _trim(tokens: list[int], accepted: list[int], max_new_tokens: int) -> tuple[list[int], list[int]]:
    """Cut the overshoot of the last step, keeping sum(accepted) == len(tokens)."""
    excess = len(tokens) - max_new_tokens
    if excess > 0:
        accepted = accepted[:-1] + [accepted[-1] - excess]
    return tokens[:max_new_tokens], accepted


# ---- one token per step ---------------------------------------------------------------------


@torch.no_grad()
def sample(
    model: MiniLLM,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
) -> DecodeResult:
    """KV-cached autoregressive decoding: one forward, one token per step. temperature 0 = greedy;
    otherwise draws from softmax(logits / temperature) over the top_k logits, seeded."""
    device = _check_model(model)
    prompt = _check_prompt(model, prompt_ids)
    check_int("max_new_tokens", max_new_tokens, 0)
    temperature = check_sampling(temperature, top_k)
    generator = _generator(generator, seed)
    cache = DenseCache()
    _prefill(model, cache, prompt, device)
    last, tokens = prompt[-1], []
    for _ in range(max_new_tokens):
        logits = model(torch.tensor([[last]], device=device), cache=cache).logits[0, -1]  # (V,)
        last = choose(logits, temperature, top_k, generator)
        tokens.append(last)
    return DecodeResult(tokens, max_new_tokens, [1] * max_new_tokens)


def greedy(model: MiniLLM, prompt_ids: Sequence[int], max_new_tokens: int) -> DecodeResult:
    """The argmax token at every step: the output Jacobi and lookahead decoding must reproduce."""
    return sample(model, prompt_ids, max_new_tokens, temperature=0.0)


# ---- Jacobi decoding ------------------------------------------------------------------------


@torch.no_grad()
def jacobi_decode(
    model: MiniLLM, prompt_ids: Sequence[int], max_new_tokens: int, window: int = 8, seed: int = 0
) -> DecodeResult:
    """Jacobi decoding over a guess of `window` tokens (m in Santilli et al.).

    Each step feeds [last token] + guess y under the causal mask and gets y'_i = argmax p(. | x,
    y_<i) for every i at once. The longest prefix where y == y' is correct, and so is the token
    after it, so a step settles k + 1 >= 1 tokens; their KV is kept, the rest of y' is the next
    guess, topped up with tokens copied from the prompt at random (seeded).
    """
    device = _check_model(model)
    prompt = _check_prompt(model, prompt_ids)
    check_ints(max_new_tokens=(max_new_tokens, 0), window=(window, 1))
    check_elements("window", window)
    generator = _generator(None, seed)

    def from_prompt(n: int) -> list[int]:
        return [prompt[i] for i in torch.randint(len(prompt), (n,), generator=generator).tolist()]

    cache = LookaheadCache()
    _prefill(model, cache, prompt, device)
    m = window
    offsets, causal = torch.arange(m + 1), torch.ones(m + 1, m + 1, dtype=torch.bool).tril()  # (m+1,), (m+1, m+1)
    last, guess = prompt[-1], from_prompt(m)
    tokens, accepted, trajectory = [], [], []
    while len(tokens) < max_new_tokens:
        trajectory.append((len(tokens), list(guess)))
        cache.plan(offsets, causal)
        preds = model(torch.tensor([[last] + guess], device=device), cache=cache).logits[0].argmax(-1)  # (m+1,)
        preds = preds.tolist()  # preds[i]: the model's token after [x, y_0..y_i-1]
        k = 0
        while k < m and guess[k] == preds[k]:  # the converged prefix
            k += 1
        cache.commit(range(k + 1))  # x and y_0..y_k-1: computed under a correct causal context
        tokens += preds[: k + 1]
        accepted.append(k + 1)
        last, guess = preds[k], preds[k + 1 :] + from_prompt(k)
    tokens, accepted = _trim(tokens, accepted, max_new_tokens)
    return DecodeResult(tokens, len(accepted), accepted, trajectory)


# ---- lookahead decoding ---------------------------------------------------------------------


ACCEPT_RULES = ("bonus", "reference")  # lookahead acceptance: keep the bonus token, or stop at N-1


class LookaheadDecoder:
    """Lookahead decoding, one `step()` at a time, with its state open for inspection: `levels`
    (the 2-D window, oldest level first; level 0 holds W-1 guesses, as the last token x is its
    column 0), `pool` (the n-gram pool), `cache`, `sequence` (prompt + settled tokens).

    With temperature > 0 the verification branch samples (see `verify_sample`); the window is
    still filled with argmax tokens, as in the reference (its issue #53).

    `accept` picks the acceptance rule: "reference" settles at most N-1 tokens per step, as
    hao-ai-lab/LookaheadDecoding does (the rule comparable with the paper's compression ratios);
    "bonus" (the default) also keeps the model's token after a fully matched candidate, so a step
    may settle N. Both return exactly the greedy (or sampled) tokens.
    """

    def __init__(
        self,
        model: MiniLLM,
        prompt_ids: Sequence[int],
        window: int = 7,
        ngram: int = 5,
        guesses: int = 7,
        pool_from_prompt: bool = False,
        temperature: float = 0.0,
        top_k: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        accept: str = "bonus",
    ) -> None:
        self.device = _check_model(model)
        self.accept = check_choice("accept", accept, ACCEPT_RULES)
        prompt = _check_prompt(model, prompt_ids)
        check_ints(window=(window, 1), ngram=(ngram, 2), guesses=(guesses, 0))
        check_elements("window * ngram", window * ngram)
        check_bool("pool_from_prompt", pool_from_prompt)
        temperature = check_sampling(temperature, top_k)
        self.model, self.window, self.ngram, self.guesses = model, window, ngram, guesses
        self.pool_from_prompt, self.temperature, self.top_k = pool_from_prompt, temperature, top_k
        self.generator = _generator(generator, seed)
        self.pool = NGramPool(ngram, guesses)
        if pool_from_prompt:
            self.pool.add_sequence(prompt)
        self.cache = LookaheadCache()
        _prefill(model, self.cache, prompt, self.device)
        self.sequence = list(prompt)  # prompt + settled tokens; the last one is not cached yet
        self.n_prompt = len(prompt)
        # Level 0 is x + W-1 tokens copied from the prompt (x, the last token, is its column 0);
        # the other N-2 levels (W tokens each) fill during the first N-2 steps, the warm-up.
        picks = torch.randint(len(prompt), (window - 1,), generator=self.generator).tolist()
        self.levels: list[list[int]] = [[prompt[i] for i in picks]]

    @property
    def tokens(self) -> list[int]:
        return self.sequence[self.n_prompt :]

    recover = "start a new LookaheadDecoder (its pool, window and cache changed together)"

    @torch.no_grad()
    def step(self) -> Verdict:
        """One forward carrying both branches; returns the verdict (the tokens it settled).
        Interrupted half-way, the decoder refuses further steps (`guard`)."""
        with all_or_nothing("step()", self):
            return self._step()

    def next_input(self) -> tuple[list[int], LookaheadLayout]:
        """What the next step will feed the model: x, the window, the pool's tails after x (see `step_input`)."""
        last = self.sequence[-1]
        return step_input(last, self.levels, self.pool.get(last), self.window, self.ngram)  # at most G tails

    def _step(self) -> Verdict:
        W, m, n_levels = self.window, self.ngram - 1, len(self.levels)
        last = self.sequence[-1]
        ids, layout = self.next_input()
        self.cache.plan(layout.positions, layout.mask)
        logits = self.model(torch.tensor([ids], device=self.device), cache=self.cache).logits[0]  # (T, V)

        # Lookahead branch: level l, column j sits at row l*W + j; the newest level's outputs are
        # one more Jacobi iteration, guesses one position further on.
        newest = (n_levels - 1) * W
        new = logits[newest : newest + W].argmax(-1).tolist()  # (W,)
        if n_levels == m:
            for key, tail in ngrams_from_window(last, self.levels, new):
                self.pool.add(key, tail)
            # Drop the oldest iterate. The next x takes column 0 of the new level 0, so that level
            # loses its first token; the window is not moved by the tokens accepted (the
            # reference's ALWAYS_FWD_ONE): it only holds guesses, so any shift is still exact.
            rest = self.levels[1:] + [new]
            self.levels = [rest[0][1:]] + rest[1:]
        else:
            self.levels.append(new)  # warm-up

        # Verification branch: candidate g's token i sits at row start + g*m + i.
        start = n_levels * W
        cand = torch.tensor(ids[start:], dtype=torch.long).view(-1, m)  # (G, N-1): the pool's tails after x
        cand_logits = logits[start:].view(len(cand), m, logits.shape[-1])  # (G, N-1, V)
        if self.temperature == 0:
            bonus = self.accept == "bonus"
            verdict = verify_greedy(cand, int(logits[0].argmax()), cand_logits.argmax(-1).cpu(), bonus=bonus)
        else:
            probs = next_token_probs(torch.cat([logits[:1], logits[start:]]).cpu(), self.temperature, self.top_k)
            verdict = verify_sample(cand, probs[0], probs[1:].view(len(cand), m, probs.shape[-1]), self.generator)
            if self.accept == "reference" and len(verdict.tokens) > m:
                # Dropping the last settled token keeps the sample exact: the next step redraws it.
                verdict = Verdict(verdict.candidate, verdict.n_matched, verdict.tokens[:m])

        # Cache x and every settled token but the last (the next step's x, not yet computed).
        n_cached = len(verdict.tokens) - 1 if verdict.candidate is not None else 0
        matched = range(n_cached)
        self.cache.commit([0] + [start + verdict.candidate * m + i for i in matched])
        n_before = len(self.sequence)
        self.sequence += verdict.tokens
        if self.pool_from_prompt:  # prompt-lookup style: also pool the n-grams of the output
            self.pool.add_sequence(self.sequence, start=n_before - self.ngram + 1)
        return verdict


def lookahead_decode(
    model: MiniLLM,
    prompt_ids: Sequence[int],
    max_new_tokens: int,
    window: int = 7,
    ngram: int = 5,
    guesses: int = 7,
    pool_from_prompt: bool = False,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    accept: str = "bonus",
) -> DecodeResult:
    """Lookahead decoding with a window of W=`window` columns, n-grams of N=`ngram` tokens and at
    most G=`guesses` candidates verified per step (defaults: the reference README's 7B setting).

    Greedy (temperature 0) returns exactly `greedy`'s tokens in exact arithmetic; with a
    temperature it samples from the same distribution as `sample`. `pool_from_prompt` also pools
    the prompt's and the output's own n-grams (prompt lookup). `seed` fixes the window's start.
    `accept`: "reference" (at most N-1 tokens a step, hao-ai-lab's rule, comparable with the
    paper's compression ratios) or "bonus" (keeps the token after a full match; up to N).
    """
    check_int("max_new_tokens", max_new_tokens, 0)
    decoder = LookaheadDecoder(
        model, prompt_ids, window, ngram, guesses, pool_from_prompt, temperature, top_k, seed, generator, accept
    )
    accepted = []
    while len(decoder.tokens) < max_new_tokens:
        accepted.append(len(decoder.step().tokens))
    tokens, accepted = _trim(decoder.tokens, accepted, max_new_tokens)
    return DecodeResult(tokens, len(accepted), accepted)


# ---- what a multi-token step costs ------------------------------------------------------------


@torch.no_grad()
def forward_cost_curve(
    model: MiniLLM, n_new: Sequence[int] = (1, 2, 4, 8, 16, 32), context: int = 128, repeats: int = 5, seed: int = 0
) -> dict[int, float]:
    """Median milliseconds of one forward of n new tokens after `context` cached ones, for each n
    in `n_new`: the cost curve that decides when a step settling several tokens (Jacobi, lookahead)
    beats greedy. A step of n tokens that settles a tokens on average pays iff a > cost(n) / cost(1).

    Every timed forward is a speculative one on a `LookaheadCache` and is dropped afterwards
    (`commit([])`), so all of them see the same cached context; each repeat runs every n once, in
    turn, so that a burst of load on a shared machine hits every n alike.
    """
    device = _check_model(model)
    sizes = [check_int("n_new", n, 1) for n in n_new]
    if not sizes:
        raise ValueError("n_new must hold at least one size")
    check_ints(context=(context, 1), repeats=(repeats, 1), seed=(seed, 0))
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(model.config.vocab_size, (1, context + max(sizes)), generator=generator).to(device)
    cache = LookaheadCache()
    model(ids[:, :context], cache=cache)
    times: dict[int, list[float]] = {n: [] for n in sizes}
    for _ in range(repeats):
        for n in sizes:
            cache.plan(torch.arange(n), torch.ones(n, n, dtype=torch.bool).tril())
            start = time.perf_counter()
            model(ids[:, context : context + n], cache=cache).logits.sum().item()  # .item(): wait for a GPU
            times[n].append(time.perf_counter() - start)
            cache.commit([])
    return {n: 1000 * statistics.median(t) for n, t in times.items()}
