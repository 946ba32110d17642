"""The menu of KV caches: what a model remembers of the stream, and at which positions it sees it.

Open this file first. Each policy states three things once: which keys a query sees (`mask_mod`),
which entries survive a forward (`n_fixed` first entries + `n_recent` most recent ones; `keep()`
follows from them), and where RoPE places them (true times, or indices inside the cache).

- `DenseCache`: everything, at true positions (the baseline);
- `WindowCache(window)`: the `window` most recent entries, at indices inside the cache;
- `SinkCache(n_sink, window)`: StreamingLLM's sinks + window, at indices inside the cache;
- `LambdaCache(n_global, n_local, max_distance)`: LM-Infinite's Λ, at true distances clamped at
  `max_distance`.

How a cache is driven, and the readable version of the protocol: `kv_cache` (`KVCache`, which a
policy of your own subclasses). How the policies here get the same logits with O(1) work per token:
`fast_cache` (`FastCache`).
"""

from __future__ import annotations

import torch

from . import masks
from .attention import DISTANCE_MODES, distance_limit
from .fast_cache import FastCache
from .kv_cache import KVCache, run_blocks
from .validate import check_choice, check_int

__all__ = ["KVCache", "FastCache", "run_blocks", "DenseCache", "WindowCache", "SinkCache", "LambdaCache"]


class DenseCache(FastCache):
    """Keep every key and value: memory O(T), the baseline every other cache is compared with."""


class WindowCache(FastCache):
    """Window attention: keep the `window` most recent entries, evicting the first token too.

    The query is not counted in `window`: a new query sees the `window` cached entries and itself,
    `window + 1` keys (`masks.sliding_window(window)`: 0 <= q - kv <= window), and after the
    forward the cache keeps `window` entries again.
    """

    positions_in_cache = True

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = self.n_recent = check_int("window", window, 1)
        self.mask_mod = masks.sliding_window(window)


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
        self.n_sink = self.n_fixed = check_int("n_sink", n_sink, 0)
        self.window = self.n_recent = check_int("window", window, 1)
        self.mask_mod = masks.sink_window(n_sink, window)

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
    among them), at true distances, with the distance rule `mode` (`attention.distance_limit`):
    "clamp" scores every distance above `max_distance` at it; "reference" (the reference code)
    scores global keys outside the window at exactly `max_distance` and never clamps the window.

    The reference keeps the middle tokens (they are never attended without its optional top-k);
    we evict them, so memory stays constant: n_global + n_local - 1 entries between forwards.
    """

    far_keys_at_zero = True  # far pairs sit at max_distance: the query rotated there, the key not at all

    def __init__(self, n_global: int, n_local: int, max_distance: int, *, mode: str = "clamp") -> None:
        super().__init__()
        self.n_global = self.n_fixed = check_int("n_global", n_global, 0)
        self.n_local = check_int("n_local", n_local, 1)
        self.n_recent = n_local - 1  # the next query sees these and itself
        self.max_distance = check_int("max_distance", max_distance, 1)
        self.mode = check_choice("mode", mode, DISTANCE_MODES)
        self.mask_mod = masks.lambda_shaped(n_global, n_local)

    def far_pairs(self, q_pos: torch.Tensor, k_pos: torch.Tensor) -> dict[str, torch.Tensor]:
        return distance_limit(q_pos, k_pos, self.max_distance, self.mode, self.n_local)

    def fast_far_pairs(self, q_times: torch.Tensor, k_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Positions are true times here, so the readable rule serves as it is, against the
        un-rotated keys (far_k_pos 0) that the fast cache keeps a copy of."""
        pairs = self.far_pairs(q_times, k_times)
        return pairs["far"], pairs["far_q_pos"]
