"""The machinery shared by every chapter's checkers."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch


class CheckFailed(Exception):
    """Raised inside a checker's own comparison to report a difference (caught by run_check)."""


def _summary(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        if x.numel() <= 8:
            return f"tensor {tuple(x.shape)} {x.flatten().tolist()}"
        return f"tensor {tuple(x.shape)} {x.dtype}, mean {x.double().mean().item():.4g}"
    text = repr(x)
    return text if len(text) <= 80 else text[:77] + "..."


def compare(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-5) -> str | None:
    """None when equal (tensors within tolerance), else a sentence saying where they differ."""
    if isinstance(expected, torch.Tensor):
        if not isinstance(got, torch.Tensor):
            return f"expected a tensor, got {type(got).__name__}"
        if got.shape != expected.shape:
            return f"shape {tuple(got.shape)} instead of {tuple(expected.shape)}"
        if expected.dtype == torch.bool or not expected.is_floating_point():
            bad = got != expected
        else:
            bad = ~torch.isclose(got.to(expected.dtype), expected, atol=atol, rtol=rtol, equal_nan=False)
        if bad.any():
            index = tuple(bad.nonzero()[0].tolist())
            return (
                f"{int(bad.sum())} of {bad.numel()} entries differ, first at index {index}: "
                f"{got[index].item():.6g} instead of {expected[index].item():.6g}"
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
        return None if ok else f"{_summary(got)} instead of {expected:.6g}"
    return None if got == expected else f"{_summary(got)} instead of {_summary(expected)}"


def report(title: str, problem: str | None, hint: str = "", n_cases: int = 1) -> bool:
    """Print the verdict line(s); return True when passed."""
    if problem is None:
        print(f"✅ {title}: passed ({n_cases} case{'s' if n_cases != 1 else ''})")
        return True
    print(f"❌ {title}: {problem}")
    if hint:
        print(f"   hint: {hint}")
    return False


def run_check(
    title: str,
    student: Callable,
    reference: Callable,
    cases: Sequence[tuple],
    hint: str = "",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    describe: Callable[[tuple], str] | None = None,
) -> bool:
    """Call `student(*case)` and `reference(*case)` on every case and compare (see `compare`)."""
    for i, case in enumerate(cases):
        label = describe(case) if describe else f"case {i}"
        try:
            got = student(*copy.deepcopy(case))
        except NotImplementedError:
            print(f"⏳ {title}: not implemented yet")
            return False
        except CheckFailed as e:
            return report(title, f"{label}: {e}", hint)
        except Exception as e:  # noqa: BLE001 - any error in learner code is reported, not raised
            return report(title, f"{label}: raised {type(e).__name__}: {e}", hint)
        expected = reference(*copy.deepcopy(case))
        problem = compare(got, expected, atol, rtol)
        if problem:
            return report(
                title, f"{label}: {problem}\n   expected: {_summary(expected)}\n   got:      {_summary(got)}", hint
            )
    return report(title, None, n_cases=len(cases))
