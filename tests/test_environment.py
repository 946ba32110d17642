"""pyproject.toml, environment.yml, README and .ci/run must tell the same story."""

import re

import tomllib

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


def test_readme_quickstart_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ('python -m pip install -e ".[dev]"', "jupyter lab", "python -m pytest"):
        assert command in readme
    assert 'python -m pip install -e ".[dev]"' in ci and "python -m pytest" in ci


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


def test_ci_runs_a_newest_and_a_minimum_leg_with_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "leg newest\n" in ci and "leg minimum -c .ci/minimum-constraints.txt" in ci
    assert "torch==" not in ci, "a pin in front of the README's install command hides what newcomers get"
    assert "MINILLM_THREADS=2 python -m pytest notebooks solutions exercises" in ci
