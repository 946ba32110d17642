"""SmolLM2's byte-level BPE (Sennrich et al., 2016, arXiv 1508.07909; GPT-2's byte-level variant),
rebuilt from the tokens and merges of its GGUF file on the Hugging Face `tokenizers` library.

Pre-tokenization is llama.cpp's "smollm" rule, which is also SmolLM2's own tokenizer.json: every
digit is its own piece, then GPT-2's regex splits words, numbers, punctuation and spaces. The
interface is ByteTokenizer's: encode(text, bos=False), decode(ids), vocab_size, bos_id.

Where it departs from transformers' GGUF loader: that loader builds a plain GPT-2 pre-tokenizer
without the digit split. The vocabulary has no multi-digit tokens, so the two agree on text without
digits, but they split differently on any run of two or more whitespace characters (spaces, tabs,
newlines, in any mix) before a digit. llama.cpp and we keep the whole run as one piece ("\n\n0." ->
"\n\n", "0", "."); GPT-2's regex gives the run's last character to the digit ("\n", "\n0", "."),
so its BPE cannot merge that character with the rest of the run. The ids then differ whenever the
vocabulary merges across the run's last character ("\n\n", "  ", "\r\n" are tokens), which is
almost always; they agree only where no such merge exists (" \t 9"). Code and verse numbers meet
this often ("\n\n12"). We follow llama.cpp, the format's reference.

Which token starts a stream: the GGUF says add_bos_token = False (a plain encode adds nothing, as
llama.cpp and transformers do) and names bos_token_id = 1, `<|im_start|>`, the token that opens
every message of SmolLM2's chat template. `encode(text, bos=True)` prepends that id, so a stream
starts the way every chat-formatted sample starts; the attention-sink experiments use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import validate

CONTROL = 3  # llama.cpp's token type of special tokens (<|im_start|>, <|endoftext|>, ...)


def build_tokenizer_json(tokens: list[str], merges: list[str], token_type: list[int]) -> str:
    """The `tokenizers` json of a GPT-2-style byte-level BPE with individual digits."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab, pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [t for t, kind in zip(tokens, token_type) if kind == CONTROL]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok.to_str()


class BPETokenizer:
    """A byte-level BPE with ByteTokenizer's interface."""

    def __init__(self, path: str | Path, bos_id: int, eos_id: int) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        for name, value in (("bos_id", bos_id), ("eos_id", eos_id)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.vocab_size:
                raise ValueError(f"{name} must be a token id in 0..{self.vocab_size - 1}, got {value!r}")
        self.bos_id, self.eos_id = bos_id, eos_id

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Token ids of `text`, with bos_id first when `bos` is true. Special tokens written in
        the text (e.g. "<|im_start|>") become their single ids, as in transformers."""
        validate.utf8("text", text)  # the Rust tokenizer would fail on a lone surrogate, naming nothing
        validate.check_bool("bos", bos)
        ids = self._tok.encode(text, add_special_tokens=False).ids
        return [self.bos_id, *ids] if bos else ids

    def decode(self, ids: Iterable[int], show_special: bool = False) -> str:
        """Text of `ids`; special tokens are dropped unless `show_special`."""
        ids = validate.check_token_ids("ids", ids, self.vocab_size)
        validate.check_bool("show_special", show_special)
        return self._tok.decode(ids, skip_special_tokens=not show_special)

    def token_str(self, i: int) -> str:
        """A printable label for one token id, for attention-map axes (Ġ marks a leading space)."""
        return self._tok.id_to_token(int(i)).replace("Ġ", "␣").replace("Ċ", "\\n")
