"""The buffer engine behind the package's caches: the readable cache's logits, O(1) upkeep per token.

`kv_cache.KVCache` rotates every kept key at every forward and copies the cache to append and to
evict; `FastCache` rotates a key once, when it is written, into preallocated buffers, and evicts by
moving a pointer. Its docstring says why that is the same attention; the policies themselves
(`cache`) only set their rule, and a test compares each with its readable twin.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .attention import AttentionStep, group_heads, stored_attention
from .kv_cache import KVCache
from .rope import rope_cos_sin, rope_cos_sin_at, rope_matrix, rotate


def _causal(T: int, device: torch.device) -> torch.Tensor:
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


class FastCache(KVCache):
    """The package's caches: the logits of the readable path (KVCache), with O(1) work per token to
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
    One new token attends with a (D, D) rotation matmul and explicit scores (the fastest path for
    one row); a chunk without far pairs calls SDPA over the buffer as it lies, its mask covering
    the gap. A new distance rule plugs in through `fast_far_pairs` (see there).
    """

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
        # The buffers evict by n_fixed / n_recent (KVCache.keep reads the same two): a keep() of one's
        # own would evict other entries from `times` than from the buffers, and give wrong logits.
        if "keep" in vars(cls):
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

    def _kept_times(self, device: torch.device) -> torch.Tensor:
        """Clock times of the kept entries, in buffer order."""
        f, start, end, clock = self._at
        return torch.cat([torch.arange(f, device=device), torch.arange(clock - (end - start), clock, device=device)])

    def _new_offsets(self, n_new: int) -> torch.Tensor:
        """A forward's new entries sit at clock times clock + these offsets (a CPU tensor): the next
        n_new times. (`lookahead.LookaheadCache` places speculative tokens elsewhere.)"""
        return torch.arange(n_new)

    def _step_mask(self, q_times: torch.Tensor, k_times: torch.Tensor) -> torch.Tensor:
        """Which keys (S,) each new query (T,) sees, (T, S) bool: the policy's mask_mod."""
        zero = torch.zeros((), dtype=torch.long, device=q_times.device)
        mask = self.mask_mod(zero, zero, q_times[:, None], k_times[None, :])
        return torch.broadcast_to(mask, (len(q_times), len(k_times)))

    def _entries(self, layer: int, n_new: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer `layer`'s keys (before RoPE) and values, the `n_new` being written included."""
        views = self._views(n_new)
        values = torch.cat([self._v[layer][:, :, lo:hi] for lo, hi in views], dim=2)
        if self.far_keys_at_zero:
            return torch.cat([self._k0[layer][:, :, lo:hi] for lo, hi in views], dim=2), values
        keys = torch.cat([self._k[layer][:, :, lo:hi] for lo, hi in views], dim=2)
        times = self._kept_times(keys.device)
        times = torch.cat([times, self._plan["q_times"]]) if n_new else times
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
        offsets = self._new_offsets(T)
        q_times, n_positions = clock + offsets.to(device), clock + int(offsets.max()) + 1
        k_times = torch.cat([self._kept_times(device), q_times])
        views = self._views(T)
        plan = {"T": T, "q_times": q_times, "views": views, "mask": None, "far": [None] * len(views), "far_q_pos": None}
        if T > 1:  # (one token sees every kept entry: keep() leaves exactly what the next query sees)
            mask = self._step_mask(q_times, k_times)
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
            near = rope_matrix(n_positions - 1, D, rope_base, k.dtype, device)
            plan["rot_k"], plan["rot_q"] = near, near * scale
            if plan["far_q_pos"] is not None:
                far_m = rope_matrix(int(plan["far_q_pos"][0]), D, rope_base, k.dtype, device)
                plan["rot_q"] = torch.cat([near, far_m], dim=-1) * scale  # (D, 2D)
        else:
            cos, sin = plan["rot_k"] = rope_cos_sin_at(q_times, n_positions, D, rope_base, k.dtype)
            plan["rot_q"] = cos * scale, sin * scale
            if plan["far_q_pos"] is not None:
                plan["rot_q_far"] = tuple(x * scale for x in rope_cos_sin(plan["far_q_pos"], D, rope_base, k.dtype))
        return plan

    def _span_mask(self, plan: dict) -> torch.Tensor | None:
        """The step's mask over the buffer's slots [0, end + T), gap included (never seen): one
        fused attention reads the keys where they lie, without a copy. None: every slot is seen."""
        (_, f), (start, hi) = plan["views"] if len(plan["views"]) == 2 else ((0, 0), plan["views"][0])
        mask = plan["mask"]
        if start == f:
            return mask
        if mask is None:
            mask = torch.ones(plan["T"], f + hi - start, dtype=torch.bool, device=plan["q_times"].device)
        gap = mask.new_zeros(len(mask), start - f)
        return torch.cat([mask[:, :f], gap, mask[:, f:]], dim=1)  # (T, hi)

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
        if T > 1 and not has_far and not return_weights:  # the fused path: SDPA over the buffer as it lies
            hi = plan["views"][-1][1]
            k_all, v_all = self._k[layer][:, :, :hi], self._v[layer][:, :, :hi]
            q_near = rotate(q, *plan["rot_q"])  # (B, H, T, D), scaled
            if "causal" not in plan:  # once per forward: every layer has the same mask
                mask = self._span_mask(plan)
                # an empty cache's prefill: SDPA's causal kernel skips the masked blocks (a mask would not)
                plan["causal"] = mask is not None and hi == T and torch.equal(mask, _causal(T, q.device))
                # else rows are (head in group, query): the mask repeats for each head of a group
                plan["sdpa_mask"] = None if mask is None else mask.repeat(H // n_kv, 1)  # (G*T, end + T)
            if plan["causal"]:
                out = F.scaled_dot_product_attention(q_near, k_all, v_all, is_causal=True, scale=1.0, enable_gqa=True)
                return out, None
            out = F.scaled_dot_product_attention(
                group_heads(q_near, n_kv), k_all, v_all, attn_mask=plan["sdpa_mask"], scale=1.0
            )  # (B, H_kv, G*T, D): shared keys read once, never repeated
            return out.view(B, H, T, D), None
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
