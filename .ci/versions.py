"""Print the versions a CI leg runs with (torch, triton, numpy, nbval, jupyterlab, ...)."""

import platform
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("torch", "triton", "numpy", "nbval", "jupyterlab", "pytest", "matplotlib", "ipykernel", "nbclient")


def installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


print(f"== CI leg {sys.argv[1] if len(sys.argv) > 1 else ''}: Python {platform.python_version()}")
print("== " + ", ".join(f"{name} {installed(name)}" for name in PACKAGES), flush=True)
