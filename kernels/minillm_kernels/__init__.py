"""Triton kernels for the course, each beside the plain-torch reference it must equal.

Without a GPU, Triton runs kernels in its interpreter (`TRITON_INTERPRET=1`), which must be set
before any `@triton.jit` function is defined: this package sets it here, so learners never have
to. Triton ships wheels for Linux only; elsewhere `TRITON_AVAILABLE` is False and
`TRITON_UNAVAILABLE_REASON` says why.
"""

from __future__ import annotations

# First: Triton must see TRITON_INTERPRET before any kernel below is defined.
from .backend import TRITON_AVAILABLE, TRITON_INTERPRETED, TRITON_UNAVAILABLE_REASON

# isort: split
from .attention_torch import blocked_attention, reference_attention
from .block_map import (
    block_map,
    block_map_from_mask,
    count_visited_blocks,
    mask_mod_for,
    tile_kinds,
    tile_kinds_from_mask,
    visited_kv_blocks,
)
from .block_sparse import block_sparse_attention, kernel_tile_kinds

__all__ = [
    "TRITON_AVAILABLE",
    "TRITON_INTERPRETED",
    "TRITON_UNAVAILABLE_REASON",
    "block_map",
    "block_map_from_mask",
    "block_sparse_attention",
    "blocked_attention",
    "count_visited_blocks",
    "kernel_tile_kinds",
    "mask_mod_for",
    "reference_attention",
    "tile_kinds",
    "tile_kinds_from_mask",
    "visited_kv_blocks",
]
