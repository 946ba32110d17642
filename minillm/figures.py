"""The figures the course's prose quotes, recorded by the notebooks that measure them.

A notebook calls `record("ch02.window_over_recompute_w128", ratio)` where it computes a number
that a sentence (in the notebook, another chapter or the README) quotes. The markdown marks the
quoted number with the same name,

    window attention is <span title="ch02.window_over_recompute_w128">3.3×</span> worse

which JupyterLab and GitHub render as plain text (the name shows when the pointer rests on it).
`tests/test_figures.py` fails when a marked number differs from the recorded value at the
precision the sentence prints, and when a claim's number (a decimal, a percentage, a ratio such as
2.4×) carries no mark. A figure quoted from a paper is marked as one: `<span title="paper">955×</span>`.
An integer in a sentence is a claim too, unless it is a setting the notebook's own code writes
(W = 32 is the literal `32` in a code cell), a place in the text (chapter 05, §3, Table 2, step 4,
layer 3), a year or a number up to 2 (one, two); a result such as "38 steps" must be recorded.

Recording writes `notebooks/figures.json` only while `python -m minillm.course run` executes a lecture
or solution notebook (it names the notebook in the environment variable below). Anywhere else
(a learner's JupyterLab, nbval in the tests and CI, the exercises) `record` only returns its value:
the committed file changes only with a deliberate re-execution, never as a side effect of a test.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ROOT / "notebooks" / "figures.json"
ENV = "MINILLM_RECORD_FIGURES"  # set by `python -m minillm.course run` to the notebook it runs
NAME = re.compile(r"^ch\d\d(\.[a-z0-9_]+)+$")  # "ch02.window_over_recompute_w128": chapter, then what

_cleared: set[str] = set()  # the notebooks whose old figures this process has already dropped


def load() -> dict[str, dict]:
    """{name: {"value": float, "notebook": "notebooks/02_window_attention.ipynb"}}"""
    return json.loads(FIGURES.read_text()) if FIGURES.exists() else {}


def value(name: str) -> float:
    """The recorded value of one figure (KeyError with the name when none is recorded)."""
    figures = load()
    if name not in figures:
        raise KeyError(f"no figure {name!r} in {FIGURES.name}: run its notebook with `python -m minillm.course run`")
    return figures[name]["value"]


def record(name: str, number: float) -> float:
    """Record `number` under `name` (when the course's runner executes the notebook) and return it.

    Prints nothing, so the notebook's outputs stay what nbval compares."""
    if not NAME.match(name):
        raise ValueError(f"figure name {name!r}: write chNN.what_it_is (lower case, digits, underscores)")
    number = float(number)
    if not math.isfinite(number):
        raise ValueError(f"figure {name}: {number} is not a finite number")
    notebook = os.environ.get(ENV, "")
    if notebook.startswith(("notebooks/", "solutions/")):
        figures = load()
        if notebook not in _cleared:  # a figure that a new run no longer records goes away
            figures = {k: v for k, v in figures.items() if v["notebook"] != notebook}
            _cleared.add(notebook)
        owner = figures.get(name, {}).get("notebook", notebook)
        if owner != notebook:
            raise ValueError(f"figure {name} is already recorded by {owner}")
        figures[name] = {"value": round(number, 6), "notebook": notebook}
        FIGURES.write_text(json.dumps(dict(sorted(figures.items())), indent=1, ensure_ascii=False) + "\n")
    return number


# ---- reading the prose: what `tests/test_figures.py` checks ----------------------------------------------

MARK = re.compile(r'<span title="([^"]+)">(.*?)</span>', re.S)
NUMBER = re.compile(r"[−-]?\d[\d,]*(?:\.\d+)?")
# A claim's number: a decimal, a percentage or a ratio (2.4×). Integers alone are settings (W = 32, 128 tokens).
CLAIM = re.compile(
    r"(?<![\w.§#/−-])[−-]?\d[\d,]*\.\d+\s?(?:%|×)"  # 15.2 %, 2.4×
    r"|(?<![\w.§#/−-])[−-]?\d[\d,]*\s?(?:%|×)(?!\s?(?:T\b|longer|the training|its training))"  # 15 %, 7×; not 16× T
    r"|(?<![\w.§#/−-])[−-]?\d[\d,]*\.\d+(?![\d.]|\s?[M]\b|\s?×\s?T\b)"  # 3.27 (not 0.8M parameters, not 1.2.3)
)
NOT_PROSE = [
    re.compile(r"```.*?```", re.S),  # code blocks
    re.compile(r"`[^`]*`"),  # inline code
    re.compile(r"\$\$.*?\$\$", re.S),  # display math
    re.compile(r"\$[^$\n]*\$"),  # inline math
    re.compile(r"\]\([^)]*\)"),  # link targets
    re.compile(r"https?://\S+"),  # addresses
    re.compile(r"\barXiv:?\s?\d{4}\.\d{4,5}|\b\d{4}\.\d{4,5}\b"),  # arXiv ids
    re.compile(r"\b(?:v|version |torch |Python |CUDA |Triton |transformers )\d+(?:\.\d+)+"),  # versions
]


def is_paper(name: str) -> bool:
    """A mark for a figure quoted from a paper (not measured here): title "paper" or "paper: where"."""
    return name == "paper" or name.startswith("paper:")


def _as_number(text: str) -> tuple[float, int] | None:
    """The first number in a marked text and its decimals: '3.27×' -> (3.27, 2), '1,432' -> (1432.0, 0)."""
    match = NUMBER.search(text)
    if not match:
        return None
    digits = match.group().replace(",", "").replace("−", "-")
    return float(digits), len(digits.split(".")[1]) if "." in digits else 0


def wrong_marks(text: str, figures: dict[str, dict]) -> list[str]:
    """Every marked number that is not its figure's recorded value at the precision it is printed with."""
    problems = []
    for name, shown in MARK.findall(text):
        if is_paper(name):
            continue
        if name not in figures:
            problems.append(f"{shown!r} is marked {name!r}, which no notebook records")
            continue
        parsed = _as_number(shown)
        if parsed is None:
            problems.append(f"{shown!r} (marked {name!r}) holds no number")
            continue
        number, decimals = parsed
        recorded = figures[name]["value"]
        if f"{recorded:.{decimals}f}" != f"{number:.{decimals}f}":
            problems.append(f"{shown!r} is marked {name!r}, recorded as {recorded} ({recorded:.{decimals}f})")
    return problems


def _prose(text: str) -> str:
    """A text without its marked numbers, code, math, links and ids."""
    text = MARK.sub(" ", text)
    for pattern in NOT_PROSE:
        text = pattern.sub(" ", text)
    return text


def unmarked_claims(text: str) -> list[str]:
    """The claim numbers (decimals, percentages, ratios) of a text that carry no mark."""
    return [m.group().strip() for m in CLAIM.finditer(_prose(text))]


# An integer standing alone: not part of a word (SmolLM2, x86-64, 135M), a decimal, a power or an id.
INTEGER = re.compile(r"(?<![\w.§#/^_−-])[−+-]?\d[\d,]*(?![\d.,]*\d)(?!\.\d)(?![\w^/-])")
# Integers that name a place in the text or a date rather than state a quantity.
PLACE = re.compile(
    r"(?:\b(?:chapters?|cells?|exercises?|tables?|fig\.|figures?|eq\.|equations?|sections?|appendix|issues?|"
    r"PR|steps?|levels?|layers?|heads?|rows?|columns?|parts?|lectures?|notebooks?|algorithm|No\.|"
    r"January|February|March|April|May|June|July|August|September|October|November|December)|§)"
    r"\s*(?:§?\d+\s*(?:,|and|or|to|–)\s*)*$",  # "chapters 02 and", "§1–": the places of a list or range
    re.I,
)
STRUCTURE = [
    re.compile(r"^[ \t]*#+[ \t]*\d+(?:\.\d+)*\.?", re.M),  # a heading's number: "## 5. The wall clock"
    re.compile(r"^[ \t]*\d+\.[ \t]", re.M),  # a numbered list's item
    re.compile(r"\*\*Run time:\*\* about \d+ s"),  # checked against run_times.json by tests/test_course.py
]


def code_integers(sources: list[str]) -> set[int]:
    """The integer literals of some code (1_000 and 2048 alike): the settings a sentence may restate."""
    return {int(m.group().replace("_", "")) for s in sources for m in re.finditer(r"(?<![\w.])\d[\d_]*(?![\w.])", s)}


def unmarked_integers(text: str, settings: set[int]) -> list[str]:
    """The integers of a text that state a quantity which is neither marked nor one of `settings`."""
    text = _prose(text)
    for pattern in STRUCTURE:
        text = pattern.sub(" ", text)
    found = []
    for match in INTEGER.finditer(text):
        shown = match.group()
        value = int(shown.replace(",", "").lstrip("+−-"))
        signed = shown[0] in "+−-"  # "+2 from N = 32 to 64" is a change: a result, never a place or setting
        if not signed and (PLACE.search(text[max(0, match.start() - 40) : match.start()]) or value <= 2):
            continue
        if not signed and (value in settings or 1900 <= value <= 2030):
            continue
        found.append(shown)
    return found
