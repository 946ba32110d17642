"""The pieces of lookahead decoding: the n-gram pool, the step's mask and positions, the cache
that commits only accepted tokens, and the two acceptance rules.

Lookahead decoding (Fu, Bailis, Stoica, Zhang, ICML 2024, arXiv 2402.02057) runs one forward per
step over [last token] + a 2-D window of N-1 Jacobi iterates (the lookahead branch, which grows an
n-gram pool) + up to G pooled (N-1)-grams (the verification branch). This file holds everything
but the loop, which lives in `minillm.decoding`; each piece can be used, drawn and tested alone.
Departures from the reference code (hao-ai-lab/LookaheadDecoding) are noted where they occur.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from . import masks
from .attention import AttentionStep
from .cache import DenseCache
from .guard import all_or_nothing, check_usable
from .sampling import draw
from .validate import check_int


class NGramPool:
    """n-grams seen so far, keyed by their first token: key -> at most `guesses` (N-1)-token tails.

    Within a key the tails are kept oldest first; adding a tail that is already there makes it the
    newest, and adding to a full key drops the oldest (least recently used), as the reference's
    `token_map` does.
    """

    recover = "call pool.clear() or build a new one"

    def __init__(self, ngram: int, guesses: int) -> None:
        check_int("ngram", ngram, 2)
        check_int("guesses", guesses, 0)
        self.ngram, self.guesses = ngram, guesses
        self._pool: dict[int, OrderedDict[tuple[int, ...], None]] = {}

    def add(self, key: int, tail: Sequence[int]) -> None:
        """Record the n-gram (key, *tail); tail has N-1 tokens."""
        check_usable(self)
        self._add(key, tail)

    def _add(self, key: int, tail: Sequence[int]) -> None:
        tail = tuple(int(t) for t in tail)
        if len(tail) != self.ngram - 1:
            raise ValueError(f"an n-gram's tail must have ngram-1 = {self.ngram - 1} tokens, got {len(tail)}")
        if self.guesses == 0:
            return
        tails = OrderedDict(self._pool.get(int(key), ()))  # a copy (at most G tails): Ctrl-C leaves no half key
        tails[tail] = None
        tails.move_to_end(tail)  # re-inserting refreshes it
        if len(tails) > self.guesses:
            tails.popitem(last=False)  # the least recently added
        self._pool[int(key)] = tails

    def add_sequence(self, tokens: Sequence[int], start: int = 0) -> None:
        """Record every n-gram of `tokens` that ends at index >= start + N - 1 (prompt lookup)."""
        n = self.ngram
        with all_or_nothing("add_sequence()", self):
            for i in range(max(0, start), len(tokens) - n + 1):
                self._add(tokens[i], tokens[i + 1 : i + n])

    def clear(self) -> None:
        """Forget every n-gram (also the way back after an interrupted add_sequence)."""
        self._pool, self._interrupted_in = {}, None

    def get(self, key: int) -> list[tuple[int, ...]]:
        """The tails recorded after token `key`, oldest first (reading does not refresh them)."""
        check_usable(self)
        return list(self._pool.get(int(key), ()))

    def keys(self) -> list[int]:
        return list(self._pool)

    def __contains__(self, key: int) -> bool:
        return int(key) in self._pool

    def __len__(self) -> int:
        return sum(len(tails) for tails in self._pool.values())

    def __repr__(self) -> str:
        return f"NGramPool(ngram={self.ngram}, guesses={self.guesses}, keys={len(self._pool)}, entries={len(self)})"


@dataclass
class LookaheadLayout:
    """What one lookahead step feeds the model, token by token (T = n_levels*W + G*(N-1)).

    Input order: the window level by level, then the candidates (N-1 tokens each). As in the
    reference, the last accepted token x is column 0 of level 0, so level 0 adds W-1 guesses and
    every other level W. `positions` are offsets from x's position; `mask` (T, T) says which of this
    step's tokens each one sees (the cached prefix is seen by all).
    """

    positions: torch.Tensor  # (T,) long
    mask: torch.Tensor  # (T, T) bool, True = may attend
    level: torch.Tensor  # (T,) window level, -1 on the verification branch
    column: torch.Tensor  # (T,) window column, or the index inside a candidate
    candidate: torch.Tensor  # (T,) candidate number, -1 on the window
    labels: list[str]  # "x", "L0.3" (level 0, column 3), "C1.0" (candidate 1, token 0): for plots

    @property
    def window_rows(self) -> torch.Tensor:
        return (self.level >= 0).nonzero().flatten()

    @property
    def candidate_rows(self) -> torch.Tensor:
        return (self.candidate >= 0).nonzero().flatten()


def lookahead_mask_mod(level: torch.Tensor, column: torch.Tensor, candidate: torch.Tensor) -> masks.MaskMod:
    """The step's mask as a mask_mod over token indices, given each token's role (see the layout).

    - window level l, column j sees level 0 at columns <= j and levels 1..l at column j: the
      diagonal through consecutive positions that one Jacobi trajectory followed (issue #28);
      level 0 is causal, and x (level 0, column 0) sees only itself;
    - candidate c, token i sees x and its own tokens 0..i: a causal chain. Candidates never see
      each other or the rest of the window, and the window never sees them.
    """

    def lookahead_mask(b, h, q_idx, kv_idx):
        lq, lk = level[q_idx], level[kv_idx]
        cq, ck = column[q_idx], column[kv_idx]
        gq, gk = candidate[q_idx], candidate[kv_idx]
        sees_x = kv_idx == 0
        in_window = (lq >= 0) & (lk >= 0) & (((lk == 0) & (ck <= cq)) | ((lk >= 1) & (lk <= lq) & (ck == cq)))
        in_candidate = (gq >= 0) & (gk == gq) & (ck <= cq)
        return sees_x | in_window | in_candidate

    return lookahead_mask


@lru_cache(maxsize=64, typed=True)  # typed: True must not hit the entry for 1
def lookahead_layout(window: int, ngram: int, n_candidates: int, n_levels: int | None = None) -> LookaheadLayout:
    """Positions and mask of one step with a window of W=`window` columns and `n_levels` levels
    (N-1 once warmed up; fewer during the first N-2 steps) and `n_candidates` (N-1)-grams.

    Level l, column j sits at offset j + l (x at 0), so each column is a diagonal of consecutive
    positions; every candidate sits at offsets 1..N-1, where its tokens would go if accepted.
    (The returned tensors are shared between calls: do not modify them.)
    """
    check_int("window", window, 1)
    check_int("ngram", ngram, 2)
    check_int("n_candidates", n_candidates, 0)
    n_levels = ngram - 1 if n_levels is None else n_levels
    check_int("n_levels", n_levels, 1)
    if n_levels > ngram - 1:
        raise ValueError(f"n_levels must be <= ngram - 1 = {ngram - 1}, got {n_levels}")
    W, m, G = window, ngram - 1, n_candidates
    lv = torch.arange(n_levels).repeat_interleave(W)  # (n_levels*W,): x is level 0, column 0
    col = torch.arange(W).repeat(n_levels)
    gi = torch.arange(G).repeat_interleave(m)  # (G*m,)
    gcol = torch.arange(m).repeat(G)
    level = torch.cat([lv, torch.full((G * m,), -1)])  # (T,)
    column = torch.cat([col, gcol])
    candidate = torch.cat([torch.full((n_levels * W,), -1), gi])
    positions = torch.cat([col + lv, 1 + gcol])
    mask = masks.materialize(lookahead_mask_mod(level, column, candidate), len(positions))
    labels = ["x"] + [f"L{lvl}.{j}" for lvl, j in zip(lv[1:].tolist(), col[1:].tolist(), strict=True)]
    labels += [f"C{g}.{i}" for g, i in zip(gi.tolist(), gcol.tolist(), strict=True)]
    return LookaheadLayout(positions, mask, level, column, candidate, labels)


def step_input(
    last: int, levels: Sequence[Sequence[int]], candidates: Sequence[Sequence[int]], window: int, ngram: int
) -> tuple[list[int], LookaheadLayout]:
    """What one step feeds the model: the ids in the layout's order (x, the window level by level,
    the candidates one after another) and the layout that places them and says who sees whom."""
    layout = lookahead_layout(window, ngram, len(candidates), len(levels))
    ids = [int(last)] + [int(t) for level in levels for t in level] + [int(t) for c in candidates for t in c]  # (T,)
    if len(ids) != len(layout.positions):
        need = len(layout.positions) - 1
        raise ValueError(
            f"levels and candidates hold {len(ids) - 1} tokens after x; W={window} with {len(levels)} levels "
            f"(W-1 tokens in level 0, W in the others) and {len(candidates)} candidates of ngram-1 tokens need {need}"
        )
    return ids, layout


class LookaheadCache(DenseCache):
    """A dense cache whose next forward may carry speculative tokens at chosen positions under a
    chosen mask (`plan`); after such a forward only the entries passed to `commit` are kept.

    It is a `FastCache`: a speculative forward writes its T entries after the kept ones, each key
    rotated once at its own position (seen + offset), and attends with one fused call. The
    accepted tokens' keys and values were computed under a correct causal context, so `commit`
    keeps them where they lie (Jacobi's accepted prefix is already in place) or moves the few
    accepted ones next to the cache, and drops the rest by moving a pointer: no copy of the cache,
    no re-rotation of a kept key (the reference code also copies the accepted entries).
    """

    def __init__(self) -> None:
        super().__init__()
        self._spec: tuple[torch.Tensor, torch.Tensor] | None = None  # offsets (T,), mask (T, T)
        self._pending: torch.Tensor | None = None  # offsets of the uncommitted step's entries

    def plan(self, offsets: torch.Tensor, mask: torch.Tensor) -> None:
        """Place the next forward's T tokens at position seen+offsets, seeing each other by mask."""
        check_usable(self)
        if self._pending is not None:
            raise RuntimeError("commit() the last planned step before planning another")
        if offsets.dim() != 1 or mask.shape != (len(offsets), len(offsets)) or mask.dtype != torch.bool:
            raise ValueError(f"need offsets (T,) and a bool mask (T, T), got {tuple(offsets.shape)}, {mask.shape}")
        offsets = offsets.cpu()
        if len(offsets) == 0 or int(offsets.min()) < 0:
            raise ValueError("offsets must be >= 0 (positions after the cached tokens) and at least one")
        self._spec = (offsets, mask)

    @property
    def planned(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The next forward's plan (offsets (T,), mask (T, T)) until that forward runs, else None."""
        return self._spec

    def begin(self, n_new: int, device: torch.device | str = "cpu") -> AttentionStep:
        if self._pending is not None:
            raise RuntimeError("commit() the last planned step before the next forward")
        if self._spec is None:
            return super().begin(n_new, device)
        if len(self._spec[0]) != n_new:
            raise ValueError(f"the plan is for {len(self._spec[0])} tokens, the forward has {n_new}")
        super().begin(n_new, device)
        q_pos = self.seen + self._spec[0].to(device)  # (T,)
        return AttentionStep(q_pos, torch.cat([self.times, q_pos]))  # the fast path builds its own mask

    def _new_offsets(self, n_new: int) -> torch.Tensor:
        return super()._new_offsets(n_new) if self._spec is None else self._spec[0]

    def _step_mask(self, q_times: torch.Tensor, k_times: torch.Tensor) -> torch.Tensor:
        if self._spec is None:
            return super()._step_mask(q_times, k_times)
        T = len(q_times)
        prefix = torch.ones(T, len(k_times) - T, dtype=torch.bool, device=q_times.device)  # all see the cache
        return torch.cat([prefix, self._spec[1].to(q_times.device)], dim=1)  # (T, S)

    def end(self) -> None:
        if self._spec is None:
            return super().end()
        if self._n_written != len(self._k):
            super().end()  # refuses a forward that did not write every layer, and undoes it
        self._pending, self._spec = self._spec[0], None
        self._commit_times(self.times, None)  # nothing counted yet: the step's entries wait for commit()

    def commit(self, index: Sequence[int]) -> None:
        """Keep this step's entries at `index` (their offsets must be 0, 1, 2, ...), drop the rest."""
        if self._pending is None:
            raise RuntimeError("nothing to commit: plan() a step and run the forward first")
        index = torch.as_tensor(list(index), dtype=torch.long)
        if not torch.equal(self._pending[index], torch.arange(len(index))):
            raise ValueError("committed entries must sit at consecutive offsets 0, 1, 2, ... (a causal chain)")
        # Entries move inside the buffers, so an interrupted commit cannot be put back (a retry would
        # read slots already overwritten): the cache then refuses use until reset().
        with all_or_nothing("commit()", self):
            f, start, end, clock = self._at
            n = len(index)
            moved = (index != torch.arange(n)).nonzero().flatten()  # accepted entries not yet in their slot
            if len(moved):
                src, dst = end + index[moved], end + moved
                for buffer in self._k + self._v:
                    buffer[:, :, dst.to(buffer.device)] = buffer[:, :, src.to(buffer.device)]
            self._at = (f, start, end + n, clock + n)
            self.times = torch.cat([self.times, self.seen + torch.arange(n, device=self.times.device)])
            self.seen += n
            self._pending = None

    def reset(self) -> None:
        super().reset()
        self._spec = self._pending = None


@dataclass
class Verdict:
    """The outcome of verification: which candidate won, how many of its tokens matched, and the
    tokens this step settles (the matched ones + the model's own next token)."""

    candidate: int | None
    n_matched: int
    tokens: list[int]


def verify_greedy(candidates: torch.Tensor, first: int, preds: torch.Tensor, bonus: bool = True) -> Verdict:
    """Greedy acceptance. candidates (G, N-1); first: the model's token after x; preds (G, N-1):
    the model's token after each candidate token. Takes the longest matching prefix (the first
    candidate among equals) plus the model's token where it stops.

    The reference (hao-ai-lab/LookaheadDecoding) accepts at most N-1 tokens: a full match drops
    the bonus token after it (`bonus=False`, the rule the paper's compression ratios were measured
    with). `bonus=True` keeps it, so a step may settle N tokens. Both are exact: the dropped
    token is the model's next greedy token, recomputed by the next step.
    """
    if not isinstance(bonus, bool):
        raise TypeError(f"bonus must be a bool, got {type(bonus).__name__}")
    if len(candidates) == 0:
        return Verdict(None, 0, [first])
    G = len(candidates)
    truth = torch.cat([torch.full((G, 1), first, dtype=preds.dtype), preds], dim=1)  # (G, N): token after x, c0, ...
    n_match = (candidates == truth[:, :-1]).long().cumprod(dim=1).sum(dim=1)  # (G,) matched prefix lengths
    best = int(n_match.argmax())  # the first of the longest
    m = int(n_match[best])
    if not bonus and m == candidates.shape[1]:  # full match: the reference stops at N-1 tokens
        return Verdict(best, m, candidates[best, :m].tolist())
    return Verdict(best, m, candidates[best, :m].tolist() + [int(truth[best, m])])


def verify_sample(
    candidates: torch.Tensor, first: torch.Tensor, probs: torch.Tensor, generator: torch.Generator | None = None
) -> Verdict:
    """Sampling acceptance with deterministic drafts (SpecInfer-style, as the reference's
    `jacobi_sample_multilevel`). candidates (G, N-1); first (V,): the distribution after x;
    probs (G, N-1, V): the distribution after each candidate token.

    At each depth, the distinct next tokens of the candidates still alive are tried in order:
    draft d is accepted with probability p(d); on rejection p(d) is set to 0 and p renormalized.
    When every draft is rejected the token is drawn from what is left, so each settled token is
    distributed exactly as p: p(d1) + ... telescopes (a test checks it by counting).
    """
    alive = list(range(len(candidates)))
    settled: list[int] = []
    p = first.double()
    for depth in range(candidates.shape[1] if len(candidates) else 0):
        p = p.clone()
        chosen = None
        for d in dict.fromkeys(candidates[alive, depth].tolist()):  # distinct drafts, in order
            total = p.sum()
            if total <= 0 or torch.rand((), generator=generator, dtype=torch.float64) < p[d] / total:
                chosen = d
                break
            p[d] = 0.0  # rejected: draw the rest from the residual
        if chosen is None:
            break
        settled.append(chosen)
        alive = [c for c in alive if candidates[c, depth] == chosen]
        p = probs[alive[0], depth].double()  # the distribution after the accepted prefix
    token = draw(p, generator)
    return Verdict(alive[0] if settled else None, len(settled), settled + [token])


def ngrams_from_window(last: int, levels: list[list[int]], new: list[int]) -> Iterable[tuple[int, tuple[int, ...]]]:
    """The n-grams one warmed-up step yields, one per column j: the diagonal its trajectory
    followed, keyed by its level-0 token (x for column 0, levels[0][j-1] after it; levels[0]
    holds W-1 tokens) with tail (levels[1][j], ..., levels[N-2][j], new[j])."""
    for j, key in enumerate([last] + levels[0]):
        yield key, tuple(level[j] for level in levels[1:]) + (new[j],)
