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
