"""The ∞-former's contraction as a picture, taken from a real `ContinuousMemory` update so it stays true.

Martins, Marinho & Martins, "∞-former: Infinite Memory Transformer", ACL 2022, arXiv 2109.00301, §3.2.
`contraction` runs `ContinuousMemory.update` on a copy of a memory and keeps what it did: where it
read the old signal (the cell centres, or, with sticky memories, points drawn where attention looked),
the values it read there, where it placed them in [0, tau], where the new vectors went in (tau, 1],
and the memory after the refit. `refit_drawn` fits the drawn points at their drawn places: a picture
is true when that gives the update's own coefficients. `plot_contraction` draws it in two panels.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch

from .continuous_attention import contraction_positions, ridge_regression_matrix
from .infinite_former import ContinuousMemory


@dataclass(frozen=True)
class Contraction:
    """One update of a memory, as drawn. M samples of the old signal, L new vectors, width e."""

    before: ContinuousMemory  # the memory before the update (a copy)
    after: ContinuousMemory  # the memory after it (a copy)
    read_at: torch.Tensor  # (M,) where the update read the old signal, sorted
    old_values: torch.Tensor  # (M, e) the old signal there
    placed_at: torch.Tensor  # (M,) where those values sit in the new memory: inside (0, tau)
    new_at: torch.Tensor  # (L,) where the new vectors sit: inside (tau, 1)
    new_values: torch.Tensor  # (L, e) the new vectors
    density: torch.Tensor | None  # (bins,) the attention mass that drew read_at (sticky), or None


def contraction(
    memory: ContinuousMemory,
    x_new: torch.Tensor,
    sticky_density: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Contraction:
    """What `memory.update(x_new, sticky_density, generator)` does, run on a copy (`memory` is unchanged).

    memory: a fitted, unbatched memory (coefficients (N, e)); x_new (L, e); sticky_density (bins,)."""
    if not isinstance(memory, ContinuousMemory):
        raise TypeError(f"memory must be a ContinuousMemory, got {type(memory).__name__}")
    if memory.is_empty or memory.coefficients.dim() != 2:
        raise ValueError("memory must be fitted and unbatched (coefficients (N, e)): fit() it first")
    before = copy.deepcopy(memory)
    after = copy.deepcopy(memory).update(x_new, sticky_density, generator)  # validates x_new and the density
    read_at = after.sampled_positions  # (M,)
    positions = contraction_positions(len(read_at), x_new.shape[-2], memory.tau)  # (M + L,)
    return Contraction(
        before=before,
        after=after,
        read_at=read_at,
        old_values=before.read(read_at),
        placed_at=positions[: len(read_at)],
        new_at=positions[len(read_at) :],
        new_values=x_new.to(read_at),
        density=sticky_density,
    )


def refit_drawn(picture: Contraction) -> torch.Tensor:
    """The ridge fit (N, e) of the drawn points at their drawn places, with the memory's basis, ridge
    and fit: equal to `picture.after.coefficients` when the picture shows what the update did."""
    memory = picture.before
    positions = torch.cat([picture.placed_at, picture.new_at])  # (M + L,)
    G = ridge_regression_matrix(memory.basis, positions, memory.ridge, memory.pad)  # (M + L, N)
    return G.T @ torch.cat([picture.old_values, picture.new_values]).to(G)  # (N, e)


def plot_contraction(picture: Contraction, axes: tuple[plt.Axes, plt.Axes] | None = None) -> tuple[plt.Axes, plt.Axes]:
    """Top: the old signal and the points read from it (and the attention mass that drew them, for a
    sticky update). Bottom: those values at their new places in [0, tau], the new vectors in (tau, 1],
    and the refitted signal. Channel 0 only. Returns the two axes."""
    if axes is None:
        axes = plt.subplots(2, 1, figsize=(9, 4), sharex=True)[1]
    top, bottom = axes
    s = torch.linspace(0, 1, 401, dtype=picture.read_at.dtype)
    tau = picture.before.tau
    top.plot(s, picture.before.read(s)[:, 0], "k", lw=1)
    top.plot(picture.read_at, picture.old_values[:, 0], "o", color="C0", ms=4)
    if picture.density is not None:  # the histogram that drew the points, scaled to the panel
        bins = len(picture.density)
        height = picture.density / picture.density.max() * picture.old_values[:, 0].abs().max()
        centres = ((torch.arange(bins) + 0.5) / bins).numpy()
        top.bar(centres, height.numpy(), width=1 / bins, color="0.8", label="attention mass")
        top.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    top.set(ylabel="old X(t)", title=f"read the old signal at M = {len(picture.read_at)} points ...")
    bottom.plot(picture.placed_at, picture.old_values[:, 0], "o", color="C0", ms=4, label="old samples, moved")
    bottom.plot(picture.new_at, picture.new_values[:, 0], "x", color="C1", ms=7, label="new vectors, in (τ, 1]")
    bottom.plot(s, picture.after.read(s)[:, 0], "C3", lw=1, label="the refit X(t)")
    bottom.axvline(tau, color="0.6", ls=":")
    bottom.set(xlabel="t", ylabel="new X(t)", title="... place them in [0, τ], append the new vectors, refit")
    bottom.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    return top, bottom
