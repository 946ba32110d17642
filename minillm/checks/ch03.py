"""Checkers for chapter 03 (attention sinks, StreamingLLM)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..cache import SinkCache
from ..config import ModelConfig
from ..model import MiniLLM
from ..probes import sink_mass
from .core import CheckFailed, run_check


def check_sink_keep(sink_keep: Callable[[int, int, int], torch.Tensor | None]) -> bool:
    """sink_keep(n_entries, n_sink, window): the first n_sink + the last window entries (None: all)."""

    def as_list(index, n):
        return list(range(n)) if index is None else torch.as_tensor(index).tolist()

    cases = [(5, 4, 4), (8, 4, 4), (9, 4, 4), (30, 4, 10), (12, 0, 5), (12, 1, 5)]
    return run_check(
        "sink_keep", lambda n, s, w: as_list(sink_keep(n, s, w), n),
        lambda n, s, w: as_list(SinkCache(s, w).keep(n), n), cases,
        hint="when n_entries > n_sink + window: cat(arange(n_sink), arange(n_entries - window, n_entries))",
        describe=lambda c: f"n_entries={c[0]}, n_sink={c[1]}, window={c[2]}",
    )  # fmt: skip


def check_cache_positions(cache_positions: Callable[[int, int, int], tuple]) -> bool:
    """cache_positions(n_seen, n_sink, window) -> (q_pos, k_pos) of the next token in a SinkCache."""

    def reference(n_seen, n_sink, window):
        cache = SinkCache(n_sink, window)
        cache.times, cache.seen = torch.arange(min(n_seen, n_sink + window)), n_seen  # only positions matter
        step = cache.begin(1)
        cache._step_times = None
        return int(step.q_pos[0]), step.k_pos

    def student(n_seen, n_sink, window):
        result = cache_positions(n_seen, n_sink, window)
        if not isinstance(result, tuple) or len(result) != 2:
            raise CheckFailed("return a tuple (q_pos, k_pos)")
        q_pos, k_pos = result
        return int(q_pos), torch.as_tensor(k_pos)

    def compare_pairs(n_seen, n_sink, window):
        got, expected = student(n_seen, n_sink, window), reference(n_seen, n_sink, window)
        if got[0] != expected[0]:
            raise CheckFailed(f"q_pos {got[0]} instead of {expected[0]}")
        if got[1].tolist() != expected[1].tolist():
            raise CheckFailed(f"k_pos {got[1].tolist()} instead of {expected[1].tolist()}")
        return True

    return run_check(
        "cache_positions", compare_pairs, lambda *c: True, [(3, 4, 4), (8, 4, 4), (9, 4, 4), (10_000, 4, 60)],
        hint="positions are indices inside the cache: it holds min(n_seen, n_sink + window) entries, so keys sit "
        "at 0..m (the new token included) and the query at m, however long the stream already is",
        describe=lambda c: f"n_seen={c[0]}, n_sink={c[1]}, window={c[2]}",
    )  # fmt: skip


def check_sink_mass(measure_sink_mass: Callable, model: MiniLLM | None = None) -> bool:
    """measure_sink_mass(model, ids, first_query) -> (n_layers, n_heads) mean attention on key 0."""
    if model is None:
        torch.manual_seed(0)
        model = MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).eval()
    g = torch.Generator().manual_seed(0)
    cases = [
        (model, torch.randint(0, 256, (2, 24), generator=g), 8),
        (model, torch.randint(0, 256, (3, 40), generator=g), 16),
    ]
    return run_check(
        "sink_mass", measure_sink_mass, lambda m, ids, f: sink_mass(m, ids, f), cases,
        hint="attn = model(ids, return_attn=True).attn; per layer a[:, :, first_query:, 0].mean(dim=(0, 2)); stack",
        describe=lambda c: f"ids {tuple(c[1].shape)}, first_query={c[2]}",
    )  # fmt: skip


def check_off_by_one(softmax_off_by_one: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """softmax_off_by_one(scores) = exp(s) / (1 + sum exp(s)) over the last dim."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.tensor([2.0, 0.5, -1.0]),), (torch.randn(3, 5, generator=g, dtype=torch.float64),),
             (torch.tensor([-30.0, -30.0]),), (torch.tensor([100.0, 0.0]),)]  # fmt: skip

    def reference(s):
        return torch.softmax(torch.cat([torch.zeros_like(s[..., :1]), s], dim=-1), dim=-1)[..., 1:]

    return run_check(
        "softmax_off_by_one",
        softmax_off_by_one,
        reference,
        cases,
        hint="it is a softmax with one extra score 0 (a zero sink); for large scores subtract the max, "
        "and remember the extra 1 becomes exp(-max)",
        describe=lambda c: f"scores {tuple(c[0].shape)}",
    )
