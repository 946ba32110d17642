"""The model's configuration, validated when it is built.

The defaults are the course's byte model (GPT-2 style: LayerNorm, GELU MLP, one KV head per query
head). The same dataclass describes a Llama-style model (Touvron et al., 2023, arXiv 2302.13971):
RMSNorm, a SwiGLU MLP (Shazeer, 2020, arXiv 2002.05202) and grouped-query attention (Ainslie et
al., 2023, arXiv 2305.13245), which is how SmolLM2-135M runs through the same `MiniLLM`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .validate import check_bool, check_choice, check_float, check_int

NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 259  # 256 bytes + BOS, SINK, PAD (see ByteTokenizer)
    d_model: int = 128  # C, the residual stream width
    n_layers: int = 4
    n_heads: int = 4  # H query heads; the head dim D = d_model // n_heads
    max_seq_len: int = 128  # the training context T; longer inputs run, but are out of distribution
    rope_base: float = 10000.0  # RoPE's theta: frequencies base ** (-2i / D)
    mlp_ratio: int = 4  # hidden width of the feed-forward block = mlp_ratio * d_model (unless mlp_hidden)
    norm_eps: float = 1e-5
    n_kv_heads: int | None = None  # key/value heads, shared by n_heads // n_kv_heads queries; None: n_heads
    norm: str = "layernorm"  # "layernorm" (GPT-2, without bias) or "rmsnorm" (Llama)
    mlp: str = "gelu"  # "gelu": down(gelu(up x)); "swiglu": down(silu(gate x) * up x)
    mlp_hidden: int | None = None  # hidden width of the MLP; None: mlp_ratio * d_model
    tie_embeddings: bool = True  # the output head shares the embedding table

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "mlp_ratio"):
            check_int(f"ModelConfig.{name}", getattr(self, name), 1)
        for name in ("n_kv_heads", "mlp_hidden"):
            check_int(f"ModelConfig.{name}", getattr(self, name), 1, optional=True)
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise ValueError(f"the head dim d_model // n_heads must be even for RoPE, got {self.head_dim}")
        if self.n_heads % self.kv_heads:
            raise ValueError(
                f"ModelConfig.n_heads ({self.n_heads}) must be divisible by n_kv_heads ({self.n_kv_heads})"
            )
        check_float("ModelConfig.rope_base", self.rope_base, 1, above=True)
        check_float("ModelConfig.norm_eps", self.norm_eps, 0, above=True)
        check_choice("ModelConfig.norm", self.norm, NORMS)
        check_choice("ModelConfig.mlp", self.mlp, MLPS)
        check_bool("ModelConfig.tie_embeddings", self.tie_embeddings)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        """The number of key/value heads (n_kv_heads, or n_heads when that is None)."""
        return self.n_heads if self.n_kv_heads is None else self.n_kv_heads

    @property
    def hidden_dim(self) -> int:
        """The MLP's hidden width (mlp_hidden, or mlp_ratio * d_model when that is None)."""
        return self.mlp_ratio * self.d_model if self.mlp_hidden is None else self.mlp_hidden

    def to_dict(self) -> dict:
        return asdict(self)
