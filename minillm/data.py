"""The committed corpus, its splits, and training batches.

Two kinds of text (see corpus/PROVENANCE.md): "prose", the King James Bible, one document per
book (the PG-19 analogue), and "code", modules of CPython's standard library (where lookahead
decoding shines). Splits are by whole document, so test text is never seen in training:
document i goes to "test" when i % 10 == 7, to "val" when i % 10 == 3, else to "train".
"""

from __future__ import annotations

import lzma
from functools import cache
from pathlib import Path

import torch

from . import validate
from .tokenizer import ByteTokenizer

CORPUS_DIR = Path(__file__).parent / "corpus"
KINDS = ("prose", "code")
SPLITS = ("train", "val", "test")
DOCUMENT_SEPARATOR = "\x1e"  # ASCII record separator between documents in the .xz files


def _check(kind: object, split: object = "train") -> None:
    """The rules of this module's arguments, in one place: kind and split name one of their choices."""
    for name, value, choices in (("kind", kind, KINDS), ("split", split, SPLITS)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be one of {choices}, got {type(value).__name__} {value!r}")
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def load_documents(kind: str) -> tuple[str, ...]:
    """All documents of one kind, in corpus order."""
    _check(kind)
    return _documents(kind)


@cache  # behind the check: a list argument would fail in the cache's hashing, before any rule
def _documents(kind: str) -> tuple[str, ...]:
    path = CORPUS_DIR / f"{kind}.txt.xz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/build_corpus.py`")
    return tuple(lzma.decompress(path.read_bytes()).decode("utf-8").split(DOCUMENT_SEPARATOR))


def split_of(index: int) -> str:
    """The split of document number `index` (0, 1, 2, ...)."""
    validate.check_int("index", index, 0)
    return {7: "test", 3: "val"}.get(index % 10, "train")


def load_text(kind: str, split: str) -> str:
    """The documents of one split, joined by blank lines."""
    _check(kind, split)
    return _text(kind, split)


@cache
def _text(kind: str, split: str) -> str:
    docs = _documents(kind)
    return "\n\n".join(doc for i, doc in enumerate(docs) if split_of(i) == split)


def load_bytes(kind: str, split: str) -> torch.Tensor:
    """One split as a uint8 tensor of its UTF-8 bytes (1 byte per token, 4 MB for the Bible)."""
    _check(kind, split)
    return _bytes(kind, split)


@cache
def _bytes(kind: str, split: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(_text(kind, split).encode("utf-8")), dtype=torch.uint8)


def _check_batch_args(data: object, batch_size: object, seq_len: object, generator: object, prefix: object) -> tuple:
    """sample_batch's rules: data a 1-D tensor of token ids (bytes), sizes ints >= 1, a Generator,
    and a prefix of token ids. Returns the prefix as a tuple of ints."""
    if not isinstance(data, torch.Tensor):
        raise TypeError(f"data must be a 1-D tensor of token ids (load_bytes gives one), got {type(data).__name__}")
    if data.dtype == torch.bool or data.is_floating_point() or data.is_complex():
        raise TypeError(f"data must hold integer token ids, got a {data.dtype} tensor")
    if data.dim() != 1:
        raise ValueError(f"data must be 1-D (one stream of token ids), got shape {tuple(data.shape)}")
    if data.dtype != torch.uint8 and len(data) and (data.min() < 0 or data.max() >= ByteTokenizer.vocab_size):
        raise ValueError(f"data must hold token ids in 0..{ByteTokenizer.vocab_size - 1}")
    validate.check_int("batch_size", batch_size, 1)
    validate.check_int("seq_len", seq_len, 1)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return tuple(validate.check_token_ids("prefix", prefix, ByteTokenizer.vocab_size))


def sample_batch(
    data: torch.Tensor,
    batch_size: int,
    seq_len: int,
    generator: torch.Generator,
    prefix: tuple[int, ...] = (ByteTokenizer.bos_id,),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of `data`, each starting with `prefix` (BOS, as real LLMs start samples).

    Returns inputs and next-token targets, both (batch_size, seq_len) long tensors; the prefix
    tokens predict the window's first bytes.
    """
    prefix = _check_batch_args(data, batch_size, seq_len, generator, prefix)
    n_text = seq_len - len(prefix) + 1  # text bytes per sample, the last one only as a target
    if n_text < 2 or len(data) <= n_text:
        raise ValueError(f"seq_len={seq_len} does not fit prefix {prefix} and data of {len(data)} bytes")
    starts = torch.randint(0, len(data) - n_text, (batch_size,), generator=generator)
    text = torch.stack([data[s : s + n_text] for s in starts.tolist()]).long()  # (B, n_text)
    head = torch.tensor(prefix, dtype=torch.long).expand(batch_size, -1)
    tokens = torch.cat([head, text], dim=1)  # (B, seq_len + 1)
    return tokens[:, :-1], tokens[:, 1:]


def eval_stream(kind: str = "prose", split: str = "test", n_bytes: int | None = None, offset: int = 0) -> list[int]:
    """A stream of token ids for evaluation: BOS, then `n_bytes` bytes of the split."""
    data = load_bytes(kind, split)
    validate.check_int("offset", offset, 0, len(data) - 1)
    if n_bytes is not None:
        validate.check_int("n_bytes", n_bytes, 1)
    end = len(data) if n_bytes is None else offset + n_bytes
    if end > len(data):
        raise ValueError(f"offset + n_bytes must be <= {len(data)} (the {kind}/{split} split's bytes), got {end}")
    return [ByteTokenizer.bos_id, *data[offset:end].tolist()]


def corpus_sha256(kind: str) -> str:
    """sha256 of the uncompressed corpus file (what PROVENANCE.md records)."""
    import hashlib

    return hashlib.sha256(DOCUMENT_SEPARATOR.join(load_documents(kind)).encode("utf-8")).hexdigest()
