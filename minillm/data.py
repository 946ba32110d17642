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

from .tokenizer import ByteTokenizer

CORPUS_DIR = Path(__file__).parent / "corpus"
KINDS = ("prose", "code")
SPLITS = ("train", "val", "test")
DOCUMENT_SEPARATOR = "\x1e"  # ASCII record separator between documents in the .xz files


def _check(kind: str, split: str | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@cache
def load_documents(kind: str) -> tuple[str, ...]:
    """All documents of one kind, in corpus order."""
    _check(kind)
    path = CORPUS_DIR / f"{kind}.txt.xz"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; rebuild it with `python scripts/build_corpus.py`")
    return tuple(lzma.decompress(path.read_bytes()).decode("utf-8").split(DOCUMENT_SEPARATOR))


def split_of(index: int) -> str:
    """The split of document number `index`."""
    return {7: "test", 3: "val"}.get(index % 10, "train")


@cache
def load_text(kind: str, split: str) -> str:
    """The documents of one split, joined by blank lines."""
    _check(kind, split)
    docs = load_documents(kind)
    return "\n\n".join(doc for i, doc in enumerate(docs) if split_of(i) == split)


@cache
def load_bytes(kind: str, split: str) -> torch.Tensor:
    """One split as a uint8 tensor of its UTF-8 bytes (1 byte per token, 4 MB for the Bible)."""
    return torch.frombuffer(bytearray(load_text(kind, split).encode("utf-8")), dtype=torch.uint8)


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
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
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
    end = len(data) if n_bytes is None else offset + n_bytes
    if end > len(data):
        raise ValueError(f"the {kind}/{split} split has {len(data)} bytes, asked for {offset}..{end}")
    return [ByteTokenizer.bos_id, *data[offset:end].tolist()]


def corpus_sha256(kind: str) -> str:
    """sha256 of the uncompressed corpus file (what PROVENANCE.md records)."""
    import hashlib

    _check(kind)
    return hashlib.sha256(DOCUMENT_SEPARATOR.join(load_documents(kind)).encode("utf-8")).hexdigest()
