"""A model cache shared by a class: world-readable by construction, loaded by users who cannot
write to it, clear errors when it is unreadable or partial, and weights mapped from the file.

Root reads every file whatever its mode, so the "student" here is another user: as root the test
runs the student's Python as `nobody` (setpriv); as any other user, it removes its own read bit.
A tiny MiniLLM saved under the name "smollm2-135m" stands in for SmolLM2 (loading is the same code).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from minillm import pretrained
from minillm.pretrained import load_pretrained, make_shared_dir, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
NAME = "smollm2-135m"
STUDENT = 65534  # nobody
LOAD = "import sys; from minillm.pretrained import load_pretrained; load_pretrained(sys.argv[1]); print('loaded')"


@pytest.fixture
def shared_cache(small_model):
    """A cache folder outside root's private /tmp/pytest-of-root (which nobody may enter), filled as
    an instructor with umask 077 would fill it."""
    parent = Path(tempfile.mkdtemp(prefix="minillm-shared-"))
    os.chmod(parent, 0o755)
    old = os.umask(0o077)
    try:
        cache = make_shared_dir(parent / "cache")
        save_checkpoint(small_model.float(), NAME, {"command": "unused for fetched names"}, cache)
    finally:
        os.umask(old)
    yield cache
    shutil.rmtree(parent)


def as_student(cache: Path) -> subprocess.CompletedProcess:
    """Load NAME from `cache` in a fresh Python run by a user who is not the cache's owner."""
    env = {"PATH": os.environ.get("PATH", ""), "MINILLM_CACHE": str(cache), "HOME": str(cache)}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    command = [sys.executable, "-c", LOAD, NAME]
    if os.geteuid() == 0:
        command = ["setpriv", f"--reuid={STUDENT}", f"--regid={STUDENT}", "--clear-groups", *command]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def student_can_run():
    """Skip where no second user can be had: root without setpriv, or a checkout nobody can read."""
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("as root, the test needs setpriv (util-linux) to run the student as 'nobody'")
        probe = subprocess.run(
            [
                "setpriv",
                f"--reuid={STUDENT}",
                f"--regid={STUDENT}",
                "--clear-groups",
                sys.executable,
                "-c",
                "import torch",
            ],
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)},
            capture_output=True,
        )
        if probe.returncode:
            pytest.skip(f"user 'nobody' cannot run {sys.executable} with torch (is the environment private?)")


def test_files_and_folder_are_world_readable_under_a_strict_umask(shared_cache):
    assert shared_cache.stat().st_mode & 0o777 == 0o755
    files = sorted(p.name for p in shared_cache.iterdir())
    assert files == [f"{NAME}.json", f"{NAME}.safetensors"]  # no temporary file left beside them
    for name in files:
        assert (shared_cache / name).stat().st_mode & 0o777 == 0o644, name


def test_a_student_without_write_access_loads_from_the_shared_cache(shared_cache, student_can_run):
    if os.geteuid() != 0:
        os.chmod(shared_cache, 0o555)  # not even the owner may write: the load must not need to
    try:
        done = as_student(shared_cache)
    finally:
        os.chmod(shared_cache, 0o755)
    assert done.returncode == 0 and "loaded" in done.stdout, done.stderr[-2000:]


# Modes that keep the student out: the owner's own bits for nobody, no read bit for a non-root owner
BLOCKING = {"file": (0o600, 0o200), "folder": (0o700, 0o300)}


@pytest.mark.parametrize("target", ["file", "folder"])
def test_an_unreadable_cache_names_the_folder_and_the_fix(shared_cache, student_can_run, target):
    blocked = shared_cache / f"{NAME}.safetensors" if target == "file" else shared_cache
    os.chmod(blocked, BLOCKING[target][0 if os.geteuid() == 0 else 1])
    try:
        done = as_student(shared_cache)
    finally:
        os.chmod(blocked, 0o755 if target == "folder" else 0o644)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("PermissionError: the model cache"), last
    assert str(shared_cache) in last and "chmod -R a+rX" in last
    assert f"python -m minillm.pretrained fetch {NAME} --dir {shared_cache}" in last


def test_a_partial_cache_names_the_missing_file_and_the_command(shared_cache):
    (shared_cache / f"{NAME}.safetensors").unlink()  # e.g. a copy that stopped half-way
    with pytest.raises(FileNotFoundError) as e:
        load_pretrained(NAME, shared_cache)
    assert str(shared_cache / f"{NAME}.safetensors") in str(e.value)
    assert f"python -m minillm.pretrained fetch {NAME} --dir {shared_cache}" in str(e.value)


def test_hashing_streams_the_file(tmp_path, monkeypatch):
    path = tmp_path / "blob"
    data = os.urandom(3 << 20) + b"tail"  # more than one 1 MiB block
    path.write_bytes(data)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read the whole file at once"))
    assert pretrained._sha256(path) == hashlib.sha256(data).hexdigest()


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process that map `path` (from /proc/self/maps)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5] == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_the_weights_are_the_files_pages_and_training_leaves_the_file_alone(shared_cache, small_model):
    weights = shared_cache / f"{NAME}.safetensors"
    digest = pretrained._sha256(weights)
    model = load_pretrained(NAME, shared_cache)
    ranges = _mapped_ranges(weights.resolve())
    for name, p in model.named_parameters():  # each parameter lives inside the file's mapping
        assert any(start <= p.data_ptr() < end for start, end in ranges), name
    assert model.head.weight is model.embed.weight  # still tied: one Parameter
    ids = torch.randint(0, 256, (1, 12))
    torch.testing.assert_close(model(ids).logits, small_model.float()(ids).logits)

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(ids).logits.square().mean().backward()
    optimizer.step()  # writes into mapped pages: copy-on-write, private to this process
    assert not torch.equal(model.embed.weight, small_model.float().embed.weight)
    assert pretrained._sha256(weights) == digest
    fresh = load_pretrained(NAME, shared_cache)
    torch.testing.assert_close(fresh(ids).logits, small_model.float()(ids).logits)


@pytest.mark.parametrize(
    "header, message",
    [
        (b"\xff" * 8, "header claims"),
        (json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode(), "does not fit"),
        (json.dumps({"w": {"dtype": "Q4", "shape": [4], "data_offsets": [0, 16]}}).encode(), "malformed"),
    ],
)
def test_a_malformed_safetensors_header_is_a_value_error(tmp_path, header, message):
    path = tmp_path / "x.safetensors"
    body = header if header.startswith(b"\xff") else len(header).to_bytes(8, "little") + header + bytes(16)
    path.write_bytes(body)
    with pytest.raises(ValueError, match=message):
        pretrained._map_safetensors(path)
