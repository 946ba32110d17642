"""Every command line refuses an unknown flag and a bad value with a usage error (exit 2) naming
the flag, before any work.

The command lines are found, not listed: every file of minillm/, benchmarks/ and scripts/ with a
`__main__` block. Each runs in a subprocess under a harness that stops it (exit 0) as soon as its
arguments are parsed, so nothing heavy runs: an unknown flag must end it with exit 2 first. The
harness first gives each typed flag (an int, a float, a device, choices, a name's rule) values no
such flag takes (NaN, -1; a name with "/"); argparse must answer each with exit 2 and the flag.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = sorted(
    path.relative_to(ROOT).as_posix()
    for folder in ("minillm", "benchmarks", "scripts")
    for path in (ROOT / folder).glob("*.py")
    if 'if __name__ == "__main__":' in path.read_text()
)
HARNESS = r"""
import argparse, io, json, runpy, sys
path = sys.argv[1]
known, full = argparse.ArgumentParser.parse_known_args, argparse.ArgumentParser.parse_args
inside = []

def bad_values(action):  # values no such flag takes: numbers must be finite and not negative
    kind = getattr(action.type, "__name__", "")
    if action.choices or kind in ("int", "float", "device_arg") or any(w in kind for w in ("int", "number")):
        return ["nan", "-1"]
    if action.type not in (None, str) and kind != "Path":  # a name's rule
        return ["nan/"]
    return []

def loosen(parser):  # a flag the command requires must not hide the error under test
    for action in parser._actions:
        action.required = False

def check_bad_values(parser):
    results = []
    for action in parser._actions:
        for value in bad_values(action) if action.option_strings and action.nargs != 0 else ():
            flag, err, sys.stderr = action.option_strings[-1], sys.stderr, io.StringIO()
            try:
                known(parser, [flag, value])
                results.append([flag, value, 0, ""])
            except SystemExit as e:
                results.append([flag, value, e.code, sys.stderr.getvalue()])
            finally:
                sys.stderr = err
    print(json.dumps(results))

def parse_known_args(self, args=None, namespace=None):
    if inside:  # parse_args's own call, or a sub-command's parser
        return known(self, args, namespace)
    loosen(self)
    check_bad_values(self)
    known(self, args, namespace)
    print("PARSED, unknown arguments ignored")  # the command would run now: stop it
    sys.exit(0)

def parse_args(self, args=None, namespace=None):
    loosen(self)
    check_bad_values(self)
    inside.append(1)
    full(self, args, namespace)
    print("PARSED")  # the command would run now: stop it
    sys.exit(0)

argparse.ArgumentParser.parse_known_args = parse_known_args
argparse.ArgumentParser.parse_args = parse_args
sys.argv = [path, *sys.argv[2:]]
if path.startswith("minillm/"):
    runpy.run_module(path[:-3].replace("/", "."), run_name="__main__", alter_sys=True)
else:
    sys.path.insert(0, path.rsplit("/", 1)[0])
    runpy.run_path(path, run_name="__main__")
print("NO ARGUMENT PARSER: the command ran")
"""


def run(command: str, *args: str) -> subprocess.CompletedProcess:
    paths = [str(ROOT), str(ROOT / "kernels"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command_line = [sys.executable, "-c", HARNESS, command, *args]
    return subprocess.run(command_line, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_the_command_lines_are_found():
    found = {"minillm/check_env.py", "minillm/train.py", "benchmarks/cache_speed.py", "scripts/build_corpus.py"}
    assert found <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_flags_and_bad_values_are_usage_errors_naming_the_flag(command):
    done = run(command, "--no-such-flag")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "unrecognized arguments: --no-such-flag" in done.stderr
    for flag, value, code, stderr in json.loads(done.stdout.splitlines()[0]):
        assert code == 2, f"{command} {flag} {value}: exit {code}"
        assert f"argument {flag}" in stderr, stderr
