"""Pictures for the course: masks, attention maps and curves (the interactive explorer: `explorer`).

Every plotting function draws on a matplotlib Axes (made for you when `ax` is None) and returns
it, so notebooks can compose figures; none calls `plt.show()`, the notebook cell does.

Masked cells (a key the query may not see) are drawn in MASKED_COLOUR, a light grey that no
colormap here produces, so "masked" never looks like "attends with a tiny weight".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from . import masks, validate
from .tokenizer import ByteTokenizer

MASKED_COLOUR = "#d9d9d9"  # light grey: outside both viridis and Blues
MAX_TICK_LABELS = 40  # past this many tokens, label every k-th one so labels stay readable


def _axes(ax: plt.Axes | None, size: tuple[float, float] = (4, 4)) -> plt.Axes:
    if ax is not None and not isinstance(ax, plt.Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    return ax if ax is not None else plt.subplots(figsize=size)[1]


# ---- the rules of this module's arguments, in one place ----


def _as_mask(mask: object, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """A bool mask (True = may attend) on the CPU: a tensor, array or nested list of bools. A float
    mask is refused, not cast: 0.5 would silently mean True."""
    try:
        t = torch.as_tensor(mask)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"mask must be a bool tensor (q_len, kv_len) or a mask_mod, got {type(mask).__name__}"
        ) from None
    if t.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {t.dtype}")
    if t.dim() != 2:
        raise ValueError(f"mask must be 2-D (q_len, kv_len) or a mask_mod, got shape {tuple(t.shape)}")
    if shape is not None and tuple(t.shape) != shape:
        raise ValueError(f"mask must have the weights' shape {shape}, got {tuple(t.shape)}")
    return t.cpu()


def _check_map(weights: object) -> None:
    """One attention map (T, S) of real numbers without NaN, which imshow would paint the masked grey."""
    if not isinstance(weights, torch.Tensor) or weights.dtype == torch.bool or weights.is_complex():
        raise TypeError(
            f"weights must be a real tensor (T, S), got {getattr(weights, 'dtype', type(weights).__name__)}"
        )
    if weights.dim() != 2:
        raise ValueError(f"weights must be one 2-D map (T, S), got shape {tuple(weights.shape)}")
    if weights.is_floating_point() and torch.isnan(weights).any():
        raise ValueError("weights must not hold NaN (it would be drawn in the masked grey)")


def _check_tokens(tokens: object, n: int) -> None:
    if tokens is not None and len(validate.check_token_ids("tokens", tokens, ByteTokenizer.vocab_size)) < n:
        raise ValueError(f"tokens must label every query and key: at least {n} ids, got {len(tokens)}")


def _check_scale(vmin: object, vmax: object) -> None:
    for name, value in (("vmin", vmin), ("vmax", vmax)):
        if value is not None:
            validate.check_float(name, value)
    if vmin is not None and vmax is not None and not vmin < vmax:
        raise ValueError(f"vmin must be < vmax, got vmin={vmin}, vmax={vmax}")


def _check_curves(curves: object, smooth: object, logy: object, vlines: object) -> None:
    if not isinstance(curves, Mapping):
        raise TypeError(f"curves must be a dict of name -> values, got {type(curves).__name__}")
    validate.check_int("smooth", smooth, 1)
    validate.check_bool("logy", logy)
    if vlines is not None and not isinstance(vlines, Mapping):
        raise TypeError(f"vlines must be a dict of name -> x, got {type(vlines).__name__}")
    for name, x_line in (vlines or {}).items():
        validate.check_float(f"vlines[{name!r}]", x_line)


def _as_curve(name: str, values: object) -> np.ndarray:
    """A curve's values as a 1-D float64 array; a str (whose characters are no numbers) is refused."""
    if isinstance(values, (str, bytes)):
        raise TypeError(f"curves[{name!r}] must be a sequence of numbers, got {type(values).__name__}")
    try:
        ys = np.asarray(torch.as_tensor(values, dtype=torch.float64))
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"curves[{name!r}] must be a sequence of numbers, got {type(values).__name__}") from None
    if ys.ndim != 1:
        raise ValueError(f"curves[{name!r}] must be 1-D (one value per point), got shape {ys.shape}")
    return ys


def _cmap(name: str):
    """A copy of a colormap whose 'bad' (NaN / masked) colour is MASKED_COLOUR."""
    return plt.get_cmap(name).with_extremes(bad=MASKED_COLOUR)


def _masked_key(ax: plt.Axes) -> None:
    """A one-entry legend that says what the grey means."""
    ax.legend(handles=[Patch(color=MASKED_COLOUR, label="masked")], loc="upper right", fontsize=7)


def tick_positions(n: int, max_labels: int = MAX_TICK_LABELS) -> list[int]:
    """Every position when n <= max_labels, else every k-th so at most max_labels remain."""
    validate.check_int("n", n, 0)
    validate.check_int("max_labels", max_labels, 1)
    step = max(1, -(-n // max_labels))  # ceil(n / max_labels)
    return list(range(0, n, step))


def _label_tokens(ax: plt.Axes, tokens: Sequence[int] | None, q_len: int, kv_len: int) -> None:
    if tokens is None:
        return
    tok = ByteTokenizer()
    labels = [tok.token_str(int(t)) for t in tokens]
    kv_labels = labels[-kv_len:] if len(labels) >= kv_len else labels
    q_labels = labels[-q_len:]
    xs, ys = tick_positions(len(kv_labels)), tick_positions(len(q_labels))
    x_text = [kv_labels[i] for i in xs]
    # A label wider than its column ("<bos>", "\\xc8") would run into the next one: stand them all upright.
    ax.set_xticks(xs, x_text, fontsize=7, rotation=90 if max(map(len, x_text), default=0) > 2 else 0)
    ax.set_yticks(ys, [q_labels[i] for i in ys], fontsize=7)


def plot_mask(
    mask: torch.Tensor | masks.MaskMod,
    n: int | None = None,
    ax: plt.Axes | None = None,
    title: str | None = None,
) -> plt.Axes:
    """A boolean mask (q_len, kv_len), or a mask_mod drawn at size n x n: blue = may attend, grey = masked."""
    if callable(mask):
        if n is None:
            raise ValueError("plot_mask needs n (the size to draw) when given a mask_mod")
        mask = masks.materialize(mask, validate.check_int("n", n, 1))
    mask = _as_mask(mask)
    ax = _axes(ax)
    # The array keeps 1 where a pair attends; masked pairs are hidden and drawn in the 'bad' grey.
    ax.imshow(
        np.ma.masked_array(mask.numpy().astype(float), ~mask.numpy()),
        cmap=_cmap("Blues"),
        vmin=0,
        vmax=1.25,
        interpolation="nearest",
    )
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
    mask: torch.Tensor | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    colorbar: bool = True,
) -> plt.Axes:
    """One attention map (T, S): row t is how query t spreads its attention over the keys.

    mask (T, S) bool, True = may attend, marks the masked cells grey; without it a cell whose weight
    is exactly 0 (what softmax gives a -inf score) counts as masked. vmin/vmax fix the colour scale
    (in log10 units when log=True); by default it spans the unmasked weights.
    """
    _check_map(weights)
    _check_tokens(tokens, max(weights.shape))
    validate.check_bool("log", log)
    validate.check_bool("colorbar", colorbar)
    _check_scale(vmin, vmax)
    w = weights.detach().double().cpu().numpy()
    if mask is None:
        hidden = w == 0
    else:
        hidden = ~_as_mask(mask, w.shape).numpy()
    ax = _axes(ax)
    if log:
        w = np.log10(np.maximum(w, 1e-4))
    image = ax.imshow(
        np.ma.masked_array(w, hidden),
        cmap=_cmap("viridis"),
        interpolation="nearest",
        aspect="auto",
        vmin=vmin,
        vmax=vmax,
    )
    _label_tokens(ax, tokens, *w.shape)
    ax.set_xlabel("key", fontsize=8)
    ax.set_ylabel("query", fontsize=8)
    if colorbar:  # the colour scale and the grey key; attention_grid draws one of each per figure
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="log10 weight" if log else "attention weight")
        if hidden.any():
            _masked_key(ax)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def attention_grid(
    attn: Sequence[torch.Tensor],
    batch_index: int = 0,
    log: bool = False,
    size: float = 1.8,
    mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
) -> plt.Figure:
    """All heads of all layers: attn is the model's list of (B, H, T, S), one per layer.

    Every panel shares one colour scale (0..1, or -4..0 in log10) and one colorbar, so panels compare.
    To draw a few layers of a deep model, pass those layers' maps and their numbers as `layers`
    (the row labels; default 0, 1, 2, ...).
    """
    layers_ok = not isinstance(attn, torch.Tensor) and len(attn) > 0
    if not layers_ok or any(not isinstance(a, torch.Tensor) or a.dim() != 4 for a in attn):
        raise ValueError("attn must be a non-empty list of (B, H, T, S) tensors, one per layer (return_attn=True)")
    if any(a.shape != attn[0].shape for a in attn):
        raise ValueError(f"attn's maps must share one shape (B, H, T, S), got {[tuple(a.shape) for a in attn]}")
    validate.check_int("batch_index", batch_index, 0, attn[0].shape[0] - 1)
    validate.check_float("size", size, 0.0, above=True)
    validate.check_bool("log", log)
    n_layers, n_heads = len(attn), attn[0].shape[1]
    layers = list(range(n_layers)) if layers is None else list(layers)
    if len(layers) != n_layers:
        raise ValueError(f"layers must name one layer per map: {n_layers} maps, {len(layers)} layer numbers")
    vmin, vmax = (-4.0, 0.0) if log else (0.0, 1.0)
    fig, axes = plt.subplots(n_layers, n_heads, figsize=(size * n_heads + 1, size * n_layers), squeeze=False)
    for layer, layer_attn in enumerate(attn):
        for head in range(n_heads):
            ax = axes[layer][head]
            plot_attention(
                layer_attn[batch_index, head], None, ax, log=log, mask=mask, vmin=vmin, vmax=vmax, colorbar=False
            )
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel("key" if layer == n_layers - 1 else "", fontsize=8)
            ax.set_ylabel(f"layer {layers[layer]}\nquery" if head == 0 else "", fontsize=8)
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=9)
    fig.tight_layout()
    image = axes[0][0].get_images()[0]
    fig.colorbar(
        image, ax=axes.ravel().tolist(), fraction=0.03, pad=0.02, label="log10 weight" if log else "attention weight"
    )
    fig.legend(handles=[Patch(color=MASKED_COLOUR, label="masked")], loc="lower right", fontsize=8)
    return fig


def _plain_log_ticks(ax: plt.Axes) -> None:
    """Label a log y-axis at 1, 2, 3, 5 x 10^k in plain numbers (no "6 x 10^0"), minor ticks
    unlabelled, so that an axis spanning less than a decade still gets labels that never overlap."""
    lo, hi = ax.get_ylim()
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1, 2, 3, 5), (1, 1.5, 2, 3, 4, 5, 6, 8)):  # the second for a narrow range
        ticks = [m * 10.0**k for k in decades for m in mantissas if lo <= m * 10.0**k <= hi]
        if len(ticks) >= 3:
            break
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def plot_curves(
    curves: Mapping[str, Sequence[float] | torch.Tensor],
    xlabel: str = "position",
    ylabel: str = "",
    ax: plt.Axes | None = None,
    smooth: int = 1,
    logy: bool = False,
    vlines: Mapping[str, float] | None = None,
    x: Sequence[float] | torch.Tensor | None = None,
) -> plt.Axes:
    """Several named curves on one axes, optionally smoothed by a running mean of `smooth` points.

    x gives the measured x value of every point (default 0, 1, 2, ...): pass it whenever the points
    are not one per position, or vlines land at the wrong place.
    """
    _check_curves(curves, smooth, logy, vlines)
    xs_all = None if x is None else _as_curve("x", x)
    ax = _axes(ax, (7, 3.5))
    for name, ys in curves.items():
        ys = _as_curve(name, ys)
        xs = np.arange(len(ys)) if xs_all is None else xs_all
        if len(xs) != len(ys):
            raise ValueError(f"x has {len(xs)} points but curve {name!r} has {len(ys)}")
        if smooth > 1 and len(ys) >= smooth:
            ys = np.convolve(ys, np.ones(smooth) / smooth, mode="valid")
            xs = xs[smooth - 1 :]  # a running mean belongs to the last point it averages
        ax.plot(xs, ys, label=name, lw=1.2)
    if logy:
        ax.set_yscale("log")
        _plain_log_ticks(ax)
    x0, x1 = ax.get_xlim()
    row, last = 0, None
    for name, x_line in sorted((vlines or {}).items(), key=lambda item: item[1]):
        ax.axvline(x_line, color="gray", ls="--", lw=1)
        # A label closer than 12 % of the axis to the previous one goes one row lower, so the two
        # never run together; y in axes fractions keeps it inside the axes whatever the scale.
        row = row + 1 if last is not None and (x_line - last) / (x1 - x0) < 0.12 else 0
        y, last = 0.97 - 0.08 * row, x_line
        ax.text(
            x_line, y, f" {name}", va="top", fontsize=8, color="gray", transform=ax.get_xaxis_transform(),
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.5},
        )  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    # Beside the axes, not inside: a legend there can never cover a curve or a vline's label.
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax
