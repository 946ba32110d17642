"""The model's configuration, validated when it is built."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 259  # 256 bytes + BOS, SINK, PAD (see ByteTokenizer)
    d_model: int = 128  # C, the residual stream width
    n_layers: int = 4
    n_heads: int = 4  # H; the head dim D = d_model // n_heads
    max_seq_len: int = 128  # the training context T; longer inputs run, but are out of distribution
    rope_base: float = 10000.0  # RoPE's theta: frequencies base ** (-2i / D)
    mlp_ratio: int = 4  # hidden width of the feed-forward block = mlp_ratio * d_model
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len", "mlp_ratio"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"ModelConfig.{name} must be an int, got {type(value).__name__}")
            if value <= 0:
                raise ValueError(f"ModelConfig.{name} must be positive, got {value}")
        if self.d_model % self.n_heads:
            raise ValueError(f"ModelConfig.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.head_dim % 2:
            raise ValueError(f"the head dim d_model // n_heads must be even for RoPE, got {self.head_dim}")
        if not self.rope_base > 1:
            raise ValueError(f"ModelConfig.rope_base must be > 1, got {self.rope_base}")
        if not self.norm_eps > 0:
            raise ValueError(f"ModelConfig.norm_eps must be > 0, got {self.norm_eps}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)
