"""A picture of LM-Infinite's Λ with its distance limit, drawn from the package's own rules.

Han et al., *LM-Infinite* (2023, arXiv 2308.16137): a query sees the first `n_global` tokens (the
global branch) and the `n_local` most recent ones, itself included (the local branch), and every
pair the limit calls far is scored as if exactly `limit` apart. `lambda_distances` reads which keys
a query sees from `masks.lambda_shaped` and the distance of each seen pair from
`attention.distance_limit` (the rule the model's layers, `LambdaCache` and `lambda_attention`
use), so the picture changes when the rule does. `plot_lambda` draws the table.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import masks, validate
from .attention import distance_limit
from .viz import MASKED_COLOUR, _axes, _cmap

HIDDEN, LOCAL, GLOBAL = 0, 1, 2  # which branch of the Λ shows a key to a query (global: outside the window)


def lambda_branches(n: int, n_global: int, n_local: int) -> torch.Tensor:
    """(n, n) long: for query i and key j, LOCAL when j is among the n_local most recent keys of i
    (i included), GLOBAL when the Λ shows j only because it is one of the first n_global, HIDDEN else."""
    validate.check_int("n", n, 1)
    seen = masks.materialize(masks.lambda_shaped(n_global, n_local), n)  # validates n_global, n_local
    local = masks.materialize(masks.lambda_shaped(0, n_local), n)  # the local branch alone
    return torch.where(local, LOCAL, torch.where(seen, GLOBAL, HIDDEN))


def lambda_distances(n: int, n_global: int, n_local: int, limit: int, mode: str = "clamp") -> torch.Tensor:
    """(n, n) float: the distance RoPE is given for query i and key j of an n-token forward under
    Λ(n_global, n_local) with the distance limit (`attention.distance_limit`, either mode); NaN
    where the Λ hides the key."""
    validate.check_int("limit", limit, 1)
    branch = lambda_branches(n, n_global, n_local)
    pos = torch.arange(n)
    rule = distance_limit(pos, pos, limit, mode, n_local)
    true = pos[:, None] - pos[None, :]  # (n, n)
    pinned = rule["far_q_pos"][:, None] - rule["far_k_pos"][None, :]  # the far pairs' rotations
    distance = torch.where(rule["far"], pinned, true).double()
    return distance.masked_fill(branch == HIDDEN, float("nan"))


def plot_lambda(
    n: int,
    n_global: int,
    n_local: int,
    limit: int,
    mode: str = "clamp",
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """Draw `lambda_distances`: each seen pair carries its distance, coloured by it; the global
    branch's pairs are hatched, the distances the limit changed are in bold, hidden pairs grey."""
    distance = lambda_distances(n, n_global, n_local, limit, mode)
    branch = lambda_branches(n, n_global, n_local)
    seen = ~distance.isnan()
    ax = _axes(ax, (0.32 * n + 1.5, 0.32 * n + 1))
    values = np.ma.masked_array(distance.nan_to_num(0).numpy(), ~seen.numpy())
    top = 1.5 * max(limit, n_local)  # the colour scale: the largest distance the picture can hold sits mid-dark
    image = ax.imshow(values, cmap=_cmap("magma_r"), vmin=0, vmax=top, interpolation="nearest")
    ax.set_facecolor(MASKED_COLOUR)
    true = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    for (i, j), d in np.ndenumerate(distance.numpy()):
        if branch[i, j] == GLOBAL:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", ec="#9ecae1", lw=0))
        if seen[i, j]:
            limited = d != true[i, j]
            colour = "white" if d > top / 2 else "black"
            ax.text(
                j, i, f"{d:.0f}", ha="center", va="center", fontsize=7, color=colour, weight="bold" if limited else None
            )
    ax.set(xlabel="key position", ylabel="query position")
    ax.set_title(title or f"Λ({n_global}, {n_local}), limit {limit} ({mode}): distance fed to RoPE")
    ax.figure.colorbar(image, ax=ax, label="distance fed to RoPE", shrink=0.8)
    return ax
