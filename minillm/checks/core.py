"""The machinery shared by every chapter's checkers.

A checker runs the learner's function on every case (smallest first), compares each result with
the package's own, and prints one verdict: ✅ PASS, ⏳ TODO (not implemented yet), or ❌ FAIL with the
smallest failing case, expected and got cut around the place where they differ, and a hint.
Each symbol is followed by a word, which is what a screen without an emoji font shows (a box).

Hints are graded: `run_check(..., hints=(h1, h2))`. The first failing call of a check prints h1
(the property that failed); the next failing call of the same check, or a checker called with
`hint=2`, also prints h2 (more specific; still no solution code). A pass resets the level. The
old single `hint="..."` string still works. A crash in the learner's code prints the learner's
own line (the innermost traceback frame outside the package and the libraries) and the exception.

Checkers return a `CheckResult`: truthy when passed (so `assert ch01.check_attention(f)` works),
and it displays nothing in a notebook, since the verdict line is already printed.

One checker, two modes. In the course's notebooks a check only prints its verdict and never raises,
so they run top to bottom whatever the learner wrote. A graded test (nbgrader's autograded cells,
written by `python -m minillm.course nbgrader`) calls `.require()` on the result: after the same
verdict it raises AssertionError, with the problem and the first hint, unless the check passed,
since nbgrader takes a test cell that does not raise for full marks.
"""

from __future__ import annotations

import copy
import os
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..kv_cache import KVCache


class CheckFailed(Exception):
    """Raised inside a checker's own comparison to report a difference (caught by run_check)."""


class CheckResult:
    """A checker's verdict. `bool(result)` is whether it passed; shown in a notebook it displays nothing."""

    def __init__(self, title: str, passed: bool, problem: str | None = None, hint: str = "") -> None:
        self.title, self.passed, self.problem, self.hint = title, passed, problem, hint

    def __bool__(self) -> bool:
        return self.passed

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CheckResult):
            return self.passed == other.passed and self.title == other.title
        return self.passed == other if isinstance(other, bool) else NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-looking value object: not a dict key

    def __repr__(self) -> str:
        return f"CheckResult({self.title!r}, passed={self.passed})"

    def require(self) -> None:
        """The strict mode, for graded tests: raise AssertionError (problem and first hint) unless passed."""
        if self.passed:
            return
        message = f"{self.title}: {self.problem or 'failed'}"
        if self.hint:
            message += f"\n   hint: {self.hint}"
        raise AssertionError(message)

    def _ipython_display_(self) -> None:
        """Display nothing: the verdict is already printed, and `Out: False` beside ⏳ reads like a failure."""


# How many times in a row each check (by title) has failed: picks the hint level.
_failures: dict[str, int] = {}


def random_tensors(seed: int, *shapes: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Seeded float64 inputs, one per shape, drawn in order from one generator: every machine runs
    the same cases, and float64 keeps the comparison far from rounding noise."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(*shape, generator=g, dtype=torch.float64) for shape in shapes)


def tensor_result(x: object, name: str) -> torch.Tensor:
    """A learner's result must be a tensor: say so in words, not with a failure inside the comparison."""
    if not isinstance(x, torch.Tensor):
        raise CheckFailed(f"{name} must return a tensor, got {type(x).__name__}")
    return x


def _type_name(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    return f"a {type(x).__name__}"


def int_result(x: object, name: str) -> int:
    """A learner's result that the spec types `int` must be a Python int: a 0-d tensor fails here, in words,
    instead of in a later cell (`if n > best:` on tensors, `range(n)`, a dict key that never matches)."""
    if isinstance(x, bool) or not isinstance(x, int):
        fix = " (.item() turns a 0-d tensor into one)" if isinstance(x, torch.Tensor) else ""
        raise CheckFailed(f"{name} must be a Python int, got {_type_name(x)}{fix}")
    return x


def int_list_result(x: object, name: str) -> list[int]:
    """A learner's result that the spec types `list[int]` must be a list of Python ints: a tensor fails here,
    with a message that says so, before the next cell compares it with a list (`new == guess` on a tensor
    is a tensor, and `if` on it raises) or adds it to one."""
    if isinstance(x, torch.Tensor):
        raise CheckFailed(
            f"{name} must be a list of Python ints (list[int]), got {_type_name(x)}: .tolist() converts it"
        )
    if not isinstance(x, list):
        raise CheckFailed(f"{name} must be a list of Python ints (list[int]), got {_type_name(x)}")
    for i, t in enumerate(x):
        if isinstance(t, bool) or not isinstance(t, int):
            raise CheckFailed(f"{name} must be a list of Python ints (list[int]), but item {i} is {_type_name(t)}")
    return x


def cache_result(x: object, name: str = "make_cache") -> KVCache:
    """A learner's cache must be a KVCache (a subclass of it): anything else fails here, in words."""
    if not isinstance(x, KVCache):
        raise CheckFailed(f"{name} must return a KVCache (a subclass of it), got {type(x).__name__}")
    return x


def feed_cache(model: torch.nn.Module, ids: torch.Tensor, cache: KVCache, chunk: int = 1) -> tuple[torch.Tensor, ...]:
    """Feed ids (T,) through `cache`, `chunk` tokens a forward: the logits (T, vocab) and the number of
    entries the cache holds after each forward (what a cache exercise's properties are checked on)."""
    logits, held = [], []
    with torch.no_grad():
        for start in range(0, len(ids), chunk):
            logits.append(model(ids[None, start : start + chunk], cache=cache).logits[0])
            held.append(len(cache))
    return torch.cat(logits), torch.tensor(held)


def reset_hints() -> None:
    """Forget every check's failure count (hint levels start again at 1)."""
    _failures.clear()


_PACKAGE = Path(__file__).resolve().parents[1]  # minillm/
_LIBRARIES = {Path(p).resolve() for p in {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}}


def _is_learner_file(filename: str) -> bool:
    if filename.startswith("<"):  # <string>, <frozen ...>: not a file a learner can open
        return False
    path = Path(filename).resolve()
    return not any(path.is_relative_to(p) for p in (_PACKAGE, *_LIBRARIES))


def crash_location(error: BaseException) -> str | None:
    """'in your cell, line 3: return x / 0': the innermost frame of the traceback in the learner's code."""
    frames = traceback.extract_tb(error.__traceback__)
    for frame in reversed(frames):
        if _is_learner_file(frame.filename):
            where = "your cell" if "ipykernel" in frame.filename else os.path.basename(frame.filename)
            line = f": {frame.line.strip()}" if frame.line else ""
            return f"in {where}, line {frame.lineno}{line}"
    return None


def _fmt(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, torch.Tensor) and x.ndim == 0:
        return _fmt(x.item())
    return repr(x)


def _summary(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        if x.numel() <= 8:
            values = ", ".join(_fmt(v) for v in x.flatten().tolist())
            return f"tensor {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')} [{values}]"
        return f"tensor {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def _window(items: Sequence, start: int, width: int = 6) -> str:
    """items[start - 1 : start - 1 + width] with '…' where cut, and the index it starts at."""
    lo = max(0, start - 1)
    hi = min(len(items), lo + width)
    body = ", ".join(_fmt(v) for v in items[lo:hi])
    return f"[{'…, ' if lo else ''}{body}{', …' if hi < len(items) else ''}]" + (f" (from index {lo})" if lo else "")


def differences(got: Any, expected: Any) -> tuple[str, str]:
    """(expected, got) as two short strings, each cut around the first place where they differ."""
    try:
        return _differences(got, expected)
    except Exception:  # noqa: BLE001 - an odd value the cutting cannot handle: show both summaries
        return _summary(expected), _summary(got)


def _differences(got: Any, expected: Any) -> tuple[str, str]:
    if isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor) and got.shape == expected.shape:
        if expected.numel() <= 8:
            return _summary(expected), _summary(got)
        e, g = expected.flatten(), got.flatten()
        if expected.is_floating_point() or got.is_floating_point():
            bad = ~torch.isclose(g.double(), e.double(), atol=1e-5, rtol=1e-5)
        else:
            bad = g != e
        first = int(bad.nonzero()[0]) if bad.any() else 0
        head = f"tensor {tuple(expected.shape)}, flattened "
        return head + _window(e.tolist(), first), head + _window(g.tolist(), first)
    if isinstance(expected, (list, tuple)) and expected and isinstance(expected[0], torch.Tensor):
        if isinstance(got, (list, tuple)) and len(got) == len(expected):
            i = next((i for i, (g, e) in enumerate(zip(got, expected)) if compare(g, e)), 0)
            shown_expected, shown_got = _differences(got[i], expected[i])
            return f"item {i}: {shown_expected}", f"item {i}: {shown_got}"
        return _summary(expected), _summary(got)
    if isinstance(expected, (str, list, tuple)) and isinstance(got, type(expected)):
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        if isinstance(expected, str):
            lo = max(0, first - 20)
            cut = lambda s: ("…" if lo else "") + repr(s[lo : lo + 50]) + ("…" if len(s) > lo + 50 else "")  # noqa: E731
            return f"{cut(expected)} ({len(expected)} chars)", f"{cut(got)} ({len(got)} chars)"
        n = lambda x: f"({len(x)} item{'s' if len(x) != 1 else ''})"  # noqa: E731
        return f"{_window(expected, first)} {n(expected)}", f"{_window(got, first)} {n(got)}"
    return _summary(expected), _summary(got)


def compare(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-5) -> str | None:
    """None when equal (tensors within tolerance), else a sentence saying where they differ."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        if expected.dtype == torch.bool and got.dtype != torch.bool:
            return f"dtype {got.dtype} instead of torch.bool (masks are bool: ~mask and masked_fill need it)"
        if not expected.is_floating_point() and not expected.is_complex() and got.is_floating_point():
            return f"dtype {got.dtype} instead of an integer dtype such as {expected.dtype} (indices must be integers)"
        if expected.dtype == torch.bool or not expected.is_floating_point():
            bad = got != expected
        else:
            bad = ~torch.isclose(got.to(expected.dtype), expected, atol=atol, rtol=rtol, equal_nan=False)
        if bad.any():
            index = tuple(bad.nonzero()[0].tolist())
            return (
                f"{int(bad.sum())} of {bad.numel()} entries differ, first at index {index}: "
                f"{_fmt(got[index])} instead of {_fmt(expected[index])}"
            )
        return None
    if isinstance(expected, (tuple, list)) and expected and isinstance(expected[0], torch.Tensor):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"expected a sequence of {len(expected)} tensors, got {_summary(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            where = compare(g, e, atol, rtol)
            if where:
                return f"item {i}: {where}"
        return None
    if isinstance(expected, float):
        ok = isinstance(got, (int, float)) and abs(got - expected) <= atol + rtol * abs(expected)
        return None if ok else f"{_fmt(got) if isinstance(got, float) else _summary(got)} instead of {expected:.6g}"
    if isinstance(expected, (str, list, tuple)) and isinstance(got, type(expected)) and got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), None)
        if first is None:
            return f"length {len(got)} instead of {len(expected)}"
        return f"index {first} is {_fmt(got[first])} instead of {_fmt(expected[first])}"
    return None if got == expected else f"{_summary(got)} instead of {_summary(expected)}"


def _hint_lines(title: str, hint: str, hints: Sequence[str], level: int | None) -> list[str]:
    if not hints:
        return [f"   hint: {hint}"] if hint else []
    _failures[title] = _failures.get(title, 0) + 1
    level = min(max(1, level or _failures[title]), len(hints))
    lines = [f"   hint: {hints[0]}"] + [f"   hint {i + 1}: {h}" for i, h in enumerate(hints[1:level], start=1)]
    if level < len(hints):
        lines.append(f"   (still stuck? run the check again, or pass hint={level + 1}, for a more specific hint)")
    return lines


def report(
    title: str,
    problem: str | None,
    hint: str = "",
    n_cases: int = 1,
    hints: Sequence[str] = (),
    level: int | None = None,
) -> CheckResult:
    """Print the verdict line(s); the result is truthy when passed."""
    if problem is None:
        _failures.pop(title, None)
        print(f"✅ PASS {title}: passed ({n_cases} case{'s' if n_cases != 1 else ''})")
        return CheckResult(title, True)
    print("\n".join([f"❌ FAIL {title}: {problem}", *_hint_lines(title, hint, hints, level)]))
    return CheckResult(title, False, problem, hint=_first_hint(hint, hints))


def _first_hint(hint: str, hints: Sequence[str]) -> str:
    return hints[0] if hints else hint


def _crash(label: str, error: Exception) -> str:
    where = crash_location(error)
    return f"{label}: raised {type(error).__name__}: {error}" + (f"\n   {where}" if where else "")


def run_check(
    title: str,
    student: Callable,
    reference: Callable,
    cases: Sequence[tuple],
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    describe: Callable[[tuple], str] | None = None,
    hints: Sequence[str] = (),
    level: int | None = None,
) -> CheckResult:
    """Call `student(*case)` and `reference(*case)` on every case and compare (see `compare`).

    Every case runs (up to a crash); the first failing one (list the cases smallest first) is reported, with how
    many of the cases failed. `hints` are graded (see the module docstring); `level` forces one.
    """
    failures: list[str] = []
    crashed = False
    for i, case in enumerate(cases):
        label = describe(case) if describe else f"case {i}"
        try:
            got = student(*copy.deepcopy(case))
        except NotImplementedError:
            print(f"⏳ TODO {title}: not implemented yet")
            return CheckResult(title, False, "not implemented yet", hint=_first_hint(hint, hints))
        except CheckFailed as e:
            failures.append(f"{label}: {e}")
            continue
        except Exception as e:  # noqa: BLE001 - any error in learner code is reported, not raised
            failures.append(_crash(label, e))
            crashed = True
            break  # a crash can leave state behind (a GPU fault, a half-changed argument): stop here
        expected = reference(*copy.deepcopy(case))
        problem = compare(got, expected, atol, rtol)
        if problem and isinstance(expected, (torch.Tensor, str, list, tuple, dict, set)):
            shown_expected, shown_got = differences(got, expected)
            failures.append(f"{label}: {problem}\n   expected: {shown_expected}\n   got:      {shown_got}")
        elif problem:  # a number or None: the sentence already says both
            failures.append(f"{label}: {problem}")
    if not failures:
        return report(title, None, n_cases=len(cases))
    first_line, *details = failures[0].split("\n")
    if len(cases) > 1 and not crashed:
        first_line += f" ({len(failures)} of {len(cases)} cases fail; the first is shown)"
    return report(title, "\n".join([first_line, *details]), hint, hints=hints, level=level)
