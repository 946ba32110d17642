"""The course as an nbgrader course directory, generated from `solutions/` (the single source).

    python -m minillm.course nbgrader classroom   # classroom/nbgrader_config.py, classroom/source/NN_name/NN_name.ipynb

Every solutions notebook becomes an nbgrader source notebook, with no hand edits:

- an exercise cell (a function whose body sits between `### BEGIN SOLUTION` / `### END SOLUTION`,
  then its check call, `ch02.check_keep(keep)`) is split in two: the function becomes an autograded
  answer (a solution cell, grade id `answer_keep`), the check a locked autograded test
  (`test_keep`, POINTS_PER_CHECK points) that calls the checker in its strict mode,
  `ch02.check_keep(keep).require()`: it prints the same verdict as in the exercise notebook, then
  raises AssertionError (the problem and the first hint) unless the check passed. Code after the
  check line (a demonstration that uses the answer) follows as an ordinary cell.
- a markdown prediction ("*Your prediction:*" and a solution region) is left out of grading: its
  answer is replaced by the stub, as in `exercises/` (nbgrader allows a markdown solution cell
  only as a manually graded one, and those flag every submission for manual grading). The learner
  writes the prediction there; the instructor's answer is in `solutions/`. A prediction is a
  commitment made before running a cell, not something a grader can score afterwards.
- `# PREDICT` code cells stay ordinary cells (nbgrader clears every output on release), and
  `<!-- SOLUTION ONLY -->` markdown is left out, as in `exercises/`.

The course's own `exercises/` are untouched: there the check cells keep printing without raising.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

from .markers import BEGIN, END, is_solution_only, strip_solutions

ROOT = Path(__file__).resolve().parents[1]

POINTS_PER_CHECK = 1
CHECK_LINE = re.compile(r"^(ch\d\d\.check_(\w+)\(.*\))[ \t]*$", re.M)
CODE_STUB = "# YOUR CODE HERE\nraise NotImplementedError"
TEXT_STUB = "*Your answer here.*"

CONFIG = f'''"""nbgrader's configuration for the course, written by `python -m minillm.course nbgrader`."""

c = get_config()  # noqa: F821 - nbgrader provides get_config

c.CourseDirectory.course_id = "long-context-from-scratch"
# The stubs the course's own exercises/ use (nbgrader's default says "YOUR ANSWER HERE").
c.ClearSolutions.code_stub = {{"python": {CODE_STUB!r}}}
c.ClearSolutions.text_stub = {TEXT_STUB!r}
# The slowest chapter runs in well under a minute on 2 cores; a cell that takes 5 minutes is stuck.
c.Execute.timeout = 300
'''


def _nbgrader(grade_id: str, *, solution: bool = False, grade: bool = False, points: float = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": grade, "schema_version": 3, "solution": solution}
    if grade:
        meta["points"] = points
    return meta


def _code_cell(source: str, cell_id: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    cell.id = cell_id
    return cell


def split_exercise(cell: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """An exercise code cell -> [answer cell, locked test cell, (the code after the check, if any)]."""
    checks = list(CHECK_LINE.finditer(cell.source))
    end = cell.source.rfind(END)
    if len(checks) != 1 or checks[0].start() < end:
        raise ValueError(
            f"cell {cell.get('id')}: an exercise cell needs exactly one top-level check call "
            f"(`chNN.check_x(...)` on its own line) after its solution region; got {len(checks)}"
        )
    check = checks[0]
    name = check.group(2)
    answer = copy.deepcopy(cell)
    answer.source = cell.source[: check.start()].rstrip() + "\n"
    answer.outputs, answer.execution_count = [], None
    answer.metadata["nbgrader"] = _nbgrader(f"answer_{name}", solution=True)
    worth = f"{POINTS_PER_CHECK} point{'s' if POINTS_PER_CHECK != 1 else ''}"
    test = _code_cell(
        f"# graded, {worth}: raises AssertionError unless the check passes\n{check.group(1)}.require()",
        f"{cell.id}-test",
    )
    test.metadata["nbgrader"] = _nbgrader(f"test_{name}", grade=True, points=POINTS_PER_CHECK)
    cells = [answer, test]
    rest = cell.source[check.end() :].strip()
    if rest:
        cells.append(_code_cell(rest, f"{cell.id}-after"))
    return cells


def nbgrader_source(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The nbgrader source notebook of a solutions notebook (outputs cleared)."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        if is_solution_only(cell):
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            cell.metadata.pop("execution", None)
        if BEGIN not in cell.source:
            cells.append(cell)
        elif cell.cell_type == "markdown":
            cell.source = strip_solutions(cell.source, markdown=True)
            cells.append(cell)
        else:
            cells.extend(split_exercise(cell))
    nb.cells = cells
    return nb


def points(nb: nbformat.NotebookNode) -> float:
    """The total points of an nbgrader notebook."""
    return sum(c.metadata.get("nbgrader", {}).get("points", 0) for c in nb.cells)


def make_course(out: Path, solutions: Path = ROOT / "solutions") -> dict[str, float]:
    """Write the nbgrader course directory `out`; returns {assignment: points}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "nbgrader_config.py").write_text(CONFIG)
    written = {}
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        nb = nbgrader_source(nbformat.read(path, as_version=4))
        folder = out / "source" / path.stem
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / path.name)
        written[path.stem] = points(nb)
    return written
