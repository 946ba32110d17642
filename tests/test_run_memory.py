"""`python -m minillm.course run` records each notebook's peak resident memory beside its run time
(the kernel's VmHWM), so an instructor can size a hub's per-user memory from run_times.json."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import nbformat
import pytest

import minillm.course as course

PEAKS = {k: v["peak_rss_mb"] for k, v in course.load_run_times()["notebooks"].items() if "peak_rss_mb" in v}


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory comes from Linux's /proc")
def test_a_run_records_the_kernels_peak_not_its_final_memory(tmp_path, monkeypatch):
    (tmp_path / "notebooks").mkdir()
    path = tmp_path / "notebooks" / "01_x.ipynb"
    cells = [nbformat.v4.new_code_cell("block = b'x' * (400 << 20)\ndel block"), nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    (tmp_path / "README.md").write_text("no table\n")
    monkeypatch.setattr(course, "ROOT", tmp_path)
    monkeypatch.setattr(course, "README", tmp_path / "README.md")
    monkeypatch.setattr(course, "RUN_TIMES", tmp_path / "notebooks" / "run_times.json")
    monkeypatch.delenv("MINILLM_RECORD_FIGURES", raising=False)
    course.execute(path)
    # Only the kernel is told to record figures: nbval's kernels, started later by this process, must not be.
    assert "MINILLM_RECORD_FIGURES" not in os.environ
    entry = course.load_run_times()["notebooks"]["notebooks/01_x.ipynb"]
    assert entry["seconds"] > 0
    assert 400 <= entry["peak_rss_mb"] < 4000  # the 400 MB block was freed before the last cell ran


def test_a_missing_process_has_no_peak():
    assert course.peak_rss_mb(2**22 + 12345) is None  # above Linux's pid_max default: no such process


@pytest.mark.parametrize("key", sorted(PEAKS))
def test_every_recorded_peak_is_a_plausible_number_of_megabytes(key):
    assert isinstance(PEAKS[key], int) and 100 < PEAKS[key] < 16_000, PEAKS[key]


def test_the_readme_quotes_the_largest_recorded_peaks():
    """The hub guide's memory advice rests on run_times.json: its largest lecture peak, and the
    largest peak of any practice notebook (exercises or solutions)."""
    readme = (course.ROOT / "README.md").read_text()
    lecture = max((v, k) for k, v in PEAKS.items() if k.startswith("notebooks/"))
    practice = max(v for k, v in PEAKS.items() if not k.startswith("notebooks/"))
    chapter = Path(lecture[1]).name[:2]
    assert f"chapter {chapter}'s lecture at {lecture[0]:,} MB" in readme
    assert f"no practice notebook passes {practice:,} MB" in readme


def test_the_readme_quotes_the_hub_memory_benchmark():
    """The hub guide's table and sentences on kernels sharing SmolLM2 are benchmarks/hub_memory.py's
    committed results (MB; a sentence's GB are thousands of MB, as the guide rounds them)."""
    readme = (course.ROOT / "README.md").read_text()
    results = course.ROOT / "benchmarks" / "results"
    before, after = (json.loads((results / f"hub_memory_{label}.json").read_text()) for label in ("before", "after"))
    runs = {label: {run["kernels"]: run for run in data["runs"]} for label, data in (("b", before), ("a", after))}
    for n in (1, 4, 8):
        b, a = runs["b"][n], runs["a"][n]
        row = re.search(rf"^\| {n} \| (.*)\|$", readme, re.M)
        assert row, f"README: the hub memory table has no row for {n} kernels"
        cells = [re.match(r"\s*([\d,]+)", c).group(1).replace(",", "") for c in row.group(1).split("|")[:4]]
        assert [int(c) for c in cells] == [b["mean_uss_mb"], b["total_pss_mb"], a["mean_uss_mb"], a["total_pss_mb"]]
    eight_after, eight_before = runs["a"][8]["total_pss_mb"], runs["b"][8]["total_pss_mb"]
    assert f"take {eight_after / 1000:.1f} GB in all instead of {eight_before / 1000:.1f} GB" in readme
    assert f"each one adds about {runs['a'][8]['mean_uss_mb'] / 1000:.2f} GB" in readme
