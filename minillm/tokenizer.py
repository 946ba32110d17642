"""Bytes as tokens: UTF-8 bytes 0..255 plus three special ids.

A byte tokenizer needs no training and no vocabulary file, never meets an unknown word, and makes
sequences long, which is exactly what a course on long contexts wants.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import validate


class ByteTokenizer:
    """Token ids 0..255 are the UTF-8 bytes; 256, 257 and 258 are BOS, SINK and PAD."""

    bos_id = 256  # begins every training sample, as in real LLMs
    sink_id = 257  # the learnable sink token of StreamingLLM §3.3 (chapter 03)
    pad_id = 258  # fills batches; never predicted
    vocab_size = 259
    special_names = {bos_id: "<bos>", sink_id: "<sink>", pad_id: "<pad>"}

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """UTF-8 bytes of `text`, with BOS first when `bos` is true."""
        ids = list(validate.utf8("text", text))
        validate.check_bool("bos", bos)
        return [self.bos_id, *ids] if bos else ids

    def decode(self, ids: Iterable[int], show_special: bool = False) -> str:
        """Text of `ids`; special ids are dropped (or shown as <bos>, ... with `show_special`).

        Bytes that do not form valid UTF-8 (a model can emit half a character) become U+FFFD.
        """
        validate.check_bool("show_special", show_special)
        out, pending = [], bytearray()
        for i in validate.check_token_ids("ids", ids, self.vocab_size):
            if i < 256:
                pending.append(i)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending = bytearray()
            if show_special:
                out.append(self.special_names[i])
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def token_str(self, i: int) -> str:
        """A printable label for one token id, for attention-map axes."""
        if i in self.special_names:
            return self.special_names[i]
        ch = chr(i) if i < 128 else f"\\x{i:02x}"
        return {"\n": "\\n", "\t": "\\t", " ": "␣"}.get(ch, ch)
