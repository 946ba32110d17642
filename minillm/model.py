"""MiniLLM: a small pre-norm transformer over bytes, with RoPE, masks and KV caches.

The architecture is GPT-2's (Radford et al., 2019) as nanoGPT writes it, with rotary position
embeddings (Su et al., 2021, arXiv 2104.09864) instead of learned ones, no biases, and the input
embedding tied to the output head. What it adds for this course: every forward can take explicit
positions, a mask_mod, or a KV cache that decides both, and can return its attention weights.

The config's Llama switches (RMSNorm, SwiGLU, grouped-query attention, untied head) turn the same
class into Llama's architecture (Touvron et al., 2023, arXiv 2302.13971), so a real LLM
(SmolLM2-135M, see `pretrained`) runs through the course's caches and decoders unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import masks, validate
from .attention import AttentionStep, distance_limit, repeat_kv, rope_attention
from .config import ModelConfig
from .kv_cache import KVCache, run_blocks


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, T, V)
    attn: list[torch.Tensor] | None = None  # per layer (B, H, T, S), when return_attn=True


class Attention(nn.Module):
    """Multi-head self-attention; the keys it attends to may come from a cache.

    With n_kv_heads < n_heads (grouped-query attention, Ainslie et al., 2023, arXiv 2305.13245)
    each key/value head serves n_heads // n_kv_heads consecutive query heads. A cache stores only
    the n_kv_heads heads; they are repeated for the queries after the cache, at attention time.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.rope_base = config.n_heads, config.kv_heads, config.rope_base
        D = config.head_dim
        # one matmul for W_q, W_k, W_v stacked: rows [0, C) are q, then the k rows, then the v rows
        self.qkv = nn.Linear(config.d_model, (config.n_heads + 2 * config.kv_heads) * D, bias=False)
        self.proj = nn.Linear(config.d_model, config.d_model, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries (B, H, T, D), keys and values (B, H_kv, T, D) of x (B, T, C), before RoPE."""
        B, T, C = x.shape
        D = C // self.n_heads
        q, k, v = self.qkv(x).split([C, self.n_kv_heads * D, self.n_kv_heads * D], dim=-1)
        q = q.view(B, T, self.n_heads, D).transpose(1, 2)  # (B, H, T, D)
        k, v = (t.view(B, T, self.n_kv_heads, D).transpose(1, 2) for t in (k, v))  # (B, H_kv, T, D)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        step: AttentionStep,
        cache: KVCache | None = None,
        layer: int = 0,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, C = x.shape
        q, k, v = self.project(x)  # (B, H, T, D), (B, H_kv, T, D) x 2
        if cache is None:
            k, v = repeat_kv(k, self.n_heads), repeat_kv(v, self.n_heads)  # (B, H, T, D)
            y, weights = rope_attention(q, k, v, step, self.rope_base, return_attn, check_inputs=False)
        else:  # the cache appends k, v to what it holds and attends over all of it
            y, weights = cache.attend(layer, q, k, v, step, self.rope_base, return_attn)
        y = y.transpose(1, 2).reshape(B, T, C)
        return self.proj(y), weights


class MLP(nn.Module):
    """GPT-2's down(gelu(up x)), or with mlp="swiglu" Llama's down(silu(gate x) * up x)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        hidden = config.hidden_dim
        self.up = nn.Linear(config.d_model, hidden, bias=False)
        self.gate = nn.Linear(config.d_model, hidden, bias=False) if config.mlp == "swiglu" else None
        self.down = nn.Linear(hidden, config.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is None:
            return self.down(F.gelu(self.up(x)))
        return self.down(F.silu(self.gate(x)) * self.up(x))  # (B, T, C)


def make_norm(config: ModelConfig) -> nn.Module:
    """LayerNorm without bias (GPT-2 as nanoGPT writes it) or RMSNorm (Zhang & Sennrich, 2019,
    arXiv 1910.07467; Llama): RMSNorm skips the mean subtraction, x / rms(x) * weight."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.LayerNorm(config.d_model, eps=config.norm_eps, bias=False)


class Block(nn.Module):
    """x + attention(norm(x)), then x + mlp(norm(x)). MEGABYTE and the ∞-former reuse it."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(config)
        self.attn = Attention(config)
        self.norm2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        step: AttentionStep,
        cache: KVCache | None = None,
        layer: int = 0,
        return_attn: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.norm1(x), step, cache, layer, return_attn)
        x = x + a
        return x + self.mlp(self.norm2(x)), weights


def full_sequence_step(
    T: int,
    positions: torch.Tensor | None,
    mask_mod: masks.MaskMod | None,
    device: torch.device,
    max_distance: int | None = None,
) -> AttentionStep:
    """The AttentionStep of a forward over a whole sequence: positions 0..T-1 unless given,
    causal unless a mask_mod says otherwise (its indices are token indices, not positions), and
    LM-Infinite's distance limit when max_distance is set."""
    if positions is None:
        positions = torch.arange(T, device=device)
    far = {} if max_distance is None else distance_limit(positions, positions, max_distance)
    if mask_mod is None:
        return AttentionStep(positions, positions, is_causal=True, **far)
    mask = masks.materialize(mask_mod, T)  # (T, T)
    validate.check_mask_rows("mask_mod", mask)  # SDPA and the explicit softmax disagree on an empty row
    return AttentionStep(positions, positions, mask.to(device), **far)


class MiniLLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = validate.check_instance("config", config, ModelConfig)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = make_norm(config)
        self.head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight  # tied: one table maps tokens to vectors and back
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("proj.weight", "down.weight")):
                nn.init.normal_(p, std=0.02 / (2 * config.n_layers) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor | None = None,
        mask_mod: masks.MaskMod | None = None,
        cache: KVCache | None = None,
        return_attn: bool = False,
        max_distance: int | None = None,
    ) -> ModelOutput:
        """Logits (B, T, V) for token ids (B, T).

        Without a cache the tokens are one sequence at `positions` (default 0..T-1) under
        `mask_mod` (default causal), with every query-key distance above `max_distance` (if given)
        scored as max_distance (LM-Infinite). With a cache the tokens follow the cached ones and
        the cache decides positions, mask and distances: the other three must then be None.
        """
        B, T = self.check_inputs(ids, positions, mask_mod, cache, max_distance)
        step = None if cache is not None else full_sequence_step(T, positions, mask_mod, ids.device, max_distance)
        x, attn = run_blocks(self.blocks, self.embed(ids), step, cache, self, return_attn)  # (B, T, C)
        logits = self.head(self.norm(x))  # (B, T, V)
        return ModelOutput(logits, attn if return_attn else None)

    def check_inputs(
        self,
        ids: object,
        positions: object = None,
        mask_mod: object = None,
        cache: object = None,
        max_distance: object = None,
    ) -> tuple[int, int]:
        """forward's rules for its arguments, in one place (other entry points that run this model,
        such as `lambda_forward`, apply them too): returns (B, T)."""
        B, T = validate.check_ids(ids, self.config.vocab_size, self.embed.weight.device)
        validate.check_positions(positions, T)
        if cache is not None:
            validate.check_instance("cache", cache, KVCache)
            if positions is not None or mask_mod is not None or max_distance is not None:
                raise ValueError("with a cache, leave positions, mask_mod and max_distance to the cache (pass None)")
        validate.check_int("max_distance", max_distance, 1, optional=True)
        return B, T
