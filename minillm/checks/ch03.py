"""Checkers for chapter 03 (attention sinks, StreamingLLM)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import masks
from ..cache import KVCache, SinkCache
from ..config import ModelConfig
from ..model import MiniLLM
from ..probes import sink_mass
from .ch02 import keep_indices
from .core import CheckFailed, CheckResult, cache_result, feed_cache, int_result, run_check


def check_sink_keep(sink_keep: Callable[[int, int, int], torch.Tensor | None], hint: int | None = None) -> CheckResult:
    """sink_keep(n_entries, n_sink, window): the first n_sink + the last window entries (None: all)."""

    def student(n, s, w):
        got = keep_indices(sink_keep(n, s, w), SinkCache(s, w).keep(n), "sink_keep")
        return "None" if got is None else got.long()

    def reference(n, s, w):
        index = SinkCache(s, w).keep(n)
        return "None" if index is None else index

    cases = [(5, 4, 4), (8, 4, 4), (9, 4, 4), (6, 2, 1), (12, 0, 5), (12, 1, 5), (30, 4, 10)]
    return run_check(
        "sink_keep", student, reference, cases,
        hints=(
            "nothing is evicted (None) until the cache holds more than n_sink + window entries; then it keeps "
            "n_sink + window integer indices, in increasing order: the first n_sink entries (the sinks) and "
            "the `window` most recent ones, which end at n_entries - 1",
            "two integer ranges joined end to end, sinks first: one from 0 of length n_sink (empty when "
            "n_sink is 0), one of length window that stops at n_entries; the window does not include the "
            "sinks. A LongTensor, not a list",
        ),
        level=hint,
        describe=lambda c: f"n_entries={c[0]}, n_sink={c[1]}, window={c[2]}",
    )  # fmt: skip


def check_cache_positions(cache_positions: Callable[[int, int, int], tuple], hint: int | None = None) -> CheckResult:
    """cache_positions(n_seen, n_sink, window) -> (q_pos, k_pos) of the next token in a SinkCache."""

    def reference(n_seen, n_sink, window):
        cache = SinkCache(n_sink, window)
        cache.times, cache.seen = torch.arange(min(n_seen, n_sink + window)), n_seen  # only positions matter
        step = cache.begin(1)
        cache._step_times = None
        return int(step.q_pos[0]), step.k_pos

    def compare_pairs(n_seen, n_sink, window):
        result = cache_positions(n_seen, n_sink, window)
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed(f"return a tuple (q_pos, k_pos), got {type(result).__name__}")
        q_pos, k_pos = int_result(result[0], "q_pos"), result[1]
        if not isinstance(k_pos, torch.Tensor) or k_pos.dtype.is_floating_point or k_pos.dtype == torch.bool:
            kind = k_pos.dtype if isinstance(k_pos, torch.Tensor) else type(k_pos).__name__
            raise CheckFailed(f"k_pos must be a LongTensor (RoPE and the cache index with it), got {kind}")
        expected_q, expected_k = reference(n_seen, n_sink, window)
        if q_pos != expected_q:
            raise CheckFailed(f"q_pos {q_pos} instead of {expected_q}")
        if k_pos.tolist() != expected_k.tolist():
            got, want = k_pos.tolist(), expected_k.tolist()
            raise CheckFailed(
                f"k_pos has {len(got)} positions {_ends(got)} instead of {len(want)} positions {_ends(want)}"
            )
        return True

    cases = [(0, 4, 4), (3, 4, 4), (8, 4, 4), (9, 4, 4), (5, 0, 3), (10_000, 4, 60)]
    return run_check(
        "cache_positions", compare_pairs, lambda *c: True, cases,
        hints=(
            "positions are indices inside the cache, not in the stream: the cache holds at most n_sink + window "
            "entries before the new token arrives, so the query's position is that count (0 for the very first "
            "token) however long the stream is, and the keys are every entry plus the new token itself",
            "first count the entries already cached (n_seen, capped at n_sink + window); the query sits right "
            "after them, and k_pos runs over 0 .. that count inclusive, as integers",
        ),
        level=hint,
        describe=lambda c: f"n_seen={c[0]}, n_sink={c[1]}, window={c[2]}",
    )  # fmt: skip


def _ends(values: list) -> str:
    return str(values) if len(values) <= 6 else f"[{values[0]}, {values[1]}, …, {values[-2]}, {values[-1]}]"


def check_sink_mass(measure_sink_mass: Callable, model: MiniLLM | None = None, hint: int | None = None) -> CheckResult:
    """measure_sink_mass(model, ids, first_query) -> (n_layers, n_heads) mean attention on key 0."""
    if model is None:
        torch.manual_seed(0)
        model = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).eval()
    torch.manual_seed(1)
    other = MiniLLM(ModelConfig(d_model=48, n_layers=3, n_heads=4, max_seq_len=32)).eval()
    g = torch.Generator().manual_seed(0)
    cases = [
        (model, torch.randint(0, 256, (1, 12), generator=g), 4),
        (model, torch.randint(0, 256, (2, 24), generator=g), 8),
        (model, torch.randint(0, 256, (3, 40), generator=g), 16),
        (other, torch.randint(0, 256, (2, 20), generator=g), 5),
    ]

    def student(m, ids, f):
        got = measure_sink_mass(m, ids, f)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"return a tensor (n_layers, n_heads), got {type(got).__name__}")
        return got.detach()

    def reference(m, ids, f):
        with torch.no_grad():
            return sink_mass(m, ids, f)

    return run_check(
        "sink_mass", student, reference, cases,
        hints=(
            "one number per layer and head, (n_layers, n_heads): the attention weight that queries give to key "
            "0, averaged over the batch and over the queries from first_query on (the earlier queries are "
            "left out), for the model passed in",
            "ask the model for its attention weights (one (B, H, T, T) tensor per layer); per layer select key "
            "column 0 and query rows first_query and later, average over the batch and query axes, and stack "
            "the layers",
        ),
        level=hint,
        describe=lambda c: f"ids {tuple(c[1].shape)}, first_query={c[2]}, a model of {c[0].config.n_layers} layers",
    )  # fmt: skip


def check_off_by_one(
    softmax_off_by_one: Callable[[torch.Tensor], torch.Tensor], hint: int | None = None
) -> CheckResult:
    """softmax_off_by_one(scores) = exp(s) / (1 + sum exp(s)) over the last dim."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([0.0]),), (torch.tensor([2.0, 0.5, -1.0]),), (torch.tensor([-30.0, -30.0]),),
             (torch.tensor([100.0, 90.0]),), (torch.tensor([100.0, 0.0]),), (torch.tensor([1000.0, 999.0, -5.0]),),
             (torch.randn(3, 5, generator=g, dtype=torch.float64) * 3,),
             (torch.randn(2, 3, 4, generator=g, dtype=torch.float64),)]  # fmt: skip

    def reference(s):
        return torch.softmax(torch.cat([torch.zeros_like(s[..., :1]), s], dim=-1), dim=-1)[..., 1:]

    def student(s):
        got = softmax_off_by_one(s)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"return a tensor, got {type(got).__name__}")
        return got

    return run_check(
        "softmax_off_by_one",
        student,
        reference,
        cases,
        hints=(
            "it is a softmax over the last axis with one extra, hidden score fixed at 0, so the outputs sum to "
            "less than 1 ([0.] gives [0.5]); it must stay exact for huge scores ([100, 90] gives about "
            "[0.99995, 0.0000454], no inf or nan) without clipping them",
            "shift by the max before exp, as a stable softmax does, but the hidden 0 is a score too: take the "
            "max over the scores and that 0, and shift the 1 in the denominator the same way (it becomes "
            "exp(0 - max)); sum over the last axis only, keeping it for broadcasting",
        ),
        level=hint,
        describe=lambda c: f"scores {c[0].tolist() if c[0].numel() <= 4 else tuple(c[0].shape)}",
    )


def check_true_sink_cache(make_cache: Callable[[int, int], KVCache], hint: int | None = None) -> CheckResult:
    """make_cache(n_sink, window) -> a KVCache whose token-by-token logits equal one forward under
    masks.sink_window(n_sink, window) at the tokens' stream positions, never holding more than
    n_sink + window entries after a step."""
    torch.manual_seed(0)
    model = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).double().eval()
    ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(3))

    def reference(n_sink, window):
        with torch.no_grad():
            logits = model(ids[None], mask_mod=masks.sink_window(n_sink, window)).logits[0]
        # Every entry a later query sees must stay: the n_sink first and the window most recent.
        held = torch.tensor([min(t + 1, n_sink + window) for t in range(len(ids))])
        return logits, held

    def student(n_sink, window):
        return feed_cache(model, ids, cache_result(make_cache(n_sink, window)))

    return run_check(
        "true_sink_cache", student, reference, [(1, 3), (2, 4), (0, 4), (4, 5)],
        hints=(
            "item 0 compares your logits, token by token, with one forward of the whole stream under "
            "masks.sink_window(n_sink, window), where every token sits at its position in the stream; item 1 "
            "counts the entries your cache holds after each step. Which keys a query sees is not enough: the "
            "distance RoPE gives each of them must be the stream's too, and nothing a later query needs may leave",
            "a KVCache subclass states three things: its mask_mod, its eviction rule (n_fixed first entries and "
            "n_recent most recent, or a keep() of your own) and positions_in_cache. StreamingLLM's True "
            "re-positions the sinks next to the window; the masked forward never does",
        ),
        level=hint,
        describe=lambda c: f"n_sink={c[0]}, window={c[1]}, {len(ids)} tokens fed one at a time",
    )  # fmt: skip
