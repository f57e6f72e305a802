"""The lab's servers (HTTP and DNS), found by their command line.

A server is `python -m netstep.kernel.httpd ... --lab LAB_FOLDER` (or netstep.kernel.dnsd:
see those modules). netstep
finds its servers in /proc by that exact --lab argument and its own user, never by pid files: a netstep
killed right after starting one leaves a server that may not have written anything yet,
and a `reset` must still stop it. A process netstep did not start is never signalled.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from contextlib import suppress

# The server's module, and its name before netstep's modules moved into folders by layer
# (a lab made then may still have one running; reset must stop it all the same).
MODULES = ("netstep.kernel.httpd", "netstep.httpd", "netstep.kernel.dnsd")
HTTP, DNS = MODULES[0], MODULES[2]


def stop(lab_dir: str, ns: str | None = None, address: str | None = None, port: int | None = None,
         module: str | None = None) -> None:
    """Stop the servers of the lab at `lab_dir` (in `ns`, on `address`:`port`, running
    `module`, or all)."""
    wanted = {"--name": ns, "--bind": address, "--port": None if port is None else str(port), "module": module}
    pids = [pid for pid, args in running(lab_dir)
            if all(value is None or args.get(flag) == value for flag, value in wanted.items())]
    for pid in pids:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        for _ in range(100):
            with suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # a server this process started: reap it
            if _options_if_ours(pid, lab_dir) is None:
                break
            time.sleep(0.01)
        else:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def running(lab_dir: str) -> list[tuple[int, dict[str, str]]]:
    """(pid, options) of every live server of the lab at `lab_dir`; options["module"] is the
    server's module (HTTP or DNS)."""
    found = []
    for entry in os.listdir("/proc"):
        options = _options_if_ours(int(entry), lab_dir) if entry.isdigit() else None
        if options is not None:
            found.append((int(entry), options))
    return found


def _options_if_ours(pid: int, lab_dir: str) -> dict[str, str] | None:
    """The options of `pid` if it runs one of MODULES with --lab exactly `lab_dir`, else
    None. (A process that has ended has an empty command line.)"""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
        if os.stat(f"/proc/{pid}").st_uid != os.getuid():
            return None  # another user's lab of the same name (each user's /run/netstep is their own)
    except (FileNotFoundError, ProcessLookupError):
        return None
    options = {flag: value for flag, value in itertools.pairwise(argv) if flag.startswith("--")}
    module = next((m for m in MODULES if m in argv), None)
    if module is None or options.get("--lab") != lab_dir:
        return None
    return {**options, "module": HTTP if module == "netstep.httpd" else module}
