"""Attention masks as mask_mods, in FlexAttention's convention.

A mask_mod is a function `(b, h, q_idx, kv_idx) -> bool tensor`: True where query q_idx may attend
to key kv_idx (token indices in the stream, not RoPE positions). It must use tensor operations
only (`&`, `|`, comparisons), never Python `if` on its arguments, so that the same function can
draw a heatmap, build a boolean mask, feed `torch.nn.attention.flex_attention.create_block_mask`
and define the Triton kernel's block map. One mask, everywhere.

Window sizes follow the papers they come from:
- `sliding_window(window)` and `sink_window(n_sink, window)`: the query sees itself and the
  `window` tokens before it (StreamingLLM's `recent_size`): `window + 1` keys (plus the `n_sink`
  sinks), so a cache of `window` entries (plus the sinks) between steps suffices.
- `lambda_shaped(n_global, n_local)`: the query sees the `n_local` most recent tokens *including
  itself* (LM-Infinite's `local_branch`) and the first `n_global` tokens.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .validate import check_elements, check_int

MaskMod = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def causal() -> MaskMod:
    """Dense causal attention: every key at or before the query."""

    def causal_mask(b, h, q_idx, kv_idx):
        return q_idx >= kv_idx

    return causal_mask


def sliding_window(window: int) -> MaskMod:
    """The query and the `window` tokens before it: `window + 1` keys per query (once t >= window)."""
    check_int("window", window, 1)

    def sliding_window_mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & (q_idx - kv_idx <= window)

    return sliding_window_mask


def sink_window(n_sink: int, window: int) -> MaskMod:
    """StreamingLLM: the first `n_sink` tokens (attention sinks) plus a sliding window."""
    check_int("n_sink", n_sink, 0)
    check_int("window", window, 1)

    def sink_window_mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & ((kv_idx < n_sink) | (q_idx - kv_idx <= window))

    return sink_window_mask


def lambda_shaped(n_global: int, n_local: int) -> MaskMod:
    """LM-Infinite's Λ: the first `n_global` tokens plus the `n_local` most recent (query included)."""
    check_int("n_global", n_global, 0)
    check_int("n_local", n_local, 1)

    def lambda_mask(b, h, q_idx, kv_idx):
        return (q_idx >= kv_idx) & ((kv_idx < n_global) | (q_idx - kv_idx < n_local))

    return lambda_mask


def materialize(mask_mod: MaskMod, q_len: int, kv_len: int | None = None) -> torch.Tensor:
    """The boolean mask (q_len, kv_len) of `mask_mod`, query i against key j (FlexAttention's
    alignment: both count from 0)."""
    kv_len = q_len if kv_len is None else kv_len
    check_int("q_len", q_len, 1)
    check_int("kv_len", kv_len, 1)
    check_elements("q_len * kv_len", q_len * kv_len)
    if not callable(mask_mod):
        raise TypeError(f"mask_mod must be callable, got {type(mask_mod).__name__}")
    q_idx = torch.arange(q_len)[:, None]
    kv_idx = torch.arange(kv_len)[None, :]
    zero = torch.zeros((), dtype=torch.long)
    try:
        mask = mask_mod(zero, zero, q_idx, kv_idx)
    except RuntimeError as e:  # "Boolean value of Tensor with more than one value is ambiguous"
        if "ambiguous" not in str(e):  # another error (a stub's NotImplementedError) is the caller's
            raise
        raise TypeError(
            f"mask_mod must use tensor operations only (&, |, comparisons), not Python if/and/or: {e}"
        ) from None
    # An int tensor such as q - k would cast to "q != k": it must say True/False itself.
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise TypeError(f"mask_mod must return a bool tensor, got {getattr(mask, 'dtype', type(mask).__name__)}")
    try:
        return torch.broadcast_to(mask, (q_len, kv_len))
    except RuntimeError:
        raise ValueError(f"mask_mod's result {tuple(mask.shape)} does not broadcast to ({q_len}, {kv_len})") from None
