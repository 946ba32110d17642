"""One lookahead step drawn from what the package really feeds the model, so the picture stays true.

`traced_step` runs `LookaheadDecoder.step()` and records what its one forward received: the ids,
and the positions and mask the decoder planned in its `LookaheadCache`. `token_grid` lays a step's
tokens out by role and position (a row per window level, then a row per verification candidate; a
column per position after the last settled token x), and `plot_step` draws that grid beside the
step's mask. `sees_one_token_per_position` states the mask's point (Fu et al., ICML 2024, arXiv
2402.02057, and hao-ai-lab/LookaheadDecoding issue #28): every token of the step sees exactly one
token at each earlier position, so its logits come from an ordinary causal context.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from .decoding import LookaheadDecoder
from .lookahead import LookaheadLayout, Verdict

EMPTY = -1  # a grid cell that holds no token of the step


@dataclass
class FedStep:
    """What one step's forward received (ids in input order; offsets after x; the (T, T) mask) and its verdict."""

    ids: list[int]
    positions: torch.Tensor
    mask: torch.Tensor
    verdict: Verdict


def traced_step(decoder: LookaheadDecoder) -> FedStep:
    """Run `decoder.step()` once and return what its forward was fed (read at the forward's call)."""
    if not isinstance(decoder, LookaheadDecoder):
        raise TypeError(f"decoder must be a minillm LookaheadDecoder, got {type(decoder).__name__}")
    fed = []

    def record(module, args, kwargs):  # runs just before the forward, when the cache holds the step's plan
        offsets, mask = kwargs["cache"].planned
        fed.append((args[0][0].tolist(), offsets.clone(), mask.clone()))

    handle = decoder.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        verdict = decoder.step()
    finally:
        handle.remove()
    (ids, positions, mask) = fed[0]
    return FedStep(ids, positions, mask, verdict)


def row_of(layout: LookaheadLayout) -> torch.Tensor:
    """(T,) the grid row of each token: its window level, or n_levels + its candidate number."""
    n_levels = int(layout.level.max()) + 1
    return torch.where(layout.candidate >= 0, n_levels + layout.candidate, layout.level)


def token_grid(ids: list[int], layout: LookaheadLayout) -> torch.Tensor:
    """(rows, width) long: token ids[t] at (row_of(layout)[t], layout.positions[t]), EMPTY elsewhere."""
    if len(ids) != len(layout.positions):
        raise ValueError(f"ids has {len(ids)} tokens, the layout places {len(layout.positions)}")
    rows = row_of(layout)
    grid = torch.full((int(rows.max()) + 1, int(layout.positions.max()) + 1), EMPTY)
    grid[rows, layout.positions] = torch.tensor(ids)
    return grid


def sees_one_token_per_position(positions: torch.Tensor, mask: torch.Tensor) -> bool:
    """Whether every token sees exactly one token at each position 0 ... its own (itself at its own)."""
    for q, p in enumerate(positions.tolist()):
        seen = positions[mask[q]].sort().values
        if not torch.equal(seen, torch.arange(p + 1)) or not mask[q, q]:
            return False
    return True


def plot_step(
    ids: list[int], layout: LookaheadLayout, token_str: Callable[[int], str], axes: np.ndarray | None = None
) -> np.ndarray:
    """Left: the step's tokens by role (rows) and position after x (columns). Right: its (T, T) mask,
    a cell coloured by the key's row when the query may attend to it. `token_str(id)` labels a token."""
    grid = token_grid(ids, layout)
    rows = row_of(layout)
    n_levels = int(layout.level.max()) + 1
    names = [f"level {r}" for r in range(n_levels)] + [f"candidate {g}" for g in range(len(grid) - n_levels)]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [1, 1.3]})
    colours = plt.cm.tab10(rows.numpy() % 10)[:, :3]  # (T, 3): one colour per row of the grid
    ax = axes[0]
    ax.imshow(np.ones((*grid.shape, 3)))  # a white canvas of grid cells
    for t, (r, p) in enumerate(zip(rows.tolist(), layout.positions.tolist())):
        ax.add_patch(plt.Rectangle((p - 0.5, r - 0.5), 1, 1, color=colours[t], alpha=0.4))
        ax.text(p, r, token_str(ids[t]), ha="center", va="center", fontsize=9)
    ax.set_yticks(range(len(grid)), names)
    ax.set(xlabel="position after x (x = 0)", title="the tokens of one forward, by role")
    ax = axes[1]
    ax.imshow(np.where(layout.mask.numpy()[..., None], colours[None], 1.0))  # (T, T, 3): the key's colour, or white
    ticks = [f"{name} @{p}" for name, p in zip(layout.labels, layout.positions.tolist())]
    ax.set_xticks(range(len(ticks)), ticks, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ticks)), ticks, fontsize=7)
    ax.set(xlabel="key", ylabel="query", title="who sees whom in that forward")
    return axes
