"""Lesson 12's pieces on the real kernel: the bind check and `fuser -k`.

A bind check takes the address and port with a new socket in the namespace, as a second
server would; where the kernel refuses, it names the listening socket in the way and the
process that holds it. `fuser -k PORT/tcp` stops the lab's servers on that port, and its
undo starts them again where they were.
"""

from __future__ import annotations

from pathlib import Path

from support import httpd_pids, needs_root
from test_engine import SERVER_BASE, check_results, course_of

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.kernel import servers

pytestmark = needs_root

POD = ["netns0# ip link set lo up", "netns0# python3 -m http.server --bind 127.0.0.1 6000",
       "netns0# python3 -m http.server --bind 172.18.0.10 5000"]


def test_bind_is_refused_where_a_socket_listens_and_names_its_process(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Cable", SERVER_BASE, []), ("Pod", POD, [
        "bind netns0 -> 127.0.0.1:6000 unreachable (in-use)",
        "bind netns0 -> 0.0.0.0:5000 unreachable (in-use)",
        "bind netns0 -> 127.0.0.1:6001 reachable",
        "bind host -> 127.0.0.1:6000 reachable",
        "http netns0 -> 127.0.0.1:6000 reachable",
    ]))
    engine = Engine(lab, course)
    engine.apply_next()
    result = engine.apply_next()
    seen = {r.check.describe(): r for r in result.checks}
    assert result.ok, [(k, r.actual, r.reason, r.detail) for k, r in seen.items()]
    taken = seen["bind netns0 -> 127.0.0.1:6000"]
    assert (taken.actual, taken.reason, taken.where) == ("unreachable", "in-use", "netns0")
    pids = {str(pid): port for pid, port in _server_ports(lab)}
    [holder] = taken.evidence["sockets"]
    assert holder.startswith("LISTEN 127.0.0.1:6000 held by pid ") and "netstep.kernel.httpd" in holder
    assert pids[holder.split("pid ")[1].split()[0]] == "6000"  # the sidecar's own pid, read from /proc
    wildcard = seen["bind netns0 -> 0.0.0.0:5000"]  # every address overlaps 172.18.0.10's listener
    assert wildcard.evidence["sockets"][0].startswith("LISTEN 172.18.0.10:5000 held by pid ")
    assert seen["bind host -> 127.0.0.1:6000"].reason == "bound"  # the host has a port space of its own


def test_fuser_stops_the_servers_on_a_port_and_its_undo_starts_them_again(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Cable", SERVER_BASE, []), ("Pod", POD, []),
                       ("Stop", ["netns0# fuser -k 6000/tcp"], [
                           "tcp netns0 -> 127.0.0.1:6000 unreachable (refused)",
                           "http netns0 -> 172.18.0.10:5000 reachable",
                           "bind netns0 -> 127.0.0.1:6000 reachable"]))
    engine = Engine(lab, course)
    engine.apply_next()
    engine.apply_next()
    assert sorted(port for _, port in _server_ports(lab)) == ["5000", "6000"]
    stopped = engine.apply_next()
    assert stopped.ok, [(r.check.describe(), r.actual, r.reason) for r in stopped.checks]
    assert [port for _, port in _server_ports(lab)] == ["5000"]  # only port 6000's server went

    engine.undo_last()
    assert sorted(port for _, port in _server_ports(lab)) == ["5000", "6000"]
    assert check_results(engine, "http netns0 -> 127.0.0.1:6000 reachable") == {
        "http netns0 -> 127.0.0.1:6000 reachable": ("reachable", "HTTP 200")}
    engine.rollback_all()
    assert httpd_pids(lab.dir) == []


def _server_ports(lab: Lab) -> list[tuple[int, str]]:
    return [(pid, options["--port"]) for pid, options in servers.running(lab.dir)]

