"""KV caches: what a model remembers of the stream, and at which positions it sees it.

A cache policy is three small decisions:

- `mask_mod`: which of the kept keys a new query may see (a function of times, see `masks`);
- `keep`: which entries survive after a forward (the eviction rule);
- positions: RoPE positions either at the true times (`DenseCache`, `LambdaCache`) or at the
  entries' indices inside the cache (`WindowCache`, `SinkCache`: StreamingLLM's pos-shift), plus
  `far_pairs`: pairs scored as if closer (LM-Infinite's distance limit, StreamingLLM's sinks).

`KVCache` runs any such policy the readable way: keys stored before RoPE (as StreamingLLM's
reference code does) with the stream index ("time") of each entry, every kept key rotated again at
every forward, the cache copied to append and to evict. The package's own caches (`FastCache`)
give the same logits with O(1) upkeep per token: keys rotated once, written into preallocated
buffers; `FastCache`'s docstring says why that is the same attention.

Each cache gives the same logits whether a stream is fed one token at a time or in chunks: a
chunk's queries see exactly the keys, at exactly the distances, they would have seen one by one.

The model drives a cache per forward: `attach(model)` (a cache belongs to the model that filled
it), `begin(n_new)` returns the AttentionStep (positions and mask), each layer calls
`attend(layer, q, k, v, ...)` (the readable path: `update(layer, k, v)` appends the new keys and
values and returns everything, then `rope_attention`), and `end()` evicts; an interrupted forward
calls `abort()` instead, which puts the cache back as it was before the forward.
"""

from __future__ import annotations

import weakref

import torch

from . import masks
from .attention import AttentionStep, distance_limit, group_heads, repeat_kv, rope_attention, stored_attention
from .rope import rope_cos_sin, rope_matrix, rotate


class KVCache:
    """A cache that keeps everything at its true position; subclasses evict and re-position.

    This base class is the readable version: it stores keys before RoPE, rotates every kept key at
    every forward, and copies the cache to append and to evict. A subclass that only sets
    `mask_mod`, `keep` and `positions_in_cache` (chapter 03's `MySinkCache`) runs this way.
    The package's own caches (`FastCache` below) give the same logits without those copies.
    """

    positions_in_cache = False  # True: RoPE positions are indices inside the cache (pos-shift)

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
        """Indices of the entries to keep after a forward (None: keep all)."""
        return None

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


class FastCache(KVCache):
    """The package's caches: the logits of the readable path above, with O(1) work per token to
    keep the cache (no copy of the cache, no re-rotation of a kept key).

    Why it is equal. A RoPE score depends only on the distance between query and key (rope.py),
    so a key can be rotated once, when it is written, at the cache's clock (its stream time), if
    each query is rotated where it gives every pair the distance the readable cache gives it:
    - dense and Λ caches place keys at their true times: the query at its own time does it;
    - window and sink caches place keys at indices inside the cache (pos-shift), but the window is
      contiguous, so between a query and a window key the difference of indices is the difference
      of times: the query at its own time again; a sink s, seen from the query at time t, sits at
      min(t, n_sink + window) - s: the query rotated at min(t, n_sink + window) against it;
    - far pairs (LM-Infinite's distance limit) sit at a constant distance L: the query rotated at L
      against a copy of the keys kept un-rotated.
    So a query is rotated at two positions at most, and no kept key is ever touched again.

    Storage, per layer: one buffer [the first `n_fixed` entries | gap | the recent ones | room];
    a forward writes its new entries into the room and eviction moves a pointer. When the room
    runs out, the live entries move to a new buffer twice their size: O(1) per token, amortized.
    A new distance rule plugs in through `fast_far_pairs` (see there).
    """

    n_fixed = 0  # the first tokens, kept for good (sinks, global tokens)
    n_recent: int | None = None  # the most recent tokens kept between forwards (None: all)
    far_keys_at_zero = False  # far pairs scored against un-rotated keys (else the stored ones)

    def _init_storage(self) -> None:
        self._k: list[torch.Tensor] = []  # per layer (B, H_kv, capacity, D), rotated at the clock
        self._k0: list[torch.Tensor] = []  # the same keys un-rotated, if far_keys_at_zero
        self._v: list[torch.Tensor] = []  # per layer (B, H_kv, capacity, D)
        # buffer layout, the same in every layer: fixed entries [0, f), recent ones [start, end),
        # and `clock` tokens written so far (the clock time of buffer slot end - 1 is clock - 1)
        self._at = (0, 0, 0, 0)  # (f, start, end, clock)
        self._rope_base: float | None = None
        self._plan: dict | None = None  # what every layer of the forward in progress shares
        self._n_new = self._n_written = 0  # new tokens of the forward in progress, layers written

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "keep" in vars(cls) and cls.__module__ != __name__:  # the buffers evict by n_fixed / n_recent
            raise TypeError(f"{cls.__name__} overrides keep(): subclass KVCache for an eviction rule of your own")

    def fast_far_pairs(self, q_times: torch.Tensor, k_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The far pairs of a step in clock times, q_times (T,) and k_times (S,): (far (T, S) bool,
        far_q_pos (T,)), or None. A far pair is scored with the query rotated at far_q_pos against
        the key as stored (rotated at its time), or un-rotated if `far_keys_at_zero`. Default: none."""
        return None

    # -- what a reader sees: the entries in time order, keys before RoPE, as KVCache keeps them

    @property
    def keys(self) -> list[torch.Tensor]:
        return [self._entries(layer, 0)[0] for layer in range(len(self._k))]

    @property
    def values(self) -> list[torch.Tensor]:
        return [self._entries(layer, 0)[1] for layer in range(len(self._k))]

    def _views(self, n_new: int) -> list[tuple[int, int]]:
        f, start, end, _ = self._at
        return [(0, end + n_new)] if start == f else [(0, f), (start, end + n_new)]

    def _clock_times(self, n_new: int, device: torch.device) -> torch.Tensor:
        f, start, end, clock = self._at
        recent = torch.arange(clock - (end - start), clock + n_new, device=device)
        return torch.cat([torch.arange(f, device=device), recent])

    def _entries(self, layer: int, n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s keys (before RoPE) and values, the `n_new` being written included."""
        views = self._views(n_new)
        values = torch.cat([self._v[layer][:, :, lo:hi] for lo, hi in views], dim=2)
        if self.far_keys_at_zero:
            return torch.cat([self._k0[layer][:, :, lo:hi] for lo, hi in views], dim=2), values
        keys = torch.cat([self._k[layer][:, :, lo:hi] for lo, hi in views], dim=2)
        times = self._clock_times(n_new, keys.device)
        cos, sin = rope_cos_sin(times, keys.shape[-1], self._rope_base or 1e4, keys.dtype)
        return rotate(keys, cos, -sin), values  # rotated back by the angle it was written at

    # -- the forward

    def _state(self) -> tuple:
        return list(self._k), list(self._k0), list(self._v), self._at, self._rope_base, self.times, self.seen

    def _restore(self, state: tuple) -> None:
        self._k, self._k0, self._v, self._at, self._rope_base, self.times, self.seen = state
        self._plan = None

    def _n_layers(self) -> int:
        return len(self._k)

    def abort(self) -> None:
        super().abort()
        self._plan = None

    def begin(self, n_new: int, device: torch.device | str = "cpu") -> AttentionStep:
        """The step holds the readable cache's positions (what a reader of positions expects); the
        fast path works out its own mask and far pairs at the first layer, so the step has none."""
        _, _, q_pos, k_pos = self._place(n_new, device)
        self._plan, self._n_new, self._n_written = None, n_new, 0
        return AttentionStep(q_pos, k_pos)

    def _prepare(self, k: torch.Tensor, rope_base: float) -> dict:
        """At a forward's first write: make room for its entries, and work out once what every
        layer needs (query rotations, views, mask, far pairs)."""
        if self._rope_base is not None and rope_base != self._rope_base:
            raise ValueError(f"rope_base {rope_base} differs from the cache's {self._rope_base}: another model?")
        self._rope_base = rope_base
        T, D, device = k.shape[2], k.shape[3], k.device
        if T != self._n_new:
            raise ValueError(f"layer keys hold {T} new tokens, begin() was told {self._n_new}")
        f, start, end, clock = self._at
        live = f + end - start
        if not self._k or end + T > self._k[0].shape[2]:  # no room: move the live entries to a new buffer
            capacity = max(2 * (live + T), 16)
            moved = [[self._moved(b, capacity) for b in bufs] for bufs in (self._k, self._k0, self._v)]
            (self._k, self._k0, self._v), self._at = moved, (f, f, live, clock)
            start, end = f, live
        self._capacity = self._k[0].shape[2] if self._k else capacity
        q_times = torch.arange(clock, clock + T, device=device)
        k_times = self._clock_times(T, device)
        views = self._views(T)
        plan = {"T": T, "views": views, "mask": None, "far": [None] * len(views), "far_q_pos": None}
        if T > 1:  # (one token sees every kept entry: keep() leaves exactly what the next query sees)
            zero = torch.zeros((), dtype=torch.long, device=device)
            mask = torch.broadcast_to(self.mask_mod(zero, zero, q_times[:, None], k_times[None, :]), (T, len(k_times)))
            plan["mask"] = None if mask.all() else mask
        far = self.fast_far_pairs(q_times, k_times)
        if far is not None and far[0].any():
            far_mask, plan["far_q_pos"] = far
            column = 0
            for i, (lo, hi) in enumerate(views):
                part = far_mask[:, column : column + hi - lo]
                plan["far"][i] = True if part.all() else (part if part.any() else None)
                column += hi - lo
        scale = D**-0.5
        if T == 1:  # rotations as (D, D) matrices: one matmul each; the query's scaled, near | far
            near = rope_matrix(clock, D, rope_base, k.dtype).to(device)
            plan["rot_k"], plan["rot_q"] = near, near * scale
            if plan["far_q_pos"] is not None:
                far_m = rope_matrix(int(plan["far_q_pos"][0]), D, rope_base, k.dtype).to(device)
                plan["rot_q"] = torch.cat([near, far_m], dim=-1) * scale  # (D, 2D)
        else:
            cos, sin = plan["rot_k"] = rope_cos_sin(q_times, D, rope_base, k.dtype)
            plan["rot_q"] = cos * scale, sin * scale
            if plan["far_q_pos"] is not None:
                plan["rot_q_far"] = tuple(x * scale for x in rope_cos_sin(plan["far_q_pos"], D, rope_base, k.dtype))
        return plan

    def _moved(self, buffer: torch.Tensor, capacity: int) -> torch.Tensor:
        f, start, end, _ = self._at
        new = buffer.new_empty(*buffer.shape[:2], capacity, buffer.shape[3])
        new[:, :, :f] = buffer[:, :, :f]
        new[:, :, f : f + end - start] = buffer[:, :, start:end]
        return new

    def _write(self, layer: int, k: torch.Tensor, v: torch.Tensor, rope_base: float) -> dict:
        """Write layer `layer`'s new keys (rotated once, at their clock times) and values after the
        kept entries; they count only when end() commits them."""
        if self._step_times is None:
            raise RuntimeError("update() outside a forward: call begin() first")
        self._check_entries(layer, k, self._k[layer] if layer < len(self._k) else None)
        if self._plan is None:
            self._plan = self._prepare(k, rope_base)
        if layer == len(self._k):  # the first forward creates the layer's storage
            shape = (*k.shape[:2], self._capacity, k.shape[3])
            self._k.append(k.new_empty(shape))
            self._v.append(v.new_empty(shape))
            if self.far_keys_at_zero:
                self._k0.append(k.new_empty(shape))
        end, T = self._at[2], k.shape[2]
        self._n_written += 1
        rot = self._plan["rot_k"]
        self._k[layer][:, :, end : end + T] = k @ rot if T == 1 else rotate(k, *rot)
        self._v[layer][:, :, end : end + T] = v
        if self.far_keys_at_zero:
            self._k0[layer][:, :, end : end + T] = k
        return self._plan

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._write(layer, k, v, self._rope_base or 1e4)  # without a model, RoPE's usual base
        return self._entries(layer, k.shape[2])

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
        plan = self._write(layer, k, v, rope_base)
        B, H, T, D = q.shape
        n_kv = k.shape[1]
        has_far = plan["far_q_pos"] is not None
        if T == 1:
            rotated = q @ plan["rot_q"]  # (B, H, 1, D), or 2D: near | far
            q_near, q_far = rotated[..., :D], rotated[..., D:] if has_far else None
        else:
            q_near, q_far = rotate(q, *plan["rot_q"]), rotate(q, *plan["rot_q_far"]) if has_far else None
        q_near = group_heads(q_near, n_kv)  # (B, H_kv, G*T, D)
        q_far = None if q_far is None else group_heads(q_far, n_kv)
        k_far = self._k0 if self.far_keys_at_zero else self._k
        views = [
            (self._k[layer][:, :, lo:hi], k_far[layer][:, :, lo:hi], self._v[layer][:, :, lo:hi])
            for lo, hi in plan["views"]
        ]
        out, weights = stored_attention(q_near, q_far, views, plan["far"], plan["mask"], T)
        return out.view(B, H, T, D), weights.view(B, H, T, -1) if return_weights else None

    def end(self) -> None:
        if self._n_written != len(self._k):  # e.g. end() in a `finally` after an interrupted layer
            written, n_layers = self._n_written, len(self._k)
            self.abort()
            raise RuntimeError(f"the forward wrote {written} of the cache's {n_layers} layers: cache left as before it")
        times, index = self._step_times, self.keep(len(self._step_times))  # the readable bookkeeping
        f, start, end, clock = self._at
        if self._k:  # the new entries join the kept ones; the policy's evictions move pointers
            end, clock = end + self._n_new, clock + self._n_new
            if f < self.n_fixed:  # so far every token was a fixed one: the buffer is the stream
                f = start = min(self.n_fixed, clock)
            if self.n_recent is not None:
                start = max(start, end - self.n_recent)
        self._at, self._plan = (f, start, end, clock), None
        self._commit_times(times, index)


class DenseCache(FastCache):
    """Keep every key and value: memory O(T), the baseline every other cache is compared with."""


def _check_size(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class WindowCache(FastCache):
    """Window attention: keep the `window` most recent entries, evicting the first token too.

    The query is not counted in `window`: a new query sees the `window` cached entries and itself,
    `window + 1` keys (`masks.sliding_window(window)`: 0 <= q - kv <= window), and after the
    forward the cache keeps `window` entries again.
    """

    positions_in_cache = True

    def __init__(self, window: int) -> None:
        super().__init__()
        _check_size("window", window, 1)
        self.window = self.n_recent = window
        self.mask_mod = masks.sliding_window(window)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        if n_entries <= self.window:
            return None
        return torch.arange(n_entries - self.window, n_entries)


class SinkCache(FastCache):
    """StreamingLLM: the first `n_sink` entries (attention sinks) + the `window` most recent.

    The query is not counted in `window`: once the stream is longer than the cache, a new query
    sees the `n_sink` sinks, the `window` tokens before it and itself, `n_sink + window + 1` keys
    (`masks.sink_window`), and after the forward the cache keeps `n_sink + window` entries again.

    Positions are indices inside the cache, so no RoPE angle ever exceeds n_sink + window: fed one
    token at a time, a query sits at index min(t, n_sink + window) and sees sink s at that index
    minus s. A chunk's later queries sit at larger indices, so their sink pairs are re-scored with
    the query at index n_sink + window, which is where it would have sat alone.
    """

    positions_in_cache = True

    def __init__(self, n_sink: int, window: int) -> None:
        super().__init__()
        _check_size("n_sink", n_sink, 0)
        _check_size("window", window, 1)
        self.n_sink, self.window = n_sink, window
        self.n_fixed, self.n_recent = n_sink, window
        self.mask_mod = masks.sink_window(n_sink, window)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        if n_entries <= self.n_sink + self.window:
            return None
        return torch.cat([torch.arange(self.n_sink), torch.arange(n_entries - self.window, n_entries)])

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        size = self.n_sink + self.window
        is_sink = torch.arange(len(k_pos), device=k_pos.device) < self.n_sink
        return {
            "far": (q_pos[:, None] > size) & is_sink[None, :],
            "far_q_pos": q_pos.clamp(max=size),
            "far_k_pos": k_pos,
        }

    def fast_far_pairs(self, q_times: torch.Tensor, k_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """In clock times: a sink s seen from a query at t > n_sink + window sits at
        n_sink + window - s, as from inside the cache (and at t - s, its true distance, before)."""
        size = self.n_sink + self.window
        return (q_times[:, None] > size) & (k_times[None, :] < self.n_sink), q_times.clamp(max=size)


class LambdaCache(FastCache):
    """LM-Infinite: the first `n_global` entries + the `n_local` most recent (the query counted
    among them), at true distances, with the distance rule `mode`: "clamp" scores every distance
    above `max_distance` at it; "reference" (the reference code) scores global keys outside the
    window at exactly `max_distance` and never clamps the window (minillm.lambda_attention).

    The reference keeps the middle tokens (they are never attended without its optional top-k);
    we evict them, so memory stays constant: n_global + n_local - 1 entries between forwards.
    """

    def __init__(self, n_global: int, n_local: int, max_distance: int, *, mode: str = "clamp") -> None:
        super().__init__()
        _check_size("n_global", n_global, 0)
        _check_size("n_local", n_local, 1)
        _check_size("max_distance", max_distance, 1)
        if mode not in ("clamp", "reference"):
            raise ValueError(f"mode must be 'clamp' or 'reference', got {mode!r}")
        self.n_global, self.n_local, self.max_distance, self.mode = n_global, n_local, max_distance, mode
        self.n_fixed, self.n_recent = n_global, n_local - 1
        self.mask_mod = masks.lambda_shaped(n_global, n_local)

    far_keys_at_zero = True  # far pairs sit at max_distance: the query rotated there, the key not at all

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mode == "clamp":
            return distance_limit(q_pos, k_pos, self.max_distance)
        from .lambda_attention import far_pairs  # here: lambda_attention imports model, which imports us

        return far_pairs(q_pos, k_pos, self.n_local, self.max_distance, self.mode)

    def fast_far_pairs(self, q_times: torch.Tensor, k_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Positions are true times here, so the readable rule serves as it is; it must score far
        pairs against un-rotated keys (far_k_pos 0), which the fast cache keeps a copy of."""
        pairs = self.far_pairs(q_times, k_times)
        if not pairs:
            return None
        if pairs["far_k_pos"].any():
            raise NotImplementedError("the fast LambdaCache scores far pairs against un-rotated keys (far_k_pos 0)")
        return pairs["far"], pairs["far_q_pos"]

    def keep(self, n_entries: int) -> torch.Tensor | None:
        recent = self.n_local - 1  # the next query sees these and itself
        if n_entries <= self.n_global + recent:
            return None
        return torch.cat([torch.arange(self.n_global), torch.arange(n_entries - recent, n_entries)])
