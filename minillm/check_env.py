"""Check the course's environment: `check_env` (or `python -m minillm.check_env`).

Prints OK/FAIL for every dependency with its version, the device the course will use, and how
Triton kernels will run (compiled on a GPU, interpreted on a CPU, or unavailable). Exits 1 when a
required dependency is missing.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys

REQUIRED = ["torch", "numpy", "matplotlib", "ipywidgets", "jupyterlab", "tqdm", "safetensors"]
OPTIONAL = {"triton": "kernel chapter (Linux only)", "pytest": "tests", "nbval": "notebook tests"}


def _version(name: str) -> str | None:
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    return getattr(module, "__version__", "installed")


def device_line() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def triton_line() -> str:
    import minillm_kernels

    if not minillm_kernels.TRITON_AVAILABLE:
        return f"unavailable: {minillm_kernels.TRITON_UNAVAILABLE_REASON} Chapter 08 skips its Triton cells."
    return "interpreted (TRITON_INTERPRET=1, no GPU)" if minillm_kernels.TRITON_INTERPRETED else "compiled (CUDA)"


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args([] if argv is None else argv)
    print(f"python {platform.python_version()} on {platform.system()} {platform.machine()}")
    missing = []
    for name in REQUIRED:
        version = _version(name)
        print(f"  {'OK  ' if version else 'FAIL'} {name:12s} {version or 'missing'}")
        if not version:
            missing.append(name)
    for name, purpose in OPTIONAL.items():
        version = _version(name)
        print(f"  {'OK  ' if version else 'FAIL'} {name:12s} {version or 'missing'}  ({purpose}, optional)")
    if "torch" not in missing:
        print(f"device: {device_line()}")
        print(f"triton: {triton_line()}")
    if missing:
        print(f'missing: {", ".join(missing)}; install with: python -m pip install -e ".[dev]"')
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
