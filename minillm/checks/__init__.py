"""Checkers for the exercises: `from minillm.checks import ch01; ch01.check_attention(my_attention)`.

Each checker runs the learner's function on a few seeded cases, compares with the package's own
version, and prints one clear line: passed, not implemented yet (a stub that still raises
NotImplementedError), or failed with what was expected, what came back, where they differ, and
a hint. Checkers never raise, so exercise notebooks run top to bottom either way.
"""

from .core import CheckFailed, compare, report, run_check

__all__ = ["CheckFailed", "compare", "report", "run_check"]
