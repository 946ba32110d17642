"""Checkers for the exercises: `from minillm.checks import ch01; ch01.check_attention(my_attention)`.

Each checker runs the learner's function on a few seeded cases, compares with the package's own
version, and prints one clear line: passed, not implemented yet (a stub that still raises
NotImplementedError), or failed with what was expected, what came back, where they differ, and
a hint (graded: call the check again, or pass `hint=2`, for a more specific one). Checkers never
raise, so exercise notebooks run top to bottom either way; they return a `CheckResult`, truthy when
passed, that displays nothing (no `Out: False` under the verdict).
"""

from .core import CheckFailed, CheckResult, compare, report, reset_hints, run_check

__all__ = ["CheckFailed", "CheckResult", "compare", "report", "reset_hints", "run_check"]
