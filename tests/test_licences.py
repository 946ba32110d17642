"""The licences an instructor needs before adopting the course, and a citation file that parses."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
CFF = yaml.safe_load((ROOT / "CITATION.cff").read_text())


def test_the_code_licence_is_the_mit_licence_pyproject_declares():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Permission is hereby granted, free of charge" in text
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"] == "MIT"


def test_the_content_licence_lets_instructors_adapt_and_lists_third_parties():
    text = (ROOT / "LICENSE-content.md").read_text()
    assert "CC BY 4.0" in text and "https://creativecommons.org/licenses/by/4.0/legalcode" in text
    for folder in ("notebooks/", "solutions/", "exercises/", "benchmarks/results/"):
        assert f"`{folder}" in text, folder
    for third_party in ("public domain", "LICENSE-PSF.txt", "SmolLM2", "Apache-2.0"):
        assert third_party in text, third_party
    assert (ROOT / "minillm" / "corpus" / "LICENSE-PSF.txt").exists()


def test_citation_cff_has_cff_1_2_0s_required_keys():
    assert CFF["cff-version"] == "1.2.0"
    assert isinstance(CFF["message"], str) and CFF["message"].strip()
    assert isinstance(CFF["title"], str) and CFF["title"].strip()
    assert CFF["authors"] and all(
        isinstance(a, dict) and ("name" in a or "family-names" in a) for a in CFF["authors"]
    ), "every author needs name (an entity) or family-names (a person)"
    assert CFF["type"] in ("software", "dataset")


def test_citation_cff_agrees_with_the_package():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert str(CFF["version"]) == project["version"]
    assert set(CFF["license"]) == {"MIT", "CC-BY-4.0"}  # SPDX ids of LICENSE and LICENSE-content.md
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(CFF["date-released"]))


def test_the_readme_points_to_every_licence_file():
    section = (ROOT / "README.md").read_text().split("## Licences", 1)[1]
    for name in ("LICENSE", "LICENSE-content.md", "CITATION.cff", "Apache-2.0"):
        assert name in section, name
