"""What the real-browser tests share: Debian's Chromium driven by Playwright, and JupyterLab's
settings for a page a test can read.

Playwright's own browser download is not used: the tests drive the system Chromium (CI installs it
with apt-get), and skip where it or Playwright is missing (`why_no_browser`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
# A fresh user: every cell rendered (JupyterLab 4 otherwise detaches cells outside the viewport),
# and no news pop-up asking to call home.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
# JupyterLab's options for a test: window.jupyterapp, to run cells without menus; no news fetched.
LAB_ARGS = ["--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None"]
# True once the notebook's kernel has started and is idle (needs LAB_ARGS).
KERNEL_IDLE = "window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'"


def why_no_browser() -> str | None:
    """Why this machine cannot run a real-browser test, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set MINILLM_CHROMIUM)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_settings(folder: Path) -> None:
    """SETTINGS as JupyterLab's user settings, under `folder` (its user_settings_dir)."""
    for name, value in SETTINGS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(value))


@contextmanager
def chromium_page(failures: Path) -> Iterator:
    """A page in headless Chromium; asserts after the block that it logged no errors. If the block
    fails, what the page showed is kept in `failures` (failure.png, failure.html)."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            try:
                yield page
            except BaseException:
                page.screenshot(path=failures / "failure.png", full_page=True)
                (failures / "failure.html").write_text(page.content())
                raise
        finally:
            browser.close()
    assert not errors, f"the browser console logged errors: {errors}"
