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
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("MINILLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI containers run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no calls home: the machine may be offline
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MINILLM_CHROMIUM)", allow_module_level=True
    )


# A fresh user: every cell rendered (JupyterLab 4 otherwise detaches cells outside the viewport,
# the explorer among them), and no news pop-up asking to call home.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
# True once the notebook's kernel has started and is idle.
KERNEL_IDLE = "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[str]:
    """A JupyterLab serving a copy of chapter 00; yields the notebook's URL (with its token)."""
    shutil.copy(ROOT / "notebooks" / "00_tour.ipynb", tmp_path / "00_tour.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    settings = tmp_path / "user-settings"
    for name, value in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
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
    cmd += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=None"]
    cmd += [f"--LabApp.user_settings_dir={settings}"]
    cmd += ["--LabApp.expose_app_in_browser=True"]  # window.jupyterapp: run all cells without menus
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
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(lab)
            page.wait_for_function(KERNEL_IDLE, timeout=90_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")

            explorer = page.locator(".widget-vbox").filter(has=page.locator(".widget-textarea")).last
            img = explorer.locator(".widget-output img")
            try:
                first = _wait_for_new_src(img, "", "running the notebook", timeout_s=90)
            except AssertionError:
                page.screenshot(path=tmp_path / "failure.png", full_page=True)  # what the page showed
                (tmp_path / "failure.html").write_text(page.content())
                raise

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
        finally:
            browser.close()
    assert not errors, f"the browser console logged errors: {errors}"
