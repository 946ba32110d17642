"""The KV cache protocol, the readable way, and the runner that drives a cache through a forward.

A cache policy is three small decisions:

- `mask_mod`: which of the kept keys a new query may see (a function of times, see `masks`);
- the eviction rule: which entries survive a forward. A policy states it once, as `n_fixed` (the
  first entries, kept for good) and `n_recent` (the most recent ones), and `keep()` follows; a
  readable policy of your own may override `keep()` instead (chapter 03's `MySinkCache`);
- positions: RoPE positions either at the true times (`DenseCache`, `LambdaCache`) or at the
  entries' indices inside the cache (`WindowCache`, `SinkCache`: StreamingLLM's pos-shift), plus
  `far_pairs`: pairs scored as if closer (LM-Infinite's distance limit, StreamingLLM's sinks).

`KVCache` runs any such policy the readable way: keys stored before RoPE (as StreamingLLM's
reference code does) with the stream index ("time") of each entry, every kept key rotated again at
every forward, the cache copied to append and to evict. The package's own caches (`fast_cache`)
give the same logits with O(1) upkeep per token.

Each cache gives the same logits whether a stream is fed one token at a time or in chunks: a
chunk's queries see exactly the keys, at exactly the distances, they would have seen one by one.

`run_blocks` drives a cache per forward: `attach(owner)` (a cache belongs to the model that filled
it), `begin(n_new)` returns the AttentionStep (positions and mask), each layer calls
`attend(layer, q, k, v, ...)` (the readable path: `update(layer, k, v)` appends the new keys and
values and returns everything, then `rope_attention`), and `end()` evicts; an interrupted forward
calls `abort()` instead, which puts the cache back as it was before the forward.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn as nn

from . import masks
from .attention import AttentionStep, repeat_kv, rope_attention
from .guard import all_or_nothing


class KVCache:
    """A cache that keeps everything at its true position; subclasses evict and re-position.

    This base class is the readable version: it stores keys before RoPE, rotates every kept key at
    every forward, and copies the cache to append and to evict. A subclass that only sets
    `mask_mod`, `keep` and `positions_in_cache` (chapter 03's `MySinkCache`) runs this way.
    The package's own caches (`fast_cache.FastCache`) give the same logits without those copies.
    """

    positions_in_cache = False  # True: RoPE positions are indices inside the cache (pos-shift)
    recover = "call cache.reset() or build a new one"  # said by a cache interrupted beyond undoing
    n_fixed = 0  # the eviction rule: the first n_fixed entries are kept for good (sinks, global tokens)
    n_recent: int | None = None  # ... and the n_recent most recent ones (None: every entry is kept)

    def __init__(self) -> None:
        self.mask_mod: masks.MaskMod = masks.causal()
        self.times = torch.empty(0, dtype=torch.long)  # (S,) stream index of every entry
        self.seen = 0  # tokens fed so far
        self._step_times: torch.Tensor | None = None  # times of kept + new entries during a forward
        self._owner: weakref.ref | None = None  # the model that filled the cache
        self._snapshot: tuple | None = None  # the state to go back to if a forward is interrupted
        self._init_storage()

    def _init_storage(self) -> None:
        self.keys: list[torch.Tensor] = []  # per layer (B, H_kv, S, D), before RoPE
        self.values: list[torch.Tensor] = []  # per layer (B, H_kv, S, D)

    def __len__(self) -> int:
        return len(self.times)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        """Indices of the entries to keep after a forward (None: keep all): the first `n_fixed`
        and the `n_recent` most recent."""
        if self.n_recent is None or n_entries <= self.n_fixed + self.n_recent:
            return None
        return torch.cat([torch.arange(self.n_fixed), torch.arange(n_entries - self.n_recent, n_entries)])

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """AttentionStep's far / far_q_pos / far_k_pos for this step (default: none)."""
        return {}

    def attach(self, model: torch.nn.Module) -> None:
        """Called by the model before each forward: refuse a cache that another model filled (its
        keys mean nothing to this one), and remember the state an interrupted forward returns to."""
        if self._owner is not None and self._owner() is not model:
            raise ValueError(
                "cache was filled by another model: continue it with the model that filled it, or start a new cache"
            )
        self._snapshot = (self._state(), model)

    def _state(self) -> tuple:
        return list(self.keys), list(self.values), self.times, self.seen  # tensors are replaced, never mutated

    def _restore(self, state: tuple) -> None:
        self.keys, self.values, self.times, self.seen = state

    def abort(self) -> None:
        """Undo the forward in progress (it was interrupted): the cache is as it was before it."""
        if self._snapshot is not None:
            self._restore(self._snapshot[0])
        self._step_times, self._snapshot = None, None

    def reset(self) -> None:
        """Empty the cache (the same policy, nothing stored), e.g. after an interrupted update."""
        self.times, self.seen = torch.empty(0, dtype=torch.long), 0
        self._step_times, self._owner, self._snapshot, self._interrupted_in = None, None, None, None
        self._init_storage()

    def begin(self, n_new: int, device: torch.device | str = "cpu") -> AttentionStep:
        """Place `n_new` new tokens after the cached ones; return where queries and keys sit."""
        q_times, k_times, q_pos, k_pos = self._place(n_new, device)
        zero = torch.zeros((), dtype=torch.long, device=device)
        mask = self.mask_mod(zero, zero, q_times[:, None], k_times[None, :])  # (T, S)
        mask = torch.broadcast_to(mask, (n_new, len(k_times)))
        return AttentionStep(q_pos, k_pos, None if mask.all() else mask, **self.far_pairs(q_pos, k_pos))

    def _place(self, n_new: int, device: torch.device | str) -> tuple[torch.Tensor, ...]:
        """Stream times of the new tokens (T,) and of every key (S,), and their RoPE positions."""
        if self._step_times is not None:
            raise RuntimeError("begin() called twice without end(): a forward was interrupted")
        self.times = self.times.to(device)
        q_times = torch.arange(self.seen, self.seen + n_new, device=device)
        k_times = torch.cat([self.times, q_times])  # (S,)
        self._step_times = k_times
        if self.positions_in_cache:
            k_pos = torch.arange(len(k_times), device=device)
            return q_times, k_times, k_pos[-n_new:], k_pos
        return q_times, k_times, q_times, k_times

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append layer `layer`'s new keys/values (B, H, T, D); return all of them (B, H, S, D)."""
        if self._step_times is None:
            raise RuntimeError("update() outside a forward: call begin() first")
        self._check_entries(layer, k, self.keys[layer] if layer < len(self.keys) else None)
        if layer == len(self.keys):  # the first forward creates the layer's storage
            self.keys.append(k[:, :, :0])
            self.values.append(v[:, :, :0])
        self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
        self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def _check_entries(self, layer: int, k: torch.Tensor, stored: torch.Tensor | None) -> None:
        """New keys must match what the cache holds: layer count, batch, heads, head dim, dtype, device."""
        n_layers = self._n_layers()
        if stored is None and (layer != n_layers or self.seen > 0):
            raise ValueError(f"layer {layer} does not exist in this cache: a model with {n_layers} layers filled it")
        if stored is None:
            return
        if k.shape[0] != stored.shape[0]:
            raise ValueError(f"batch size changed from {stored.shape[0]} to {k.shape[0]} within one cache")
        for name, got, want in (
            ("key/value heads", k.shape[1], stored.shape[1]),
            ("head dim", k.shape[3], stored.shape[3]),
            ("dtype", k.dtype, stored.dtype),
            ("device", k.device, stored.device),
        ):
            if got != want:
                raise ValueError(f"layer {layer}'s keys have {name} {got}, the cache's {want}: another model filled it")

    def _n_layers(self) -> int:
        return len(self.keys)

    def attend(
        self,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        step: AttentionStep,
        rope_base: float,
        return_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer `layer`'s attention of new queries q (B, H, T, D) over the cache + the new keys and
        values k, v (B, H_kv, T, D), all before RoPE: (out (B, H, T, D), weights or None)."""
        k, v = self.update(layer, k, v)  # (B, H_kv, S, D): cached keys + new ones, before RoPE
        k, v = repeat_kv(k, q.shape[1]), repeat_kv(v, q.shape[1])  # (B, H, S, D)
        return rope_attention(q, k, v, step, rope_base, return_weights, check_inputs=False)

    def end(self) -> None:
        """Finish a forward: count the new tokens, then evict what the policy drops."""
        times, index = self._step_times, self.keep(len(self._step_times))
        if index is not None:
            index = index.to(times.device)
            self.keys = [k[:, :, index] for k in self.keys]
            self.values = [v[:, :, index] for v in self.values]
        self._commit_times(times, index)

    def _commit_times(self, times: torch.Tensor, index: torch.Tensor | None) -> None:
        """The bookkeeping every cache shares at the end of a forward."""
        self.seen = int(times[-1]) + 1 if len(times) else self.seen
        self.times = times if index is None else times[index]
        self._step_times = None
        if self._snapshot is not None:
            self._owner, self._snapshot = weakref.ref(self._snapshot[1]), None


def run_blocks(
    blocks: nn.ModuleList,
    x: torch.Tensor,
    step: AttentionStep | None,
    cache: KVCache | None = None,
    owner: nn.Module | None = None,
    return_attn: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """x (N, n, C) through a stack of Blocks: (x, per-layer attention weights or None).

    Without a cache, `step` places the n tokens; with one, the cache does (`step` is ignored):
    it is attached to `owner` (the module it belongs to), the tokens follow what it holds, and it
    evicts after the last layer. An interrupted forward (Ctrl-C, an error in a layer) leaves the
    cache as it was before it. MiniLLM and MEGABYTE's two stacks all run this way.
    """
    attn = []
    if cache is None:
        for layer, block in enumerate(blocks):
            x, weights = block(x, step, None, layer, return_attn)
            attn.append(weights)
        return x, attn
    with all_or_nothing("a forward", cache, undo=cache.abort):
        cache.attach(owner)  # refuses a cache another model filled
        step = cache.begin(x.shape[1], x.device)
        for layer, block in enumerate(blocks):
            x, weights = block(x, step, cache, layer, return_attn)
            attn.append(weights)
        cache.end()
    return x, attn
