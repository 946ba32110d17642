"""pyproject.toml, environment.yml, README and .ci/run must tell the same story."""

import importlib.metadata as md
import re
import runpy

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from minillm.course import ROOT


def _requirement_names(requirements):
    return {re.split(r"[<>=;\[ ]", r.strip(), maxsplit=1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_mirrors_pyproject_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = _requirement_names(project["dependencies"] + project["optional-dependencies"]["dev"])
    yml = (ROOT / "environment.yml").read_text()
    pip_section = [line.strip()[2:] for line in yml.split("- pip:", 1)[1].splitlines() if line.strip().startswith("- ")]
    listed = _requirement_names(r for r in pip_section if not r.startswith(("-", ".")))
    assert listed == wanted, f"environment.yml differs: {set(listed.items()) ^ set(wanted.items())}"


def test_triton_is_linux_only_and_torch_has_a_lower_bound():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    triton = [d for d in deps if d.startswith("triton")]
    assert triton and "platform_system == 'Linux'" in triton[0]
    assert any(re.fullmatch(r"torch>=2\.\d+", d) for d in deps)


LOCKED_INSTALL = 'python -m pip install -e ".[dev]" -c tested-versions.txt'


def test_readme_quickstart_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    for command in (LOCKED_INSTALL, "jupyter lab", "python -m pytest"):
        assert command in quickstart
    # .ci/run's leg() runs the README's install command with the leg's constraints appended.
    assert 'python -m pip install -e ".[dev]" --progress-bar off "$@"' in ci and "python -m pytest" in ci
    assert "locked) leg locked -c tested-versions.txt" in ci


def _lower_bounds(requirements) -> dict[str, str]:
    """{"torch": "2.6", ...}: the `>=` bound of every requirement."""
    bounds = {}
    for requirement in requirements:
        match = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)", requirement)
        assert match, f"{requirement!r} declares no lower bound (>=)"
        bounds[match[1].lower()] = match[2]
    return bounds


def _release(version: str) -> tuple[int, ...]:
    parts = [int(p) for p in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_minimum_constraints_pin_exactly_the_declared_lower_bounds():
    """The CI leg that installs the minimums tests what pyproject.toml (and so environment.yml) declares."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _lower_bounds(project["dependencies"] + project["optional-dependencies"]["dev"])
    lines = (ROOT / ".ci" / "minimum-constraints.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if line.strip() and not line.startswith("#"))
    assert set(pins) == set(declared), f"constraints and pyproject name different packages: {set(pins) ^ set(declared)}"
    for name, bound in declared.items():
        assert _release(pins[name]) == _release(bound), f"{name}: pyproject >={bound}, constraints {pins[name]}"


def test_ci_runs_the_locked_then_the_newest_then_the_minimum_leg():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "legs=(locked newest minimum)" in ci
    assert "newest) leg newest ;;" in ci and "minimum) leg minimum -c .ci/minimum-constraints.txt ;;" in ci
    assert "torch==" not in ci, "a pin in front of the README's install command hides what newcomers get"
    assert "MINILLM_THREADS=2 python -m pytest notebooks solutions exercises" in ci


def _pins(path) -> dict[str, str]:
    """{canonical name: version} of a constraints file, markers dropped."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requirement_closure(dist_name: str, extras: set[str]) -> set[str]:
    """Canonical names of every installed distribution that `dist_name[extras]` pulls, recursively."""
    seen, todo = set(), [(dist_name, extras)]
    while todo:
        name, wanted = todo.pop()
        for text in md.distribution(name).requires or []:
            req = Requirement(text)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (wanted or {""})):
                continue
            dep = canonicalize_name(req.name)
            try:
                md.distribution(dep)
            except md.PackageNotFoundError:
                continue  # not pulled on this platform
            if dep not in seen:
                seen.add(dep)
                todo.append((dep, set(req.extras)))
    return seen


def test_the_lock_is_pins_with_a_header_that_says_how_to_refresh_it():
    text = (ROOT / "tested-versions.txt").read_text()
    assert "bash .ci/refresh-lock" in text.split("\n\n", 1)[0]
    for line in text.splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)  # a marker, where there is one, must parse
            assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", line
    assert "long-context-from-scratch" not in _pins(ROOT / "tested-versions.txt")


def test_the_lock_pins_every_package_the_install_pulls():
    """Where this environment was installed from the lock (CI's locked leg, a learner's venv), every
    package that the course with its [dev] (and, when installed, [instructor]) extras pulls is pinned."""
    pins = _pins(ROOT / "tested-versions.txt")
    extras = {"dev"} | ({"instructor"} if _installed("nbgrader") else set())
    pulled = _requirement_closure("long-context-from-scratch", extras)
    differ = {n for n in pulled & pins.keys() if md.version(n) != pins[n]}
    if differ:
        pytest.skip(f"not installed from tested-versions.txt (newest or minimum leg): {sorted(differ)[:5]}")
    assert not pulled - pins.keys(), f"pulled but not pinned: {sorted(pulled - pins.keys())}"


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


def test_the_lock_tool_marks_pins_that_need_a_newer_python_than_the_course():
    lock = runpy.run_path(str(ROOT / ".ci" / "lock.py"))
    assert lock["python_marker"](None) == "" and lock["python_marker"](">=3.8") == ""
    assert lock["python_marker"](">=3.10,<3.15") == ""
    assert lock["python_marker"](">=3.11") == '; python_full_version >= "3.11"'
    marker = Requirement("x==1" + lock["python_marker"](">=3.11.5"))
    assert not marker.marker.evaluate({"python_full_version": "3.10.13"})
    assert not marker.marker.evaluate({"python_full_version": "3.11.0"})
    assert marker.marker.evaluate({"python_full_version": "3.11.7"})
