"""KV caches: what a model remembers of the stream, and at which positions it sees it.

Every cache stores keys *before* RoPE (as StreamingLLM's reference code does) together with the
stream index ("time") of each entry. A cache policy is three small decisions:

- `mask_mod`: which of the kept keys a new query may see (a function of times, see `masks`);
- `keep`: which entries survive after a forward (the eviction rule);
- positions: RoPE positions either at the true times (`DenseCache`, `LambdaCache`) or at the
  entries' indices inside the cache (`WindowCache`, `SinkCache`: StreamingLLM's pos-shift), plus
  `far_pairs`: pairs scored as if closer (LM-Infinite's distance limit, StreamingLLM's sinks).

Each cache gives the same logits whether a stream is fed one token at a time or in chunks: a
chunk's queries see exactly the keys, at exactly the distances, they would have seen one by one.

The model drives a cache in three calls per forward: `begin(n_new)` returns the AttentionStep
(positions and mask), each layer calls `update(layer, k, v)` to append its new keys and values and
get everything to attend to, and `end()` evicts.
"""

from __future__ import annotations

import torch

from . import masks
from .attention import AttentionStep, distance_limit


class KVCache:
    """A cache that keeps everything at its true position; subclasses evict and re-position."""

    positions_in_cache = False  # True: RoPE positions are indices inside the cache (pos-shift)

    def __init__(self) -> None:
        self.mask_mod: masks.MaskMod = masks.causal()
        self.keys: list[torch.Tensor] = []  # per layer (B, H, S, D), before RoPE
        self.values: list[torch.Tensor] = []  # per layer (B, H, S, D)
        self.times = torch.empty(0, dtype=torch.long)  # (S,) stream index of every entry
        self.seen = 0  # tokens fed so far
        self._step_times: torch.Tensor | None = None  # times of kept + new entries during a forward

    def __len__(self) -> int:
        return len(self.times)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        """Indices of the entries to keep after a forward (None: keep all)."""
        return None

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """AttentionStep's far / far_q_pos / far_k_pos for this step (default: none)."""
        return {}

    def begin(self, n_new: int, device: torch.device | str = "cpu") -> AttentionStep:
        """Place `n_new` new tokens after the cached ones; return where queries and keys sit."""
        if self._step_times is not None:
            raise RuntimeError("begin() called twice without end(): a forward was interrupted")
        self.times = self.times.to(device)
        q_times = torch.arange(self.seen, self.seen + n_new, device=device)
        k_times = torch.cat([self.times, q_times])  # (S,)
        self._step_times = k_times
        if self.positions_in_cache:
            k_pos = torch.arange(len(k_times), device=device)
            q_pos = k_pos[-n_new:]
        else:
            q_pos, k_pos = q_times, k_times
        zero = torch.zeros((), dtype=torch.long, device=device)
        mask = self.mask_mod(zero, zero, q_times[:, None], k_times[None, :])  # (T, S)
        mask = torch.broadcast_to(mask, (n_new, len(k_times)))
        return AttentionStep(q_pos, k_pos, None if mask.all() else mask, **self.far_pairs(q_pos, k_pos))

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append layer `layer`'s new keys/values (B, H, T, D); return all of them (B, H, S, D)."""
        if self._step_times is None:
            raise RuntimeError("update() outside a forward: call begin() first")
        if layer == len(self.keys):  # the first forward creates the layer's storage
            self.keys.append(k[:, :, :0])
            self.values.append(v[:, :, :0])
        if k.shape[0] != self.keys[layer].shape[0]:
            raise ValueError(f"batch size changed from {self.keys[layer].shape[0]} to {k.shape[0]} within one cache")
        self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
        self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]

    def end(self) -> None:
        """Finish a forward: count the new tokens, then evict what the policy drops."""
        times, self._step_times = self._step_times, None
        self.seen = int(times[-1]) + 1 if len(times) else self.seen
        index = self.keep(len(times))
        if index is None:
            self.times = times
            return
        index = index.to(times.device)
        self.times = times[index]
        self.keys = [k[:, :, index] for k in self.keys]
        self.values = [v[:, :, index] for v in self.values]


class DenseCache(KVCache):
    """Keep every key and value: memory O(T), the baseline every other cache is compared with."""


def _check_size(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


class WindowCache(KVCache):
    """Window attention: keep the `window` most recent entries, evicting the first token too."""

    positions_in_cache = True

    def __init__(self, window: int) -> None:
        super().__init__()
        _check_size("window", window, 1)
        self.window = window
        self.mask_mod = masks.sliding_window(window)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        if n_entries <= self.window:
            return None
        return torch.arange(n_entries - self.window, n_entries)


class SinkCache(KVCache):
    """StreamingLLM: the first `n_sink` entries (attention sinks) + the `window` most recent.

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


class LambdaCache(KVCache):
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
        self.mask_mod = masks.lambda_shaped(n_global, n_local)

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.mode == "clamp":
            return distance_limit(q_pos, k_pos, self.max_distance)
        from .lambda_attention import far_pairs  # here: lambda_attention imports model, which imports us

        return far_pairs(q_pos, k_pos, self.n_local, self.max_distance, self.mode)

    def keep(self, n_entries: int) -> torch.Tensor | None:
        recent = self.n_local - 1  # the next query sees these and itself
        if n_entries <= self.n_global + recent:
            return None
        return torch.cat([torch.arange(self.n_global), torch.arange(n_entries - recent, n_entries)])
