"""A class on a real JupyterHub: one instructor, two students, the shared model cache and nbgrader's
exchange, driven end to end through the hub's REST API and the users' own servers.

The test creates three system users, starts JupyterHub on 127.0.0.1 (LocalProcessSpawner: each
user's server runs as that user, from this Python environment) and then, as a class would:

1. the instructor fills the shared model cache with the documented command, in their own kernel;
2. student 2 loads SmolLM2 from it (no write access);
3. the instructor generates and releases chapter 02 through the exchange; each student fetches it;
4. in a real browser (headless Chromium, driven by Playwright): student 1 logs in on the hub's
   login page, the hub starts their server and sends them to their JupyterLab, where they open
   the practice notebook they fetched and run every cell; the page must show their name, the
   notebook's title and each untouched check's "not implemented yet", and log no errors;
5. each student fills it in through the server's contents API (one correctly, one with a wrong
   answer) and submits; the instructor collects and autogrades: 5/5 and 4/5, exactly;
6. the hub is stopped, and no process of the three users, nor the proxy, is left (asserted);
   the users and their homes are removed.

It needs root (to create users and let the hub switch to them), `useradd`/`userdel`,
jupyterhub and nbgrader (the `[instructor]` extra), `configurable-http-proxy` on PATH (npm; see
`.ci/hub-setup`), an environment other users can read, and Playwright with Debian's Chromium
(`tests/browser_support.py`); it skips, saying which is missing,
anywhere else. Every step is also the README's deployment guide, tested.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest
from browser_support import KERNEL_IDLE, LAB_ARGS, chromium_page, free_port, why_no_browser, write_lab_settings

from minillm.pretrained import FETCHED, cache_dir

ASSIGNMENT = "02_window_attention"
COURSE_ID = "long-context-from-scratch"  # minillm.nbgrader_course's CONFIG
MODEL = "smollm2-135m"
BIN = Path(sys.executable).parent  # jupyterhub-singleuser, nbgrader and alembic live beside this Python
PROBE = "import jupyterhub, nbgrader, minillm, torch"


def _become_nobody() -> None:
    os.setgid(65534)
    os.setgroups([])
    os.setuid(65534)


def _why_not() -> str | None:
    """The reason this machine cannot run the hub test, or None."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs Linux and root: it creates system users and the hub switches to them"
    for tool in ("useradd", "userdel", "pkill", "configurable-http-proxy"):
        if shutil.which(tool) is None:
            hint = " (npm install -g configurable-http-proxy; see .ci/hub-setup)" if "proxy" in tool else ""
            return f"{tool} is not on PATH{hint}"
    for module in ("jupyterhub", "nbgrader"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[instructor]')"
    if (browser := why_no_browser()) is not None:
        return f"its browser step: {browser}"
    if not (BIN / "jupyterhub-singleuser").exists():
        return f"no jupyterhub-singleuser beside {sys.executable}"
    # As the hub's spawner does: drop to another user in Python, then exec (setpriv would exec first
    # and succeed where the spawner fails: the path lookup would still have root's capabilities).
    try:
        probe = subprocess.run(
            [str(BIN / "python"), "-c", PROBE],
            env={"PATH": f"{BIN}:/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
            preexec_fn=_become_nobody,
            capture_output=True,
            text=True,
        )
        error = probe.stderr.strip()[-200:] if probe.returncode else None
    except OSError as e:  # the interpreter itself is out of reach, e.g. under root's private home
        error = str(e)
    if error:
        return (
            f"other users cannot run {BIN / 'python'} with the course ({error}): install it where they "
            "can (README: deploying on JupyterHub), or run .ci/hub-setup"
        )
    return None


REASON = _why_not()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"hub test: {REASON}")


class Hub:
    """A JupyterHub for the test's users, and the calls the test makes through it."""

    def __init__(self, base: Path, users: dict[str, str], env: dict[str, str]) -> None:
        self.base, self.users, self.token = base, users, secrets.token_hex(32)
        self.password = secrets.token_hex(16)  # every user's, for the browser step's login page
        self.url = f"http://127.0.0.1:{free_port()}"
        config = base / "jupyterhub_config.py"
        config.write_text(
            textwrap.dedent(f"""
            c = get_config()  # noqa: F821
            c.JupyterHub.bind_url = {self.url!r}
            c.JupyterHub.hub_ip = "127.0.0.1"
            c.JupyterHub.hub_port = {free_port()}
            c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
            c.ConfigurableHTTPProxy.pid_file = {str(base / "proxy.pid")!r}
            c.JupyterHub.db_url = "sqlite:///{base / "hub.sqlite"}"
            c.JupyterHub.cookie_secret_file = {str(base / "cookie_secret")!r}
            c.JupyterHub.pid_file = {str(base / "hub.pid")!r}
            c.JupyterHub.authenticator_class = "dummy"
            c.DummyAuthenticator.password = {self.password!r}
            c.Authenticator.allowed_users = {set(users.values())!r}
            c.Authenticator.admin_users = {{{users["instructor"]!r}}}
            c.JupyterHub.services = [{{"name": "course-test", "api_token": {self.token!r}}}]
            c.JupyterHub.load_roles = [{{
                "name": "course-test",
                "scopes": ["admin:users", "admin:servers", "access:servers"],
                "services": ["course-test"],
            }}]
            c.Spawner.cmd = [{str(BIN / "jupyterhub-singleuser")!r}]
            c.Spawner.args = {LAB_ARGS!r}  # for the browser step
            c.Spawner.environment = {env!r}
            c.Spawner.start_timeout = 120
            c.Spawner.http_timeout = 120
            c.JupyterHub.cleanup_servers = True  # stopping the hub stops every server
            """)
        )
        path = f"{BIN}:{os.environ.get('PATH', '/usr/bin:/bin')}"
        self.log = open(base / "hub.log", "w")
        self.process = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(config)],
            cwd=base,
            env={**os.environ, "PATH": path},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait(lambda: self.api("GET", "/hub/api/", quiet=True) is not None, 60, "the hub to answer")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the hub exited while waiting for {what}:\n{self.tail()}")
            if ready():
                return
            time.sleep(0.5)
        raise TimeoutError(f"waited {timeout} s for {what}:\n{self.tail()}")

    def tail(self) -> str:
        self.log.flush()
        return (self.base / "hub.log").read_text()[-4000:]

    def api(self, method: str, path: str, body: dict | None = None, quiet: bool = False):
        """A request to the hub or, with /user/NAME/..., to a user's server (through the proxy)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", f"token {self.token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                text = response.read().decode()
                return json.loads(text) if text else {}
        except (urllib.error.URLError, ConnectionError) as e:
            if quiet:
                return None
            detail = e.read().decode()[:2000] if isinstance(e, urllib.error.HTTPError) else ""
            raise RuntimeError(f"{method} {path}: {e} {detail}\n{self.tail()}") from None

    def start_servers(self, users: list[str]) -> None:
        """Ask for every server at once (they start in parallel), then wait until each is ready."""
        for user in users:
            self.api("POST", f"/hub/api/users/{user}/server")
        for user in users:
            ready = lambda user=user: self.api("GET", f"/hub/api/users/{user}")["servers"].get("", {}).get("ready")  # noqa: E731
            self._wait(ready, 120, f"{user}'s server")

    def stop_server(self, user: str) -> None:
        self.api("DELETE", f"/hub/api/users/{user}/server")
        self._wait(lambda: not self.api("GET", f"/hub/api/users/{user}")["servers"], 60, f"{user}'s server to stop")

    def kernel(self, user: str) -> str:
        return self.api("POST", f"/user/{user}/api/kernels", {"name": "python3"})["id"]

    def run(self, user: str, kernel: str, code: str, timeout: float = 300) -> str:
        """Execute `code` in the user's kernel; its printed output, or RuntimeError with the traceback."""
        ws = self.url.replace("http", "ws", 1) + f"/user/{user}/api/kernels/{kernel}/channels"
        return asyncio.run(_execute(ws, self.token, code, timeout))

    def stop(self) -> None:
        """SIGTERM: the hub stops every server (cleanup_servers) and its proxy, then exits."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


async def _execute(url: str, token: str, code: str, timeout: float) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    connection = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id, session = uuid.uuid4().hex, uuid.uuid4().hex
    header = {"msg_id": msg_id, "session": session, "username": "test", "msg_type": "execute_request"}
    content = {"code": code, "silent": False, "store_history": False, "user_expressions": {}, "allow_stdin": False}
    message = {"header": {**header, "version": "5.3"}, "parent_header": {}, "metadata": {}, "content": content}
    await connection.write_message(json.dumps({**message, "channel": "shell", "buffers": []}))
    printed, error, replied, idle = [], None, False, False
    deadline = time.monotonic() + timeout
    while not (replied and idle):
        raw = await asyncio.wait_for(connection.read_message(), max(1.0, deadline - time.monotonic()))
        if raw is None:
            raise RuntimeError("the kernel's websocket closed")
        reply = json.loads(raw)
        if reply.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = reply["msg_type"]
        if kind == "stream":
            printed.append(reply["content"]["text"])
        elif kind == "error":
            error = "\n".join(reply["content"]["traceback"])
        elif kind == "execute_reply":
            replied = True
        elif kind == "status" and reply["content"]["execution_state"] == "idle":
            idle = True
    connection.close()
    if error is not None:
        raise RuntimeError(f"the cell raised:\n{error}\n--- it printed:\n{''.join(printed)[-3000:]}")
    return "".join(printed)


def _nbgrader(*args: str) -> str:
    """Python for a user's kernel: run nbgrader in the kernel's folder, print its output, fail loudly."""
    return textwrap.dedent(f"""
        import subprocess, sys
        done = subprocess.run([sys.executable, "-m", "nbgrader", *{list(args)!r}], capture_output=True, text=True)
        print(done.stdout + done.stderr)
        assert done.returncode == 0, "nbgrader {" ".join(args)} failed"
        """)


def _practice_in_the_browser(hub: Hub, user: str, notebook: str, source: nbformat.NotebookNode, failures: Path) -> None:
    """`user` logs in on the hub's login page in Chromium; the hub starts their server and sends them to
    their JupyterLab, where they open `notebook` (released from `source`, untouched) and Run All, as a
    student does: every cell runs up to the first check, which says "not implemented yet" and raises."""
    title = source.cells[0].source.splitlines()[0].lstrip("# ")
    code = [c for c in source.cells if c.cell_type == "code"]
    first_check = next(i for i, c in enumerate(code) if c.metadata.get("nbgrader", {}).get("grade"))
    with chromium_page(failures) as page:
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", user)
        page.fill("#password_input", hub.password)
        page.click("#login_submit")
        page.wait_for_url(f"**/user/{user}/lab**", timeout=180_000)  # through the spawn-pending page
        page.goto(f"{hub.url}/hub/home")
        assert user in page.locator("#login_widget").inner_text(), "the hub does not show who is logged in"

        page.goto(f"{hub.url}/user/{user}/lab/tree/{notebook}")
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        assert title in page.locator(".jp-Notebook h1").first.inner_text()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        cells = "window.jupyterapp.shell.currentWidget.content.widgets.filter(c => c.model.type === 'code')"
        ran = f"{cells}.map(c => c.model.executionCount !== null)"
        raised = f"{cells}.map(c => c.model.outputs.toJSON().some(o => o.output_type === 'error'))"
        # Done when every cell ran or one raised (Run All stops there), and the kernel is idle.
        page.wait_for_function(f"({ran}.every(Boolean) || {raised}.some(Boolean)) && {KERNEL_IDLE}", timeout=300_000)
        expected = [i <= first_check for i in range(len(code))]
        assert page.evaluate(ran) == expected, "Run All did not stop at the first check"
        assert page.evaluate(raised) == [i == first_check for i in range(len(code))]
        shown = page.locator(".jp-Notebook .jp-CodeCell").nth(first_check).inner_text()
        assert "not implemented yet" in shown and "AssertionError" in shown, shown[-2000:]


def _processes_of(uids: set[int]) -> list[str]:
    """`pid command` of every live process owned by one of `uids`."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        except OSError:
            continue  # it exited while we looked
        if int(fields["Uid"].split()[1]) in uids:
            found.append(f"{status.parent.name} {fields['Name'].strip()}")
    return found


@pytest.fixture
def classroom():
    """Three system users with homes under a temporary folder, removed (and checked gone) after."""
    base = Path(tempfile.mkdtemp(prefix="minillm-hub-"))
    os.chmod(base, 0o755)
    tag = f"{os.getpid() % 100000}"
    users = {"instructor": f"mlhub{tag}i", "student1": f"mlhub{tag}a", "student2": f"mlhub{tag}b"}
    (base / "home").mkdir(mode=0o755)
    created = []
    try:
        for name in users.values():
            home = base / "home" / name
            subprocess.run(["useradd", "-m", "-d", str(home), "-s", "/bin/bash", name], check=True, capture_output=True)
            created.append(name)
        yield base, users
    finally:
        uids = {int(subprocess.run(["id", "-u", n], capture_output=True, text=True).stdout) for n in created}
        deadline = time.monotonic() + 20  # a kernel told to shut down may take a moment to exit
        while (left := _processes_of(uids)) and time.monotonic() < deadline:
            time.sleep(0.5)
        for name in created:
            subprocess.run(["pkill", "-KILL", "-u", name], capture_output=True)  # only if the test failed
            subprocess.run(["userdel", "-r", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"processes of the test's users outlived the hub: {left}"


def test_a_class_on_jupyterhub_releases_fetches_submits_and_grades_chapter_02(classroom, tmp_path):
    from test_nbgrader import WRONG, _submission  # the same correct and wrong answers as the nbgrader test

    start = time.monotonic()
    base, users = classroom
    instructor, student1, student2 = users["instructor"], users["student1"], users["student2"]
    exchange, shared, etc = base / "exchange", base / "models", base / "etc-jupyter"
    exchange.mkdir(mode=0o777)
    os.chmod(exchange, 0o1777)  # nbgrader's exchange: everyone writes, the sticky bit keeps files apart
    shared.mkdir()
    shutil.chown(shared, instructor)
    gguf = cache_dir() / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if gguf.exists():  # saves a 100 MB download: fetch checks its sha256 and converts from it
        shutil.copy(gguf, shared / gguf.name)
        shutil.chown(shared / gguf.name, instructor)
    etc.mkdir(mode=0o755)
    (etc / "nbgrader_config.py").write_text(
        f"c = get_config()  # noqa: F821\nc.Exchange.root = {str(exchange)!r}\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
    )
    env = {
        "MINILLM_CACHE": str(shared),  # the guide's one line for students
        "JUPYTER_CONFIG_PATH": str(etc),  # the exchange, as /etc/jupyter/nbgrader_config.py would say
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "PATH": f"{BIN}:/usr/bin:/bin",
        "MINILLM_THREADS": "1",
    }

    def done(step: str) -> None:  # where the time goes (shown with pytest -s)
        print(f"[hub test] {time.monotonic() - start:4.0f} s  {step}", flush=True)

    hub = Hub(base, users, env)
    done("hub up")
    try:
        hub.start_servers(list(users.values()))
        kernels = {user: hub.kernel(user) for user in users.values()}
        teacher = kernels[instructor]
        done("three servers and kernels")

        # 1. The instructor fills the shared cache with the README's command.
        fetch = f"python -m minillm.pretrained fetch {MODEL} --dir {shared}"
        out = hub.run(instructor, teacher, f"import subprocess; print(subprocess.run({fetch!r}.split(), "
                      "capture_output=True, text=True, check=True).stdout)", timeout=600)  # fmt: skip
        assert f"export MINILLM_CACHE={shared}" in out, out
        assert MODEL in FETCHED
        done("shared cache filled")

        # 2. A student loads SmolLM2 from it without write access.
        load = (
            "import os\nfrom minillm.pretrained import load_pretrained\n"
            f"print(os.access({str(shared)!r}, os.W_OK))\nmodel = load_pretrained({MODEL!r})\n"
            "print(sum(p.numel() for p in model.parameters()))"
        )
        writable, n_params = hub.run(student2, kernels[student2], load).split()  # one student: ~15 s each
        assert writable == "False" and int(n_params) == 134_515_008, (writable, n_params)
        done("a student loaded SmolLM2")

        # 3. Release and fetch: through the exchange, as each user.
        hub.run(instructor, teacher, "import os; os.chdir(os.path.expanduser('~'))")
        hub.run(instructor, teacher, f"from minillm.nbgrader_course import make_course; make_course({'classroom'!r})")
        hub.run(instructor, teacher, "os.chdir('classroom')")
        hub.run(instructor, teacher, _nbgrader("generate_assignment", ASSIGNMENT))
        hub.run(instructor, teacher, _nbgrader("release_assignment", ASSIGNMENT))
        source = nbformat.read(
            base / "home" / instructor / "classroom" / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", 4
        )
        answers = {student1: {}, student2: {"answer_keep": WRONG[ASSIGNMENT]["answer_keep"]}}
        for student in answers:
            hub.run(student, kernels[student], _nbgrader("fetch_assignment", ASSIGNMENT))
        done("released and fetched")

        # 4. Student 1 comes back in Chromium: logs in, the hub starts their server, and they run the
        # practice notebook they fetched, in their JupyterLab.
        hub.stop_server(student1)
        write_lab_settings(base / "home" / student1 / ".jupyter" / "lab" / "user-settings")
        subprocess.run(["chown", "-R", f"{student1}:", str(base / "home" / student1 / ".jupyter")], check=True)
        _practice_in_the_browser(hub, student1, f"{ASSIGNMENT}/{ASSIGNMENT}.ipynb", source, tmp_path)
        kernels[student1] = hub.kernel(student1)
        done("a student logged in and ran the practice notebook in Chromium")

        # 5. Fill in, submit, collect, autograde.
        for student, wrong in answers.items():
            path = f"/user/{student}/api/contents/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
            release = nbformat.from_dict(hub.api("GET", path)["content"])
            filled = _submission(release, source, wrong)
            hub.api("PUT", path, {"type": "notebook", "format": "json", "content": filled})  # what Save does
            hub.run(student, kernels[student], _nbgrader("submit", ASSIGNMENT))
        done("filled in and submitted")
        hub.run(instructor, teacher, _nbgrader("collect", ASSIGNMENT))
        hub.run(instructor, teacher, _nbgrader("autograde", ASSIGNMENT), timeout=600)
        scores = hub.run(
            instructor,
            teacher,
            "import json\nfrom nbgrader.api import Gradebook\n"
            "with Gradebook('sqlite:///gradebook.db') as gb:\n"
            f"    graded = gb.assignment_submissions({ASSIGNMENT!r})\n"
            "    print(json.dumps({s.student.id: [s.score, s.max_score] for s in graded}))",
        )
        assert json.loads(scores) == {student1: [5.0, 5.0], student2: [4.0, 5.0]}
        done("collected and autograded")

        for user in users.values():
            hub.api("DELETE", f"/hub/api/users/{user}/server")
    finally:
        hub.stop()
    proxy_pid = (base / "proxy.pid").read_text().strip() if (base / "proxy.pid").exists() else None
    assert proxy_pid is None or not Path(f"/proc/{proxy_pid}").exists(), "the proxy outlived the hub"
    done("hub stopped, nothing left running")
