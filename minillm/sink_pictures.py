"""Which keys each query of a real cache sees, and at which RoPE position: StreamingLLM's
re-positioning drawn from the package's own caches (Xiao et al., 2023, arXiv 2309.17453, §3.2).

`keys_seen` feeds a cache one token at a time and records, for every query, the stream token in
each slot it attends to (the kept entries in cache order, then the query itself) and the RoPE
position each key carries, read from the step the cache hands the model (`KVCache.begin`), so the
picture shows what the attention really used. A `SinkCache` keeps its sinks in the first slots, the
window rolls behind them, and every key sits at its slot: no position passes n_sink + window.
`cache_pictures.plot_slots` draws either table.
"""

from __future__ import annotations

import torch

from .cache_pictures import check_feed, padded_rows
from .kv_cache import KVCache


def keys_seen(
    model: torch.nn.Module, ids: torch.Tensor, cache: KVCache, n_steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Feed ids[0], ..., ids[n_steps - 1] (1-D) to `model` one at a time through a fresh `cache`;
    return (tokens, positions), both (n_steps, width) long: row t lists the keys query t attends to,
    in cache order with the query last: their stream tokens, and their RoPE positions. EMPTY pads."""
    check_feed(ids, cache, n_steps)
    if cache.seen:
        raise ValueError("cache must be fresh (nothing fed yet): row t is the query at stream index t")
    tokens, positions = [], []
    begin = cache.begin

    def recording_begin(n_new: int, device: torch.device | str = "cpu"):
        step = begin(n_new, device)  # the positions the model's attention will use
        positions.append(step.k_pos.cpu().clone())
        return step

    cache.begin = recording_begin  # this instance only; removed below, the class's method is untouched
    try:
        with torch.no_grad():
            for t in range(n_steps):
                tokens.append(torch.cat([cache.times.cpu(), torch.tensor([cache.seen])]))  # kept, then the query
                model(ids[None, t : t + 1], cache=cache)
    finally:
        del cache.begin
    return padded_rows(tokens), padded_rows(positions)
