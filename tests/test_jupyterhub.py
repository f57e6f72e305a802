"""A class on one server: a real JupyterHub, two students, a lesson notebook each at once.

JupyterHub (pip's `jupyterhub`) runs here as root with its defaults where a teacher would
keep them (docs/classroom.md): PAM logs the students in with their Unix passwords, the
local process spawner starts each one's Jupyter server as that Unix user, and its proxy
is `configurable-http-proxy` from the npm registry (./quickstart.sh setup-tests installs
it in .venv/node). Two ordinary users made by the test log in through the hub's login
form, each makes an API token of their own there, starts their server, and runs lesson 5
in an ordinary kernel of that server (the Jupyter server's REST API and its kernel's
websocket, as JupyterLab does), both at the same time. Every cell must run without error
and every check come out as expected; the two labs must be apart (a holder each, user
namespaces and network namespaces of their own, neither reachable by the other), and
the machine's own network unchanged. Everything (hub, proxy, servers, users) is stopped
and removed at the end, whatever happened.

The students' servers run the system's python3 on this checkout and the venv's
site-packages (as tests/test_rootless.py does: the venv's own interpreter lives where an
ordinary user may not read).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from contextlib import suppress
from pathlib import Path

import pytest
from support import REPO, SYSTEM_PYTHON, cell_texts, filled_notebook, machine_network_state, needs_root, needs_users

from netstep.course.course import Course

CHP = REPO / ".venv" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
PASSWORD = "netstep-class-1"  # each test user's Unix password, for PAM
NOTEBOOK = "05-gateway.ipynb"
LAB = "notebook"  # Tutor()'s lab when $NETSTEP_LAB is not set


def _why_no_hub() -> str | None:
    try:
        import jupyterhub  # noqa: F401
        import requests  # noqa: F401
        import tornado  # noqa: F401
    except ImportError:
        return "needs pip's jupyterhub (./quickstart.sh setup-tests installs it)"
    if not CHP.exists():
        return f"needs configurable-http-proxy in {CHP.parent} (./quickstart.sh setup-tests installs it with npm)"
    return None


needs_hub = pytest.mark.skipif(_why_no_hub() is not None, reason=_why_no_hub() or "")


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class Hub:
    """A JupyterHub started as root from a config of its own in `folder`; `stop()` ends it,
    its proxy and whatever is left of its process group."""

    def __init__(self, folder: Path, users: list[str]) -> None:
        public, hub, api = free_ports(3)
        self.url = f"http://127.0.0.1:{public}"
        self.folder = folder
        self.log = folder / "jupyterhub.log"
        python_path = f"{REPO}:{sysconfig.get_paths()['purelib']}"
        (folder / "jupyterhub_config.py").write_text(f"""
c.JupyterHub.bind_url = "{self.url}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.db_url = "sqlite:///{folder}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{folder}/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = "{folder}/jupyterhub.pid"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = ["{CHP}"]
c.ConfigurableHTTPProxy.pid_file = "{folder}/proxy.pid"
c.Authenticator.allowed_users = {set(users)!r}
c.Spawner.cmd = ["{SYSTEM_PYTHON}", "-m", "jupyterhub.singleuser"]
c.Spawner.environment = {{"PYTHONPATH": "{python_path}", "NO_COLOR": "1"}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
""")
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", "jupyterhub_config.py"],
                                         cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait_up(self, limit: float = 120) -> None:
        import requests

        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"JupyterHub ended:\n{self.tail()}"
            with suppress(requests.RequestException):
                if requests.get(f"{self.url}/hub/api/", timeout=5).ok:
                    return
            time.sleep(0.5)
        raise AssertionError(f"JupyterHub did not answer within {limit} s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # it stops the servers it spawned and its proxy
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with suppress(OSError, ValueError, ProcessLookupError):
            os.kill(int((self.folder / "proxy.pid").read_text()), signal.SIGKILL)


@pytest.fixture
def class_on_a_hub(make_user, tmp_path: Path):
    """Two ordinary users with Unix passwords, and a JupyterHub that lets them in."""
    users = [make_user(), make_user()]
    for user in users:
        subprocess.run(["chpasswd"], input=f"{user.name}:{PASSWORD}\n", text=True, check=True, capture_output=True)
        book = Path(user.home) / NOTEBOOK  # the notebook as the student fills it in
        book.write_text(filled_notebook(REPO / "notebooks" / NOTEBOOK, right=True, typed=True))
        os.chown(book, user.uid, -1)
    os.chmod(tmp_path, 0o700)
    hub = Hub(tmp_path, [u.name for u in users])
    try:
        hub.wait_up()
        yield hub, users
    finally:
        hub.stop()


def log_in(hub: Hub, name: str) -> str:
    """Log `name` in through the hub's login form (PAM checks the Unix password), then make an
    API token with that login, as the hub's token page does; the token."""
    import requests

    browser = requests.Session()
    assert browser.get(f"{hub.url}/hub/login", timeout=30).ok
    xsrf = browser.cookies.get("_xsrf")
    wrong = browser.post(f"{hub.url}/hub/login", data={"username": name, "password": "not-it", "_xsrf": xsrf},
                         allow_redirects=False, timeout=60)
    assert wrong.status_code == 403, (wrong.status_code, hub.tail())
    logged = browser.post(f"{hub.url}/hub/login", data={"username": name, "password": PASSWORD, "_xsrf": xsrf},
                          allow_redirects=False, timeout=60)
    assert logged.status_code == 302, (logged.status_code, logged.text[-2000:], hub.tail())
    page = browser.get(f"{hub.url}/hub/token", timeout=30)  # the page a student makes a token on
    assert page.ok, page.status_code
    xsrf = page.cookies.get("_xsrf") or logged.cookies.get("_xsrf") or xsrf  # (a login gets a new one)
    made = browser.post(f"{hub.url}/hub/api/users/{name}/tokens", headers={"X-XSRFToken": xsrf},
                        json={"note": "netstep test", "expires_in": 3600}, timeout=30)
    assert made.status_code == 201, (made.status_code, made.text)
    return made.json()["token"]


def start_server(hub: Hub, name: str, token: str) -> None:
    """Ask the hub for `name`'s server and wait until it answers through the proxy."""
    import requests

    auth = {"Authorization": f"token {token}"}
    started = requests.post(f"{hub.url}/hub/api/users/{name}/server", headers=auth, timeout=60)
    assert started.status_code in (201, 202), (started.status_code, started.text, hub.tail())
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with suppress(requests.RequestException):
            if requests.get(f"{hub.url}/user/{name}/api/status", headers=auth, timeout=10).ok:
                return
        time.sleep(0.5)
    raise AssertionError(f"{name}'s server did not answer within 180 s:\n{hub.tail()}")


class Kernel:
    """A notebook's kernel in a user's Jupyter server, driven over its websocket as JupyterLab
    drives it: a session for the notebook's path, then each cell an execute_request."""

    def __init__(self, hub: Hub, name: str, token: str) -> None:
        self.hub, self.name, self.token = hub, name, token
        self.session = uuid.uuid4().hex

    async def open(self) -> None:
        import requests
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        auth = {"Authorization": f"token {self.token}"}
        made = requests.post(f"{self.hub.url}/user/{self.name}/api/sessions", headers=auth, timeout=60,
                             json={"path": NOTEBOOK, "type": "notebook", "kernel": {"name": "python3"}})
        assert made.status_code == 201, (made.status_code, made.text)
        kernel = made.json()["kernel"]["id"]
        ws_url = self.hub.url.replace("http", "ws", 1) + f"/user/{self.name}/api/kernels/{kernel}/channels"
        self.ws = await websocket_connect(HTTPRequest(ws_url, headers=auth), max_message_size=64 << 20)

    async def execute(self, code: str, timeout: float = 300) -> list[dict]:
        """Run `code`; its outputs as a notebook's cell keeps them."""
        import nbformat

        msg_id = uuid.uuid4().hex
        await self.ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": self.name, "session": self.session, "version": "5.3",
                       "msg_type": "execute_request", "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        outputs: list[dict] = []
        idle = replied = False
        while not (idle and replied):
            raw = await asyncio.wait_for(self.ws.read_message(), timeout)
            assert raw is not None, f"{self.name}'s kernel channel closed during {code!r}"
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["header"]["msg_type"]
            if kind == "status":
                idle = msg["content"]["execution_state"] == "idle"
            elif kind == "execute_reply":
                replied = True
            elif kind in ("stream", "display_data", "execute_result", "error"):
                outputs.append(nbformat.v4.output_from_msg(msg))
        return outputs

    def close(self) -> None:
        self.ws.close()


def _pids_running(uid: int, words: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with suppress(OSError):
            if os.stat(f"/proc/{pid}").st_uid == uid and words.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
    return found


@needs_root
@needs_users
@needs_hub
def test_two_students_on_one_jupyterhub_each_run_a_lesson_at_once(class_on_a_hub) -> None:
    import nbformat

    before = machine_network_state()
    hub, users = class_on_a_hub
    tokens = [log_in(hub, u.name) for u in users]
    for user, token in zip(users, tokens, strict=True):
        start_server(hub, user.name, token)
        assert _pids_running(user.uid, "jupyterhub.singleuser"), f"{user.name}'s server runs as someone else"
    notebook = nbformat.read(Path(users[0].home) / NOTEBOOK, as_version=4)
    cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert cells[-1].source == "t.reset()"
    kernels = [Kernel(hub, u.name, t) for u, t in zip(users, tokens, strict=True)]

    async def run_both(cells) -> list[list[list[dict]]]:
        async def one(kernel: Kernel) -> list[list[dict]]:
            return [await kernel.execute(cell.source) for cell in cells]

        return list(await asyncio.gather(*(one(k) for k in kernels)))

    async def whole_class() -> tuple[list[str], list[list[list[dict]]], list[list[list[dict]]]]:
        await asyncio.gather(*(k.open() for k in kernels))
        uids = [await k.execute("import os; print(os.getuid())") for k in kernels]
        lesson = await run_both(cells[:-1])  # both students at once, up to the last cell
        labs_apart(users)  # (while both labs are there)
        reset = await run_both(cells[-1:])
        for k in kernels:
            k.close()
        return [o[0]["text"].strip() for o in uids], lesson, reset

    uids, lessons, resets = asyncio.run(whole_class())
    assert uids == [str(u.uid) for u in users], "a kernel runs as someone other than its student"

    total = sum(len(s.checks) for s in Course.load().find("gateway").steps)
    for user, lesson, reset in zip(users, lessons, resets, strict=True):
        ran = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source, outputs=o)
                                              for c, o in zip(cells, [*lesson, *reset], strict=True)])
        errors = [o for c in ran.cells for o in c.outputs if o.output_type == "error"]
        assert not errors, (user.name, errors)
        texts = cell_texts(ran)
        assert f"predictions: {total} of {total} right (so far)" in texts["t.score()"], (user.name, texts["t.score()"])
        assert not [s for s, text in texts.items() if "✘" in text], f"{user.name}: a check came out other than expected"
        verdicts = [text for source, text in texts.items() if source.startswith('t.verify("5.')]
        assert verdicts and all("Counted as done" in v for v in verdicts), verdicts
        # The last cell's t.reset() stopped the lab's holder and its Tutor's process: no record is left.
        assert os.listdir(user.records) == [], (user.name, os.listdir(user.records))
        assert not _pids_running(user.uid, "netstep.worker")
    assert machine_network_state() == before


def labs_apart(users) -> None:
    """Each student's lab is in a holder of their own, in user and network namespaces of its
    own, and neither can enter, read or signal the other's."""
    alice, bob = users
    holders = [u.holder(LAB) for u in users]
    assert holders[0] != holders[1]
    for user, pid in zip(users, holders, strict=True):
        assert os.stat(f"/proc/{pid}").st_uid == user.uid
    userns = [os.stat(f"/proc/{pid}/ns/user").st_ino for pid in holders]
    assert userns[0] != userns[1] and os.stat("/proc/self/ns/user").st_ino not in userns
    # The same lab, by name, in both (lesson 5's namespaces), made of different namespaces.
    folders = [f"/proc/{pid}/root/run/netstep/labs/{LAB}" for pid in holders]
    names = [["host", "upstream", *(f"netns/{n}" for n in sorted(os.listdir(f"{f}/netns")))] for f in folders]
    assert names[0] == names[1] and "netns/netns0" in names[0], names
    nets = [{os.stat(f"{folder}/{n}").st_ino for n in names[0]} for folder in folders]
    assert all(len(n) == len(names[0]) for n in nets), "a lab's namespace files are not namespaces of their own"
    assert not nets[0] & nets[1], "the two students' labs share a network namespace"
    assert os.stat("/proc/self/ns/net").st_ino not in nets[0] | nets[1]
    for me, other, theirs in ((bob, alice, holders[0]), (alice, bob, holders[1])):
        entered = me.run("nsenter", "-t", str(theirs), "-U", "-m", "-n", "--preserve-credentials", "true")
        assert entered.returncode != 0, f"{me.name} entered {other.name}'s lab"
        for path in (f"{other.records}/{LAB}.holder", f"/proc/{theirs}/root/run/netstep/labs/{LAB}/journal.json"):
            assert os.path.exists(path), path
            read = me.run("cat", path)
            assert read.returncode != 0 and "Permission denied" in read.stderr, read
        assert me.run("kill", "-0", str(theirs)).returncode != 0
