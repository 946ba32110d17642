"""Triton's set-up, done once before any kernel is defined: the interpreter without a GPU, and
whether Triton can run here at all (`TRITON_AVAILABLE`, and `TRITON_UNAVAILABLE_REASON` if not).

Without a GPU, Triton runs kernels in its interpreter (`TRITON_INTERPRET=1`), which must be set
before any `@triton.jit` function is defined: importing the package runs this module first.
"""

from __future__ import annotations

import os
import sys

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton  # noqa: F401

    TRITON_AVAILABLE, TRITON_UNAVAILABLE_REASON = True, ""
    # Triton's own library (tl.zeros, tl.full, ...) is decorated when triton is first imported: if
    # that happened before this file set TRITON_INTERPRET (an earlier `import triton`, torch.compile
    # or torch.utils.flop_counter), those functions are GPU-only and every interpreted kernel would
    # fail with "Cannot call @triton.jit'd outside of the scope of a kernel". Re-wrap them for the
    # interpreter, so that the import order does not matter.
    if os.environ.get("TRITON_INTERPRET") == "1" and type(triton.language.zeros).__name__ != "InterpretedFunction":
        try:
            from triton.runtime.interpreter import InterpretedFunction
            from triton.runtime.jit import JITFunction

            for _name, _module in list(sys.modules.items()):
                if _name.startswith("triton.language") and _module is not None:
                    for _attr, _value in list(vars(_module).items()):
                        if isinstance(_value, JITFunction):
                            setattr(_module, _attr, InterpretedFunction(_value.fn))
        except (ImportError, AttributeError, TypeError) as e:  # another Triton release's internals
            TRITON_AVAILABLE = False
            TRITON_UNAVAILABLE_REASON = (
                f"Triton was imported before `minillm_kernels` without TRITON_INTERPRET=1 and could not be switched "
                f"to its interpreter ({e}). Restart Python and import minillm_kernels first, or start Python with "
                "TRITON_INTERPRET=1 set."
            )
except ImportError as e:  # macOS, Windows: no triton wheels
    TRITON_AVAILABLE = False
    TRITON_UNAVAILABLE_REASON = f"Triton is not installed ({e}); it ships wheels for Linux only."

TRITON_INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
