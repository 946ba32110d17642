"""Course tooling: generate the exercise notebooks, re-execute notebooks in place.

    python -m minillm.course exercises            # solutions/NN_*.ipynb -> exercises/NN_*.ipynb, executed
    python -m minillm.course run                  # re-execute every notebook, write outputs back
    python -m minillm.course run notebooks/01_dense_attention.ipynb
    python -m minillm.course run --no-write       # time the notebooks, change nothing
    python -m minillm.course nbgrader classroom   # an nbgrader course directory (see minillm/nbgrader_course.py)

`solutions/` is the single source: `minillm.markers` says how its solution markers become an
exercise's stubs (and which cells an exercise ships without outputs or leaves out). The exercise
notebooks are then executed, so their committed outputs show the checkers saying "not implemented
yet", which is what a learner sees before starting.

Run times have one source of truth: every `run` records each notebook's wall-clock time in
`notebooks/run_times.json`, then rewrites the figures that quote it (the "**Run time:** about N s"
line of each lecture notebook and the README's course map), so text and measurement cannot drift.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import time
from pathlib import Path

import nbformat

from .figures import ENV as FIGURES_ENV
from .markers import (  # noqa: F401  (re-exported: the markers' names were importable from here)
    BEGIN,
    END,
    NBVAL_IGNORE_OUTPUT,
    PREDICT,
    SOLUTION_ONLY,
    exercise_from_solution,
    hide_predictions,
    is_prediction,
    is_solution_only,
    strip_solutions,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIRS = ("notebooks", "solutions", "exercises")
RUN_TIMES = ROOT / "notebooks" / "run_times.json"
README = ROOT / "README.md"
HEADER_RUN_TIME = re.compile(r"(\*\*Run time:\*\* about )(\d+)( s)")


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of process `pid` in MB; None where /proc does not say (not Linux)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def execute(path: Path, timeout: int = 600, write: bool = True) -> float:
    """Run a notebook top to bottom in its own folder, write it back and record its time (and the
    kernel's peak resident memory); returns seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    # minillm.figures.record writes only in a kernel told which notebook it runs, and only this one:
    # the variable goes to the kernel's environment, never this process's (nbval runs after us in pytest).
    kernel_env = {**os.environ, FIGURES_ENV: _key(path) if write else ""}
    peak: list[float | None] = [None]

    def after_cell(**_) -> None:  # VmHWM only grows: read after the last cell, it is the run's peak
        peak[0] = peak_rss_mb(client.km.provisioner.pid)

    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,  # no timestamps in the committed notebooks: diffs show what changed
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=after_cell,
    )
    start = time.time()
    client.execute(env=kernel_env)
    seconds = time.time() - start
    if path.parent.name == "exercises":
        hide_predictions(nb)  # the learner's answers: computed, so the cells work, but not shipped
    if write:
        nbformat.write(nb, path)
        record_run_time(path, seconds, peak[0])
    return seconds


def _key(path: Path) -> str:
    return path.resolve().relative_to(ROOT).as_posix()  # "notebooks/00_tour.ipynb"


def load_run_times() -> dict:
    """{"machine": ..., "notebooks": {"notebooks/00_tour.ipynb": {"seconds": ..., ...}, ...}}"""
    return json.loads(RUN_TIMES.read_text()) if RUN_TIMES.exists() else {"notebooks": {}}


def record_run_time(path: Path, seconds: float, peak_mb: float | None = None) -> None:
    """Store one notebook's measured time (and its kernel's peak resident memory, where measured),
    then rewrite every sentence that quotes the time."""
    import torch

    from .notebook import thread_count

    times = load_run_times()
    times["notebooks"][_key(path)] = {
        "seconds": round(seconds, 1),
        **({"peak_rss_mb": round(peak_mb)} if peak_mb is not None else {}),
        "threads": thread_count(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__.split("+")[0],
        "date": time.strftime("%Y-%m-%d"),
    }
    times["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    times["notebooks"] = dict(sorted(times["notebooks"].items()))
    RUN_TIMES.write_text(json.dumps(times, indent=1) + "\n")
    quote_run_times(times)


def quoted(seconds: float) -> int:
    """How a run time is quoted: whole seconds, at least 1."""
    return max(1, round(seconds))


def quote_run_times(times: dict | None = None) -> None:
    """Write the recorded times into the lecture headers and the README's course map."""
    recorded = (times or load_run_times())["notebooks"]
    for key, entry in recorded.items():
        if key.startswith("notebooks/"):
            path = ROOT / key
            nb = nbformat.read(path, as_version=4)
            header = nb.cells[0]
            new = HEADER_RUN_TIME.sub(rf"\g<1>{quoted(entry['seconds'])}\g<3>", header.source)
            if new != header.source:
                header.source = new
                nbformat.write(nb, path)
    readme = README.read_text()
    for key, entry in recorded.items():
        if not key.startswith("notebooks/"):
            continue
        exercise = recorded.get("exercises/" + key.split("/", 1)[1])
        figure = f"{quoted(entry['seconds'])} s" + (f" / {quoted(exercise['seconds'])} s" if exercise else "")
        row = re.compile(rf"^(\| [^\n]*`{re.escape(key)}`[^\n]*\| )[^|\n]*( \|)$", re.M)
        readme = row.sub(rf"\g<1>{figure}\g<2>", readme)
    README.write_text(readme)


def make_exercises(run: bool = True) -> list[Path]:
    """Write exercises/NN_*.ipynb for every solutions/NN_*.ipynb (and execute them)."""
    written = []
    for solution in sorted((ROOT / "solutions").glob("*.ipynb")):
        target = ROOT / "exercises" / solution.name
        nbformat.write(exercise_from_solution(nbformat.read(solution, as_version=4)), target)
        if run:
            print(f"{target.relative_to(ROOT)}: {execute(target):.1f} s", flush=True)
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
    rn.add_argument("--no-write", action="store_true", help="only time the notebooks: write neither outputs nor times")
    nb = sub.add_parser("nbgrader", help="write an nbgrader course directory generated from solutions/")
    nb.add_argument("out", type=Path, help="the course directory to write (nbgrader_config.py, source/)")
    args = parser.parse_args(argv)
    if args.command == "exercises":
        make_exercises(run=not args.no_execute)
    elif args.command == "nbgrader":
        from .nbgrader_course import make_course

        for assignment, total in make_course(args.out).items():
            print(f"{args.out / 'source' / assignment}: {total:g} points", flush=True)
    else:
        for path in args.paths or all_notebooks():
            if path.suffix != ".ipynb" or not path.is_file():
                parser.error(f"paths: {path} is not a notebook file")
            seconds = execute(path.resolve(), write=not args.no_write)
            print(f"{path}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
