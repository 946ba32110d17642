"""The course's own rules: exercises generated from solutions, notebooks committed executed."""

import json
import re

import nbformat
import pytest

from minillm.course import (
    BEGIN,
    END,
    HEADER_RUN_TIME,
    NBVAL_IGNORE_OUTPUT,
    PREDICT,
    README,
    ROOT,
    SOLUTION_ONLY,
    all_notebooks,
    exercise_from_solution,
    hide_predictions,
    is_prediction,
    is_solution_only,
    load_run_times,
    strip_solutions,
)

SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def test_strip_solutions_keeps_indentation_and_says_how_long_the_solution_is():
    source = f"def f(x):\n    {BEGIN}\n    y = x + 1\n    # a comment\n    return y\n    {END}\n\nprint(f)\n"
    stub = strip_solutions(source)
    assert (
        stub
        == "def f(x):\n    # YOUR CODE HERE (the solution takes 2 lines)\n    raise NotImplementedError\n\nprint(f)\n"
    )
    assert strip_solutions(f"Answer:\n{BEGIN}\nforty-two\n{END}\n", markdown=True) == "Answer:\n*Your answer here.*\n"
    with pytest.raises(ValueError, match="unbalanced"):
        strip_solutions(f"{BEGIN}\nx = 1\n")


def test_marked_cells_lose_their_answers_and_unmarked_cells_keep_everything():
    v4 = nbformat.v4
    printed = [v4.new_output("stream", name="stdout", text="42\n")]
    nb = v4.new_notebook(
        cells=[
            v4.new_markdown_cell("Predict the number."),
            v4.new_code_cell(f"{PREDICT}: then run\nprint(42)", outputs=printed, execution_count=1),
            v4.new_markdown_cell(f"{SOLUTION_ONLY}\nIt printed 42, as predicted."),
            v4.new_code_cell("print(1)", outputs=printed, execution_count=2),
        ]
    )
    ex = exercise_from_solution(nb)
    assert [c.source for c in ex.cells] == ["Predict the number.", f"{PREDICT}: then run\nprint(42)", "print(1)"]
    assert ex.cells[1].metadata["tags"] == [NBVAL_IGNORE_OUTPUT] and "tags" not in ex.cells[2].metadata
    ex.cells[1].outputs, ex.cells[2].outputs = printed, printed  # as if executed
    hide_predictions(ex)
    assert ex.cells[1].outputs == [] and ex.cells[2].outputs == printed
    assert nb.cells[1].outputs == printed and len(nb.cells) == 4  # the solution is untouched


def _exercise_cells(solution: nbformat.NotebookNode) -> list:
    """The solution's cells that have a twin in the exercise, in order."""
    return [c for c in solution.cells if not is_solution_only(c)]


def test_every_chapter_has_a_lecture_and_matching_exercise_and_solution_notebooks():
    names = lambda d: {p.name for p in (ROOT / d).glob("*.ipynb")}  # noqa: E731
    assert names("solutions") == names("exercises")
    chapters = {n[:2] for n in names("notebooks")}
    assert {n[:2] for n in names("solutions")} <= chapters


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercises_are_generated_from_the_current_solutions(solution):
    """Fails when someone edits a solution without `python -m minillm.course exercises`."""
    expected = exercise_from_solution(nbformat.read(solution, as_version=4))
    actual = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    assert [c.source for c in actual.cells] == [c.source for c in expected.cells], (
        f"exercises/{solution.name} is stale: run `python -m minillm.course exercises`"
    )


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_no_stub_holds_a_solution_and_each_chapter_has_at_least_four_exercises(solution):
    sol = nbformat.read(solution, as_version=4)
    ex = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    regions = 0
    assert len(_exercise_cells(sol)) == len(ex.cells)
    for s_cell, e_cell in zip(_exercise_cells(sol), ex.cells):
        assert BEGIN not in e_cell.source and END not in e_cell.source
        for body in re.findall(rf"{re.escape(BEGIN)}[^\n]*\n(.*?){re.escape(END)}", s_cell.source, re.S):
            regions += s_cell.cell_type == "code"
            for line in body.splitlines():
                if len(line.strip()) > 12 and not line.strip().startswith("#"):
                    assert line.strip() not in e_cell.source, f"solution line left in the exercise: {line.strip()}"
    assert regions >= 4, f"{solution.name} has {regions} coded exercises; each chapter needs at least 4"


def _printed(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", "")) for o in cell.get("outputs", []))


@pytest.mark.parametrize("solution", SOLUTIONS, ids=lambda p: p.name)
def test_exercises_ship_no_prediction_answer(solution):
    """A predicted (or produced) output, or markdown that comments on it, never reaches exercises/."""
    sol = nbformat.read(solution, as_version=4)
    ex = nbformat.read(ROOT / "exercises" / solution.name, as_version=4)
    for s_cell, e_cell in zip(_exercise_cells(sol), ex.cells):
        if is_prediction(s_cell):
            assert e_cell.outputs == [], f"exercises/{solution.name} shows the answer of: {e_cell.source[:60]!r}"
            assert NBVAL_IGNORE_OUTPUT in e_cell.metadata.get("tags", [])
    shipped = "\n".join(c.source + _printed(c) for c in ex.cells)
    for s_cell in sol.cells:
        if is_solution_only(s_cell):
            body = s_cell.source.replace(SOLUTION_ONLY, "").strip()
            assert body and body not in shipped, f"exercises/{solution.name} gives away: {body[:60]!r}"
        if is_prediction(s_cell):
            for line in _printed(s_cell).splitlines():
                assert len(line.strip()) < 8 or line not in shipped, f"a prediction's output shipped: {line!r}"


@pytest.mark.parametrize("solution", SOLUTIONS[:5], ids=lambda p: p.name)
def test_every_cell_after_a_request_to_predict_is_marked(solution):
    """A markdown cell that asks for a prediction is followed by a marked cell (a check cell, and the
    cell where the learner records the prediction before the run, aside)."""
    cells = nbformat.read(solution, as_version=4).cells
    records = re.compile(r"^(# your prediction.*\n)?predicted_\w+ = None  #")
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and "predict" in cell.source.lower() and not is_solution_only(cell):
            code = next((c for c in cells[i + 1 :] if c.cell_type == "code" and not records.match(c.source)), None)
            if code is not None and ".check_" not in code.source:
                assert is_prediction(code), f"{solution.name}: mark this cell {PREDICT!r}: {code.source[:60]!r}"


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_are_committed_executed_with_outputs(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert code, "a notebook without code"
    assert all(c["execution_count"] is not None for c in code), "run `python -m minillm.course run` and commit"
    counts = [c["execution_count"] for c in code]
    assert counts == sorted(counts), "cells were executed out of order"
    assert not any(o.get("output_type") == "error" for c in code for o in c["outputs"]), "a cell raised"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_lecture_cells_are_short(path):
    nb = nbformat.read(path, as_version=4)
    long_cells = [
        c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and len(c.source.splitlines()) > 15
    ]
    assert not long_cells, f"code cells over 15 lines: {long_cells}"


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebooks_open_with_their_chapter_title(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# Chapter {path.name[:2]} — ")


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_starts_with_the_course_setup(path):
    """Seeds, threads, warnings and plot style come from one place, before anything else runs."""
    nb = nbformat.read(path, as_version=4)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert first_code.source.startswith("from minillm.notebook import setup\n\nsetup(")
    later = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c is not first_code)
    assert "set_num_threads" not in later, "the thread count belongs to setup() (MINILLM_THREADS overrides it)"


RUN_TIMES = load_run_times()["notebooks"]


def test_every_notebook_has_a_run_time_measured_on_two_cores():
    assert set(RUN_TIMES) == {p.relative_to(ROOT).as_posix() for p in all_notebooks()}
    assert {entry["cpu_cores"] for entry in RUN_TIMES.values()} == {2}


def _within(quoted_seconds: float, measured: float, factor: float = 1.5) -> bool:
    return measured / factor - 1 <= quoted_seconds <= measured * factor + 1  # +-1: whole seconds


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_lecture_header_and_readme_quote_the_recorded_run_time(path):
    key = path.relative_to(ROOT).as_posix()
    header = nbformat.read(path, as_version=4).cells[0].source
    match = HEADER_RUN_TIME.search(header)
    assert match, f"{key}'s header has no '**Run time:** about N s'"
    assert _within(int(match[2]), RUN_TIMES[key]["seconds"]), f"{key}: header {match[2]} s vs {RUN_TIMES[key]}"
    row = next(line for line in README.read_text().splitlines() if f"`{key}`" in line)
    lecture, exercise = re.fullmatch(r"(\d+) s / (\d+) s", row.rsplit("|", 2)[1].strip()).groups()
    assert _within(int(lecture), RUN_TIMES[key]["seconds"])
    assert _within(int(exercise), RUN_TIMES["exercises/" + path.name]["seconds"])


def test_quote_run_times_rewrites_header_and_readme(tmp_path, monkeypatch):
    """The quoting itself: a changed measurement reaches both places, and nothing else changes."""
    import minillm.course as course

    (tmp_path / "notebooks").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T\n**Run time:** about 99 s on a laptop.")])
    nbformat.write(nb, tmp_path / "notebooks" / "01_x.ipynb")
    readme = tmp_path / "README.md"
    readme.write_text("| 01 — x | `notebooks/01_x.ipynb` | `exercises/01_x.ipynb` | 99 s / 99 s |\nkeep 99 s\n")
    monkeypatch.setattr(course, "ROOT", tmp_path)
    monkeypatch.setattr(course, "README", readme)
    times = {"notebooks": {"notebooks/01_x.ipynb": {"seconds": 6.6}, "exercises/01_x.ipynb": {"seconds": 2.2}}}
    course.quote_run_times(times)
    assert (
        "**Run time:** about 7 s on a laptop."
        in nbformat.read(tmp_path / "notebooks" / "01_x.ipynb", 4).cells[0].source
    )
    assert readme.read_text() == "| 01 — x | `notebooks/01_x.ipynb` | `exercises/01_x.ipynb` | 7 s / 2 s |\nkeep 99 s\n"
