"""Checkers for chapter 00 (the tour)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import ModelConfig
from ..model import MiniLLM
from ..tokenizer import ByteTokenizer
from .core import run_check

TEXTS = ["hello", "", "Let there be light: λ", "def f(x):\n    return x ** 2\n", "naïve café ∞"]


def check_encode(encode: Callable[[str], list[int]]) -> bool:
    """encode(text) must give BOS then the UTF-8 bytes of text."""
    tok = ByteTokenizer()
    return run_check(
        "encode",
        encode,
        lambda text: tok.encode(text, bos=True),
        [(t,) for t in TEXTS],
        hint="[ByteTokenizer.bos_id] + list(text.encode('utf-8')); λ and ∞ take 2 and 3 bytes",
        describe=lambda case: f"text {case[0]!r}",
    )


CONFIGS = [
    ModelConfig(),
    ModelConfig(d_model=64, n_layers=2, n_heads=2),
    ModelConfig(d_model=96, n_layers=6, n_heads=3, mlp_ratio=2),
    ModelConfig(vocab_size=512, d_model=32, n_layers=1, n_heads=1),
]


def check_count_parameters(count_parameters: Callable[[ModelConfig], int]) -> bool:
    """count_parameters(config) must equal the number of parameters of MiniLLM(config)."""
    return run_check(
        "count_parameters",
        count_parameters,
        lambda cfg: MiniLLM(cfg).num_parameters(),
        [(c,) for c in CONFIGS],
        hint="embedding V*C (shared with the head) + per layer: qkv 3C², proj C², up and down 2·ratio·C², "
        "two LayerNorm weights 2C; plus the final LayerNorm C. No biases.",
        describe=lambda case: f"{case[0]}",
    )


def check_bits_per_byte(bits_per_byte: Callable[[float], float]) -> bool:
    """bits_per_byte(mean NLL in nats) must convert nats to bits."""
    return run_check(
        "bits_per_byte",
        bits_per_byte,
        lambda nll: nll / math.log(2),
        [(1.0,), (math.log(259),), (0.6931,), (2.5,)],
        hint="one nat is 1/ln(2) bits: divide by math.log(2)",
        describe=lambda case: f"nll {case[0]:.4f} nats",
    )


def check_next_byte_probs(next_byte_probs: Callable[[MiniLLM, str], torch.Tensor], model: MiniLLM) -> bool:
    """next_byte_probs(model, text) must give the model's distribution over the token after BOS + text."""
    tok = ByteTokenizer()

    def reference(m, text):
        with torch.no_grad():
            return m(torch.tensor([tok.encode(text, bos=True)])).logits[0, -1].softmax(-1)

    return run_check(
        "next_byte_probs",
        next_byte_probs,
        reference,
        [(model, "In the beginning"), (model, "import "), (model, "x")],
        hint="run model on a (1, T) tensor of BOS + bytes, take logits[0, -1] and softmax over the last dim",
        atol=1e-5,
        describe=lambda case: f"text {case[1]!r}",
    )
