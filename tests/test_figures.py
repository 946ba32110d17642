"""Every number a sentence quotes is the number its notebook recorded (see minillm/figures.py).

The committed markdown (lectures, solutions, exercises, the README's course map) is compared with
the committed `notebooks/figures.json`, which only `python -m minillm.course run` rewrites; nbval
checks separately that re-executing a notebook prints what it printed when the figures were recorded.
"""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from minillm import figures
from minillm.course import ROOT

NOTEBOOKS = sorted(p for d in ("notebooks", "solutions", "exercises") for p in (ROOT / d).glob("*.ipynb"))


def _markdown(path) -> list[tuple[str, str]]:
    nb = nbformat.read(path, as_version=4)
    cells = enumerate(nb.cells)
    return [(f"{path.relative_to(ROOT)} cell {i}", c.source) for i, c in cells if c.cell_type == "markdown"]


def _course_map() -> list[tuple[str, str]]:
    """The README's course map: one row per chapter, (chapter number, row)."""
    rows = re.findall(r"^\| (\d\d) — .*$", (ROOT / "README.md").read_text(), re.M)
    lines = [line for line in (ROOT / "README.md").read_text().splitlines() if re.match(r"^\| \d\d — ", line)]
    assert len(rows) == len(lines) >= 9, "README: the course map's rows are missing"
    return list(zip(rows, lines))


@pytest.fixture(scope="module")
def recorded() -> dict:
    return figures.load()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_marked_number_is_its_recorded_figure(path, recorded):
    problems = [f"{where}: {p}" for where, text in _markdown(path) for p in figures.wrong_marks(text, recorded)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_number_of_a_claim_is_marked(path):
    problems = [f"{where}: {n}" for where, text in _markdown(path) for n in figures.unmarked_claims(text)]
    assert not problems, "numbers without a mark (record them, or mark a paper's as paper):\n" + "\n".join(problems)


def _settings(path) -> set[int]:
    """The integers a notebook's code writes (an exercise's are its solution's: its own are stubs)."""
    twin = ROOT / "solutions" / path.name if path.parent.name == "exercises" else path
    return figures.code_integers([c.source for c in nbformat.read(twin, as_version=4).cells if c.cell_type == "code"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_integer_of_a_sentence_is_a_setting_or_marked(path):
    settings = _settings(path)
    problems = [f"{where}: {n}" for where, text in _markdown(path) for n in figures.unmarked_integers(text, settings)]
    assert not problems, "integers that are neither a setting in the code nor marked (record them):\n" + "\n".join(
        problems
    )


def test_the_course_map_quotes_the_recorded_figures(recorded):
    problems = []
    for chapter, row in _course_map():
        problems += [f"README row {chapter}: {p}" for p in figures.wrong_marks(row, recorded)]
        claim = row.split("|")[4]  # the "paper's claim reproduced?" column
        problems += [f"README row {chapter}: {n} is not marked" for n in figures.unmarked_claims(claim)]
        settings = _settings(next((ROOT / "notebooks").glob(f"{chapter}_*.ipynb")))
        problems += [f"README row {chapter}: {n} is not marked" for n in figures.unmarked_integers(claim, settings)]
    assert not problems, "\n".join(problems)


def test_the_figures_file_is_sorted_and_every_figure_names_its_notebook(recorded):
    assert list(recorded) == sorted(recorded)
    for name, entry in recorded.items():
        assert figures.NAME.match(name), name
        assert (ROOT / entry["notebook"]).is_file(), f"{name}: {entry['notebook']} does not exist"
        assert entry["notebook"].split("/")[1][:2] == name[2:4], f"{name} is recorded by {entry['notebook']}"


# ---- the mechanism itself ------------------------------------------------------------------------------


def test_record_writes_only_when_the_course_runner_runs_a_lecture_or_solution(tmp_path, monkeypatch):
    monkeypatch.setattr(figures, "FIGURES", tmp_path / "figures.json")
    monkeypatch.setattr(figures, "_cleared", set())
    monkeypatch.delenv(figures.ENV, raising=False)
    assert figures.record("ch02.ratio", 3.27141) == 3.27141  # a learner's JupyterLab, nbval: returns only
    assert not figures.FIGURES.exists()
    monkeypatch.setenv(figures.ENV, "exercises/02_window_attention.ipynb")  # exercises never record
    figures.record("ch02.ratio", 3.27141)
    assert not figures.FIGURES.exists()
    monkeypatch.setenv(figures.ENV, "notebooks/02_window_attention.ipynb")
    figures.record("ch02.ratio", 3.27141)
    figures.record("ch02.other", 1)
    assert json.loads(figures.FIGURES.read_text()) == {
        "ch02.other": {"value": 1.0, "notebook": "notebooks/02_window_attention.ipynb"},
        "ch02.ratio": {"value": 3.27141, "notebook": "notebooks/02_window_attention.ipynb"},
    }
    monkeypatch.setattr(figures, "_cleared", set())  # the next run of the notebook records only one figure
    figures.record("ch02.ratio", 2.0)
    assert figures.load() == {"ch02.ratio": {"value": 2.0, "notebook": "notebooks/02_window_attention.ipynb"}}
    monkeypatch.setenv(figures.ENV, "solutions/02_window_attention.ipynb")
    with pytest.raises(ValueError, match="already recorded by notebooks/02"):
        figures.record("ch02.ratio", 2.0)


@pytest.mark.parametrize("name", ["ratio", "ch2.ratio", "ch02.Ratio", "ch02", "ch02.a-b"])
def test_record_rejects_a_name_that_does_not_say_its_chapter(name):
    with pytest.raises(ValueError, match="figure name"):
        figures.record(name, 1.0)


def test_a_wrong_or_unknown_mark_is_caught_at_the_printed_precision():
    recorded = {"ch02.a": {"value": 3.2714}, "ch06.b": {"value": 1432.4}}
    assert figures.wrong_marks('<span title="ch02.a">3.27×</span>, <span title="ch02.a">3.3</span>', recorded) == []
    assert figures.wrong_marks('<span title="ch06.b">1,432 bytes/s</span>', recorded) == []
    assert len(figures.wrong_marks('<span title="ch02.a">3.28×</span>', recorded)) == 1  # one digit off
    two = '<span title="ch02.a">3.270</span> and <span title="ch02.z">5</span>'  # wrong at 3 decimals; unknown
    assert len(figures.wrong_marks(two, recorded)) == 2
    assert figures.wrong_marks('<span title="paper: StreamingLLM Fig. 1">950×</span>', recorded) == []


def test_claim_numbers_are_decimals_percentages_and_ratios_but_not_settings_or_ids():
    text = (
        "3.27× worse, 15 % above, 2.4 against 1,432.5; chapter 02, W = 32, 128 tokens, 16× T, "
        'arXiv 2308.16137, torch 2.14.1, `0.5`, $0.5$, the 0.8M-parameter model, <span title="ch02.a">1.5</span>'
    )
    assert figures.unmarked_claims(text) == ["3.27×", "15 %", "2.4", "1,432.5"]


def test_an_integer_is_a_claim_unless_it_is_a_setting_a_place_a_year_or_small():
    text = (
        "38 steps instead of 64, +2 from N = 32, 10 of them; chapter 05, §3, Table 2, layer 7, November 2023, "
        'x86-64, SmolLM2-135M, 2^15, one or 2 tokens, `17`, $19$, <span title="ch05.steps">38</span>, 1,024 keys'
    )
    assert figures.unmarked_integers(text, settings={32, 64}) == ["38", "+2", "10", "1,024"]
    assert figures.unmarked_integers("## 5. The wall clock\n1. first item\n**Run time:** about 70 s", set()) == []
    assert figures.unmarked_integers("chapters 02 and 03, §1–7, exercises 3, 4 or 5; 38 and 39 steps", set()) == [
        "38",
        "39",
    ]
    assert figures.code_integers(["W = 32\nn = 1_000\nx = model(ids)[:, -1]\ny = 0.5"]) == {32, 1000, 1}
