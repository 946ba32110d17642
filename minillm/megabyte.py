"""MEGABYTE: a big global transformer over patches of bytes, a small local one inside each patch.

Yu, Simig, Flaherty, Aghajanyan, Zettlemoyer, Lewis, "MEGABYTE: Predicting Million-byte Sequences
with Multiscale Transformers", NeurIPS 2023, arXiv 2305.07185. Bytes are cut into patches of P; the
patch embedder concatenates each patch's P byte embeddings (+ learned absolute positions) into one
vector of width P·D_G, the global model runs causally over patches shifted right by one patch (a
learned pad patch first), and the local model predicts each patch's bytes from its slice of the
global output (projected D_G -> D_L) plus the embedding of the previous byte (a learned pad byte
first). We follow the paper's equations, as shjwudp/megabyte does, and reuse the course's `Block`
for both stacks. Departures: the blocks also apply RoPE (patch index in the global model, byte
index within the patch in the local one) on top of the paper's learned positions; each stack ends
with a LayerNorm (pre-norm blocks need one); the output head is tied to the local byte embedding.

Convention: logits[:, t] is the distribution of byte t given the bytes before it (the paper's
p(x_t | x_<t)); MiniLLM's logits[:, t] predict byte t + 1 instead. `next_byte_logits(model, ids)`
gives either model's logits in MiniLLM's convention, the last one predicting the byte after ids.
Inputs whose length P does not divide are padded at the end with PAD ids: by causality they change
no real logit, and their logits are dropped. `generate` runs the global model once per patch and
the local model once per byte, each with its own DenseCache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cache import DenseCache
from .config import ModelConfig
from .kv_cache import run_blocks
from .model import Block, MiniLLM, full_sequence_step
from .sampling import check_sampling, choose
from .tokenizer import ByteTokenizer
from .validate import check_float, check_ids, check_instance, check_int, check_token_ids

PAD = ByteTokenizer.pad_id


@dataclass(frozen=True)
class MegabyteConfig:
    patch_size: int = 4  # P bytes per patch; the paper uses 8 for text
    d_global: int = 32  # D_G, each byte's share of the global width P·D_G (128 here)
    n_global_layers: int = 2
    n_global_heads: int = 4  # must divide P·D_G, leaving an even head dim for RoPE
    d_local: int = 64  # D_L, the local model's width
    n_local_layers: int = 2
    n_local_heads: int = 4  # must divide D_L, leaving an even head dim for RoPE
    max_patches: int = 64  # K_max: the learned byte positions cover max_patches·P bytes (256 here)
    vocab_size: int = 259  # 256 bytes + BOS, SINK, PAD (see ByteTokenizer)
    rope_base: float = 10000.0  # RoPE's theta inside both stacks
    mlp_ratio: int = 4  # feed-forward hidden width = mlp_ratio * width, in both stacks
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type == "int":
                check_int(f"MegabyteConfig.{f.name}", getattr(self, f.name), 1)
        if self.vocab_size <= PAD:  # PAD fills the last patch, so it must have an embedding
            raise ValueError(
                f"MegabyteConfig.vocab_size must be > {PAD} (bytes, BOS, SINK, PAD), got {self.vocab_size}"
            )
        widths = (
            ("n_global_heads", "d_global * patch_size", self.global_width),
            ("n_local_heads", "d_local", self.d_local),
        )
        for name, width_name, width in widths:
            heads = getattr(self, name)
            if width % heads or (width // heads) % 2:
                raise ValueError(
                    f"MegabyteConfig.{name} ({heads}) must divide its stack's width {width_name} = {width} "
                    "into heads of even size (RoPE rotates pairs of channels)"
                )
        check_float("MegabyteConfig.rope_base", self.rope_base, 1, above=True)
        check_float("MegabyteConfig.norm_eps", self.norm_eps, 0, above=True)

    @property
    def global_width(self) -> int:
        return self.patch_size * self.d_global

    @property
    def max_seq_len(self) -> int:
        return self.max_patches * self.patch_size

    def global_config(self) -> ModelConfig:
        """The global stack's Blocks: width P·D_G over at most max_patches positions."""
        return ModelConfig(
            d_model=self.global_width, n_layers=self.n_global_layers, n_heads=self.n_global_heads,
            max_seq_len=self.max_patches, **self._shared(),
        )  # fmt: skip

    def local_config(self) -> ModelConfig:
        """The local stack's Blocks: width D_L over the P bytes of one patch."""
        return ModelConfig(
            d_model=self.d_local, n_layers=self.n_local_layers, n_heads=self.n_local_heads,
            max_seq_len=self.patch_size, **self._shared(),
        )  # fmt: skip

    def _shared(self) -> dict:
        return dict(
            vocab_size=self.vocab_size, rope_base=self.rope_base, mlp_ratio=self.mlp_ratio, norm_eps=self.norm_eps
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class GenerationStats:
    """What the last `generate` computed: the counters that show where MEGABYTE saves work."""

    global_calls: int = 0  # forwards of the global stack (the prompt's patches go in one call)
    global_patches: int = 0  # patch positions it computed: ceil(T / P) for a T-byte result
    local_calls: int = 0  # forwards of the local stack: one per new byte
    local_bytes: int = 0  # byte positions it computed (the prompt's unfinished patch + new bytes)
    logits: list[torch.Tensor] = field(default_factory=list)  # per new byte (V,), if keep_logits


class Megabyte(nn.Module):
    """Patch embedder -> global Blocks over K patches -> W_GL -> local Blocks over each patch's P bytes."""

    def __init__(self, config: MegabyteConfig) -> None:
        super().__init__()
        self.config = c = check_instance("config", config, MegabyteConfig)
        # Patch embedder: h_emb[t] = E_global[x_t] + E_pos[t], D_G each, concatenated per patch.
        self.global_embed = nn.Embedding(c.vocab_size, c.d_global)
        self.global_pos = nn.Embedding(c.max_seq_len, c.d_global)
        self.global_pad = nn.Parameter(torch.zeros(c.global_width))  # input of patch 0: nothing precedes it
        self.global_blocks = nn.ModuleList(Block(c.global_config()) for _ in range(c.n_global_layers))
        self.global_norm = nn.LayerNorm(c.global_width, eps=c.norm_eps, bias=False)
        self.global_to_local = nn.Linear(c.d_global, c.d_local, bias=False)  # W_GL, per position in the patch
        self.local_embed = nn.Embedding(c.vocab_size, c.d_local)
        self.local_pad = nn.Parameter(torch.zeros(c.d_local))  # input of byte 0 of a patch
        self.local_blocks = nn.ModuleList(Block(c.local_config()) for _ in range(c.n_local_layers))
        self.local_norm = nn.LayerNorm(c.d_local, eps=c.norm_eps, bias=False)
        self.head = nn.Linear(c.d_local, c.vocab_size, bias=False)
        self.head.weight = self.local_embed.weight  # tied, as in MiniLLM
        # The two shifts that make the model causal. Switch one off only to watch causality break.
        self.shift_global, self.shift_local = True, True
        self.stats = GenerationStats()
        self.apply(MiniLLM._init_weights)
        nn.init.normal_(self.global_pad, std=0.02)
        nn.init.normal_(self.local_pad, std=0.02)
        for blocks in (self.global_blocks, self.local_blocks):  # GPT-2: residual projections / sqrt(2 depth)
            for name, p in blocks.named_parameters():
                if name.endswith(("proj.weight", "down.weight")):
                    nn.init.normal_(p, std=0.02 / (2 * len(blocks)) ** 0.5)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def global_inputs(self, ids: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Inputs of global positions start..stop-1, (B, stop - start, P·D_G), from bytes ids (B, >= stop·P).

        Position k sees patch k - 1 (the pad patch for k = 0): the one-patch shift.
        """
        B, P, D = ids.shape[0], self.config.patch_size, self.config.d_global
        first, last = (max(start - 1, 0) * P, (stop - 1) * P) if self.shift_global else (start * P, stop * P)
        pos = torch.arange(first, last, device=ids.device)
        h = self.global_embed(ids[:, first:last]) + self.global_pos(pos)  # (B, last - first, D_G)
        h = h.reshape(B, -1, P * D)  # (B, K', P·D_G): the P embeddings of a patch side by side
        if self.shift_global and start == 0:
            h = torch.cat([self.global_pad.expand(B, 1, -1), h], dim=1)  # (B, stop, P·D_G)
        return h

    def local_inputs(self, slices: torch.Tensor, prev: torch.Tensor, first: bool) -> torch.Tensor:
        """slices (N, n, D_L) of the global output + the embeddings of bytes prev (N, n or n - 1).

        Byte p of a patch adds the embedding of byte p - 1: the one-byte shift; when `first`, the
        run starts at p = 0 and prev lacks that byte, so the pad byte goes first.
        """
        e = self.local_embed(prev)  # (N, n or n - 1, D_L)
        if first:
            e = torch.cat([self.local_pad.expand(e.shape[0], 1, -1), e], dim=1)  # (N, n, D_L)
        return slices + e

    def local_model_inputs(self, slices: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """The local model's inputs (N, P, D_L) for whole patches (N, P) and their slices (N, P, D_L)."""
        if self.shift_local:
            return self.local_inputs(slices, patches[:, :-1], first=True)
        return slices + self.local_embed(patches)  # the bug the pad byte prevents: byte p sees itself

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits (B, T, V) for bytes (B, T): logits[:, t] scores byte t given bytes < t."""
        self._check_ids(ids)
        B, T = ids.shape
        P, D_L = self.config.patch_size, self.config.d_local
        K = -(-T // P)  # patches, the last one filled with PAD if P does not divide T
        ids = F.pad(ids, (0, K * P - T), value=PAD)  # (B, K·P)
        g = self.run_blocks(self.global_blocks, self.global_inputs(ids, 0, K))  # (B, K, P·D_G)
        slices = self.project(g).reshape(B * K, P, D_L)  # (B·K, P, D_L)
        patches = ids.reshape(B * K, P)  # every patch is one sequence of the local model
        h = self.run_blocks(self.local_blocks, self.local_model_inputs(slices, patches))  # (B·K, P, D_L)
        logits = self.head(self.local_norm(h))  # (B·K, P, V)
        return logits.view(B, K * P, -1)[:, :T]  # (B, T, V)

    def project(self, g: torch.Tensor) -> torch.Tensor:
        """Global outputs (B, K, P·D_G) -> one D_L vector per byte slot, (B, K, P, D_L)."""
        B, K = g.shape[:2]
        g = self.global_norm(g).view(B, K, self.config.patch_size, self.config.d_global)  # (B, K, P, D_G)
        return self.global_to_local(g)

    @staticmethod
    def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, cache: DenseCache | None = None) -> torch.Tensor:
        """x (N, n, C) through a stack: causal from position 0, or after what the cache holds."""
        step = None if cache is not None else full_sequence_step(x.shape[1], None, None, x.device)
        return run_blocks(blocks, x, step, cache, owner=blocks)[0]  # a stack's cache belongs to that stack

    def _check_ids(self, ids: torch.Tensor) -> None:
        check_ids(ids, self.config.vocab_size, self.head.weight.device)
        if ids.shape[1] > self.config.max_seq_len:
            raise ValueError(
                f"T={ids.shape[1]} exceeds max_patches * patch_size = {self.config.max_seq_len} "
                "(the learned positions end there)"
            )

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Sequence[int],
        max_new_tokens: int,
        temperature: float | None = None,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        keep_logits: bool = False,
    ) -> list[int]:
        """New bytes after prompt_ids (greedy unless a temperature is given). Counters in self.stats.

        Sampling follows `minillm.sampling`: temperature 0 (or None, the default) is greedy, a
        temperature > 0 draws from softmax(logits / temperature) over the top_k largest logits.

        The global model runs once per patch (the prompt's patches in one call), with a DenseCache
        across patches; the local model runs once per byte, with a fresh DenseCache per patch.
        """
        prompt_ids = check_token_ids("prompt_ids", prompt_ids, self.config.vocab_size)
        check_int("max_new_tokens", max_new_tokens, 0)
        temperature = check_sampling(0.0 if temperature is None else temperature, top_k)  # None: greedy
        if not (self.shift_global and self.shift_local):
            raise RuntimeError("generate needs both shifts on (shift_global and shift_local)")
        P, device = self.config.patch_size, self.head.weight.device
        n, total = len(prompt_ids), len(prompt_ids) + max_new_tokens
        if total > self.config.max_seq_len:
            raise ValueError(
                f"prompt_ids + max_new_tokens = {total} bytes exceed max_patches * patch_size = "
                f"{self.config.max_seq_len}"
            )
        seq = torch.full((1, -(-total // P) * P), PAD, dtype=torch.long, device=device)  # (1, K·P)
        if n:
            seq[0, :n] = torch.tensor(check_token_ids("prompt_ids", prompt_ids), dtype=torch.long)
            self._check_ids(seq[:, :n])
        stats = self.stats = GenerationStats()
        global_cache, patches_done = DenseCache(), 0
        for t in range(n, total):
            k, p = divmod(t, P)  # byte t is byte p of patch k
            if p == 0 or t == n:  # entering patch k: its global output, computed once
                g = self.run_blocks(self.global_blocks, self.global_inputs(seq, patches_done, k + 1), global_cache)
                slices = self.project(g[:, -1:])[:, 0]  # (1, P, D_L)
                stats.global_calls += 1
                stats.global_patches += k + 1 - patches_done
                patches_done, local_cache, local_done = k + 1, DenseCache(), 0
            # local positions local_done..p of patch k; position j reads byte kP + j - 1
            prev = seq[:, k * P + max(local_done - 1, 0) : t]
            x = self.local_inputs(slices[:, local_done : p + 1], prev, first=local_done == 0)  # (1, n, D_L)
            h = self.run_blocks(self.local_blocks, x, local_cache)
            logits = self.head(self.local_norm(h[0, -1]))  # (V,)
            stats.local_calls += 1
            stats.local_bytes += p + 1 - local_done
            local_done = p + 1
            if keep_logits:
                stats.logits.append(logits.clone())
            seq[0, t] = choose(logits, temperature, top_k, generator)
        return seq[0, n:total].tolist()


def next_byte_logits(model: Megabyte | MiniLLM, ids: torch.Tensor) -> torch.Tensor:
    """Logits (B, T, V) whose [:, t] is the distribution of byte t + 1 given ids[:, :t + 1] (B, T),
    for either architecture: MiniLLM's convention, so [:, -1] predicts the byte after ids.

    A Megabyte's own logits[:, t] score byte t, so it runs on ids plus one PAD byte (which, by
    causality, no kept logit sees) and drops its first position: T + 1 must fit max_seq_len.
    """
    if isinstance(model, Megabyte):
        return model(F.pad(ids, (0, 1), value=PAD))[:, 1:]
    return model(ids).logits


def byte_loss(model: Megabyte | MiniLLM, ids: torch.Tensor) -> torch.Tensor:
    """Mean NLL (nats) of bytes ids[:, 1:] given the bytes before each, for either architecture.

    Both score exactly the same bytes from the same inputs (ids[:, 0] is the start, BOS in the
    course's data), so their losses compare. PAD targets are ignored.
    """
    logits = next_byte_logits(model, ids[:, :-1])  # (B, T-1, V): position t scores byte t + 1
    return F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten(), ignore_index=PAD)


def bits_per_byte(model: Megabyte | MiniLLM, ids: torch.Tensor) -> float:
    """byte_loss in bits: the paper's metric."""
    with torch.no_grad():
        return byte_loss(model, ids).item() / math.log(2)
