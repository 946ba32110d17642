"""Committed checkpoints: NAME.safetensors (weights) + NAME.json (config, provenance, metrics).

`load_pretrained` checks the file's sha256 against the json and every tensor's shape against the
config before building the model, so a missing, truncated or edited file fails with a message
that says which and how to rebuild it, rather than a model that silently talks nonsense.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .model import MiniLLM

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"


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


def load_pretrained(
    name: str, directory: str | Path | None = None, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """The committed model `name` ("base", "sink_token", "megabyte", ...) in eval mode."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
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
    model = model_class(config)
    expected, aliases = _unique_state(model)
    expected_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    got_shapes = {k: tuple(v.shape) for k, v in state.items()}
    if expected_shapes != got_shapes:
        wrong = sorted(set(expected_shapes.items()) ^ set(got_shapes.items()))[:4]
        raise ValueError(f"{weights} does not match its config: tensors differ in name or shape, e.g. {wrong}")
    model.load_state_dict({**state, **{alias: state[original] for alias, original in aliases.items()}})
    return model.to(device).eval()
