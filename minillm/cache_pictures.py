"""Pictures of what a model remembers, drawn from the package's own objects so they stay true.

`cache_slots` drives a real cache one token at a time and records which stream token sits in
which slot after each step (a slot is an index inside the cache: the RoPE position of a cache that
places keys there). `recompute_windows` lays out the fresh forwards of sliding window with
re-computation (`streaming.recompute_nll`): which tokens each one sees, at which position.
`plot_slots` draws either table: a filled cell carries its number, an empty one is grey.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import validate
from .kv_cache import KVCache
from .viz import MASKED_COLOUR, _axes, _cmap

EMPTY = -1  # a slot that holds nothing, a token outside a forward


def cache_slots(model: torch.nn.Module, ids: torch.Tensor, cache: KVCache, n_steps: int) -> torch.Tensor:
    """Feed ids[0], ids[1], ... (1-D) to `model` one at a time through `cache` (fresh, or already
    holding a prefix); return (n_steps, width) long: row t is the stream token in each slot of the
    cache after step t, EMPTY where the slot is unused; width is the most entries the cache held."""
    check_feed(ids, cache, n_steps)
    held = []
    with torch.no_grad():
        for t in range(n_steps):
            model(ids[None, t : t + 1], cache=cache)
            held.append(cache.times.cpu().clone())  # the entries in slot order
    return padded_rows(held)


def check_feed(ids: torch.Tensor, cache: KVCache, n_steps: int) -> None:
    """The arguments of a picture that feeds `ids` (1-D) through `cache` for `n_steps` steps."""
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a minillm KVCache, got {type(cache).__name__}")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1:
        raise ValueError("ids must be a 1-D tensor of token ids")
    validate.check_int("n_steps", n_steps, 1, len(ids))


def padded_rows(rows: list[torch.Tensor]) -> torch.Tensor:
    """Rows of different lengths as one (len(rows), longest) long table, EMPTY after each row's end."""
    table = torch.full((len(rows), max(len(r) for r in rows)), EMPTY)
    for out, row in zip(table, rows):
        out[: len(row)] = row
    return table


def recompute_windows(n_tokens: int, window: int) -> torch.Tensor:
    """(n_tokens - 1, n_tokens) long: row t is the fresh forward that predicts token t + 1 in
    `streaming.recompute_nll(..., window)`: the position each token takes in it (token t - window
    at 0, ..., token t at `window`; fewer at the start of the stream), EMPTY for the others."""
    validate.check_int("n_tokens", n_tokens, 2)
    validate.check_int("window", window, 1)
    t = torch.arange(n_tokens - 1)[:, None]  # the last token of each forward
    first = (t - window).clamp(min=0)  # its first token
    s = torch.arange(n_tokens)[None, :]
    inside = (s >= first) & (s <= t)
    return torch.where(inside, s - first, EMPTY)


def plot_slots(
    table: torch.Tensor,
    ax: plt.Axes | None = None,
    title: str | None = None,
    xlabel: str = "slot in the cache",
    ylabel: str = "after step",
) -> plt.Axes:
    """Draw a table of `cache_slots` or `recompute_windows`: each filled cell shows its number."""
    if not isinstance(table, torch.Tensor) or table.dim() != 2 or table.dtype != torch.long:
        raise ValueError("table must be a 2-D long tensor (from cache_slots or recompute_windows)")
    filled = (table != EMPTY).numpy()
    ax = _axes(ax, (0.4 * table.shape[1] + 1, 0.4 * table.shape[0] + 1))
    ax.imshow(np.ma.masked_array(filled.astype(float), ~filled), cmap=_cmap("Blues"), vmin=0, vmax=2.5)
    ax.set_facecolor(MASKED_COLOUR)
    for (row, col), value in np.ndenumerate(table.numpy()):
        if value != EMPTY:
            ax.text(col, row, str(value), ha="center", va="center", fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title or "")
    ax.set_xticks(range(table.shape[1])), ax.set_yticks(range(table.shape[0]))
    ax.tick_params(labelsize=7)
    return ax
