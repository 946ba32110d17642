"""Checkers for chapter 02 (window attention, re-computation)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import masks
from ..cache import DenseCache, WindowCache
from ..config import ModelConfig
from ..model import MiniLLM
from .core import CheckFailed, run_check


def check_keep(keep: Callable[[int, int], torch.Tensor | None]) -> bool:
    """keep(n_entries, window): indices of the entries a rolling cache keeps (None: all of them)."""

    def as_list(index, n):
        return list(range(n)) if index is None else torch.as_tensor(index).tolist()

    def student(n, window):
        return as_list(keep(n, window), n)

    def reference(n, window):
        return as_list(WindowCache(window).keep(n), n)

    return run_check(
        "keep", student, reference, [(3, 4), (4, 4), (5, 4), (20, 4), (9, 1)],
        hint="when n_entries > window keep the last `window`: torch.arange(n_entries - window, n_entries)",
        describe=lambda c: f"n_entries={c[0]}, window={c[1]}",
    )  # fmt: skip


def check_sliding_window_mask(sliding_window_mask: Callable[[int], masks.MaskMod]) -> bool:
    """sliding_window_mask(window) returns a mask_mod equal to masks.sliding_window(window)."""

    def student(window, n):
        return masks.materialize(sliding_window_mask(window), n)

    def reference(window, n):
        return masks.materialize(masks.sliding_window(window), n)

    return run_check(
        "sliding_window_mask", student, reference, [(1, 6), (3, 10), (8, 8), (5, 16)],
        hint="(q_idx >= kv_idx) & (q_idx - kv_idx <= window): use & and comparisons, no Python if",
        describe=lambda c: f"window={c[0]}, drawn at {c[1]}x{c[1]}",
    )  # fmt: skip


def _tiny_model() -> MiniLLM:
    torch.manual_seed(0)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).double().eval()


def check_recompute_logits(recompute_logits: Callable, model: MiniLLM | None = None) -> bool:
    """recompute_logits(model, ids, t, window): logits (V,) for token t+1 from a fresh forward over
    ids[t - window : t + 1] (fewer at the start)."""
    model = model or _tiny_model()
    ids = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(1))

    def reference(m, ids, t, window):
        with torch.no_grad():
            return m(ids[None, max(0, t - window) : t + 1]).logits[0, -1]

    return run_check(
        "recompute_logits", recompute_logits, reference,
        [(model, ids, 0, 8), (model, ids, 5, 8), (model, ids, 30, 8), (model, ids, 39, 3)],
        hint="slice ids[max(0, t - window) : t + 1], run the model on it as a (1, n) batch, take logits[0, -1]",
        describe=lambda c: f"t={c[2]}, window={c[3]}",
    )  # fmt: skip


def check_kv_cache_bytes(kv_cache_bytes: Callable[[ModelConfig, int], int]) -> bool:
    """kv_cache_bytes(config, n_tokens): bytes of a float32 DenseCache after n_tokens tokens."""

    def reference(cfg, n):
        cache = DenseCache()
        with torch.no_grad():
            MiniLLM(cfg)(torch.zeros(1, n, dtype=torch.long), cache=cache)
        return sum(t.numel() * t.element_size() for t in cache.keys + cache.values)

    def student(cfg, n):
        got = kv_cache_bytes(cfg, n)
        if not isinstance(got, int):
            raise CheckFailed(f"return an int, got {type(got).__name__}")
        return got

    configs = [ModelConfig(), ModelConfig(d_model=64, n_layers=2, n_heads=2), ModelConfig(n_layers=6, n_heads=8)]
    return run_check(
        "kv_cache_bytes", student, reference, [(configs[0], 10), (configs[1], 100), (configs[2], 7)],
        hint="2 (K and V) x n_layers x n_tokens x d_model values (the heads split d_model), 4 bytes each",
        describe=lambda c: f"d_model={c[0].d_model}, n_layers={c[0].n_layers}, {c[1]} tokens",
    )  # fmt: skip
