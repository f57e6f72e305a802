"""Servers a student started in the lab's namespaces, found by their network namespace.

A student may start a server in a lab namespace (`python3 -m http.server &` in `netstep
shell`, `ip netns exec netns1 nc -l 8000`). No state of the lab shows it, yet it changes
what checks see, so a course move stops it, as it takes back the student's other work.
A process is one of these when its network namespace is one of the lab's own (the same
nsfs inode as a file the lab pinned: never the machine's namespace, never a namespace
file a user lent to host mode) and it holds a listening TCP socket or a bound UDP one.
The student's shell and anything else that listens on nothing is left alone, and so are
netstep's own servers (netstep.kernel.servers) and this process.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import suppress
from dataclasses import dataclass

from netstep.kernel import servers

TCP_LISTEN = "0A"
UDP_UNCONNECTED = "07"


@dataclass(frozen=True)
class Listener:
    """A process of a student's that listens in a lab namespace."""

    pid: int
    ns: str
    command: str  # its command line, as `ps` shows it
    sockets: tuple[str, ...]  # "tcp 0.0.0.0:8000", "udp 172.18.0.20:53"

    def describe(self) -> str:
        return f"{self.ns}# {self.command} (pid {self.pid}, listening on {', '.join(self.sockets)})"


def _identity(path: str) -> tuple[int, int] | None:
    with suppress(OSError):
        info = os.stat(path)
        return info.st_dev, info.st_ino
    return None


def _address(hex_address: str) -> str:
    """"0100007F:1F40" (/proc/net/tcp's little-endian IPv4) -> "127.0.0.1:8000"; IPv6 as [hex]."""
    host, _, port = hex_address.partition(":")
    if len(host) == 8:
        host = ".".join(str(int(host[i:i + 2], 16)) for i in (6, 4, 2, 0))
    else:
        host = "[" + ("::" if set(host) == {"0"} else host.lower()) + "]"
    return f"{host}:{int(port, 16)}"


def _bound_sockets(pid: int) -> dict[str, str]:
    """socket inode -> "tcp ADDR:PORT" for the listening sockets of the namespace `pid` is in."""
    out: dict[str, str] = {}
    for table, wanted in (("tcp", TCP_LISTEN), ("tcp6", TCP_LISTEN), ("udp", UDP_UNCONNECTED),
                          ("udp6", UDP_UNCONNECTED)):
        with suppress(OSError), open(f"/proc/{pid}/net/{table}") as f:
            next(f, None)
            for line in f:
                fields = line.split()
                if len(fields) > 9 and fields[3] == wanted:
                    out[fields[9]] = f"{table.rstrip('6')} {_address(fields[1])}"
    return out


def _command(pid: int) -> str:
    with suppress(OSError), open(f"/proc/{pid}/cmdline", "rb") as f:
        return " ".join(part.decode(errors="replace") for part in f.read().split(b"\0") if part)
    return "?"


def find(namespaces: dict[str, str], lab_dir: str) -> list[Listener]:
    """The student's listening processes in `namespaces` (name -> the lab's pinned file)."""
    wanted = {ident: ns for ns, path in namespaces.items() if (ident := _identity(path)) is not None}
    if not wanted:
        return []
    ours = {pid for pid, _ in servers.running(lab_dir)} | {os.getpid()}
    found = []
    tables: dict[str, dict[str, str]] = {}  # by namespace: the table is the namespace's, read once
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in ours:
            continue
        pid = int(entry)
        ns = wanted.get(_identity(f"/proc/{pid}/ns/net"))
        if ns is None:
            continue
        if ns not in tables:
            tables[ns] = _bound_sockets(pid)
        if not tables[ns]:
            continue
        held = []
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with suppress(OSError):
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                    if link.startswith("socket:[") and link[8:-1] in tables[ns]:
                        held.append(tables[ns][link[8:-1]])
        if held:
            found.append(Listener(pid, ns, _command(pid), tuple(dict.fromkeys(held))))
    return found


def stop(listeners: list[Listener]) -> None:
    """SIGTERM each, then SIGKILL what is still there after a second."""
    for listener in listeners:
        with suppress(ProcessLookupError):
            os.kill(listener.pid, signal.SIGTERM)
    deadline = time.monotonic() + 1.0
    for listener in listeners:
        while time.monotonic() < deadline and os.path.exists(f"/proc/{listener.pid}"):
            with suppress(ChildProcessError):
                os.waitpid(listener.pid, os.WNOHANG)
            if _state(listener.pid) in ("Z", None):
                break
            time.sleep(0.01)
        if _state(listener.pid) not in ("Z", None):
            with suppress(ProcessLookupError):
                os.kill(listener.pid, signal.SIGKILL)


def _state(pid: int) -> str | None:
    with suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().rpartition(")")[2].split()[0]
    return None
