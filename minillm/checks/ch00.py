"""Checkers for chapter 00 (the tour)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..config import ModelConfig
from ..model import MiniLLM
from ..tokenizer import ByteTokenizer
from .core import CheckFailed, CheckResult, run_check

# Smallest first: the empty text shows a missing <bos> on its own; λ, ï, ∞ take 2-3 UTF-8 bytes.
TEXTS = ["", "hello", "Let there be light: λ", "def f(x):\n    return x ** 2\n", "naïve café ∞"]


def _int_list(got: object, name: str) -> list[int]:
    if not isinstance(got, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in got):
        raise CheckFailed(f"{name} must return a list of Python ints, got {type(got).__name__}")
    return got


def check_encode(encode: Callable[[str], list[int]], hint: int | None = None) -> CheckResult:
    """encode(text) must give BOS then the UTF-8 bytes of text."""
    tok = ByteTokenizer()
    return run_check(
        "encode",
        lambda text: _int_list(encode(text), "encode"),
        lambda text: tok.encode(text, bos=True),
        [(t,) for t in TEXTS],
        hints=(
            "every encoding starts with one <bos> id (256), even for the empty text; after it come the text's "
            "UTF-8 bytes, one id 0..255 per byte (not one per character: λ is 2 bytes, ∞ is 3)",
            "a str becomes bytes with its encode method (name the encoding); a bytes object iterates as ints "
            "0..255. Code points from ord() are not bytes: ord('λ') is 955",
        ),
        level=hint,
        describe=lambda case: f"text {case[0]!r}",
    )


CONFIGS = [  # smallest first
    ModelConfig(vocab_size=512, d_model=32, n_layers=1, n_heads=1),
    ModelConfig(d_model=64, n_layers=2, n_heads=2),
    ModelConfig(d_model=96, n_layers=6, n_heads=3, mlp_ratio=2),
    ModelConfig(),
]


def check_count_parameters(count_parameters: Callable[[ModelConfig], int], hint: int | None = None) -> CheckResult:
    """count_parameters(config) must equal the number of parameters of MiniLLM(config)."""

    def student(cfg):
        got = count_parameters(cfg)
        if not isinstance(got, int) or isinstance(got, bool):
            raise CheckFailed(f"return an int (a count), got {type(got).__name__} {got!r}")
        return got

    return run_check(
        "count_parameters",
        student,
        lambda cfg: MiniLLM(cfg).num_parameters(),
        [(c,) for c in CONFIGS],
        hints=(
            "the count must follow every field of the config: vocab_size, d_model, n_layers and mlp_ratio "
            "(n_heads changes nothing: the heads split d_model). Compare your total with the expected one "
            "on the smallest config, where each part is easy to count by hand",
            "four groups: the embedding table, counted once because the head reuses it; per layer the two "
            "attention matrices (3C wide and C wide), the MLP's two matrices (through ratio·C), and the "
            "weights of the layer's two LayerNorms; then the final LayerNorm's weight",
        ),
        level=hint,
        describe=lambda case: f"{case[0]}",
    )


def check_bits_per_byte(bits_per_byte: Callable[[float], float], hint: int | None = None) -> CheckResult:
    """bits_per_byte(mean NLL in nats) must convert nats to bits."""

    def student(nll):
        got = bits_per_byte(nll)
        if isinstance(got, torch.Tensor) or not isinstance(got, (int, float)):
            raise CheckFailed(f"return a Python float, got {type(got).__name__}")
        return float(got)

    return run_check(
        "bits_per_byte",
        student,
        lambda nll: nll / math.log(2),
        [(0.0,), (0.6931,), (1.0,), (2.5,), (math.log(259),)],
        hints=(
            "the conversion is a change of logarithm base, so it is one constant factor: 0 nats is 0 bits, and "
            "ln(2) nats (the loss of a fair coin) is exactly 1 bit",
            "a nat is the unit of ln, a bit the unit of log2; log2(x) = ln(x) / ln(2). Which way does that "
            "scale a loss already measured in nats?",
        ),
        level=hint,
        describe=lambda case: f"nll {case[0]:.4f} nats",
    )


def _probe_model() -> MiniLLM:
    """A second, random model: a function that ignores its `model` argument gives itself away on it."""
    torch.manual_seed(0)
    return MiniLLM(ModelConfig(d_model=32, n_layers=2, n_heads=2)).eval()


# One text longer than any short cut (the last 16, 32 or 64 bytes) could keep.
LONG_TEXT = "In the beginning God created the heaven and the earth. And the earth was without form, and void; and"


def check_next_byte_probs(
    next_byte_probs: Callable[[MiniLLM, str], torch.Tensor], model: MiniLLM, hint: int | None = None
) -> CheckResult:
    """next_byte_probs(model, text) must give the model's distribution over the token after BOS + text."""
    tok = ByteTokenizer()

    def reference(m, text):
        with torch.no_grad():
            return m(torch.tensor([tok.encode(text, bos=True)])).logits[0, -1].softmax(-1)

    def student(m, text):
        got = next_byte_probs(m, text)
        if not isinstance(got, torch.Tensor):
            raise CheckFailed(f"return a tensor, got {type(got).__name__}")
        return got.detach()

    probe = _probe_model()
    return run_check(
        "next_byte_probs",
        student,
        reference,
        [(model, t) for t in ("", "x", "import ", "naïve λ", "In the beginning", LONG_TEXT)] + [(probe, "x")],
        hints=(
            "the result is the model's distribution (259 probabilities summing to 1) over the token that follows "
            "the WHOLE input: <bos> first, then every byte of the text (the empty text still has <bos>), and "
            "it must come from the `model` passed in",
            "the model takes a (batch, time) LongTensor and returns logits (batch, time, vocab): the prediction "
            "for the next token sits at the last time step; turn those logits into probabilities over the "
            "vocabulary axis, not the time axis",
        ),
        atol=1e-5,
        level=hint,
        describe=lambda case: f"text {case[1]!r}" + (" (a second, random model)" if case[0] is probe else ""),
    )
