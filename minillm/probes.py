"""Measurements on a model's attention: where the attention mass goes, and how spread out it is.

These are the diagnostics behind the course's claims: the attention mass on position 0 (the
attention sink of StreamingLLM's Figure 2), and the attention entropy and logits against
distance that LM-Infinite uses to explain failures past the training length.
"""

from __future__ import annotations

import torch

from .model import MiniLLM


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
