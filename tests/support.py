"""Helpers shared by the tests: unique lab names, skips, lesson files and lab inspection.

Every lab a test makes is named `t<pid>x...`, so the session guard in conftest.py can tell
this session's labs from anybody else's and prove that none is left behind.
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import pty
import pwd
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import sysconfig
import termios
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LESSONS = REPO / "lessons"
LABS_ROOT = "/run/netstep/labs"
PREFIX = f"t{os.getpid()}x"  # the x ends the pid: t43x never matches t431x
TOOLS = ("ip", "iptables", "nsenter", "conntrack")

_counter = itertools.count()


def unique_name(tag: str = "x") -> str:
    """A lab name of this session, unique within it: t<pid>x<tag><n>."""
    return f"{PREFIX}{tag}{next(_counter)}"


def _why_not_root() -> str | None:
    if os.geteuid() != 0:
        return "needs root: labs are network namespaces made with unshare and mount"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"needs the tools {', '.join(missing)} (Debian: iproute2, iptables, util-linux, conntrack)"
    return None


ROOT_REASON = _why_not_root()
needs_root = pytest.mark.skipif(ROOT_REASON is not None, reason=ROOT_REASON or "")


def write_lesson(folder: Path, filename: str, text: str) -> Path:
    """Write a lesson file (the text is dedented) and return its path."""
    path = Path(folder) / filename
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def lesson_markdown(title: str, steps: list[tuple[str, list[str], list[str]]]) -> str:
    """Markdown for a lesson: each step is (title, console lines, check lines)."""
    fence = "```"
    out = [f"# {title}", "", "Introduction.", ""]
    for step_title, commands, checks in steps:
        out += [f"## {step_title}", "", "Why this step exists.", ""]
        if commands:
            out += [f"{fence}console", *commands, fence, ""]
        if checks:
            out += [f"{fence}check", *checks, fence, ""]
    return "\n".join(out) + "\n"


def real_lesson_files() -> list[Path]:
    if not LESSONS.is_dir():
        return []
    return sorted(p for p in LESSONS.glob("[0-9][0-9]-*.md"))


def mounts_under(path: str) -> list[str]:
    """Mount points in /proc/mounts at or below `path`."""
    prefix = path.rstrip("/")
    found = []
    with open("/proc/mounts") as f:
        for line in f:
            point = line.split()[1].replace("\\040", " ")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def httpd_pids(marker: str) -> list[int]:
    """Live processes running netstep's HTTP server (netstep.kernel.httpd, or netstep.httpd
    as it was named before) whose command line mentions `marker` (a lab folder)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        joined = b" ".join(argv)
        if (b"netstep.kernel.httpd" in joined or b"netstep.httpd" in joined) and marker.encode() in joined:
            pids.append(int(entry))
    return pids


def sysctl_keys(course) -> tuple[str, ...]:
    """The sysctl keys a course changes, so that snapshots compare them too."""
    return tuple(dict.fromkeys(a.key for s in course.steps for a in s.actions if type(a).__name__ == "Sysctl"))


def config_diff(before, after) -> list[str]:
    """A readable account of how two snapshots' configurations differ (for failure messages)."""
    lines = []
    names = list(dict.fromkeys([*before.namespaces, *after.namespaces]))
    for ns in names:
        a = before.namespaces.get(ns)
        b = after.namespaces.get(ns)
        if a is None or b is None:
            lines.append(f"namespace {ns}: {'added' if a is None else 'removed'}")
            continue
        for part in ("links", "addresses", "routes", "rules", "sysctls"):
            if a.part(part) != b.part(part):
                lines.append(f"{ns} {part}:\n    before {list(a.part(part))}\n    after  {list(b.part(part))}")
    return lines


def spawn_on_pty(argv: list[str], columns: int, rows: int, env: dict[str, str] | None = None) -> tuple[int, int]:
    """Start argv on a new pseudo-terminal of the given size, in the repository; return (pid, fd)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of its own, then the program
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
            os.chdir(REPO)
            base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            os.execve(argv[0], argv, {**base, "TERM": "xterm-256color", **(env or {})})
        finally:
            os._exit(127)
    return pid, fd


def wait_for_screen(capture, text: str, limit: float = 90.0) -> str:
    """The screen `capture()` reads once it shows `text` (a guard against a hang, not a timing)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        shown = capture()
        if text in shown:
            return shown
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared on the screen:\n{capture()}")


def run_on_pty(argv: list[str], columns: int, rows: int, timeout: float) -> tuple[int, bytes]:
    """Run argv on a new pseudo-terminal of the given size; return its exit status and output."""
    return _pty_session(argv, columns, rows, timeout)


def converse_on_pty(argv: list[str], answer, columns: int = 120, rows: int = 40,
                    timeout: float = 120) -> tuple[int, str]:
    """Run argv on a pseudo-terminal and answer its prompts as a person would.

    `answer(text)` sees the output not answered yet (ANSI codes removed) and returns what
    to type (a line, newline included) or None to keep waiting. Returns the exit status
    and the whole output, as text without ANSI codes.
    """
    code, output = _pty_session(argv, columns, rows, timeout, answer, {"NO_COLOR": "1"})
    return code, _plain(output)


def _plain(data: bytes) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="replace"))


def _pty_session(argv: list[str], columns: int, rows: int, timeout: float, answer=None,
                 env: dict[str, str] | None = None) -> tuple[int, bytes]:
    pid, fd = spawn_on_pty(argv, columns, rows, env)
    output = bytearray()
    answered = 0  # how much of the output was answered already
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            reply = answer(_plain(bytes(output[answered:]))) if answer else None
            if reply is not None:
                os.write(fd, reply.encode())
                answered = len(output)
        else:
            os.kill(pid, signal.SIGTERM)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), bytes(output)


CLI_ENV = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


def netstep_cli(lab: str, *args: str, stdin: str | None = None, timeout: float = 240,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m netstep --lab LAB ARGS...` as a student runs it; `stdin` is typed into it (else none)."""
    return subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, *args], cwd=REPO, env=env or CLI_ENV,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)


def filled_notebook(path: Path, *, right: bool, typed: bool) -> str:
    """A lesson notebook as a student fills it in, as JSON text: every prediction made (all
    right or all wrong), and with `typed`, every step typed by hand in its `%%netstep` cell."""
    import nbformat

    from netstep.course.course import Course

    lesson = next(le for le in Course.load().lessons if Path(le.path).stem == Path(path).stem)
    flip = {"reachable": "u", "unreachable": "r"}
    nb = nbformat.read(path, as_version=4)
    checked = iter([s for s in lesson.steps if s.checks])
    commanded = iter([s for s in lesson.steps if s.commands])
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.startswith("t.predict()"):
            answers = [c.expect[0] if right else flip[c.expect] for c in next(checked).checks]
            cell.source = "t.predict(" + ", ".join(f'"{a}"' for a in answers) + ")"
        elif re.match(r"%%netstep\n# [\w-]+# ", cell.source):  # a step's cell, in either language
            step = next(commanded)
            if typed:
                cell.source = "%%netstep\n" + "\n".join(f"{c.where}# {c.text}" for c in step.commands)
    return nbformat.writes(nb)


# -- ordinary Unix users, made by a test (tests/test_rootless.py, tests/test_jupyterhub.py) --


SYSTEM_PYTHON = "/usr/bin/python3"
_users = itertools.count()


def _why_no_user_python() -> str | None:
    if not os.path.exists(SYSTEM_PYTHON):
        return f"no {SYSTEM_PYTHON} for an ordinary user to run"
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        return f"{SYSTEM_PYTHON} is Python {version}, the tests' venv {sys.version_info[:2]}"
    if not shutil.which("useradd") or not shutil.which("runuser"):
        return "needs useradd and runuser"
    return None


needs_users = pytest.mark.skipif(_why_no_user_python() is not None, reason=_why_no_user_python() or "")


class User:
    """An ordinary Unix user made for a test; `netstep(...)` runs `python -m netstep` as them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.uid = pwd.getpwnam(name).pw_uid
        self.records = f"/tmp/netstep-{self.uid}"
        self.home = f"/tmp/{name}-home"  # theirs alone, for Jupyter's runtime files
        os.mkdir(self.home, 0o700)
        os.chown(self.home, self.uid, pwd.getpwnam(name).pw_gid)

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "COLUMNS": "300",
               "NO_COLOR": "1", "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}", "HOME": self.home,
               "SHELL": "/bin/sh"}  # (tmux runs its commands in $SHELL; the user's own is nologin)
        return subprocess.run(["runuser", "-u", self.name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                               *argv], cwd="/tmp", capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def netstep(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.run(SYSTEM_PYTHON, "-m", "netstep", *args, timeout=timeout)

    def pids(self) -> list[int]:
        return [int(p) for p in os.listdir("/proc") if p.isdigit() and _owner(p) == self.uid]

    def processes_end(self) -> bool:
        """True once no process of the user is left (a killed holder is reaped by init a moment later)."""
        for _ in range(300):
            if not self.pids():
                return True
            time.sleep(0.01)
        return False

    def holder(self, lab: str = "default") -> int:
        with open(f"{self.records}/{lab}.holder") as f:
            return json.load(f)["pid"]


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


@contextmanager
def ordinary_users() -> Iterator[Callable[[], User]]:
    """A factory of ordinary users (conftest's `make_user`); at the end their processes (by
    pid), records and accounts are removed, whatever happened. Each user's home is
    /tmp/NAME-home, theirs alone (made by User, not by useradd)."""
    made: list[User] = []

    def factory() -> User:
        name = f"nst{os.getpid() % 100000}u{next(_users)}"
        subprocess.run(["useradd", "--no-create-home", "--home-dir", f"/tmp/{name}-home", "--shell",
                        "/usr/sbin/nologin", "--user-group", name], check=True, capture_output=True)
        user = User(name)
        made.append(user)
        return user

    try:
        yield factory
    finally:
        for user in made:
            for pid in user.pids():
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            shutil.rmtree(user.records, ignore_errors=True)
            shutil.rmtree(user.home, ignore_errors=True)
            subprocess.run(["userdel", user.name], capture_output=True)


def cell_texts(nb) -> dict[str, str]:
    """Each code cell's source -> its outputs' text (colours taken out)."""
    texts = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            texts[cell.source] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(
                o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in cell.get("outputs", [])))
    return texts



# -- the machine's own network, as the session's guard (tests/conftest.py) reads it ----------


def _run(argv: list[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"<{' '.join(argv)} could not run: {exc}>"
    return f"rc={result.returncode}\n{result.stdout}"


def _link_names(text: str) -> list[str]:
    names = []
    for line in text.splitlines():
        parts = line.split(": ", 2)
        if len(parts) >= 2 and parts[0].isdigit():
            names.append(parts[1].split("@")[0])
        else:
            names.append(line)
    return sorted(names)


def _addresses(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        line = re.sub(r"\b(valid_lft|preferred_lft)\s+\S+", "", line.replace("\\", " "))
        out.append(" ".join(line.split()))
    return sorted(out)


def _routes(text: str) -> list[str]:
    return [" ".join(re.sub(r"\bexpires\s+\S+", "", line).split()) for line in text.splitlines()]


def _rules(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue  # "# Generated by iptables-save ... on <date>"
        out.append(re.sub(r"\[\d+:\d+\]", "", line).strip())
    return out


def _ip_forward() -> str:
    try:
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            return f.read().strip()
    except OSError as exc:
        return f"<unreadable: {exc}>"


def machine_network_state() -> dict[str, object]:
    """The state of the namespace this process runs in: the machine's own."""
    return {
        "link names": _link_names(_run(["ip", "-o", "link"])),
        "addresses": _addresses(_run(["ip", "-o", "addr"])),
        "routes": _routes(_run(["ip", "route"])),
        "iptables rules": _rules(_run(["iptables-save"])),
        "ip_forward": _ip_forward(),
        "ip netns list": sorted(_run(["ip", "netns", "list"]).splitlines()),
    }


def typed_in_shell(lab, where: str, command: str) -> str:
    """The line a student types in `netstep shell` (on the lab host) to run `command` in
    namespace `where`: as it is on the host, through `ip netns exec` in a container, and
    through `nsenter` with its file in `upstream`, which `ip netns` does not list."""
    if where == "host":
        return command
    if where == "upstream":
        return f"nsenter --net={lab.path_of(where)} sh -c {shlex.quote(command)}"
    return f"ip netns exec {where} sh -c {shlex.quote(command)}"
