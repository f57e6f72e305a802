"""HTTP servers: started as `python -m netstep.kernel.httpd` inside the namespace, stopped
by their command line (netstep.kernel.servers)."""

from __future__ import annotations

import subprocess
import sys

from netstep.course.actions import Action, HttpServer
from netstep.errors import KernelError
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change


def apply_http_server(action: HttpServer, lab: LabAccess) -> Action:
    if not action.start:
        undo = about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=True))
        lab.stop_servers(action.ns, action.address, action.port)
        return undo
    undo = about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=False))
    argv = [sys.executable, "-m", "netstep.kernel.httpd", "--netns", lab.fd_path(action.ns), "--name", action.ns,
            "--bind", action.address, "--port", str(action.port), "--lab", lab.dir]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)
    line = proc.stdout.readline().decode().strip() if proc.stdout else ""
    if line != "ready":
        proc.wait(timeout=5)
        err = proc.stderr.read().decode().strip().splitlines() if proc.stderr else []
        raise KernelError(f"The HTTP server on {action.address}:{action.port} in {action.ns} did not start: "
                          f"{err[-1] if err else 'no reason given'}")
    proc.stdout.close()
    proc.stderr.close()
    return undo
