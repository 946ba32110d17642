"""The solution markers of `solutions/`, and what they turn into in an exercise notebook.

Solution code sits between nbgrader's markers `### BEGIN SOLUTION` / `### END SOLUTION`; in the
exercise notebook it becomes a stub that raises NotImplementedError (with the solution's size as a
hint), and markdown answers become a prompt. Two cell markers opt a cell in (unmarked cells are
unchanged): a code cell whose first line starts with `# PREDICT` ships with its outputs cleared
and tagged `nbval-ignore-output`; a markdown cell whose first line is `<!-- SOLUTION ONLY -->` is
left out of the exercise. The command line that applies them is `minillm.course`; the nbgrader
course directory is `minillm.nbgrader_course`.
"""

from __future__ import annotations

import copy
import re

import nbformat

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PREDICT, SOLUTION_ONLY = "# PREDICT", "<!-- SOLUTION ONLY -->"
NBVAL_IGNORE_OUTPUT = "nbval-ignore-output"  # nbval's cell tag: run the cell, do not compare its output
_SOLUTION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n(.*?)^[ \t]*{re.escape(END)}[^\n]*(\n|$)", re.S | re.M)


def _stub(match: re.Match, markdown: bool) -> str:
    indent, body = match.group(1), match.group(2)
    if markdown:
        return f"{indent}*Your answer here.*\n"
    n_lines = sum(1 for line in body.splitlines() if line.strip() and not line.strip().startswith("#"))
    plural = "s" if n_lines != 1 else ""
    return f"{indent}# YOUR CODE HERE (the solution takes {n_lines} line{plural})\n{indent}raise NotImplementedError\n"


def strip_solutions(source: str, markdown: bool = False) -> str:
    """Replace every BEGIN/END SOLUTION region of a cell's source with a stub."""
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced solution markers in cell:\n{source[:200]}")
    return _SOLUTION.sub(lambda m: _stub(m, markdown), source)


def is_prediction(cell: nbformat.NotebookNode) -> bool:
    """A code cell whose output the learner predicts or produces (its exercise twin ships without it)."""
    return cell.cell_type == "code" and cell.source.lstrip().startswith(PREDICT)


def is_solution_only(cell: nbformat.NotebookNode) -> bool:
    """A markdown cell that gives an answer away (left out of the exercise)."""
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith(SOLUTION_ONLY)


def exercise_from_solution(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook of a solution notebook, outputs cleared (not yet executed)."""
    nb = copy.deepcopy(nb)
    nb.cells = [cell for cell in nb.cells if not is_solution_only(cell)]
    for cell in nb.cells:
        cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if is_prediction(cell):
            tags = cell.metadata.setdefault("tags", [])
            if NBVAL_IGNORE_OUTPUT not in tags:
                tags.append(NBVAL_IGNORE_OUTPUT)
    return nb


def hide_predictions(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Clear the outputs of an executed exercise's prediction cells (they keep their execution count)."""
    for cell in nb.cells:
        if is_prediction(cell):
            cell.outputs = []
    return nb
