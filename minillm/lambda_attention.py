"""LM-Infinite's Λ-shaped attention, blockwise (Han et al., 2023, arXiv 2308.16137).

Every query sees the first `n_global` tokens and the `n_local` most recent ones (the query itself
counted among them: `n_local` is the reference's `local_branch`, one more than StreamingLLM's
`window`, which does not count the query). Two rules for the distances fed to RoPE (`mode`):

- "clamp" (the paper's formula, the default): every pair farther apart than `max_distance` = L is
  scored as if it sat exactly L apart, i.e. at min(d, L), local pairs included;
- "reference" (the reference code, `models/llama.py` + `models/lambda_attention.py`): two
  branches. Local pairs (d < n_local) are scored at their true distance, never clamped; global keys
  outside the window (d >= n_local) are scored at exactly L, even where d < L.

They agree when L = n_local (the paper's and the reference's set-up, L = n_local = L_pretrain) or
L = n_local - 1, and differ when L < n_local - 1 (the clamp also clamps local pairs) or L > n_local
(the clamp keeps global keys at their true distance d until d > L). One detail of the reference is
not copied: it uses min(L, S - 1), with S the number of keys so far, so a forward shorter than L
scores its far global keys at S - 1 and the result depends on how a stream is chunked; we always
use L.

A dense implementation builds the T x T score matrix and masks most of it away. Here queries go
in blocks of `n_local`: a block needs only the global keys and the keys from n_local - 1 before
its first query to its last one, so memory is O(T * (n_global + 2 * n_local)) instead of O(T^2).
The reference code (`models/lambda_attention.py`) tiles the same way.

The reference's optional **top-k middle tokens** (`detailed_lambda_attention`) are here too:
`topk_middle_attention` lets chosen queries also see the `top_k` "middle" keys (hidden by the Λ)
that score highest when every middle key is placed at one pseudo-distance `insert_at`, and
`lambda_forward` runs a whole MiniLLM that way. Where we depart: the reference picks among keys
farther than `insert_at` and lets the chosen ones replace the window beyond that distance; we pick
only among the keys the Λ hides and add them to the Λ, so with top_k = 0 it is the Λ exactly.
"""

from __future__ import annotations

import torch

from . import masks
from .attention import DISTANCE_MODES, AttentionStep, distance_limit, repeat_kv, rope_attention
from .model import MiniLLM
from .rope import rope_cos_sin, rotate
from .validate import check_bool, check_choice, check_float, check_instance, check_int, check_ints, check_qkv


def block_keys(
    start: int, stop: int, n_global: int, n_local: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Indices of the keys that queries start..stop-1 need under the Λ: the global keys that lie
    before the first query's window, then every key from that window's start to the last query."""
    local_from = max(0, start - n_local + 1)  # the oldest key the block's first query sees
    return torch.cat(
        [torch.arange(min(n_global, local_from), device=device), torch.arange(local_from, stop, device=device)]
    )


def lambda_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    n_global: int,
    n_local: int,
    max_distance: int,
    rope_base: float = 10000.0,
    block_size: int | None = None,
    mode: str = "clamp",
) -> torch.Tensor:
    """Λ attention of un-rotated q, k, v (B, H, T, D) at positions 0..T-1: output (B, H, T, D).

    n_local counts the query; `mode` picks the distance rule ("clamp" or "reference", see above).
    """
    check_qkv(q, k, v)
    mask_mod = masks.lambda_shaped(n_global, n_local)  # also validates n_global and n_local
    check_int("max_distance", max_distance, 1)
    check_float("rope_base", rope_base, 1.0, above=True)
    check_int("block_size", block_size, 1, optional=True)
    check_choice("mode", mode, DISTANCE_MODES)
    T, device = q.shape[2], q.device
    block = block_size or n_local
    out = torch.empty_like(q)
    zero = torch.zeros((), dtype=torch.long, device=device)
    for start in range(0, T, block):
        stop = min(start + block, T)
        keys = block_keys(start, stop, n_global, n_local, device)  # (S,) global, then local
        queries = torch.arange(start, stop, device=device)  # (b,)
        mask = mask_mod(zero, zero, queries[:, None], keys[None, :])  # (b, S)
        step = AttentionStep(queries, keys, mask, **distance_limit(queries, keys, max_distance, mode, n_local))
        qb, kb, vb = q[:, :, start:stop], k[:, :, keys], v[:, :, keys]  # checked once, above
        out[:, :, start:stop], _ = rope_attention(qb, kb, vb, step, rope_base, check_inputs=False)
    return out


def topk_middle_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_pos: torch.Tensor,
    n_global: int,
    n_local: int,
    max_distance: int,
    top_k: int,
    insert_at: int,
    rope_base: float = 10000.0,
    return_weights: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Λ attention (with the distance limit) for queries q (B, H, N, D) at positions q_pos (N,) over
    keys and values (B, H, S, D) at positions 0..S-1, where each query and head also sees its
    `top_k` best middle keys, all scored at the pseudo-distance `insert_at`.

    Returns (out (B, H, N, D), weights (B, H, N, S) or None). Memory O(N * S).
    """
    check_qkv(q, k, v, same_length=False)
    check_ints(max_distance=(max_distance, 1), top_k=(top_k, 0), insert_at=(insert_at, 0))
    check_float("rope_base", rope_base, 1.0, above=True)
    check_bool("return_weights", return_weights)
    if not isinstance(q_pos, torch.Tensor) or q_pos.dtype != torch.long or q_pos.shape != (q.shape[2],):
        raise TypeError(f"q_pos must be a long tensor ({q.shape[2]},), one position per query, got {q_pos!r}")
    S, D = k.shape[2], q.shape[-1]
    if len(q_pos) and (q_pos.min() < 0 or q_pos.max() >= S):
        raise ValueError(f"q_pos must lie in 0..{S - 1} (a query sits at one of the keys), got {q_pos.tolist()}")
    k_pos = torch.arange(S, device=k.device)
    zero = torch.zeros((), dtype=torch.long, device=k.device)
    mask = masks.lambda_shaped(n_global, n_local)(zero, zero, q_pos[:, None], k_pos[None, :])  # (N, S)
    middle = (q_pos[:, None] >= k_pos[None, :]) & ~mask  # (N, S): the keys the Λ hides

    def rotated(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return rotate(x, *rope_cos_sin(pos, D, rope_base, x.dtype))

    scores = rotated(q, q_pos) @ rotated(k, k_pos).transpose(-2, -1) / D**0.5  # (B, H, N, S) true distances
    limited = rotated(q, torch.full_like(q_pos, max_distance)) @ k.transpose(-2, -1) / D**0.5  # all at the limit
    scores = torch.where(distance_limit(q_pos, k_pos, max_distance)["far"], limited, scores)
    pseudo = rotated(q, torch.full_like(q_pos, insert_at)) @ k.transpose(-2, -1) / D**0.5  # all at insert_at
    best = pseudo.masked_fill(~middle, float("-inf")).topk(min(top_k, S), dim=-1).indices  # (B, H, N, top_k)
    chosen = torch.zeros_like(pseudo, dtype=torch.bool).scatter_(-1, best, True) & middle  # (B, H, N, S)
    scores = torch.where(chosen, pseudo, scores.masked_fill(~mask, float("-inf")))
    weights = torch.softmax(scores, dim=-1)  # (B, H, N, S)
    return weights @ v, weights if return_weights else None


def lambda_forward(
    model: torch.nn.Module,
    ids: torch.Tensor,
    n_global: int,
    n_local: int,
    max_distance: int,
    top_k: int = 0,
    from_layer: int = 0,
    insert_at: int | None = None,
    first_query: int | None = None,
    return_weights: bool = False,
    mode: str = "clamp",
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor | None]]:
    """Logits (B, T, V) of a MiniLLM over ids (B, T) with blockwise Λ attention in every layer.

    `mode` is the distance rule of the Λ ("clamp" or "reference", see the module docstring); the
    top-k middle keys (below) always use the clamp.

    With top_k > 0 the queries from position `first_query` on (default: the last one, as the
    reference does for a prompt; during generation every new token is the last query) also see
    their `top_k` best middle keys in layers >= from_layer, scored at the pseudo-distance
    `insert_at` (default n_local // 2, as the reference's 2048 for a 4096 window). With
    return_weights, also returns per layer those queries' attention weights (B, H, N, T), N = T -
    first_query, or None in layers without top-k.
    """
    check_instance("model", model, MiniLLM)
    B, T = model.check_inputs(ids)  # MiniLLM's own rules for ids (B, T)
    masks.lambda_shaped(n_global, n_local)  # validates n_global and n_local before any work
    insert_at = n_local // 2 if insert_at is None else insert_at
    first_query = T - 1 if first_query is None else first_query
    check_ints(max_distance=(max_distance, 1), top_k=(top_k, 0), insert_at=(insert_at, 0), from_layer=(from_layer, 0))
    check_int("first_query", first_query, 0, T - 1)
    check_bool("return_weights", return_weights)
    check_choice("mode", mode, DISTANCE_MODES)
    q_pos = torch.arange(first_query, T, device=ids.device)  # (N,) the queries that may look at the middle
    sizes = (n_global, n_local, max_distance, top_k, insert_at)
    x = model.embed(ids)  # (B, T, C)
    weights = []
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        q, k, v = attn.project(block.norm1(x))  # (B, H, T, D), (B, H_kv, T, D) x 2
        k, v = repeat_kv(k, attn.n_heads), repeat_kv(v, attn.n_heads)  # (B, H, T, D)
        y = lambda_attention(q, k, v, n_global, n_local, max_distance, attn.rope_base, mode=mode)  # (B, H, T, D)
        w = None
        if top_k > 0 and layer >= from_layer:
            y[:, :, first_query:], w = topk_middle_attention(
                q[:, :, first_query:], k, v, q_pos, *sizes, attn.rope_base, return_weights
            )
        weights.append(w)
        x = x + attn.proj(y.transpose(1, 2).reshape(x.shape))
        x = x + block.mlp(block.norm2(x))
    logits = model.head(model.norm(x))  # (B, T, V)
    return (logits, weights) if return_weights else logits
