"""The course's import names clash with no other installed distribution, from any working directory.

transformers 5.25 made Hugging Face's `kernels` package a dependency; it installs the import name
`kernels`, which the course's Triton package used to have. From the repo root the course's folder won
(transformers' Llama import then failed), from `notebooks/` Hugging Face's did (chapter 08 failed).
The course's kernels are now `minillm_kernels`, one level down in the folder `kernels/`.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "long-context-from-scratch"
# Where a learner, an instructor or CI starts Python or a notebook kernel: its first sys.path entry.
WORKING_DIRS = ["", "notebooks", "exercises", "solutions", "benchmarks", "tests", "kernels"]


def course_top_level_names() -> set[str]:
    """The import names the installed course provides (its top_level.txt), checked against the tree."""
    names = set(md.distribution(DIST).read_text("top_level.txt").split())
    assert names == {"minillm", "minillm_kernels"}, f"{DIST} installs {sorted(names)}: reinstall the course"
    return names


def course_console_scripts() -> set[str]:
    return {ep.name for ep in md.distribution(DIST).entry_points if ep.group == "console_scripts"}


def other_distributions_by_import_name() -> dict[str, list[str]]:
    """Every top-level import name of every installed distribution but the course's."""
    found = md.packages_distributions()
    return {name: [d for d in dists if d != DIST] for name, dists in found.items() if set(dists) - {DIST}}


def test_no_installed_distribution_shares_an_import_name_with_the_course():
    others = other_distributions_by_import_name()
    clashes = {name: others[name] for name in course_top_level_names() if name in others}
    assert not clashes, f"import names installed by the course and by other distributions too: {clashes}"


def test_no_installed_distribution_shares_a_console_script_with_the_course():
    ours = course_console_scripts()
    assert ours == {"check_env"}
    theirs = {
        ep.name: dist.metadata["Name"]
        for dist in md.distributions()
        if dist.metadata["Name"] != DIST
        for ep in dist.entry_points
        if ep.group == "console_scripts"
    }
    assert not {name: theirs[name] for name in ours if name in theirs}


@pytest.mark.parametrize("where", WORKING_DIRS)
def test_no_folder_or_module_in_a_working_directory_shadows_an_installed_package(where):
    """Python puts the working directory first on sys.path: a regular package (a folder with an
    `__init__.py`) or a module there named like an installed distribution's package hides that package."""
    folder = ROOT / where
    local = {p.name for p in folder.iterdir() if (p / "__init__.py").is_file()}
    local |= {p.stem for p in folder.glob("*.py")}
    installed = set(other_distributions_by_import_name())
    assert not local & installed, f"{folder} shadows the installed packages {sorted(local & installed)}"


SIDE_BY_SIDE = """
import importlib.util, sys
import minillm_kernels
from minillm_kernels import block_sparse_attention, reference_attention
assert callable(block_sparse_attention) and callable(reference_attention)
# transformers' Llama, the course's outside oracle for SmolLM2; transformers >= 5.25 imports `kernels` here.
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama  # noqa: F401
spec = importlib.util.find_spec("kernels")
if spec is not None and spec.origin is not None:  # Hugging Face's package, never the course's folder
    assert not spec.origin.startswith(sys.argv[1]), spec.origin
print("side by side:", minillm_kernels.__name__, LlamaForCausalLM.__name__)
"""


def test_transformers_llama_and_the_course_kernels_import_side_by_side_from_every_working_directory(tmp_path):
    pytest.importorskip("transformers")
    classroom = tmp_path / "classroom"  # an nbgrader course directory, as `minillm.course nbgrader` makes one
    classroom.mkdir()
    dirs = [ROOT / where for where in ("", "notebooks", "exercises", "solutions", "benchmarks")] + [classroom]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a learner's shell has it
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SIDE_BY_SIDE, str(ROOT / "kernels")],
            cwd=d,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for d in dirs
    ]
    for d, proc in zip(dirs, procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"from {d}:\n{err[-3000:]}"
        assert "side by side: minillm_kernels LlamaForCausalLM" in out
