"""MEGABYTE's data flow, read off a real `Megabyte` so the picture stays true.

`patch_layout` perturbs one byte at a time and watches the package's own stages (the global
model's inputs, the local model's inputs) to find which bytes each stage reads, and which global
output each byte's local slot receives. `PatchLayout.routes` turns that into which bytes every
logit can see, and by which route; `check_layout` compares it with what perturbing the whole
forward shows (`byte_influence`), so a drawing that forgets a shift fails. `plot_layout` draws it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch

from .megabyte import Megabyte
from .validate import check_instance

GLOBAL_ROUTE, LOCAL_ROUTE = 1, 2  # routes[s, t]: how the logit at s sees byte t (0: it does not)


@dataclass(frozen=True)
class PatchLayout:
    """Which bytes each part of a Megabyte reads, for one sequence of T = K·P bytes."""

    patch_size: int  # P
    global_reads: tuple[tuple[int, ...], ...]  # global input k -> the bytes it is built from (() = pad patch)
    slice_of: tuple[int, ...]  # byte t -> the global output whose slice its local slot receives
    local_reads: tuple[tuple[int, ...], ...]  # byte t -> the bytes its local input embeds (() = pad byte)

    def routes(self) -> torch.Tensor:
        """(T, T) long: [s, t] = GLOBAL_ROUTE if the logit at s sees byte t through the global model
        (causal over patches: global outputs 0..k read global inputs 0..k), LOCAL_ROUTE if through
        the local model (causal within a patch: slot p reads the local inputs of slots 0..p), else 0."""
        T, P = len(self.slice_of), self.patch_size
        routes = torch.zeros(T, T, dtype=torch.long)
        for s in range(T):
            for k in range(self.slice_of[s] + 1):
                routes[s, list(self.global_reads[k])] = GLOBAL_ROUTE
            for q in range(s - s % P, s + 1):
                routes[s, list(self.local_reads[q])] = LOCAL_ROUTE
        return routes


def _changed_by_each_byte(stage, ids: torch.Tensor) -> list[torch.Tensor]:
    """For each byte t of ids (1, T): a bool per row of stage(ids) (rows, C), True where changing byte t moves it."""
    base = stage(ids)
    moved = []
    for t in range(ids.shape[1]):
        other = ids.clone()
        other[0, t] = (other[0, t] + 1) % 256  # another byte: a different embedding row
        moved.append((stage(other) - base).abs().amax(-1) > 0)  # unaffected rows are bit-equal
    return moved


@torch.no_grad()
def patch_layout(model: Megabyte, ids: torch.Tensor) -> PatchLayout:
    """The layout of `model` (its shift switches included) on bytes ids (1, T), T a multiple of P."""
    check_instance("model", model, Megabyte)
    P = model.config.patch_size
    if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.shape[0] != 1 or ids.shape[1] % P:
        raise ValueError(f"ids must be a (1, T) tensor with T a multiple of patch_size = {P}")
    T, K, D_L = ids.shape[1], ids.shape[1] // P, model.config.d_local
    g_moved = _changed_by_each_byte(lambda x: model.global_inputs(x, 0, K)[0], ids)  # (K,) per byte
    global_reads = tuple(tuple(t for t in range(T) if g_moved[t][k]) for k in range(K))
    zero = torch.zeros(K, P, D_L)  # no global slices: the local inputs then hold only byte embeddings
    l_moved = _changed_by_each_byte(lambda x: model.local_model_inputs(zero, x.view(K, P)).reshape(T, D_L), ids)
    local_reads = tuple(tuple(t for t in range(T) if l_moved[t][s]) for s in range(T))
    g = torch.randn(1, K, P * model.config.d_global, generator=torch.Generator().manual_seed(0))
    base, slice_of = model.project(g).reshape(T, D_L), [None] * T
    for k in range(K):  # which byte slots receive global output k
        other = g.clone()
        other[0, k] += 1.0
        for s in torch.nonzero((model.project(other).reshape(T, D_L) - base).abs().amax(-1) > 0).flatten():
            slice_of[s] = k
    return PatchLayout(P, global_reads, tuple(slice_of), local_reads)


@torch.no_grad()
def byte_influence(model: Megabyte, ids: torch.Tensor) -> torch.Tensor:
    """(T, T) for ids (1, T): [t, s] = the largest |logit change| at position s when byte t is replaced."""
    T = ids.shape[1]
    same = ids.repeat(T, 1)  # (T, T): T copies of the text ...
    other = same.clone()  # ... and T copies with byte t of row t changed
    other[range(T), range(T)] = (other[range(T), range(T)] + 1) % 256
    model64 = copy.deepcopy(model).double()  # float64: rounding noise ~1e-15, far below any real change
    return (model64(other) - model64(same)).abs().amax(-1)  # (T, T); like with like: the same batch shape


def check_layout(layout: PatchLayout, model: Megabyte, ids: torch.Tensor) -> None:
    """AssertionError unless the bytes each logit sees by the layout's routes are exactly those whose
    change moves that logit in the model's forward."""
    seen = layout.routes() > 0  # (T, T): [s, t]
    moved = byte_influence(model, ids).T > 1e-9  # (T, T): [s, t]; real changes are > 1e-3
    wrong = torch.nonzero(seen != moved).tolist()
    assert not wrong, f"the layout and the forward disagree at (logit s, byte t) = {wrong[:5]}"


def plot_layout(layout: PatchLayout, labels: list[str]) -> plt.Figure:
    """Top: the bytes, each global input (coloured by the patch it reads), the global output each
    slot receives and the byte each local input embeds. Bottom: which bytes each logit sees, by route."""
    T, P = len(labels), layout.patch_size
    colour = lambda k: plt.cm.Pastel1(k % 9) if k is not None else "0.85"  # noqa: E731 (grey: a pad)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(13, 8.5), height_ratios=[1.6, 3])
    rows = [("local input", [(t, 1, (labels[r[0]] if r else "pad"), r[0] // P if r else None) for t, r in
                             enumerate(layout.local_reads)]),
            ("slice of global output", [(t, 1, f"g{k}", k) for t, k in enumerate(layout.slice_of)]),
            ("global input", [(k * P, P, f"bytes {r[0]}–{r[-1]}" if r else "pad patch", r[0] // P if r else None)
                              for k, r in enumerate(layout.global_reads)]),
            ("byte t (predicts)", [(t, 1, labels[t], t // P) for t in range(T)])]  # fmt: skip
    for y, (_, boxes) in enumerate(rows):
        for x, w, text, k in boxes:
            top.add_patch(plt.Rectangle((x, y), w, 0.9, color=colour(k), ec="k", lw=0.5))
            upright = w == 1 and len(text) > 3  # "<bos>" fits a one-byte box only upright
            top.text(x + w / 2, y + 0.45, text, ha="center", va="center", fontsize=7, rotation=90 * upright)
    top.set(xlim=(0, T), ylim=(0, len(rows)), yticks=[y + 0.45 for y in range(len(rows))], xlabel="byte t")
    top.set_yticklabels([name for name, _ in rows])
    top.set_title("colour: the patch whose bytes a box holds, or (slices) whose bytes it serves; grey: a learned pad")
    cmap = plt.matplotlib.colors.ListedColormap(["white", "tab:blue", "tab:orange"])
    bottom.imshow(layout.routes().numpy(), cmap=cmap, vmin=0, vmax=2, interpolation="nearest")
    bottom.set(xlabel="byte t", ylabel="logit position s (scores byte s)")
    bottom.set_title("which bytes the logit at s sees: blue through the global model, orange through the local one")
    fig.tight_layout()
    return fig
