"""Measurements on a model's attention: where the attention mass goes, and how spread out it is.

These are the diagnostics behind the course's claims: the attention mass on position 0 (the
attention sink of StreamingLLM's Figure 2), and the attention entropy and logits against
distance that LM-Infinite uses to explain failures past the training length.
"""

from __future__ import annotations

import torch

from .model import MiniLLM, repeat_kv
from .rope import apply_rope


@torch.no_grad()
def sink_mass(model: MiniLLM, ids: torch.Tensor, first_query: int = 16) -> torch.Tensor:
    """Mean attention weight on key 0, per layer and head: shape (n_layers, n_heads).

    ids (B, T). Averaged over the batch and over queries from `first_query` on: the first queries
    see few keys, so they put mass on token 0 for no interesting reason.
    """
    if ids.dim() != 2 or ids.shape[1] <= first_query:
        raise ValueError(f"ids must be (B, T) with T > first_query={first_query}, got {tuple(ids.shape)}")
    attn = model(ids, return_attn=True).attn
    return torch.stack([a[:, :, first_query:, 0].mean(dim=(0, 2)) for a in attn])  # (L, H)


@torch.no_grad()
def attention_scores(model: MiniLLM, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Pre-softmax attention logits q·k/sqrt(D) of one layer over a full causal forward:
    shape (B, H, T, T), -inf above the diagonal. Captured with a hook on the layer's input."""
    if not 0 <= layer < model.config.n_layers:
        raise ValueError(f"layer must be in 0..{model.config.n_layers - 1}, got {layer}")
    captured = {}
    attn = model.blocks[layer].attn
    handle = attn.register_forward_pre_hook(lambda mod, args: captured.update(x=args[0]))
    try:
        model(ids)
    finally:
        handle.remove()
    x = captured["x"]  # (B, T, C): the normed input of the attention
    T = x.shape[1]
    q, k, _ = attn.project(x)  # (B, H, T, D), (B, H_kv, T, D)
    k = repeat_kv(k, attn.n_heads)  # (B, H, T, D)
    pos = torch.arange(T, device=ids.device)
    q, k = apply_rope(q, pos, attn.rope_base), apply_rope(k, pos, attn.rope_base)
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5  # (B, H, T, T)
    return scores.masked_fill(~torch.ones(T, T, dtype=torch.bool, device=ids.device).tril(), float("-inf"))


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each query's attention distribution: (..., T, S) -> (..., T)."""
    return -(weights * weights.clamp_min(1e-30).log()).sum(-1)


def by_distance(scores: torch.Tensor, distances: list[int], reduce: str = "max") -> torch.Tensor:
    """Reduce (B, H, T, T) scores over all (query, key) pairs at each distance q - k: (len(distances),)."""
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    out = []
    for d in distances:
        diag = torch.diagonal(scores, offset=-d, dim1=-2, dim2=-1)  # (B, H, T - d)
        out.append(diag.amax() if reduce == "max" else diag.mean())
    return torch.stack(out)
