"""Course tooling: generate the exercise notebooks, re-execute notebooks in place.

    python -m minillm.course exercises            # solutions/NN_*.ipynb -> exercises/NN_*.ipynb, executed
    python -m minillm.course run                  # re-execute every notebook, write outputs back
    python -m minillm.course run notebooks/01_dense_attention.ipynb

`solutions/` is the single source. Solution code sits between nbgrader's markers
`### BEGIN SOLUTION` / `### END SOLUTION`; in the exercise notebook it becomes a stub that raises
NotImplementedError (with the solution's size as a hint), and markdown answers become a prompt.
The exercise notebooks are then executed, so their committed outputs show the checkers saying
"not implemented yet", which is what a learner sees before starting.
"""

from __future__ import annotations

import argparse
import copy
import re
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
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


def exercise_from_solution(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook of a solution notebook, outputs cleared (not yet executed)."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        cell.source = strip_solutions(cell.source, markdown=cell.cell_type == "markdown")
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return nb


def execute(path: Path, timeout: int = 600) -> float:
    """Run a notebook top to bottom in its own folder and write it back; returns seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    start = time.time()
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    seconds = time.time() - start
    nbformat.write(nb, path)
    return seconds


def make_exercises(run: bool = True) -> list[Path]:
    """Write exercises/NN_*.ipynb for every solutions/NN_*.ipynb (and execute them)."""
    written = []
    for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
        target = ROOT / "exercises" / solution.name
        nbformat.write(exercise_from_solution(nbformat.read(solution, as_version=4)), target)
        if run:
            print(f"{target.relative_to(ROOT)}: {execute(target):.1f} s")
        written.append(target)
    return written


def all_notebooks() -> list[Path]:
    return [p for d in NOTEBOOK_DIRS for p in sorted((ROOT / d).glob("*.ipynb"))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("exercises", help="generate exercises/ from solutions/")
    ex.add_argument("--no-execute", action="store_true")
    rn = sub.add_parser("run", help="re-execute notebooks in place (default: all)")
    rn.add_argument("paths", nargs="*", type=Path)
    args = parser.parse_args(argv)
    if args.command == "exercises":
        make_exercises(run=not args.no_execute)
    else:
        for path in args.paths or all_notebooks():
            print(f"{path}: {execute(path.resolve()):.1f} s", flush=True)


if __name__ == "__main__":
    main()
