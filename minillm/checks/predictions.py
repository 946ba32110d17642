"""Predictions that answer back: the learner records a number or a choice before a run, and the
cell after the run says whether it held and which measurement decides it. Never graded.
"""

from __future__ import annotations

from collections.abc import Sequence


def _unrecorded(name: str) -> None:
    print(f"⏳ NO PREDICTION {name}: nothing recorded; set it in the cell before the run (then run both again)")


def number(name: str, predicted: float | None, measured: float, within: float, decided_by: str) -> bool | None:
    """Whether |predicted - measured| <= within; prints the verdict and the measurement that decides it."""
    if predicted is None:
        _unrecorded(name)
        return None
    held = abs(float(predicted) - float(measured)) <= within
    verdict = "✔ HELD" if held else "✘ DID NOT HOLD"
    print(f"{verdict} {name}: you predicted {predicted:g}, {decided_by} measured {measured:.3g}", end=" ")
    print(f"(held if within {within:g})")
    return held


def choice(name: str, predicted: object, measured: object, choices: Sequence, decided_by: str) -> bool | None:
    """Whether the predicted choice is the measured one; prints the verdict and the measurement that decides it."""
    if predicted is None:
        _unrecorded(name)
        return None
    if predicted not in choices:
        print(f"⚠ {name}: {predicted!r} is not one of {list(choices)}; pick one of them")
        return None
    held = predicted == measured
    verdict = "✔ HELD" if held else "✘ DID NOT HOLD"
    print(f"{verdict} {name}: you predicted {predicted!r}, {decided_by} says {measured!r}")
    return held
