"""HTTP servers: started as `python -m netstep.kernel.httpd` inside the namespace, stopped
by their command line (netstep.kernel.servers), one by one or all those on a port
(`fuser -k PORT/tcp`)."""

from __future__ import annotations

import subprocess
import sys

from netstep.course.actions import Action, HttpServer, StopServers
from netstep.errors import KernelError
from netstep.kernel import servers
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


def apply_stop_servers(action: StopServers, lab: LabAccess) -> Action:
    """Stop the lab's servers on the port in the namespace; the undo starts them again on
    the addresses they had. (An undo's `restart` starts them, and its undo stops them.)"""
    if action.restart:
        undo = about_to_change(StopServers(action.ns, port=action.port))
        for address in action.restart:
            apply_http_server(HttpServer(action.ns, address=address, port=action.port), lab)
        return undo
    addresses = tuple(sorted({options.get("--bind", "") for _, options in servers.running(lab.dir)
                              if options.get("--name") == action.ns and options.get("--port") == str(action.port)}))
    undo = about_to_change(StopServers(action.ns, port=action.port, restart=addresses))
    lab.stop_servers(action.ns, None, action.port)
    return undo
