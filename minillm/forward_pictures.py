"""One text's path through the model, drawn from the package's own objects so the picture stays true.

`forward_path` runs a text through `ByteTokenizer` and one forward of a byte-level `MiniLLM` and
keeps the three things the tour's picture shows: the ids the model reads, which keys each query
actually read (a nonzero attention weight in some head of some layer: the mask the model applied,
taken from its weights rather than from `masks`, so a model that peeked ahead would show it), and
the model's distribution over the next token. `plot_forward_path` draws the three side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import validate
from .model import MiniLLM
from .tokenizer import ByteTokenizer
from .viz import _label_tokens, plot_mask


@dataclass
class ForwardPath:
    """What one forward of a text shows (computed without any plotting)."""

    tokens: list[int]  # BOS + the UTF-8 bytes of the text: the ids the model reads, (T,)
    read: torch.Tensor  # (T, T) bool: query t gave key s a nonzero weight in some head of some layer
    next_probs: torch.Tensor  # (vocab_size,) the model's distribution over the token after the text


def forward_path(model: MiniLLM, text: str) -> ForwardPath:
    """Tokenize `text` (with BOS), run one forward of `model` returning its attention, and keep the
    ids, the keys each query read and the next-token distribution. The text must fit the model's
    training context (a longer picture is unreadable anyway)."""
    validate.check_instance("model", model, MiniLLM)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    tok = ByteTokenizer()
    if model.config.vocab_size != tok.vocab_size:
        raise ValueError(
            f"model must be a byte-level model (vocab_size {tok.vocab_size}), got {model.config.vocab_size}"
        )
    tokens = tok.encode(text, bos=True)
    if len(tokens) > model.config.max_seq_len:
        raise ValueError(f"text must fit the training context: {len(tokens)} tokens > {model.config.max_seq_len}")
    device = next(model.parameters()).device
    with torch.no_grad():
        out = model(torch.tensor([tokens], device=device), return_attn=True)
    weights = torch.stack([a[0] for a in out.attn])  # (L, H, T, T): batch 0 of every layer
    read = (weights != 0).any(dim=1).any(dim=0)  # (T, T): read by some head of some layer
    return ForwardPath(tokens, read.cpu(), out.logits[0, -1].softmax(-1).cpu())


def plot_forward_path(path: ForwardPath, top_k: int = 5) -> np.ndarray:
    """Three panels, left to right: the ids (each byte above its id), the keys each query read (grey: masked), and
    the `top_k` most likely next tokens. Returns the three Axes."""
    if not isinstance(path, ForwardPath):
        raise TypeError(f"path must be a ForwardPath (from forward_path), got {type(path).__name__}")
    validate.check_int("top_k", top_k, 1, len(path.next_probs))
    tok = ByteTokenizer()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), gridspec_kw={"width_ratios": [1.4, 1, 0.9]})
    ids_ax, mask_ax, next_ax = axes
    for i, t in enumerate(path.tokens):  # one column per token: the byte, then the id the model reads
        ids_ax.text(i, 1, tok.token_str(t), ha="center", va="center", fontsize=9, rotation=90 if t >= 128 else 0)
        ids_ax.text(i, 0, str(t), ha="center", va="center", fontsize=8, rotation=90)
    ids_ax.set(xlim=(-0.5, len(path.tokens) - 0.5), ylim=(-0.6, 1.6), title="the tokenizer's ids")
    ids_ax.set_yticks([1, 0], ["byte", "id"])
    ids_ax.set_xticks([])
    ids_ax.spines[:].set_visible(False)
    plot_mask(path.read, ax=mask_ax, title="the keys each query read")
    _label_tokens(mask_ax, path.tokens, *path.read.shape)
    probs, ids = path.next_probs.topk(top_k)
    next_ax.barh(range(top_k), probs.tolist(), color="tab:blue")
    next_ax.set_yticks(range(top_k), [tok.token_str(i) for i in ids.tolist()])
    next_ax.invert_yaxis()  # the most likely first
    next_ax.set(xlabel="probability", title=f"the next token (top {top_k})")
    fig.tight_layout()
    return axes
