"""Checkers for chapter 00 (the tour)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import masks
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


# Packed samples: the document lengths of each case, smallest first (a one-byte document in the third).
PACKED = [(3,), (2, 3), (4, 1, 3), (3, 7, 2, 4)]


def document_ids(lengths: tuple[int, ...]) -> torch.Tensor:
    """(T,) long: the document each position of a packed sample belongs to, 0, 0, 0, 1, 1, ..."""
    return torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))


def _which_predictions_move(model: MiniLLM, ids: torch.Tensor, mask_mod: Callable) -> torch.Tensor:
    """(T, T) bool: [t, s] is whether changing byte s moves the model's prediction at position t."""
    with torch.no_grad():
        logits = model(ids[None], mask_mod=mask_mod).logits[0]  # (T, vocab)
        moved = []
        for s in range(len(ids)):
            other = ids.clone()
            other[s] = (other[s] + 1) % 256  # another byte at position s, the rest unchanged
            moved.append((model(other[None], mask_mod=mask_mod).logits[0] - logits).abs().amax(-1) > 1e-9)
    return torch.stack(moved, dim=1)  # (T predictions, T changed bytes)


def check_packed_mask(packed_mask: Callable[[torch.Tensor], Callable], hint: int | None = None) -> CheckResult:
    """packed_mask(doc_ids) must return a mask_mod under which a byte moves exactly the predictions
    at its own position and after it, in its own document. Tested by changing bytes, not by a formula."""
    # One layer: a byte reaches another position's prediction only through the mask (with two, it also
    # travels through the positions between, and a short window would pass). float64: a masked key
    # changes nothing, to the last bit.
    with torch.random.fork_rng():  # the notebook's random stream stays as it was
        torch.manual_seed(0)
        model = MiniLLM(ModelConfig(d_model=32, n_layers=1, n_heads=2)).double().eval()
    ids = torch.randint(0, 256, (max(sum(c) for c in PACKED),), generator=torch.Generator().manual_seed(0))

    def student(lengths):
        doc = document_ids(lengths)
        mask_mod = packed_mask(doc.clone())
        if not callable(mask_mod):
            raise CheckFailed(f"packed_mask must return a mask_mod (a function), got {type(mask_mod).__name__}")
        try:
            mask = masks.materialize(mask_mod, len(doc))
        except (TypeError, ValueError) as e:
            raise CheckFailed(str(e)) from None
        empty = ~mask.any(dim=1)
        if empty.any():
            t = int(empty.nonzero()[0])
            raise CheckFailed(f"the query at position {t} may read no key at all, so it has nothing to predict from")
        moved = _which_predictions_move(model, ids[: len(doc)], mask_mod)
        t_idx, s_idx = torch.arange(len(doc))[:, None], torch.arange(len(doc))[None, :]
        for t, s in (moved & (s_idx > t_idx)).nonzero().tolist():
            raise CheckFailed(f"the prediction at position {t} moved when the later byte {s} changed: it peeks ahead")
        for t, s in (moved & (doc[:, None] != doc[None, :])).nonzero().tolist():
            raise CheckFailed(
                f"the prediction at position {t} (document {int(doc[t])}) moved when byte {s} of document "
                f"{int(doc[s])} changed: it reads another document"
            )
        for t, s in (~moved & (s_idx <= t_idx) & (doc[:, None] == doc[None, :])).nonzero().tolist():
            raise CheckFailed(
                f"the prediction at position {t} did not move when byte {s} of its own document changed: "
                "it ignores a byte it should use"
            )
        return True

    return run_check(
        "packed_mask",
        student,
        lambda lengths: True,
        [(c,) for c in PACKED],
        hints=(
            "a byte may move the predictions at its own position and after it, and only in its own document: "
            "compare where the query and the key sit in the sample, and which document each belongs to "
            "(doc_ids tells you for any position)",
            "two conditions must hold together, each a comparison of tensors: one between q_idx and kv_idx, one "
            "between the documents of q_idx and kv_idx (doc_ids indexed by a tensor of positions gives a tensor). "
            "Combine them with &, not `and`; a query must keep itself",
        ),
        level=hint,
        describe=lambda case: f"documents of lengths {list(case[0])}",
    )
