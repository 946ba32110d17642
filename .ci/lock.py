"""The lock of tested versions: write it from a CI leg's venv, or compare two.

    python .ci/lock.py freeze OUT        every distribution installed here, pinned, as a pip constraints file
    python .ci/lock.py diff LOCK OTHER   which pins differ (prints; never fails)

CI's newest leg freezes its venv after a green test run; `bash .ci/refresh-lock` makes that file the
README's `tested-versions.txt`. A pin whose release needs a newer Python than the course supports
(`requires-python` in pyproject.toml) gets a marker, so on an older Python pip picks that package
freely instead of failing: numpy 2.4 needs Python 3.11, the course runs on 3.10.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata as md
import platform
import re
import sys
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

COURSE = "long-context-from-scratch"
NOT_PINNED = {"pip", "wheel"}  # the installer itself; setuptools is pulled (torch needs it), so it is pinned
PYTHONS = [f"3.{minor}.{patch}" for minor in range(10, 15) for patch in (0, 99)]  # >= 3.10, the course's


def python_marker(requires_python: str | None) -> str:
    """'' when the release installs on every Python the course supports, else its requires-python as a marker."""
    if not requires_python:
        return ""
    spec = SpecifierSet(requires_python)
    if all(spec.contains(v) for v in PYTHONS):
        return ""
    return "; " + " and ".join(f'python_full_version {s.operator} "{s.version}"' for s in sorted(spec, key=str))


def freeze(out: Path) -> None:
    pins = {}
    for dist in md.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in NOT_PINNED or name == COURSE:
            continue
        pins[name] = f"{name}=={dist.version}{python_marker(dist.metadata['Requires-Python'])}"
    header = [
        '# Tested versions: the README\'s lock (`pip install -e ".[dev]" -c tested-versions.txt`).',
        "# Every package the install pulls, as CI's newest leg installed it and then passed the whole test",
        f"# suite, on {datetime.date.today().isoformat()}, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}. Packages of other platforms are not pulled there.",
        "# Refresh: `bash .ci/refresh-lock` (runs that leg, writes this file when it is green).",
    ]
    out.write_text("\n".join(header + [pins[k] for k in sorted(pins)]) + "\n")
    print(f"{out}: {len(pins)} pins")


def read_pins(path: Path) -> dict[str, str]:
    """{name: version} of a constraints file (markers dropped)."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split(";", 1)[0].strip()
        if line and not line.startswith("#"):
            match = re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", line)
            if not match:
                raise ValueError(f"{path}: {line!r} is not a pin (name==version)")
            pins[canonicalize_name(match[1])] = match[2]
    return pins


def diff(lock: Path, other: Path) -> None:
    old, new = read_pins(lock), read_pins(other)
    changed = [
        f"  {n}: {old.get(n, '-')} -> {new.get(n, '-')}"
        for n in sorted(old.keys() | new.keys())
        if old.get(n) != new.get(n)
    ]
    if changed:
        print(f"{other} differs from {lock} in {len(changed)} packages (`bash .ci/refresh-lock` to adopt):")
        print("\n".join(changed))
    else:
        print(f"{other} equals {lock}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("freeze").add_argument("out", type=Path)
    d = sub.add_parser("diff")
    d.add_argument("lock", type=Path)
    d.add_argument("other", type=Path)
    args = parser.parse_args(argv)
    if args.command == "freeze":
        freeze(args.out)
    else:
        diff(args.lock, args.other)


if __name__ == "__main__":
    sys.exit(main())
