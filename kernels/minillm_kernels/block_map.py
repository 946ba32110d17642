"""Which key blocks a query block must visit under a sink + sliding-window mask, and how many.

A block-sparse attention kernel (FlashAttention, Dao et al. 2022, arXiv 2205.14135, cut into
tiles; FlexAttention's `BlockMask`) splits the (T, T) score matrix into tiles of `block_m` queries
by `block_n` keys and skips every tile in which the mask is all False. For StreamingLLM's mask
(`minillm.masks.sink_window`) the tiles that survive are the first few key blocks (the sinks) and
a band along the diagonal (the window), so the work grows like T * (window + n_sink), not T^2.

This file computes that tile set twice: by arithmetic on block indices (what the Triton kernel and
the blocked torch version loop over) and by materializing the mask (what FlexAttention's
`create_block_mask` does). Tests check that the two agree, and that a closed-form count equals both.
"""

from __future__ import annotations

import torch

from minillm import masks
from minillm.validate import check_bool, check_int, check_ints


def full() -> masks.MaskMod:
    """Bidirectional attention: every query sees every key (an encoder; `causal=False`)."""

    def full_mask(b, h, q_idx, kv_idx):
        return (q_idx >= 0) & (kv_idx >= 0)

    return full_mask


def check_mask_args(n_sink: int, window: int | None, causal: bool) -> None:
    """Raise TypeError/ValueError for arguments that name no mask this package supports."""
    check_bool("causal", causal)
    check_int("n_sink", n_sink, 0)
    check_int("window", window, 1, optional=True)
    for name, value in (("n_sink", n_sink), ("window", window)):
        if value is not None and value >= 2**31:  # the kernels compare token indices as int32
            raise ValueError(f"{name} must be < 2**31 (the kernels index tokens with int32), got {value}")
    if window is not None and not causal:
        # A window is a causal idea here (StreamingLLM evicts the past); a bidirectional band
        # would need a mask_mod that minillm.masks does not define, so we refuse it.
        raise ValueError("window requires causal=True (a sliding window looks back, never ahead)")


def check_tiles(T: int, block_m: int, block_n: int) -> None:
    """Raise TypeError/ValueError unless T, block_m and block_n are positive ints."""
    check_ints(T=(T, 1), block_m=(block_m, 1), block_n=(block_n, 1))


def mask_mod_for(n_sink: int = 0, window: int | None = None, causal: bool = True) -> masks.MaskMod:
    """The one mask_mod that `block_sparse_attention(..., n_sink, window, causal)` computes.

    window set -> `masks.sink_window(n_sink, window)`; else causal -> `masks.causal()` (n_sink
    changes nothing: a causal query already sees the first tokens); else `full()`.
    """
    check_mask_args(n_sink, window, causal)
    if window is not None:
        return masks.sink_window(n_sink, window)
    return masks.causal() if causal else full()


def kv_block_ranges(
    q_block: int, T: int, block_m: int, block_n: int, n_sink: int, window: int | None, causal: bool
) -> tuple[int, int, int]:
    """For query block `q_block`, the key blocks to visit as (n_sink_blocks, lo, hi).

    Visit key blocks [0, n_sink_blocks) (the sinks) and then [lo, hi) (the band), with
    n_sink_blocks <= lo so no block is visited twice. The Triton kernel computes exactly this.
    """
    n_kv_blocks = -(-T // block_n)
    if not causal:
        return 0, 0, n_kv_blocks
    first_q = q_block * block_m  # first query row of the block
    last_q = min(first_q + block_m, T) - 1  # last real (non-padding) query row
    hi = last_q // block_n + 1  # one past the diagonal block
    if window is None:
        return 0, 0, hi
    lo = max(first_q - window, 0) // block_n  # block of the oldest key the first row still sees
    n_sink_blocks = min(-(-n_sink // block_n), lo)  # sink blocks that the band does not cover
    return n_sink_blocks, lo, hi


def q_block_ranges(
    kv_block: int, T: int, block_m: int, block_n: int, n_sink: int, window: int | None, causal: bool
) -> tuple[int, int]:
    """For key block `kv_block`, the query blocks [lo, hi) that visit it (the backward's loop for dK, dV).

    The inverse of `kv_block_ranges`: a block holding a sink key is seen by every later query; a
    band block by the queries at most `window` (plus the block's width) after it.
    """
    n_q_blocks = -(-T // block_m)
    if not causal:
        return 0, n_q_blocks
    first_k = kv_block * block_n
    lo = first_k // block_m  # the diagonal: no query before the block's first key sees it
    if window is None or first_k < n_sink:
        return lo, n_q_blocks
    last_k = min(first_k + block_n, T) - 1
    hi = min(last_k + window, T - 1) // block_m + 1  # the last query that still sees the last key
    return lo, hi


def kv_block_splits(
    q_block: int, T: int, block_m: int, block_n: int, n_sink: int, window: int | None, causal: bool
) -> tuple[int, int, int, int, int, int, int]:
    """Cut the key blocks of `kv_block_ranges` into runs of full tiles and partial tiles.

    Returns (s, n_sink_blocks, lo, a, b, c, hi). The forward visits, in this order,
    [0, s) full, [s, n_sink_blocks) partial, [lo, a) full, [a, b) partial, [b, c) full, [c, hi) partial;
    a full tile runs without a mask, a partial one with it. A tile is full when every pair of a query
    and a key of it is allowed, the padding queries of the last block counted like real ones (their
    rows are never stored) and the keys past T as not allowed: causality holds at the tile's corner,
    and every key that is not a sink is within the window of the block's last query. Full blocks form at most
    two runs inside the band (all-sink blocks, then window-full ones up to the diagonal), which is why
    there are six runs. The Triton kernel computes exactly this.
    """
    n_sink_blocks, lo, hi = kv_block_ranges(q_block, T, block_m, block_n, n_sink, window, causal)
    first_q = q_block * block_m
    last_q = first_q + block_m - 1  # padding queries count like real ones
    causal_full = T // block_n  # key blocks before this hold no padding key
    if causal:
        causal_full = min(causal_full, (first_q + 1) // block_n)  # last key <= first query
    sink_full, window_full = 0, 0  # without a window, every key block passes the window test
    if window is not None:
        sink_full = n_sink // block_n  # key blocks whose keys are all sinks
        # a block is window-full when its first non-sink key, max(n * block_n, n_sink), is within the
        # last query's window: every block when the sinks reach that far, else from this block on
        window_full = 0 if n_sink >= last_q - window else -(-(last_q - window) // block_n)

    def clamp(x: int, low: int, high: int) -> int:
        return max(low, min(x, high))

    s = min(n_sink_blocks, sink_full, causal_full)  # the sink blocks left of the band are never window-full
    c = clamp(causal_full, lo, hi)
    a = clamp(sink_full, lo, c)
    b = clamp(window_full, a, c)
    return s, n_sink_blocks, lo, a, b, c, hi


def q_block_splits(
    kv_block: int, T: int, block_m: int, block_n: int, n_sink: int, window: int | None, causal: bool
) -> tuple[int, int, int, int]:
    """Cut the query blocks of `q_block_ranges` (the backward's dK, dV loop) into partial, full, partial runs.

    Returns (lo, f0, f1, hi): [lo, f0) partial, [f0, f1) full, [f1, hi) partial. Here a full tile
    also holds no padding query: the masked path is what zeroes their weights.
    """
    lo, hi = q_block_ranges(kv_block, T, block_m, block_n, n_sink, window, causal)
    first_k = kv_block * block_n
    last_k = first_k + block_n - 1
    f0 = -(-last_k // block_m) if causal else 0  # first query block whose first query sees the last key
    f1 = T // block_m  # query blocks before this hold no padding query
    if window is not None and last_k >= n_sink:  # not all sinks: the last query must see the first non-sink key
        f1 = min(f1, (max(first_k, n_sink) + window + 1) // block_m)
    if last_k >= T:  # padding keys: every tile of this key block needs the mask
        f1 = 0
    f0 = max(lo, min(f0, hi))
    return lo, f0, max(f0, min(f1, hi)), hi


def tile_kinds(
    T: int, block_m: int, block_n: int, n_sink: int = 0, window: int | None = None, causal: bool = True
) -> torch.Tensor:
    """Int (n_q_blocks, n_kv_blocks): 0 where the forward skips the tile, 1 where it runs it without a
    mask (full), 2 where it masks it (partial), from `kv_block_splits`: what the kernel does."""
    check_mask_args(n_sink, window, causal)
    check_tiles(T, block_m, block_n)
    splits = [kv_block_splits(m, T, block_m, block_n, n_sink, window, causal) for m in range(-(-T // block_m))]
    return kinds_from_splits(splits, -(-T // block_n))


def kinds_from_splits(splits: list[tuple[int, ...]], n_kv_blocks: int) -> torch.Tensor:
    """`tile_kinds`' (n_q_blocks, n_kv_blocks) codes from each query block's (s, n_sink_blocks, lo, a, b, c, hi)."""
    kinds = torch.zeros(len(splits), n_kv_blocks, dtype=torch.int64)
    for m, (s, n_sink_blocks, lo, a, b, c, hi) in enumerate(splits):
        for start, end, kind in ((0, s, 1), (s, n_sink_blocks, 2), (lo, a, 1), (a, b, 2), (b, c, 1), (c, hi, 2)):
            kinds[m, start:end] = kind
    return kinds


def tile_kinds_from_mask(mask_mod: masks.MaskMod, T: int, block_m: int, block_n: int) -> torch.Tensor:
    """Int (n_q_blocks, n_kv_blocks), the same codes as `tile_kinds`, from the materialized mask:
    0 where `block_map_from_mask` skips the tile, 1 where every (query, key) pair of it is allowed, 2 otherwise.
    On the padded grid: keys past T are not allowed, the padding queries of the last block count like real ones."""
    check_tiles(T, block_m, block_n)
    n_q, n_kv = -(-T // block_m), -(-T // block_n)
    padded = masks.materialize(mask_mod, n_q * block_m, n_kv * block_n)  # (padded queries, padded keys)
    padded[:, T:] = False
    every = padded.view(n_q, block_m, n_kv, block_n).all(dim=3).all(dim=1)
    return torch.where(every, 1, torch.where(block_map_from_mask(mask_mod, T, block_m, block_n), 2, 0))


def visited_kv_blocks(
    T: int, block_m: int, block_n: int, n_sink: int = 0, window: int | None = None, causal: bool = True
) -> list[list[int]]:
    """For each query block, the key blocks that the kernel visits, in the kernel's order."""
    check_mask_args(n_sink, window, causal)
    visited = []
    for m in range(-(-T // block_m)):
        n_sink_blocks, lo, hi = kv_block_ranges(m, T, block_m, block_n, n_sink, window, causal)
        visited.append(list(range(n_sink_blocks)) + list(range(lo, hi)))
    return visited


def block_map(
    T: int, block_m: int, block_n: int, n_sink: int = 0, window: int | None = None, causal: bool = True
) -> torch.Tensor:
    """Bool (n_q_blocks, n_kv_blocks): True where the kernel visits the tile (from `visited_kv_blocks`)."""
    visited = visited_kv_blocks(T, block_m, block_n, n_sink, window, causal)
    bmap = torch.zeros(len(visited), -(-T // block_n), dtype=torch.bool)
    for m, blocks in enumerate(visited):
        bmap[m, blocks] = True
    return bmap


def block_map_from_mask(mask_mod: masks.MaskMod, T: int, block_m: int, block_n: int) -> torch.Tensor:
    """Bool (n_q_blocks, n_kv_blocks): True where the materialized mask has any True in the tile.

    This is what FlexAttention's `create_block_mask` computes; it costs O(T^2), so a kernel uses
    the arithmetic of `kv_block_ranges` instead.
    """
    mask = masks.materialize(mask_mod, T, T)  # (T, T)
    n_q, n_kv = -(-T // block_m), -(-T // block_n)
    padded = torch.zeros(n_q * block_m, n_kv * block_n, dtype=torch.bool)
    padded[:T, :T] = mask
    return padded.view(n_q, block_m, n_kv, block_n).any(dim=3).any(dim=1)  # (n_q, n_kv)


def count_visited_blocks(T: int, block: int, n_sink: int = 0, window: int | None = None, causal: bool = True) -> int:
    """Closed-form number of tiles visited with square tiles (block_m = block_n = block).

    With M = ceil(T / block) query blocks, query block m visits its diagonal block, the
    c = ceil(window / block) blocks before it (fewer near the start), and those of the
    s = ceil(n_sink / block) sink blocks that the band does not reach:

        sum_m [1 + min(m, c) + min(s, max(0, m - c))]
        = M + sum_{m<M} min(m, c) + sum_{k=1}^{M-1-c} min(s, k)          (each sum is a triangle
                                                                           then a rectangle)

    For T >> window this is about (T / block) * (window + n_sink) / block + T / block: linear in T,
    against M (M + 1) / 2 for causal attention and M^2 for full attention.
    """
    check_mask_args(n_sink, window, causal)
    M = -(-T // block)
    if not causal:
        return M * M
    if window is None:
        return M * (M + 1) // 2

    def triangle_then_flat(n: int, cap: int) -> int:
        # sum_{k=0}^{n-1} min(k, cap): grows like a triangle until k reaches cap, then flat.
        if n <= cap + 1:
            return n * (n - 1) // 2
        return cap * (cap + 1) // 2 + (n - 1 - cap) * cap

    c, s = -(-window // block), -(-n_sink // block)
    K = max(0, M - 1 - c)  # query blocks whose band has left some sink blocks behind
    return M + triangle_then_flat(M, c) + triangle_then_flat(K + 1, s)
