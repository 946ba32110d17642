"""Checkers for chapter 02 (window attention, re-computation)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import masks
from ..cache import DenseCache, WindowCache
from ..config import ModelConfig
from ..kv_cache import KVCache
from ..model import MiniLLM
from .core import CheckFailed, CheckResult, cache_result, feed_cache, run_check


def keep_indices(got: object, expected: torch.Tensor | None, name: str) -> torch.Tensor | None:
    """A `keep` answer as the cache uses it: None, or a 1-D integer tensor (raises CheckFailed otherwise)."""
    if expected is None and got is not None:
        raise CheckFailed(f"nothing needs evicting here, so {name} must return None, got {type(got).__name__}")
    if got is None:
        if expected is not None:
            raise CheckFailed(f"{name} returned None (keep everything), but {len(expected)} entries must be kept")
        return None
    if not isinstance(got, torch.Tensor):
        kind = type(got).__name__
        raise CheckFailed(f"{name} must return a LongTensor or None, got {kind} (the cache calls its .to())")
    if got.dtype.is_floating_point or got.dtype == torch.bool:
        raise CheckFailed(f"{name} returned a {got.dtype} tensor: indices must be integers (a LongTensor)")
    if got.dim() != 1:
        raise CheckFailed(f"{name} must return a 1-D tensor of indices, got shape {tuple(got.shape)}")
    return got


def draw_mask_mod(mask_mod: object, n: int, name: str) -> torch.Tensor:
    """The (n, n) mask of a learner's mask_mod, called as FlexAttention would: index tensors, a bool answer."""
    if not callable(mask_mod):
        raise CheckFailed(f"{name} must return a mask_mod (a function), got {type(mask_mod).__name__}")
    zero = torch.zeros((), dtype=torch.long)
    mask = mask_mod(zero, zero, torch.arange(n)[:, None], torch.arange(n)[None, :])
    if not isinstance(mask, torch.Tensor):
        raise CheckFailed(f"the mask_mod must return a bool tensor, got {type(mask).__name__}")
    if mask.dtype != torch.bool:
        raise CheckFailed(f"the mask_mod returned {mask.dtype}: FlexAttention needs torch.bool (use &, |, comparisons)")
    return torch.broadcast_to(mask, (n, n))


def check_keep(keep: Callable[[int, int], torch.Tensor | None], hint: int | None = None) -> CheckResult:
    """keep(n_entries, window): indices of the entries a rolling cache keeps (None: all of them)."""

    def student(n, window):
        got = keep_indices(keep(n, window), WindowCache(window).keep(n), "keep")
        return "None" if got is None else got.long()

    def reference(n, window):
        index = WindowCache(window).keep(n)
        return "None" if index is None else index

    return run_check(
        "keep", student, reference, [(1, 1), (3, 4), (4, 4), (5, 4), (9, 1), (20, 4)],
        hints=(
            "the cache keeps the `window` most recent entries, in their order, so the answer is None until "
            "n_entries exceeds the window (at exactly `window` entries nothing is evicted), then exactly "
            "`window` integer indices ending at n_entries - 1",
            "compare n_entries with window using <=, not <; past it, return an integer range (a LongTensor, "
            "not a list, not floats) of length window whose last value is n_entries - 1",
        ),
        level=hint,
        describe=lambda c: f"n_entries={c[0]}, window={c[1]}",
    )  # fmt: skip


def check_sliding_window_mask(
    sliding_window_mask: Callable[[int], masks.MaskMod], hint: int | None = None
) -> CheckResult:
    """sliding_window_mask(window) returns a mask_mod equal to masks.sliding_window(window)."""

    def student(window, n):
        return draw_mask_mod(sliding_window_mask(window), n, "sliding_window_mask")

    def reference(window, n):
        return masks.materialize(masks.sliding_window(window), n)

    return run_check(
        "sliding_window_mask", student, reference, [(1, 4), (1, 6), (3, 10), (8, 8), (5, 16)],
        hints=(
            "row q of the drawn mask must be True for keys q - window .. q: the query itself and the `window` "
            "keys before it, so window + 1 Trues once q >= window, and nothing after the query (causal)",
            "two conditions joined with &: the key is not in the future, and the distance q_idx - kv_idx is at "
            "most window (<=, not <). Tensors only: a Python `if` or `and` on index tensors fails",
        ),
        level=hint,
        describe=lambda c: f"window={c[0]}, drawn at {c[1]}x{c[1]}",
    )  # fmt: skip


def _tiny_model() -> MiniLLM:
    torch.manual_seed(0)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2, max_seq_len=32)).double().eval()


def check_recompute_logits(
    recompute_logits: Callable, model: MiniLLM | None = None, hint: int | None = None
) -> CheckResult:
    """recompute_logits(model, ids, t, window): logits (V,) for token t+1 from a fresh forward over
    ids[t - window : t + 1] (fewer at the start)."""
    model = model or _tiny_model()
    ids = torch.randint(0, 256, (40,), generator=torch.Generator().manual_seed(1))

    def reference(m, ids, t, window):
        with torch.no_grad():
            return m(ids[None, max(0, t - window) : t + 1]).logits[0, -1]

    def student(m, ids, t, window):
        got = recompute_logits(m, ids, t, window)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"return a tensor of logits, got {type(got).__name__}")
        return got.detach()

    return run_check(
        "recompute_logits", student, reference,
        [(model, ids, 0, 8), (model, ids, 5, 8), (model, ids, 8, 8), (model, ids, 30, 8), (model, ids, 39, 3)],
        hints=(
            "the logits (V,) predicting token t + 1 come from one fresh forward of the model passed in over "
            "window + 1 tokens: token t and the `window` tokens before it (only t + 1 tokens while t < window); "
            "nothing before them, nothing after t",
            "slice ids so that it ends at index t inclusive and starts `window` earlier, clipped at 0 (a "
            "negative start would wrap around); run the model on it as a batch of one and keep the logits of "
            "the last position, not probabilities",
        ),
        level=hint,
        describe=lambda c: f"t={c[2]}, window={c[3]}",
    )  # fmt: skip


def check_kv_cache_bytes(kv_cache_bytes: Callable[..., int], hint: int | None = None) -> CheckResult:
    """kv_cache_bytes(config, n_tokens, bytes_per_number=4): bytes of a DenseCache after n_tokens tokens,
    measured on a real cache of a model in float32, bfloat16 (2 bytes) and float64 (8 bytes). The three
    element sizes are what reject `n_layers * n_tokens * d_model * 8`: float64 without the values is the
    right number for float32 only."""
    dtypes = {2: torch.bfloat16, 4: torch.float32, 8: torch.float64}

    def reference(cfg, n, size):
        cache = DenseCache()
        with torch.no_grad():
            MiniLLM(cfg).to(dtypes[size])(torch.zeros(1, n, dtype=torch.long), cache=cache)
        return sum(t.numel() * t.element_size() for t in cache.keys + cache.values)

    def student(cfg, n, size):
        got = kv_cache_bytes(cfg, n, size)
        if not isinstance(got, int) or isinstance(got, bool):
            raise CheckFailed(f"return an int, got {type(got).__name__} {got!r}")
        return got

    configs = [ModelConfig(d_model=64, n_layers=2, n_heads=2), ModelConfig(), ModelConfig(n_layers=6, n_heads=8)]
    cases = [(configs[0], 1, 4), (configs[0], 100, 4), (configs[1], 10, 2), (configs[2], 7, 8), (configs[1], 3, 2)]
    return run_check(
        "kv_cache_bytes", student, reference, cases,
        hints=(
            "count what the cache stores per token and per layer: a key AND a value, each d_model numbers (the "
            "heads split d_model, so n_heads does not enter), each number bytes_per_number bytes (4 in float32, "
            "2 in float16, 8 in float64: use the argument); it grows with n_tokens, not with max_seq_len",
            "multiply five things: 2 (K and V), the number of layers, the number of tokens, d_model, and the "
            "bytes of one number (the third argument); keep it an int (use // if you divide)",
        ),
        level=hint,
        describe=lambda c: f"d_model={c[0].d_model}, n_layers={c[0].n_layers}, {c[1]} tokens, {c[2]} bytes per number",
    )  # fmt: skip


def dilated_window(window: int) -> masks.MaskMod:
    """Longformer's dilated sliding window, dilation 2: a query sees itself and every second token
    before it, up to 2 * window back (window + 1 keys, spread over twice the distance)."""

    def mask_mod(b, h, q_idx, kv_idx):
        distance = q_idx - kv_idx
        return (distance >= 0) & (distance <= 2 * window) & (distance % 2 == 0)

    return mask_mod


def check_dilated_cache(make_cache: Callable[[int], KVCache], hint: int | None = None) -> CheckResult:
    """make_cache(window) -> a KVCache whose token-by-token logits equal one forward under
    dilated_window(window), holding after each step only the entries a later query can still see."""
    model = _tiny_model()
    ids = torch.randint(0, 256, (16,), generator=torch.Generator().manual_seed(2))

    def reference(window):
        with torch.no_grad():
            logits = model(ids[None], mask_mod=dilated_window(window)).logits[0]
        # After step t a later query t' > t sees entry s when t' - s is even and at most 2 * window:
        # the entries from t + 1 - 2 * window on, each seen by the query 2 * window after it or sooner.
        held = torch.tensor([min(t + 1, 2 * window) for t in range(len(ids))])
        return logits, held

    def student(window):
        return feed_cache(model, ids, cache_result(make_cache(window)))

    return run_check(
        "dilated_cache", student, reference, [(1,), (2,), (3,)],
        hints=(
            "item 0 compares your cache's logits, token by token, with one forward under dilated_window(window); "
            "item 1 counts the entries your cache holds after each step. An entry may leave only when no later "
            "query will ever see it, and must stay until then: too few entries change the logits, too many "
            "fail the count",
            "a KVCache subclass needs two things set in its __init__: the mask_mod the exercise gives you, and "
            "how many recent entries survive a step (n_recent). The next query reaches 2 × window back but only "
            "to every second token; the query after it reaches the tokens the next one skips",
        ),
        level=hint,
        describe=lambda c: f"window {c[0]}, {len(ids)} tokens fed one at a time",
    )  # fmt: skip
