"""The nbgrader course: generated from solutions/ with no hand edits, and graded by the real nbgrader.

The metadata tests run everywhere; the end-to-end test (generate_assignment, then autograde three
submissions of two chapters) needs nbgrader, which the `[dev]` extra installs.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from minillm.checks import ch02
from minillm.course import BEGIN, END, ROOT, is_prediction, is_solution_only
from minillm.nbgrader_course import CODE_STUB, POINTS_PER_CHECK, make_course, nbgrader_source, points

SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
CHECK_CALL = re.compile(r"^ch\d\d\.check_\w+\(", re.M)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


# --- strict mode: one checker, two modes -------------------------------------------------------


def _keep_one_too_many(n_entries: int, window: int):
    return None if n_entries <= window else torch.arange(n_entries - window - 1, n_entries)


def _keep_right(n_entries: int, window: int):
    return None if n_entries <= window else torch.arange(n_entries - window, n_entries)


def test_require_raises_assertion_with_the_first_hint_on_a_wrong_answer(capsys):
    result = ch02.check_keep(_keep_one_too_many)
    assert not result and "❌" in capsys.readouterr().out  # the verdict mode printed and did not raise
    with pytest.raises(AssertionError) as raised:
        result.require()
    message = str(raised.value)
    assert message.startswith(f"{result.title}: {result.problem}") and "\n   hint: " in message
    assert message.count("hint") == 1, "only the first hint: the graded feedback gives no more away"


def test_require_passes_silently_on_a_right_answer_and_raises_on_a_stub(capsys):
    assert ch02.check_keep(_keep_right).require() is None

    def stub(n_entries, window):
        raise NotImplementedError

    with pytest.raises(AssertionError, match="not implemented yet"):
        ch02.check_keep(stub).require()


# --- the generated source notebooks ------------------------------------------------------------


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_source_notebook_has_an_answer_and_a_locked_test_per_check(path):
    solution = nbformat.read(path, as_version=4)
    nb = nbgrader_source(solution)
    n_checks = sum(len(CHECK_CALL.findall(c.source)) for c in solution.cells if c.cell_type == "code")
    tests = [c for c in nb.cells if _meta(c).get("grade")]
    answers = [c for c in nb.cells if _meta(c).get("solution") and c.cell_type == "code"]
    assert len(tests) == len(answers) == n_checks > 0
    for test in tests:
        meta = _meta(test)
        assert meta["locked"] and meta["points"] == POINTS_PER_CHECK and not meta["solution"]
        assert test.source.rstrip().endswith(".require()") and BEGIN not in test.source
    ids = [_meta(c)["grade_id"] for c in nb.cells if _meta(c)]
    assert len(ids) == len(set(ids)), "grade ids must be unique within a notebook"
    for cell in nb.cells:  # nbgrader refuses a solution region outside a solution cell
        if BEGIN in cell.source or END in cell.source:
            assert _meta(cell).get("solution"), cell.source[:80]
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert not any(is_solution_only(c) for c in nb.cells)
    assert sum(map(is_prediction, nb.cells)) == sum(map(is_prediction, solution.cells))
    predictions = [c for c in solution.cells if c.cell_type == "markdown" and BEGIN in c.source]
    stubbed = [c for c in nb.cells if c.cell_type == "markdown" and "*Your answer here.*" in c.source]
    assert len(stubbed) == len(predictions) and not any(_meta(c) for c in stubbed), "predictions are ungraded"


def test_grade_ids_are_stable_names_not_positions():
    nb = nbgrader_source(nbformat.read(ROOT / "solutions" / "02_window_attention.ipynb", as_version=4))
    ids = [_meta(c)["grade_id"] for c in nb.cells if _meta(c)]
    assert ids[:2] == ["answer_keep", "test_keep"] and ids[-2:] == ["answer_dilated_cache", "test_dilated_cache"]


def test_readme_quotes_the_points_per_chapter():
    totals = [points(nbgrader_source(nbformat.read(p, as_version=4))) for p in SOLUTIONS]
    row = re.search(r"^\| points \(1 per check\) \|(.*)\|$", (ROOT / "README.md").read_text(), re.M)
    assert row, "README: the points row of 'Teaching with nbgrader' is missing"
    assert [float(x) for x in row[1].split("|")] == [*totals, sum(totals)]


# --- the real nbgrader -------------------------------------------------------------------------

CHAPTERS = ("00_tour", "02_window_attention")
# Two plausible mistakes per chapter (the body that replaces the stub, indented as in the function).
WRONG = {
    "00_tour": {
        "answer_encode": '    return list(text.encode("utf-8"))  # forgot [BOS]\n',
        "answer_bits_per_byte": "    return nll_nats / math.log(10)  # log base 10, not 2\n",
    },
    "02_window_attention": {
        "answer_keep": "    return None if n_entries <= window else torch.arange(n_entries - window - 1, n_entries)\n",
        "answer_kv_cache_bytes": "    return config.n_layers * n_tokens * config.d_model * 4  # keys only\n",
    },
}
ENV = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
REGION = re.compile(rf"^[ \t]*{re.escape(BEGIN)}[^\n]*\n(.*?)^[ \t]*{re.escape(END)}[^\n]*\n?", re.S | re.M)
STUB = re.compile(r"^[ \t]*" + r"\n[ \t]*".join(map(re.escape, CODE_STUB.splitlines())) + r"[ \t]*$", re.M)


def _nbgrader(course: Path, *args: str) -> None:
    run = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True, env=ENV)
    assert run.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}"


def _submission(release: nbformat.NotebookNode, source: nbformat.NotebookNode, wrong: dict) -> nbformat.NotebookNode:
    """What a learner hands in: every stub filled in with the solution, or with `wrong[grade_id]`."""
    answers = {_meta(c)["grade_id"]: REGION.search(c.source).group(1) for c in source.cells if _meta(c).get("solution")}
    nb = nbformat.from_dict(release)
    for cell in nb.cells:
        grade_id = _meta(cell).get("grade_id", "")
        if cell.cell_type == "code" and _meta(cell).get("solution"):
            body = wrong.get(grade_id, answers[grade_id])
            cell.source, n = STUB.subn(body.rstrip("\n").replace("\\", "\\\\"), cell.source)
            assert n == 1, f"{grade_id}: no stub in the release\n{cell.source}"
    return nb


def test_nbgrader_generates_and_autogrades_two_chapters(tmp_path, monkeypatch):
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install -e '.[instructor]' installs it)")
    from nbgrader.api import Gradebook

    # nbgrader runs `alembic` (its database migrations) from PATH: the one beside this Python.
    monkeypatch.setenv("PATH", ENV["PATH"])
    course = tmp_path / "course"
    totals = make_course(course)
    students = ("correct", "two_wrong", "untouched")
    for chapter in CHAPTERS:
        _nbgrader(course, "generate_assignment", chapter, "--force")
        name = f"{chapter}.ipynb"
        release = nbformat.read(course / "release" / chapter / name, as_version=4)
        source = nbformat.read(course / "source" / chapter / name, as_version=4)
        assert "### BEGIN SOLUTION" not in "".join(c.source for c in release.cells)
        submissions = {
            "correct": _submission(release, source, {}),
            "two_wrong": _submission(release, source, WRONG[chapter]),
            "untouched": release,
        }
        for student, nb in submissions.items():
            folder = course / "submitted" / student / chapter
            folder.mkdir(parents=True)
            nbformat.write(nb, folder / name)
        _nbgrader(course, "autograde", chapter)  # adds the students it finds in submitted/

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        for chapter in CHAPTERS:
            total = totals[chapter]
            scores = {s: gradebook.find_submission(chapter, s) for s in students}
            assert {s: (sub.score, sub.max_score) for s, sub in scores.items()} == {
                "correct": (total, total),
                "two_wrong": (total - 2 * POINTS_PER_CHECK, total),
                "untouched": (0, total),
            }, chapter
            assert not any(sub.needs_manual_grade for sub in scores.values()), "predictions must not flag submissions"
            lost = {
                grade.name
                for grade in gradebook.find_submission_notebook(chapter, chapter, "two_wrong").grades
                if grade.score < grade.max_score
            }
            assert lost == {f"test_{a.removeprefix('answer_')}" for a in WRONG[chapter]}, chapter

    _nbgrader(course, "export")  # the guide's last step: grades.csv, one row per student and assignment
    with open(course / "grades.csv", newline="") as f:
        exported = {(row["assignment"], row["student_id"]): float(row["raw_score"]) for row in csv.DictReader(f)}
    assert exported[(CHAPTERS[0], "two_wrong")] == totals[CHAPTERS[0]] - 2 * POINTS_PER_CHECK
    assert exported[(CHAPTERS[1], "untouched")] == 0

    # Feedback: the failing test cell shows the verdict, then the AssertionError with the first hint.
    graded = nbformat.read(course / "autograded" / "two_wrong" / CHAPTERS[1] / f"{CHAPTERS[1]}.ipynb", as_version=4)
    (test,) = [c for c in graded.cells if _meta(c).get("grade_id") == "test_keep"]
    errors = [o for o in test.outputs if o.output_type == "error"]
    assert errors and errors[0].ename == "AssertionError" and "hint: " in errors[0].evalue
    assert any("❌" in o.get("text", "") for o in test.outputs if o.output_type == "stream")
    untouched = nbformat.read(course / "autograded" / "untouched" / CHAPTERS[1] / f"{CHAPTERS[1]}.ipynb", as_version=4)
    for cell in untouched.cells:
        if _meta(cell).get("grade"):
            assert "not implemented yet" in "".join(o.get("evalue", "") for o in cell.outputs), cell.source
