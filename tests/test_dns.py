"""Lesson 13's pieces on the real kernel: the dns check, the lab's resolvers and its /etc.

Names are looked up from inside a lab's namespaces, by netstep's own DNS servers (dnslib),
as a program started by `ip netns exec` looks them up; the lab's resolv.conf files live in
its folder, and `netstep shell` lays them over /etc in its own mount namespace, where the
real `ip netns exec` binds a namespace's file and the real `nsenter` does not. The
machine's /etc is never written.
"""

from __future__ import annotations

import os
import subprocess

import pytest
from support import needs_root, real_lesson_files

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.lessons import _Parser
from netstep.kernel import servers
from netstep.ops.files import etc_of
from netstep.shell import shell_argv

pytestmark = [needs_root, pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")]

UPSTREAM_DNS = "upstream# dnsmasq --keep-in-foreground --no-resolv --listen-address=10.0.2.2 " \
               "--address=/example.com/203.0.113.8"


def at_lesson7_end(lab: Lab) -> Engine:
    engine = Engine(lab)
    lesson = engine.course.find("7")
    list(engine.goto(engine.course.start_of(lesson) + len(lesson.steps)))
    return engine


def checks(engine: Engine, *lines: str) -> dict[str, tuple[str, str, str]]:
    parser = _Parser("checks.md", 1, "checks")
    results = engine.run_checks([parser._check(line, 1) for line in lines])
    return {line: (r.actual, r.reason, r.why) for line, r in zip(lines, results, strict=True)}


def dns_pids(lab: Lab) -> list[int]:
    return [pid for pid, options in servers.running(lab.dir) if options["module"] == servers.DNS]


def test_names_resolve_as_each_namespace_reads_its_resolv_conf(lab: Lab) -> None:
    engine = at_lesson7_end(lab)
    seen = checks(engine, "dns host example.com reachable")
    assert seen["dns host example.com reachable"][:2] == ("unreachable", "refused")  # 127.0.0.53: no stub yet
    assert "127.0.0.53 is host's own loopback" in seen["dns host example.com reachable"][2]
    engine.run_own("\n".join([
        UPSTREAM_DNS,
        "host# dnsmasq --keep-in-foreground --no-resolv --listen-address=127.0.0.53 --server=10.0.2.2",
        "host# mkdir -p /etc/netns/netns0",
        "host# cp /etc/resolv.conf /etc/netns/netns0/resolv.conf",
        "host# mkdir -p /etc/netns/netns1",
        "host# echo 'nameserver 10.0.2.2' > /etc/netns/netns1/resolv.conf",
    ]))
    seen = checks(engine, "dns host example.com reachable", "dns host nowhere.example reachable",
                  "dns netns0 example.com reachable", "dns netns1 example.com reachable")
    assert seen["dns host example.com reachable"][:2] == ("reachable", "answer")  # through the stub
    assert seen["dns host nowhere.example reachable"][:2] == ("unreachable", "not-found")
    actual, reason, why = seen["dns netns0 example.com reachable"]  # the copy names its own loopback
    assert (actual, reason) == ("unreachable", "refused") and "/etc/netns/netns0/resolv.conf" in why
    assert seen["dns netns1 example.com reachable"][:2] == ("reachable", "answer")
    engine.run_own("host# cp /etc/resolv.conf /etc/netns/netns1/resolv.conf\nnetns1# iptables -t nat -A OUTPUT "
                   "-d 127.0.0.53/32 -p udp --dport 53 -j DNAT --to-destination 10.0.2.2")
    actual, reason, why = checks(engine, "dns netns1 example.com reachable")["dns netns1 example.com reachable"]
    assert (actual, reason) == ("unreachable", "not-sent") and "route_localnet" in why
    assert len(dns_pids(lab)) == 2

    engine.undo_own()  # the student's servers stop and their files go, though no snapshot holds them
    assert dns_pids(lab) == []
    assert not os.path.exists(os.path.join(etc_of(lab.dir), "netns"))
    with open(os.path.join(etc_of(lab.dir), "resolv.conf")) as f:
        assert f.read().startswith("nameserver 127.0.0.53")


def test_an_embedded_resolver_forwards_and_fuser_stops_it_reversibly(lab: Lab) -> None:
    engine = at_lesson7_end(lab)
    engine.run_own("\n".join([
        UPSTREAM_DNS, "host# mkdir -p /etc/netns/netns1",
        "host# echo 'nameserver 127.0.0.11' > /etc/netns/netns1/resolv.conf",
        "netns1# dnsmasq --keep-in-foreground --no-resolv --listen-address=127.0.0.11 --server=10.0.2.2"]))
    line = "dns netns1 example.com reachable"
    assert checks(engine, line)[line][:2] == ("reachable", "answer")
    from netstep.course.commands import parse
    from netstep.ops import apply as executor

    undo = executor.apply(lab, parse("fuser -k 53/udp", "upstream"))  # the real resolver goes
    assert checks(engine, line)[line][:2] == ("unreachable", "server-failure")  # the forwarder's SERVFAIL
    executor.apply(lab, undo)  # and comes back, with what it knew
    assert checks(engine, line)[line][:2] == ("reachable", "answer")
    engine.undo_own()
    assert dns_pids(lab) == []


def test_the_shell_lays_the_labs_etc_over_the_machines(lab: Lab) -> None:
    """In `netstep shell`, the real `ip netns exec` binds a namespace's resolv.conf and the
    real `nsenter` does not; what the shell writes under /etc lands in the lab's folder."""
    engine = at_lesson7_end(lab)
    with open("/etc/resolv.conf") as f:
        machine = f.read()
    machine_netns = os.path.exists("/etc/netns")
    script = "\n".join([
        "mkdir -p /etc/netns/netns0",
        "echo 'nameserver 10.0.2.2' > /etc/netns/netns0/resolv.conf",
        "echo exec: $(ip netns exec netns0 cat /etc/resolv.conf)",
        f"echo nsenter: $(nsenter --net={lab.netns_dir}/netns0 cat /etc/resolv.conf | head -n 1)",
        "exit 0"])
    made = not os.path.isdir("/run/netns")
    os.makedirs("/run/netns", exist_ok=True)
    try:
        done = subprocess.run(shell_argv(lab, "host"), input=script + "\n", capture_output=True, text=True,
                              timeout=60, check=False)
    finally:
        if made:
            os.rmdir("/run/netns")
    assert "exec: nameserver 10.0.2.2" in done.stdout, done.stdout + done.stderr
    assert "nsenter: nameserver 127.0.0.53" in done.stdout, done.stdout + done.stderr
    with open(os.path.join(etc_of(lab.dir), "netns", "netns0", "resolv.conf")) as f:
        assert f.read() == "nameserver 10.0.2.2\n"  # in the lab's folder
    line = "dns netns0 example.com reachable"
    assert checks(engine, line)[line][:2] == ("unreachable", "refused")  # nothing on 10.0.2.2 yet: refused there
    with open("/etc/resolv.conf") as f:
        assert f.read() == machine
    assert os.path.exists("/etc/netns") == machine_netns
