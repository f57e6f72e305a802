"""Run notebooks the way a student does: in JupyterLab, in a real browser.

nbclient runs a notebook's code; it does not show that JupyterLab opens it, starts the
kernel the notebook names, runs every cell and renders what comes back. This harness
does, with Debian's Chromium driven by pip's playwright (never a downloaded browser):

    with start_lab(folder, env=...) as lab, Browser() as browser:
        run = browser.run_notebook(lab, "02-veth.ipynb")
        assert run.ok, run.report()

`start_lab` starts a JupyterLab of its own on 127.0.0.1; `Lab(url, token)` attaches to
one that runs elsewhere (the VM test's, through a forwarded port). Either way the
server must run with `--LabApp.expose_app_in_browser=True`: the harness drives the page
through `window.jupyterapp`, JupyterLab's own commands, not by clicking.
"""

from __future__ import annotations

import base64
import contextlib
import http.cookiejar
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# No background traffic: this machine's network reaches only the package registries.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: where it is and the token that opens it."""

    url: str  # http://127.0.0.1:PORT, no trailing slash
    token: str
    _cookies: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar, repr=False)

    def api(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 10) -> object:
        """One call to the server's REST API (`/api/...`), its JSON answer decoded.

        Newer Jupyter servers want the _xsrf cookie echoed on a change even with a token:
        the first GET collects it, and every later request sends it back.
        """
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self._cookies))
        headers = {"Authorization": f"token {self.token}", "Content-Type": "application/json"}
        if method != "GET":
            xsrf = next((c.value for c in self._cookies if c.name == "_xsrf"), None)
            if xsrf is None:
                opener.open(f"{self.url}/lab?token={self.token}", timeout=timeout).read()
                xsrf = next((c.value for c in self._cookies if c.name == "_xsrf"), "")
            headers["X-XSRFToken"] = xsrf
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/api/{path}", data=data, method=method, headers=headers)
        with opener.open(request, timeout=timeout) as answer:
            text = answer.read()
        return json.loads(text) if text else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel: a notebook's lab is held by its kernel until the kernel ends."""
        for session in self.api("sessions"):  # type: ignore[union-attr]
            self.api(f"sessions/{session['id']}", method="DELETE")

    def wait_ready(self, timeout: float, server: subprocess.Popen | None = None, log: Path | None = None) -> None:
        """Wait until the server answers /api/status; say why not if it never does."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if server is not None and server.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {server.returncode}:\n{_tail(log)}")
            try:
                self.api("status", timeout=5)
                return
            except (OSError, urllib.error.URLError) as error:
                last = error
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab at {self.url} did not answer in {timeout:.0f} s ({last})\n{_tail(log)}")


def _tail(log: Path | None, lines: int = 40) -> str:
    if log is None or not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def start_lab(root: Path, env: dict[str, str] | None = None, python: str = sys.executable,
              timeout: float = 60) -> Iterator[Lab]:
    """A JupyterLab serving root on 127.0.0.1 at a free port; stopped (kernels too) on exit.

    Its Jupyter configuration, data and runtime folders are fresh temporary ones, so
    nothing of this machine's own Jupyter set-up (workspaces, settings) leaks in.
    """
    state = Path(tempfile.mkdtemp(prefix="netstep-jupyter-"))
    port, token = free_port(), secrets.token_hex(16)
    lab = Lab(f"http://127.0.0.1:{port}", token)
    full_env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(state / "config"),
                "JUPYTER_RUNTIME_DIR": str(state / "runtime"), "IPYTHONDIR": str(state / "ipython"),
                "JUPYTERLAB_WORKSPACES_DIR": str(state / "workspaces"),
                "JUPYTERLAB_SETTINGS_DIR": str(state / "settings")}
    # Every cell attached to the page, so that its HTML holds every output: JupyterLab's
    # default windowing ("defer") attaches offscreen cells when the CPU is idle, which under
    # CI's load came after run-all ended (a score, a check table missing from the page).
    tracker = state / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}\n')
    log = state / "server.log"
    command = [python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
               "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               # Kernels talk over Unix sockets in the runtime folder: with TCP the server picks
               # free ports that another process of the suite may take before the kernel binds
               # them (CI saw "ZMQError: Address already in use", the kernel restarting 5 times).
               "--KernelManager.transport=ipc"]
    with log.open("wb") as out:
        server = subprocess.Popen(command, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        lab.wait_ready(timeout, server, log)
        yield lab
    finally:
        _stop(server)
        shutil.rmtree(state, ignore_errors=True)


def _stop(server: subprocess.Popen) -> None:
    """Stop the server and everything it started (its kernels share its session)."""
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, 9)
            server.wait(timeout=10)
    # Kernels that outlive the server would still hold labs; they are in its process group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, 9)


@dataclass
class NotebookRun:
    """What running one notebook in the browser gave."""

    path: str
    seconds: float
    cells: list[dict] = field(default_factory=list)  # the notebook's cells as JupyterLab holds them
    html: list[str] = field(default_factory=list)  # the rendered HTML of each output area, as displayed
    finished: bool = False  # run-all came back and the kernel went idle
    shot: bytes = b""  # a PNG of the element asked for (`shoot`), as the browser drew it
    ink: dict = field(default_factory=dict)  # that picture's size, share of non-white pixels and colours

    @property
    def code_cells(self) -> list[dict]:
        return [c for c in self.cells if c.get("cell_type") == "code"]

    @property
    def errors(self) -> list[str]:
        """Every error output: the exception's name, value and last traceback line."""
        found = []
        for i, cell in enumerate(self.cells):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    found.append(f"cell {i}: {out.get('ename')}: {out.get('evalue')}")
        return found

    @property
    def not_run(self) -> list[int]:
        """Code cells with no execution count: run-all never reached them."""
        return [i for i, c in enumerate(self.cells)
                if c.get("cell_type") == "code" and "".join(c.get("source", "")).strip()
                and c.get("execution_count") is None]

    @property
    def ok(self) -> bool:
        return self.finished and not self.errors and not self.not_run and bool(self.code_cells)

    def last_shown(self) -> str:
        """The text the last cell that ran shows. An error netstep raises is shown as its message
        (no traceback, no error output), yet it stops run-all: this is where to read it."""
        ran = [c for c in self.code_cells if c.get("execution_count") is not None]
        if not ran:
            return ""
        texts = []
        for out in ran[-1].get("outputs", []):
            data = out.get("data", {})
            text = out.get("text") or data.get("text/plain") or data.get("text/markdown") or ""
            texts.append("".join(text) if isinstance(text, list) else text)
        return f"{''.join(ran[-1].get('source', ''))!r} showed: " + " | ".join(texts)[-1500:]

    def report(self) -> str:
        """A paragraph for an assertion message."""
        stopped = f"; the last cell run, {self.last_shown()}" if self.not_run else ""
        return (f"{self.path}: {len(self.code_cells)} code cells in {self.seconds:.1f} s, "
                f"finished={self.finished}, errors={self.errors}, cells never run={self.not_run}{stopped}")


# Runs in the page: open the notebook with JupyterLab's own commands, run every cell, wait
# for the kernel to go idle, and hand back the notebook as JupyterLab holds it.
_RUN_ALL = """
async ([path, timeoutMs]) => {
  const app = window.jupyterapp;
  await app.started;
  await app.restored;
  const widget = await app.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await widget.context.ready;
  await widget.sessionContext.ready;
  app.shell.activateById(widget.id);
  const deadline = Date.now() + timeoutMs;
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  while (!widget.sessionContext.session?.kernel && Date.now() < deadline) await sleep(100);
  const kernel = widget.sessionContext.session?.kernel;
  if (!kernel) return {finished: false, why: 'no kernel started', cells: widget.context.model.toJSON().cells};
  while (kernel.status !== 'idle' && Date.now() < deadline) await sleep(100);
  await app.commands.execute('notebook:run-all-cells');
  // Settle: the kernel idle for a while, every code cell with its execution count.
  let idleSince = null;
  while (Date.now() < deadline) {
    const busy = kernel.status !== 'idle' ||
      widget.content.widgets.some(c => c.model.type === 'code' && c.model.executionState === 'running');
    if (busy) idleSince = null; else if (idleSince === null) idleSince = Date.now();
    if (idleSince !== null && Date.now() - idleSince > 1000) break;
    await sleep(100);
  }
  const finished = idleSince !== null && Date.now() < deadline;
  const html = Array.from(widget.node.querySelectorAll('.jp-OutputArea-output')).map(n => n.innerHTML);
  return {finished, cells: widget.context.model.toJSON().cells, html, kernel: kernel.name};
}
"""


class Browser:
    """Debian's Chromium under playwright, with a fresh profile, closed on exit."""

    def __init__(self, executable: str = CHROMIUM) -> None:
        self.executable = executable

    def __enter__(self) -> Browser:
        if not Path(self.executable).exists():
            raise RuntimeError(f"no browser at {self.executable}: "
                               "./quickstart.sh setup-tests installs Debian's chromium")
        from playwright.sync_api import sync_playwright

        self._profile = tempfile.mkdtemp(prefix="netstep-chromium-")
        self._playwright = sync_playwright().start()
        try:
            self.context = self._playwright.chromium.launch_persistent_context(
                self._profile, executable_path=self.executable, headless=True, args=CHROMIUM_FLAGS,
                viewport={"width": 1400, "height": 1000})
        except BaseException:
            self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.context.close()
        finally:
            self._playwright.stop()
            shutil.rmtree(self._profile, ignore_errors=True)

    def run_notebook(self, lab: Lab, path: str, timeout: float = 300, shoot: str = "") -> NotebookRun:
        """Open path (relative to the server's root) in JupyterLab, run all cells, wait for idle;
        then take a screenshot of the first element `shoot` (a CSS selector) names, if any."""
        page = self.context.new_page()
        start = time.monotonic()
        shot, ink = b"", {}
        try:
            page.goto(f"{lab.url}/lab?token={lab.token}", timeout=timeout * 1000)
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=timeout * 1000)
            result = page.evaluate(_RUN_ALL, [path, int(timeout * 1000)])
            found = page.query_selector(shoot) if shoot else None
            if found is not None:
                found.scroll_into_view_if_needed()
                shot = found.screenshot()
                ink = page.evaluate(_INK, base64.b64encode(shot).decode())
        finally:
            seconds = time.monotonic() - start
            page.close()
        return NotebookRun(path=path, seconds=seconds, cells=result.get("cells", []),
                           html=result.get("html", []), finished=bool(result.get("finished")), shot=shot, ink=ink)


# A PNG read back in the page: its size, the share of pixels that are not (near) white, and
# how many colours it has. A blank picture has no ink and one colour.
_INK = """
async (b64) => {
  const img = new Image();
  img.src = "data:image/png;base64," + b64;
  await img.decode();
  const canvas = document.createElement("canvas");
  canvas.width = img.width; canvas.height = img.height;
  const g = canvas.getContext("2d");
  g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  const colours = new Set();
  for (let i = 0; i < d.length; i += 4) {
    if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) ink++;
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
  }
  return {width: canvas.width, height: canvas.height, ink: ink / (canvas.width * canvas.height),
          colours: colours.size};
}
"""
