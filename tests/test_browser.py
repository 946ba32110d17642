"""The attention explorer in a real browser: JupyterLab + headless Chromium, driven by Playwright.

The unit tests call the explorer's logic directly; this test checks what only a browser shows: the
widgets render, each control redraws the picture, and the page logs no errors. It starts its own
JupyterLab on a free port in a temporary directory and always stops it by its PID. It skips where
Playwright or a Chromium binary is missing (Playwright's own browser download is not used).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser_support import KERNEL_IDLE, LAB_ARGS, chromium_page, free_port, why_no_browser, write_lab_settings

ROOT = Path(__file__).resolve().parents[1]
if (reason := why_no_browser()) is not None:
    pytest.skip(reason, allow_module_level=True)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab serving a copy of chapter 00; yields the notebook's URL (with its token)."""
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", tmp_path / "00_tour.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    settings = tmp_path / "user-settings"
    write_lab_settings(settings)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),  # the kernel imports this checkout's minillm
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "JUPYTER_PATH": str(tmp_path / "share"),  # searched first: the kernel below, not a user's
    }
    # The notebook's kernel runs this test's Python, whatever kernels the machine's user has.
    spec = tmp_path / "share" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}"]
    cmd += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", *LAB_ARGS]
    cmd += [f"--LabApp.user_settings_dir={settings}"]
    log = open(tmp_path / "lab.log", "w")
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                local = http.client.HTTPConnection("127.0.0.1", port, timeout=2)  # the test's own server
                local.request("GET", f"/api/status?token={token}")
                if local.getresponse().status != 200:
                    raise OSError("JupyterLab is not ready yet")
                break
            except (OSError, http.client.HTTPException):
                if server.poll() is not None or time.monotonic() > deadline:
                    log_tail = (tmp_path / "lab.log").read_text()[-2000:]
                    raise RuntimeError("JupyterLab did not start: " + log_tail) from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/00_tour.ipynb?token={token}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # its own session: the kernels it started go too
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _wait_for_new_src(img, old: str, what: str, timeout_s: float = 60) -> str:
    """The image's src once it differs from `old` (the explorer redraws asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        src = img.get_attribute("src", timeout=5000) if img.count() else None
        if src and src != old:
            return src
        time.sleep(0.25)
    raise AssertionError(f"the explorer's picture did not change after {what}")


def test_explorer_redraws_in_a_real_browser_without_console_errors(lab: str, tmp_path: Path) -> None:
    with chromium_page(failures=tmp_path) as page:
        page.goto(lab)
        page.wait_for_function(KERNEL_IDLE, timeout=90_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

        explorer = page.locator(".widget-vbox").filter(has=page.locator(".widget-textarea")).last
        img = explorer.locator(".widget-output img")
        first = _wait_for_new_src(img, "", "running the notebook", timeout_s=90)

        explorer.locator(".widget-slider .noUi-handle").first.focus()  # the layer slider
        page.keyboard.press("ArrowRight")
        after_layer = _wait_for_new_src(img, first, "moving the layer slider")

        explorer.locator(".widget-dropdown select").select_option(index=1)
        after_mask = _wait_for_new_src(img, after_layer, "changing the mask")
        if shots := os.environ.get("MINILLM_BROWSER_SHOTS"):  # a folder: keep a picture for review
            explorer.screenshot(path=Path(shots) / "explorer_browser_masked.png")

        explorer.locator(".widget-textarea textarea").press_sequentially("\nx = 1", delay=20)
        _wait_for_new_src(img, after_mask, "typing into the text")
        assert "bytes (limit" in explorer.inner_text()  # the stated length limit is on screen
