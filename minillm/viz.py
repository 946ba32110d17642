"""Pictures for the course: masks, attention maps, curves, and an interactive attention explorer.

Every plotting function draws on a matplotlib Axes (made for you when `ax` is None) and returns
it, so notebooks can compose figures; none calls `plt.show()`, the notebook cell does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import masks
from .tokenizer import ByteTokenizer


def _axes(ax: plt.Axes | None, size: tuple[float, float] = (4, 4)) -> plt.Axes:
    return ax if ax is not None else plt.subplots(figsize=size)[1]


def _label_tokens(ax: plt.Axes, tokens: Sequence[int] | None, q_len: int, kv_len: int) -> None:
    if tokens is None:
        return
    tok = ByteTokenizer()
    labels = [tok.token_str(int(t)) for t in tokens]
    ax.set_xticks(range(kv_len), labels[-kv_len:] if len(labels) >= kv_len else labels, fontsize=7)
    ax.set_yticks(range(q_len), labels[-q_len:], fontsize=7)


def plot_mask(
    mask: torch.Tensor | masks.MaskMod,
    n: int | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """A boolean mask (q_len, kv_len), or a mask_mod drawn at size n x n: dark = may attend."""
    if callable(mask):
        if n is None:
            raise ValueError("plot_mask needs n (the size to draw) when given a mask_mod")
        mask = masks.materialize(mask, n)
    mask = torch.as_tensor(mask).bool().cpu()
    if mask.dim() != 2:
        raise ValueError(f"mask must be 2-D (q_len, kv_len) or a mask_mod, got shape {tuple(mask.shape)}")
    ax = _axes(ax)
    ax.imshow(mask.numpy(), cmap="Blues", vmin=0, vmax=1.25, interpolation="nearest")
    ax.set_xlabel("key position")
    ax.set_ylabel("query position")
    ax.set_title(title or f"{int(mask.sum())} of {mask.numel()} pairs attend")
    return ax


def plot_attention(
    weights: torch.Tensor,
    tokens: Sequence[int] | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
    log: bool = False,
) -> plt.Axes:
    """One attention map (T, S): row t is how query t spreads its attention over the keys."""
    if not isinstance(weights, torch.Tensor) or weights.dim() != 2:
        raise ValueError(f"weights must be one 2-D map (T, S), got shape {tuple(getattr(weights, 'shape', ()))}")
    w = weights.detach().float().cpu().numpy()
    ax = _axes(ax)
    if log:
        w = np.log10(np.maximum(w, 1e-4))
    ax.imshow(w, cmap="viridis", interpolation="nearest", aspect="auto")
    _label_tokens(ax, tokens, *w.shape)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def attention_grid(
    attn: Sequence[torch.Tensor],
    tokens: Sequence[int] | None = None,
    batch_index: int = 0,
    log: bool = False,
    size: float = 1.8,
) -> plt.Figure:
    """All heads of all layers: attn is the model's list of (B, H, T, S), one per layer."""
    layers_ok = not isinstance(attn, torch.Tensor) and len(attn) > 0
    if not layers_ok or any(not isinstance(a, torch.Tensor) or a.dim() != 4 for a in attn):
        raise ValueError("attn must be a non-empty list of (B, H, T, S) tensors, one per layer (return_attn=True)")
    n_layers, n_heads = len(attn), attn[0].shape[1]
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(size * n_heads, size * n_layers), squeeze=False)
    for layer, layer_attn in enumerate(attn):
        for head in range(n_heads):
            ax = axes[layer][head]
            plot_attention(layer_attn[batch_index, head], None, ax, log=log)
            ax.set_xticks([])
            ax.set_yticks([])
            if head == 0:
                ax.set_ylabel(f"layer {layer}")
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_curves(
    curves: Mapping[str, Sequence[float] | torch.Tensor],
    xlabel: str = "position",
    ylabel: str = "",
    ax: plt.Axes | None = None,
    smooth: int = 1,
    logy: bool = False,
    vlines: Mapping[str, float] | None = None,
) -> plt.Axes:
    """Several named curves on one axes, optionally smoothed by a running mean of `smooth` points."""
    ax = _axes(ax, (7, 3.5))
    for name, ys in curves.items():
        ys = np.asarray(torch.as_tensor(ys, dtype=torch.float64))
        if smooth > 1 and len(ys) >= smooth:
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = np.arange(len(ys)) + smooth - 1
        else:
            xs = np.arange(len(ys))
        ax.plot(xs, ys, label=name, lw=1.2)
    for name, x in (vlines or {}).items():
        ax.axvline(x, color="gray", ls="--", lw=1)
        ax.text(x, ax.get_ylim()[1], f" {name}", va="top", fontsize=8, color="gray")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    return ax


DEFAULT_EXPLORER_MASKS = {
    "causal": masks.causal(),
    "sliding window (16)": masks.sliding_window(16),
    "4 sinks + window (16)": masks.sink_window(4, 16),
    "Λ (4 global, 16 local)": masks.lambda_shaped(4, 16),
}


def attention_explorer(
    model: torch.nn.Module,
    text: str = "In the beginning God created the heaven and the earth.",
    mask_choices: Mapping[str, masks.MaskMod] | None = None,
):
    """An ipywidgets explorer: type a text, pick a layer, a head and a mask, see the attention map.

    Returns the widget (display it as a cell's last expression).
    """
    import ipywidgets as widgets

    mask_choices = dict(mask_choices or DEFAULT_EXPLORER_MASKS)
    tok = ByteTokenizer()
    cfg = model.config
    text_box = widgets.Text(value=text, description="text", layout=widgets.Layout(width="95%"))
    layer = widgets.IntSlider(0, 0, cfg.n_layers - 1, description="layer")
    head = widgets.IntSlider(0, 0, cfg.n_heads - 1, description="head")
    mask = widgets.Dropdown(options=list(mask_choices), description="mask")
    log = widgets.Checkbox(value=False, description="log scale")
    out = widgets.Output()

    def redraw(*_):
        ids = torch.tensor([tok.encode(text_box.value, bos=True)[: 4 * cfg.max_seq_len]])
        with torch.no_grad():
            attn = model(ids, mask_mod=mask_choices[mask.value], return_attn=True).attn
        out.clear_output(wait=True)
        with out:
            fig, ax = plt.subplots(figsize=(6, 5.5))
            plot_attention(
                attn[layer.value][0, head.value],
                ids[0].tolist(),
                ax,
                log=log.value,
                title=f"layer {layer.value}, head {head.value}, {mask.value}",
            )
            plt.show()

    for w in (text_box, layer, head, mask, log):
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([text_box, widgets.HBox([layer, head]), widgets.HBox([mask, log]), out])
