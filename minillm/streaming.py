"""Language modelling over streams longer than the training context.

`stream_nll` feeds a stream one token at a time through a KV cache (dense, window, sinks, Λ) and
records the loss of every next token: the evaluation of StreamingLLM's Figure 3. `recompute_nll`
is the "sliding window with re-computation" baseline: every token is predicted by a fresh forward
over the last tokens, which costs O(L^2) per token instead of O(L).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from . import validate
from .cache import KVCache
from .model import MiniLLM


def _as_ids(ids: Sequence[int] | torch.Tensor, model: MiniLLM) -> torch.Tensor:
    """The stream as a 1-D LongTensor on the model's device; its last tokens are only targets, so
    their range is checked here, not by the model."""
    if not isinstance(model, MiniLLM):
        raise TypeError(f"model must be a MiniLLM, got {type(model).__name__}")
    ids = validate.check_token_ids("ids", ids, model.config.vocab_size)
    if len(ids) < 2:
        raise ValueError(f"ids must be a 1-D sequence of at least 2 tokens, got {len(ids)}")
    return torch.tensor(ids, dtype=torch.long, device=next(model.parameters()).device)


@torch.no_grad()
def stream_nll(model: MiniLLM, ids: Sequence[int] | torch.Tensor, cache: KVCache, chunk_size: int = 1) -> torch.Tensor:
    """NLL (nats) of every next token of a stream fed through `cache`: shape (len(ids)-1,).

    chunk_size=1 feeds one token per forward, as a chat model would. Larger chunks give the same
    numbers (every cache shows a chunk's queries exactly what they would have seen one by one; a
    test checks it) with far fewer forwards: the fast path for long streams. A cache that has
    already seen tokens is continued: ids then follow the tokens it has seen.
    """
    if not isinstance(cache, KVCache):
        raise TypeError(f"cache must be a KVCache, got {type(cache).__name__}")
    validate.check_int("chunk_size", chunk_size, 1)
    ids = _as_ids(ids, model)
    nll = torch.empty(len(ids) - 1)
    for start in range(0, len(ids) - 1, chunk_size):
        stop = min(start + chunk_size, len(ids) - 1)
        logits = model(ids[None, start:stop], cache=cache).logits[0]  # (chunk, V)
        nll[start:stop] = F.cross_entropy(logits.float(), ids[start + 1 : stop + 1], reduction="none").cpu()
    return nll


@torch.no_grad()
def recompute_nll(model: MiniLLM, ids: Sequence[int] | torch.Tensor, window: int, batch_size: int = 64) -> torch.Tensor:
    """NLL of every next token, each predicted by a fresh forward over that token and the `window`
    tokens before it: `window + 1` tokens, the keys a query of WindowCache(window) sees (its
    `window` entries and itself). Shape (len(ids)-1,).

    Forwards are batched: all full windows have the same length, so `batch_size` of them run as one.
    """
    validate.check_int("window", window, 1)
    validate.check_int("batch_size", batch_size, 1)
    ids = _as_ids(ids, model)
    n = len(ids) - 1
    nll = torch.empty(n)
    # Warm-up: while t < window the whole prefix fits, so one causal forward gives those losses.
    head = min(n, window)
    logits = model(ids[None, :head]).logits[0]  # (head, V)
    nll[:head] = F.cross_entropy(logits.float(), ids[1 : head + 1], reduction="none").cpu()
    # Then one window ending at each t >= window, i.e. the slices ids[t - window : t + 1].
    for start in range(head, n, batch_size):
        ts = torch.arange(start, min(start + batch_size, n), device=ids.device)
        windows = ids[ts[:, None] + torch.arange(-window, 1, device=ids.device)]  # (b, window + 1)
        last = model(windows).logits[:, -1]  # (b, V)
        nll[start : start + len(ts)] = F.cross_entropy(last.float(), ids[ts + 1], reduction="none").cpu()
    return nll
