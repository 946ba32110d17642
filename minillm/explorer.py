"""The interactive attention explorer: type a text, pick a layer, a head and a mask, see the map.

`explorer_picture` computes what the explorer shows (no widget needed: tests and notebooks can
call it), `draw_explorer_picture` draws it with `viz.plot_attention`, and `attention_explorer`
wires both to ipywidgets controls.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch

from . import masks, validate
from .model import MiniLLM
from .tokenizer import ByteTokenizer
from .viz import plot_attention

# Each label says how many keys a query sees once the text is long enough: StreamingLLM's window
# does not count the query (16 + itself), LM-Infinite's n_local does (16 with itself). Short
# labels: the explorer's dropdown cuts them at about 27 characters.
DEFAULT_EXPLORER_MASKS = {
    "causal": masks.causal(),
    "window 16: 17 keys": masks.sliding_window(16),
    "4 sinks + 16: 21 keys": masks.sink_window(4, 16),
    "Λ 4 + 16 local: 20 keys": masks.lambda_shaped(4, 16),
}


@dataclass
class ExplorerPicture:
    """What the explorer shows for one setting of its controls (computed without any widget)."""

    weights: torch.Tensor | None  # (T, S) attention of the chosen layer and head; None for an empty text
    mask: torch.Tensor | None  # (T, S) bool, True = may attend
    tokens: list[int]  # BOS + the bytes drawn
    n_bytes: int  # bytes in the whole text
    n_shown: int  # bytes drawn: the text is cut at max_bytes, and the message says so
    message: str  # the line the explorer prints above the picture


def explorer_picture(
    model: torch.nn.Module,
    text: str,
    layer: int,
    head: int,
    mask_mod: masks.MaskMod,
    max_bytes: int | None = None,
) -> ExplorerPicture:
    """The attention of `layer`, `head` on BOS + the first max_bytes bytes of `text` under mask_mod.

    max_bytes defaults to 4x the model's training context: longer maps are too big to read.
    """
    validate.check_instance("model", model, MiniLLM)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    cfg = model.config
    validate.check_int("layer", layer)
    validate.check_int("head", head)
    if not 0 <= layer < cfg.n_layers:
        raise ValueError(f"layer must be in 0..{cfg.n_layers - 1}, got {layer}")
    if not 0 <= head < cfg.n_heads:
        raise ValueError(f"head must be in 0..{cfg.n_heads - 1}, got {head}")
    max_bytes = 4 * cfg.max_seq_len if max_bytes is None else validate.check_int("max_bytes", max_bytes, 1)
    data = ByteTokenizer().encode(text)
    if not data:  # BOS alone would draw a uniform 1x1 square that means nothing
        return ExplorerPicture(None, None, [], 0, 0, "the text is empty: type something to see its attention")
    shown = data[:max_bytes]
    ids = torch.tensor([[ByteTokenizer().bos_id, *shown]])  # (1, T)
    mask = masks.materialize(mask_mod, ids.shape[1])  # (T, T)
    with torch.no_grad():
        attn = model(ids, mask_mod=mask_mod, return_attn=True).attn
    if len(shown) < len(data):
        message = f"showing the first {len(shown)} of {len(data)} bytes (limit {max_bytes} bytes)"
    else:
        message = f"{len(data)} bytes (limit {max_bytes} bytes)"
    return ExplorerPicture(attn[layer][0, head], mask, ids[0].tolist(), len(data), len(shown), message)


def draw_explorer_picture(
    picture: ExplorerPicture, ax: plt.Axes, title: str, log: bool = False, fixed_scale: bool = False
) -> plt.Axes:
    """Draw an ExplorerPicture; fixed_scale keeps the colours 0..1 (log10: -4..0) across pictures."""
    if not isinstance(picture, ExplorerPicture):
        raise TypeError(f"picture must be an ExplorerPicture (from explorer_picture), got {type(picture).__name__}")
    validate.check_bool("fixed_scale", fixed_scale)
    if picture.weights is None:
        ax.axis("off")
        ax.text(0.5, 0.5, picture.message, ha="center", va="center", transform=ax.transAxes)
        return ax
    vmin, vmax = ((-4.0, 0.0) if log else (0.0, 1.0)) if fixed_scale else (None, None)
    return plot_attention(
        picture.weights, picture.tokens, ax, title=title, log=log, mask=picture.mask, vmin=vmin, vmax=vmax
    )


def attention_explorer(
    model: torch.nn.Module,
    text: str = "In the beginning God created the heaven and the earth.",
    mask_choices: Mapping[str, masks.MaskMod] | None = None,
):
    """An ipywidgets explorer: type a text (several lines allowed), pick a layer, a head and a mask.

    Returns the widget (display it as a cell's last expression). The widgets talk to the kernel, so
    after a browser reload re-run the cell that made them.
    """
    import ipywidgets as widgets

    validate.check_instance("model", model, MiniLLM)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    mask_choices = dict(mask_choices or DEFAULT_EXPLORER_MASKS)
    if not all(callable(m) for m in mask_choices.values()):
        raise TypeError("mask_choices must map names to mask_mods (callables)")
    cfg = model.config
    text_box = widgets.Textarea(value=text, description="text", rows=4, layout=widgets.Layout(width="95%"))
    info = widgets.HTML()
    layer = widgets.IntSlider(0, 0, cfg.n_layers - 1, description="layer")
    head = widgets.IntSlider(0, 0, cfg.n_heads - 1, description="head")
    mask = widgets.Dropdown(options=list(mask_choices), description="mask")
    log = widgets.Checkbox(value=False, description="log scale")
    fixed = widgets.Checkbox(value=False, description="fixed colour scale")
    out = widgets.Output()

    def redraw(*_):
        picture = explorer_picture(model, text_box.value, layer.value, head.value, mask_choices[mask.value])
        info.value = picture.message
        out.clear_output(wait=True)
        with out:
            fig, ax = plt.subplots(figsize=(6.5, 5.5))
            title = f"layer {layer.value}, head {head.value}, {mask.value}"
            draw_explorer_picture(picture, ax, title, log=log.value, fixed_scale=fixed.value)
            plt.show()

    for w in (text_box, layer, head, mask, log, fixed):
        w.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([text_box, info, widgets.HBox([layer, head]), widgets.HBox([mask, log, fixed]), out])
    # A saved notebook opened without a kernel shows a widget's text/plain: a readable line, not its repr.
    box._repr_mimebundle_ = _with_plain_text(box._repr_mimebundle_, EXPLORER_PLAIN_TEXT)
    return box


EXPLORER_PLAIN_TEXT = "[the attention explorer: an interactive widget. Run this cell in JupyterLab to use it.]"


def _with_plain_text(bundle, text: str):
    """Wrap a widget's _repr_mimebundle_ so that its text/plain entry is `text`."""

    def wrapped(**kwargs):
        data = bundle(**kwargs)
        if data:  # ipywidgets returns None when the widget has no model id (closed)
            data["text/plain"] = text
        return data

    return wrapped
