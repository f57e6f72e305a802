"""The lab's servers: HTTP (`python -m netstep.kernel.httpd`) and DNS (netstep.kernel.dnsd,
typed as dnsmasq), started inside the namespace, stopped by their command line
(netstep.kernel.servers), one by one or all those on a port (`fuser -k PORT/tcp|udp`)."""

from __future__ import annotations

import subprocess
import sys

from netstep.course.actions import Action, DnsServer, HttpServer, StopServers
from netstep.course.commands import parse
from netstep.errors import KernelError
from netstep.i18n import _
from netstep.kernel import servers
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change


def apply_http_server(action: HttpServer, lab: LabAccess) -> Action:
    if not action.start:
        undo = about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=True))
        lab.stop_servers(action.ns, action.address, action.port)
        return undo
    undo = about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=False))
    _start(lab, action, servers.HTTP, ["--bind", action.address, "--port", str(action.port)],
           _("The HTTP server on {address}:{port} in {ns} did not start: another program listens there already. "
             "`ss -ltnup` in {ns} names it; stop it (netstep never stops a program it did not start) and run the "
             "step again."),
           _("The HTTP server on {address}:{port} in {ns} did not start: {error}"))
    return undo


def apply_dns_server(action: DnsServer, lab: LabAccess) -> Action:
    if not action.start:
        undo = about_to_change(_dns_from(action.ns, _options(lab, action.ns, 53, servers.DNS, action.address)))
        servers.stop(lab.dir, action.ns, action.address, 53, servers.DNS)
        return undo
    undo = about_to_change(DnsServer(action.ns, address=action.address, start=False))
    answers = ",".join(f"{name}={ip}" for name, ip in action.answers)
    _start(lab, action, servers.DNS, ["--bind", action.address, "--port", "53", "--answers", answers,
                                      "--forward", action.forward],
           _("The DNS server on {address} port {port} in {ns} did not start: another program listens there "
             "already. `ss -ltnup` in {ns} names it; stop it (netstep never stops a program it did not start) and "
             "run the step again."),
           _("The DNS server on {address} port {port} in {ns} did not start: {error}"))
    return undo


def _start(lab: LabAccess, action: Action, module: str, options: list[str], taken: str, failed: str) -> None:
    """Start a lab server; if it does not start, say why in `taken` (its address is in use)
    or `failed` (any other reason, as {error}): sentences with {address}, {port} and {ns}."""
    fields = {"address": action.address, "port": getattr(action, "port", 53), "ns": action.ns}
    argv = [sys.executable, "-m", module, "--netns", lab.fd_path(action.ns), "--name", action.ns, *options,
            "--lab", lab.dir]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)
    line = proc.stdout.readline().decode().strip() if proc.stdout else ""
    if line != "ready":
        proc.wait(timeout=5)
        err = proc.stderr.read().decode().strip().splitlines() if proc.stderr else []
        if err and "Address already in use" in err[-1]:
            raise KernelError(taken.format(**fields))
        raise KernelError(failed.format(**fields, error=err[-1] if err else _("no reason given")))
    proc.stdout.close()
    proc.stderr.close()


def _options(lab: LabAccess, ns: str, port: int, module: str, address: str | None = None) -> list[dict[str, str]]:
    return [options for _, options in servers.running(lab.dir)
            if options.get("--name") == ns and options.get("--port") == str(port) and options["module"] == module
            and address in (None, options.get("--bind"))]


def _dns_from(ns: str, found: list[dict[str, str]]) -> DnsServer:
    options = found[0] if found else {}
    answers = tuple(tuple(pair.split("=", 1)) for pair in options.get("--answers", "").split(",") if pair)
    return DnsServer(ns, address=options.get("--bind", ""), answers=answers, forward=options.get("--forward", ""))


def apply_stop_servers(action: StopServers, lab: LabAccess) -> Action:
    """Stop the lab's servers on the port in the namespace (HTTP for tcp, DNS for udp); the
    undo starts each again with the command that started it. (An undo's `restart` starts
    them, and its undo stops them.)"""
    if action.restart:
        undo = about_to_change(StopServers(action.ns, port=action.port, proto=action.proto))
        for line in action.restart:
            again = parse(line, action.ns)
            (apply_dns_server if isinstance(again, DnsServer) else apply_http_server)(again, lab)
        return undo
    module = servers.HTTP if action.proto == "tcp" else servers.DNS
    found = _options(lab, action.ns, action.port, module)
    if module == servers.HTTP:
        again = [HttpServer(action.ns, address=o.get("--bind", ""), port=action.port).command() for o in found]
    else:
        again = [_dns_from(action.ns, [o]).command() for o in found]
    undo = about_to_change(StopServers(action.ns, port=action.port, proto=action.proto,
                                       restart=tuple(sorted(again))))
    servers.stop(lab.dir, action.ns, None, action.port, module)
    return undo
