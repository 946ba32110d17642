"""Measurements on a model's attention: where the attention mass goes, and how spread out it is.

These are the diagnostics behind the course's claims: the attention mass on position 0 (the
attention sink of StreamingLLM's Figure 2), and the attention entropy and logits against
distance that LM-Infinite uses to explain failures past the training length.
"""

from __future__ import annotations

import torch

from . import validate
from .attention import repeat_kv
from .model import MiniLLM
from .rope import apply_rope


def _check_model_ids(model: object, ids: object) -> None:
    """A MiniLLM and token ids (B, T) by its own rules (integer tensor, in its vocabulary)."""
    validate.check_instance("model", model, MiniLLM).check_inputs(ids)


def _check_weights(weights: object) -> torch.Tensor:
    """Attention weights (..., T, S): a floating tensor of rows that are probability distributions."""
    if not isinstance(weights, torch.Tensor) or not weights.is_floating_point():
        raise TypeError(
            f"weights must be a floating tensor (..., T, S), got {getattr(weights, 'dtype', type(weights))}"
        )
    if weights.dim() < 1:
        raise ValueError("weights must have at least one dimension (the keys), got a 0-d tensor")
    if torch.isnan(weights).any() or (weights < 0).any():
        raise ValueError("weights must be attention weights (>= 0, no NaN)")
    tol = 1e-3 if torch.finfo(weights.dtype).bits >= 32 else 1e-2
    if weights.shape[-1] and ((weights.sum(-1) - 1).abs() > tol).any():
        raise ValueError(f"weights must be attention weights: each row (last dim) sums to 1 (within {tol})")
    return weights


@torch.no_grad()
def sink_mass(model: MiniLLM, ids: torch.Tensor, first_query: int = 16) -> torch.Tensor:
    """Mean attention weight on key 0, per layer and head: shape (n_layers, n_heads).

    ids (B, T). Averaged over the batch and over queries from `first_query` on: the first queries
    see few keys, so they put mass on token 0 for no interesting reason.
    """
    _check_model_ids(model, ids)
    validate.check_int("first_query", first_query, 0)
    if ids.shape[1] <= first_query:
        raise ValueError(f"ids must be (B, T) with T > first_query={first_query}, got {tuple(ids.shape)}")
    attn = model(ids, return_attn=True).attn
    return torch.stack([a[:, :, first_query:, 0].mean(dim=(0, 2)) for a in attn])  # (L, H)


@torch.no_grad()
def attention_scores(model: MiniLLM, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """Pre-softmax attention logits q·k/sqrt(D) of one layer over a full causal forward:
    shape (B, H, T, T), -inf above the diagonal. Captured with a hook on the layer's input."""
    _check_model_ids(model, ids)
    validate.check_int("layer", layer)
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
    _check_weights(weights)
    return -(weights * weights.clamp_min(1e-30).log()).sum(-1)


def by_distance(scores: torch.Tensor, distances: list[int], reduce: str = "max") -> torch.Tensor:
    """Reduce (B, H, T, T) scores over all (query, key) pairs at each distance q - k: (len(distances),)."""
    if reduce not in ("max", "mean"):
        raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating tensor (..., T, T), got {getattr(scores, 'dtype', type(scores))}")
    if scores.dim() < 2:
        raise ValueError(f"scores must be (..., T, T), got shape {tuple(scores.shape)}")
    if isinstance(distances, (str, bytes)) or not hasattr(distances, "__iter__"):
        raise TypeError(f"distances must be a list of ints, got {type(distances).__name__}")
    distances = list(distances)
    if not distances:
        raise ValueError("distances must name at least one distance")
    T = scores.shape[-2]
    for d in distances:  # d = q - k: 0 (a query and itself) up to T - 1 (the last query and the first key)
        validate.check_int("distances", d, 0, T - 1)
    out = []
    for d in distances:
        diag = torch.diagonal(scores, offset=-d, dim1=-2, dim2=-1)  # (B, H, T - d)
        out.append(diag.amax() if reduce == "max" else diag.mean())
    return torch.stack(out)
