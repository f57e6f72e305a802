"""Traces and checks that prove their verdict, on situations each test builds itself.

Every scenario is a tiny lesson (real namespaces, real kernel) in which a packet is lost
for one known reason: no route back, ip_forward off, a FORWARD policy of DROP, no
MASQUERADE, DNAT only in PREROUTING for the host's own connection. The check must be
concluded by the kernel's evidence (not by the timeout) and name the namespace and the
reason; `trace` must say the same. Then every check of the real course is traced, and
the trace's verdict must agree with the check's.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import (
    LABS_ROOT,
    REPO,
    lesson_markdown,
    mounts_under,
    needs_root,
    real_lesson_files,
    run_on_pty,
    unique_name,
    write_lesson,
)

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.checks import PROBES
from netstep.course.course import Course
from netstep.kernel.tracefs import DropWatch
from netstep.ops.trace import trace

pytestmark = needs_root

CONTAINER = [
    "host# ip netns add netns0",
    "host# ip link add veth0 type veth peer name ceth0",
    "host# ip link set veth0 up",
    "host# ip link set ceth0 netns netns0",
    "netns0# ip link set lo up",
    "netns0# ip link set ceth0 up",
    "netns0# ip addr add 172.18.0.10/16 dev ceth0",
]
GATEWAY = [
    "host# ip link add br0 type bridge",
    "host# ip link set br0 up",
    "host# ip link set veth0 master br0",
    "host# ip addr add 172.18.0.1/16 dev br0",
    "netns0# ip route add default via 172.18.0.1",
]
MASQUERADE = "host# iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"
FORWARDING = "host# sysctl -w net.ipv4.ip_forward=1"

# name: (console lines, the check, the namespace where it stops, words of the reason)
SCENARIOS = {
    "no-route-back": (
        [*CONTAINER, "netns0# ip route add 10.0.2.0/24 dev ceth0", "host# ip route delete default via 10.0.2.2"],
        "ping netns0 -> 10.0.2.15 unreachable", "host", ["reached host", "no route back to 172.18.0.10"]),
    "no-route-back-tcp": (
        [*CONTAINER, "netns0# ip route add 10.0.2.0/24 dev ceth0", "host# ip route delete default via 10.0.2.2",
         "host# python3 -m http.server --bind 10.0.2.15 8080"],
        "tcp netns0 -> 10.0.2.15:8080 unreachable", "host", ["reached host", "no route back to 172.18.0.10"]),
    "nobody-has-it": (
        CONTAINER, "ping netns0 -> 172.18.0.99 unreachable (host-unreachable)", "netns0",
        ["out of ceth0 to 172.18.0.99", "nobody on that link has 172.18.0.99"]),
    "forwarding-off": (
        [*CONTAINER, *GATEWAY, MASQUERADE],
        "ping netns0 -> internet unreachable", "host", ["does not forward", "ip_forward = 0"]),
    "forward-drop": (
        [*CONTAINER, *GATEWAY, FORWARDING, MASQUERADE, "host# iptables -P FORWARD DROP"],
        "ping netns0 -> internet unreachable", "host", ["filter FORWARD policy DROP"]),
    "no-masquerade": (
        [*CONTAINER, *GATEWAY, FORWARDING],
        "ping netns0 -> internet unreachable", "upstream", ["reached upstream", "no route back to 172.18.0.10"]),
    "dnat-prerouting-only": (
        [*CONTAINER, *GATEWAY, "netns0# python3 -m http.server --bind 172.18.0.10 5000",
         "host# iptables -t nat -A PREROUTING -d 10.0.2.15/32 -p tcp --dport 5005 -j DNAT "
         "--to-destination 172.18.0.10:5000"],
        "tcp host -> 10.0.2.15:5005 unreachable (refused)", "host",
        ["nothing listens on 10.0.2.15:5005", "skip PREROUTING's nat rules"]),
}
# concluded by the evidence (counters, a rule, the ARP table), not by the kernel's answer or a timeout
SILENT = {"no-route-back", "no-route-back-tcp", "forwarding-off", "forward-drop", "no-masquerade", "nobody-has-it"}


def scenario_course(folder: Path, name: str) -> Course:
    commands, check, _, _ = SCENARIOS[name]
    write_lesson(folder, "01-scenario.md", lesson_markdown(f"Lesson 1: {name}", [("Build it", commands, [check])]))
    return Course.load(folder)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_failing_check_says_where_and_why_from_the_kernel(name: str, make_lab, tmp_path: Path) -> None:
    _, _, where, words = SCENARIOS[name]
    lab = make_lab("tr")
    engine = Engine(lab, scenario_course(tmp_path, name))
    result = engine.apply_next(show=False).checks[0]
    assert result.ok, result
    assert result.where == where, result
    for word in words:
        assert word in result.why, result
    assert result.evidence, result
    record = result.as_json()
    assert {"where", "why", "evidence", "concluded"} <= set(record), record
    if name in SILENT:  # concluded by the evidence, not by waiting out the silence (bench/ times it)
        assert result.concluded == "evidence", result
        assert {"counters", "rules", "neighbour"} & set(result.evidence), result
    else:
        assert result.concluded == "error", result

    check = result.check
    traced = trace(lab, check.source, check.target, port=check.port, kind=check.kind)
    assert traced.result.actual == "unreachable", traced.as_json()
    assert traced.finding.where == where, traced.as_json()
    for word in words:
        assert word in traced.finding.why, traced.as_json()
    # The trace's own probe is proven as the check's was, not waited for.
    assert traced.result.concluded == result.concluded, traced.as_json()


def test_the_verdict_comes_from_the_kernel_not_from_the_lesson(make_lab, tmp_path: Path) -> None:
    """The same situation checked as if it should work: still the same where and why."""
    commands, line, where, words = SCENARIOS["forwarding-off"]
    write_lesson(tmp_path, "01-x.md", lesson_markdown("Lesson 1: X", [("Build", commands, [
        line.replace("unreachable", "reachable")])]))
    lab = make_lab("tr")
    result = Engine(lab, Course.load(tmp_path)).apply_next(show=False).checks[0]
    assert not result.ok and result.actual == "unreachable"
    assert result.where == where and words[1] in result.why, result


def test_a_trace_of_a_working_path_shows_it_there_and_back(make_lab, tmp_path: Path) -> None:
    commands = [*CONTAINER, *GATEWAY, FORWARDING, MASQUERADE]
    write_lesson(tmp_path, "01-x.md", lesson_markdown("Lesson 1: X", [("Build", commands, [])]))
    lab = make_lab("tr")
    Engine(lab, Course.load(tmp_path)).apply_next(show=False)
    traced = trace(lab, "netns0", "internet")
    assert traced.reachable and traced.finding.where == "upstream", traced.as_json()
    assert [hop.ns for hop in traced.forward.hops] == ["netns0", "host", "upstream"]
    assert [hop.ns for hop in traced.reply.hops] == ["upstream", "host", "netns0"], traced.as_json()
    assert any("MASQUERADE" in rule for rule in traced.finding.evidence.get("rules", [])), traced.as_json()
    assert any("src=172.18.0.10" in flow for flow in traced.finding.evidence.get("conntrack", [])), traced.as_json()


@pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")
def test_every_check_of_the_course_traces_to_the_same_verdict(make_lab) -> None:
    lab = make_lab("tc")
    engine = Engine(lab, Course.load())
    traced = 0
    while engine.next_step() is not None:
        step = engine.apply_next(show=False)
        for result in step.checks:
            check = result.check
            if check.kind not in PROBES:  # a bind or dns check sends nothing trace could follow
                continue
            if check.size is not None or check.path:  # trace sends its own small probe: a large DF ping
                continue  # or a 100 kB answer (lesson 11) is a different packet from the one traced
            found = trace(lab, check.source, check.target, port=check.port, kind=check.kind)
            assert found.result.actual == result.actual, (step.step.ref, check, found.as_json())
            assert found.finding.where, (step.step.ref, check, found.as_json())
            if result.actual == "unreachable":
                assert result.where == found.finding.where, (step.step.ref, result, found.as_json())
            traced += 1
    assert traced >= 40


def test_the_drop_watch_leaves_no_trace_instance(lab) -> None:
    with DropWatch() as watch:
        instance = watch.instance
        assert instance and os.path.isdir(instance)
    assert not os.path.exists(instance)
    assert not [m for m in mounts_under("/run/netstep") if "tracefs" in m]  # a mount of its own is gone too
    try:
        with DropWatch() as watch:
            instance = watch.instance
            raise RuntimeError("in the middle")
    except RuntimeError:
        pass
    assert not os.path.exists(instance)


# -- the command line -------------------------------------------------------------------------------


def netstep_cli(lab: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture
def cli_lab():
    name = unique_name("tt")
    try:
        yield name
    finally:
        try:
            netstep_cli(name, "reset")
        finally:
            Lab(name).destroy()


def test_the_cli_proves_a_failure_and_traces_it_in_json_and_on_a_terminal(cli_lab: str, tmp_path: Path) -> None:
    commands, line, _, _ = SCENARIOS["forwarding-off"]
    lesson = write_lesson(tmp_path, "01-off.md", lesson_markdown("Lesson 1: Off", [
        ("Build it", commands, [line, "ping netns0 -> 172.18.0.1 reachable"])]))
    ran = netstep_cli(cli_lab, "run", str(lesson), "--yes", "--json")
    assert ran.returncode == 0 and "Traceback" not in ran.stderr, ran.stderr
    lost, answered = (r for r in map(json.loads, ran.stdout.splitlines()) if "event" not in r)
    assert {"lesson", "step", "from", "to", "kind", "expect", "actual", "reason", "detail", "ok", "ms"} <= set(lost)
    assert lost["ok"] and lost["reason"] == "no-answer" and lost["concluded"] == "evidence", lost
    assert lost["where"] == "host" and "ip_forward = 0" in lost["why"], lost
    assert lost["evidence"]["counters"]["host"]["Ip.InAddrErrors"] >= 1, lost
    assert answered["ok"] and answered["concluded"] == "answer" and answered["where"] is None, answered

    traced = netstep_cli(cli_lab, "trace", "netns0", "internet", "--json")
    assert traced.returncode == 1 and "Traceback" not in traced.stderr, traced.stderr
    found = json.loads(traced.stdout)
    assert found["where"] == "host" and [hop["ns"] for hop in found["path"]] == ["netns0", "host"], found
    assert found["path"][-1]["action"] == "dropped", found
    assert found["concluded"] == "evidence" and "0.2 s" not in found["detail"], found
    assert json.loads(netstep_cli(cli_lab, "trace", "netns0", "172.18.0.1", "--icmp", "--json").stdout)["actual"] \
        == "reachable"

    status, output = run_on_pty([sys.executable, "-m", "netstep", "--lab", cli_lab, "trace", "netns0", "internet"],
                                columns=110, rows=40, timeout=60)
    text = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", output).decode(errors="replace")
    assert status == 1, text
    for words in ("trace ping netns0 → 203.0.113.8", "where: host", "ip_forward = 0", "✘ dropped",
                  "ip route get 203.0.113.8 from 172.18.0.10 iif br0", "Ip.InAddrErrors"):
        assert words in text, text


@pytest.mark.parametrize("args, words", [
    (["trace", "netns0", "1.2.3.4:99999"], "port from 1 to 65535"),
    (["trace", "netns0", "nowhere"], "is not an IPv4 address"),
    (["trace", "netns0", "10.0.2.15:80", "--icmp"], "A ping has no port"),
    (["trace", "netns0", "10.0.2.15", "--http"], "HTTP traces need a port"),
    (["trace", "nosuchns", "10.0.2.15"], "There is no namespace 'nosuchns'"),
    (["trace", "netns0", "example.com"], "add --dns"),
    (["trace", "netns0", "example.com:53", "--dns"], "takes a name without a port"),
    (["trace", "netns0", "10.0.2.2", "--dns"], "is an address already"),
    (["trace", "netns0", "bad..name", "--dns"], "is not a host name"),
    (["trace", "netns0", "example.com", "--dns", "--size", "100"], "takes no port and no size"),
])
def test_bad_trace_input_is_one_clear_paragraph(cli_lab: str, args: list[str], words: str) -> None:
    result = netstep_cli(cli_lab, *args)
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout, result.stderr
    assert words in result.stderr, result.stderr


def test_a_notebook_traces_with_t_trace_and_draws_it_as_html() -> None:
    from netstep.tutor import Tutor

    name = unique_name("tn")
    try:
        tutor = Tutor(name)
        try:
            tutor.start("masquerade")
            tutor.step()  # 6.1: ip_forward is still 0 on the host
            found = tutor.trace("netns0", "internet")
            assert found.finding.where == "host" and "ip_forward = 0" in found.finding.why, found.as_json()
            html = found._repr_mimebundle_()["text/html"]
            assert "where: " in html and "ip_forward = 0" in html and "netns0" in html
            drawn = html[html.index('<svg class="netstep-diagram"'):]  # the words first, then the picture
            assert 'id="leg1"' in drawn and 'id="leg2"' not in drawn and "✘ host does not forward packets" in drawn
        finally:
            tutor.reset()
    finally:
        Lab(name).destroy()


# Silent losses of lessons 9 and 11, explained by what the kernel shows: (step, source, target,
# where, words of the reason). The route lookups are the kernel's own (`ip route get ... from`).
QUIET_LOSSES = [
    ("9.2", "host", "127.0.0.1", "host", ["route_localnet = 0", "`ip route get 172.18.0.10 from 127.0.0.1` fails"]),
    ("9.3", "host", "127.0.0.1", "netns0", ["martian", "from 127.0.0.1", "`ip route get 172.18.0.10 from 127.0.0.1 "
                                                                          "iif ceth0` fails"]),
    ("11.2", "netns0", "10.0.2.2", "host", ["MTU of eth0 (1400)", "Ip.FragFails", "“fragmentation needed” it owed "
                                            "172.18.0.10 was dropped by host filter OUTPUT"]),
    ("11.2", "upstream", "10.0.2.15", "host", ["MTU of eth0 (1400)", "owed 172.18.0.10 was dropped"]),
    ("11.2", "host", "10.0.2.2", "host", ["refuses to send it", "MTU of eth0 (1400)"]),
    ("11.4", "netns0", "10.0.2.2", "netns0", ["refuses to send it", "MTU of ceth0 (1400)"]),
]


@pytest.mark.skipif(len(real_lesson_files()) < 11, reason="needs lessons 9 and 11 in lessons/")
def test_the_silent_losses_of_lessons_9_and_11_say_what_the_kernel_shows(make_lab) -> None:
    """A loopback source, a martian, the bridge's hairpin rule and an MTU black hole: every
    failing check of lessons 9 and 11 names where and why (no "no counter, route or rule");
    the dropped "fragmentation needed" is the rule's doing, never the probe's."""
    course = Course.load()
    refs = [s.ref for s in course.steps]
    engine = Engine(make_lab("quiet"), course)
    found = {}
    for lesson in ("9", "11"):
        engine.skip_to(refs.index(f"{lesson}.1"))
        for _ in [s for s in course.steps if s.ref.split(".")[0] == lesson]:
            result = engine.apply_next(show=False)
            for check in result.checks:
                assert check.ok, check
                if check.actual == "unreachable" and check.reason != "refused":
                    assert check.where and "no counter" not in check.why, (result.step.ref, check.why, check.evidence)
                    found[result.step.ref, check.check.source, check.check.target] = (check.where, check.why)
    for ref, source, target, where, words in QUIET_LOSSES:
        assert (ref, source, target) in found, (ref, source, target, sorted(found))
        seen_where, why = found[ref, source, target]
        assert seen_where == where and all(w in why for w in words), (ref, source, target, why)
        assert "dropped by filter OUTPUT the rule" not in why  # (the rule dropped the ICMP, not the probe)


# -- a name looked up: trace FROM NAME --dns, at lesson 13's positions ---------------------------------


def at_lesson13_step(lab: str, steps: int) -> None:
    """The lab at lesson 13's start, then its first `steps` steps applied, through the CLI."""
    for args in (("start", "13"), *[("next",)] * steps):
        done = netstep_cli(lab, *args)
        assert done.returncode == 0, done.stdout + done.stderr


def in_ns(lab: str, ns: str, *argv: str) -> str:
    """`argv` run in the lab's namespace `ns` with the machine's own tools (nsenter), not netstep."""
    return subprocess.run(["nsenter", f"--net={Lab(lab).path_of(ns)}", *argv], capture_output=True, text=True,
                          check=True, timeout=30).stdout


def udp_53(lab: str, ns: str) -> dict[str, str]:
    """{address:53 -> pid} of the UDP sockets bound to port 53 in `ns`, as `ss -ulnp` lists them."""
    out = {}
    for line in in_ns(lab, ns, "ss", "-Hulnp", "sport = :53").splitlines():
        local = line.split()[3]
        out[local] = re.search(r"pid=(\d+)", line)[1]
    return out


def trace_dns_json(lab: str, source: str, name: str) -> tuple[int, dict]:
    traced = netstep_cli(lab, "trace", source, name, "--dns", "--json")
    assert "Traceback" not in traced.stderr, traced.stderr
    return traced.returncode, json.loads(traced.stdout)


def test_a_dns_trace_follows_the_query_to_the_nameserver_that_answers(cli_lab: str, tmp_path: Path) -> None:
    at_lesson13_step(cli_lab, 4)  # 13.4: netns0's own resolv.conf names upstream's resolver, 10.0.2.2
    with open(os.path.join(LABS_ROOT, cli_lab, "etc", "netns", "netns0", "resolv.conf")) as f:
        assert f.read().split() == ["nameserver", "10.0.2.2"]  # the file itself, in the lab's /etc
    assert "10.0.2.2:53" in udp_53(cli_lab, "upstream")  # who listens there, as ss sees it
    status, found = trace_dns_json(cli_lab, "netns0", "example.com")
    assert status == 0 and found["actual"] == "reachable", found
    assert (found["resolv.conf"], found["nameserver"]) == ("/etc/netns/netns0/resolv.conf", "10.0.2.2"), found
    assert found["answer"] == ["203.0.113.8"] and found["where"] == "upstream", found  # the lesson's resolver
    assert "10.0.2.2 in upstream answered: example.com is 203.0.113.8" in found["why"], found
    assert [hop["ns"] for hop in found["path"]] == ["netns0", "host", "upstream"], found
    assert found["path"][-1]["action"] == "delivered" and found["path"][0]["route"]["lookup"] == \
        "ip route get 10.0.2.2", found
    assert [hop["ns"] for hop in found["reply_path"]] == ["upstream", "host", "netns0"], found
    assert any("dport=53" in flow for flow in found["evidence"]["conntrack"]), found  # masqueraded on the way

    svg = tmp_path / "dns.svg"
    drawn = netstep_cli(cli_lab, "trace", "netns0", "example.com", "--dns", "--svg", str(svg))
    assert drawn.returncode == 0 and "Traceback" not in drawn.stderr, drawn.stderr
    for words in ("trace dns netns0 → example.com", "netns0's programs read /etc/netns/netns0/resolv.conf: "
                  "nameserver 10.0.2.2", "why: 10.0.2.2 in upstream answered"):
        assert words in drawn.stdout, drawn.stdout
    if "drew the lab to" in drawn.stdout:  # (without Graphviz the lab is drawn as text instead)
        assert 'id="leg1"' in svg.read_text() and "dns, nameserver 10.0.2.2" in svg.read_text()


def test_a_dns_trace_says_a_query_to_its_own_127_0_0_53_is_refused(cli_lab: str) -> None:
    at_lesson13_step(cli_lab, 3)  # 13.3: netns0 has a copy of the host's file; the stub runs in the host
    host, mine = udp_53(cli_lab, "host"), udp_53(cli_lab, "netns0")
    assert "127.0.0.53:53" in host and not mine, (host, mine)  # the stub is the host's; netns0 has none
    status, found = trace_dns_json(cli_lab, "netns0", "example.com")
    assert status == 1 and (found["actual"], found["reason"]) == ("unreachable", "refused"), found
    assert found["nameserver"] == "127.0.0.53" and found["where"] == "netns0", found
    assert [(hop["ns"], hop["action"]) for hop in found["path"]] == [("netns0", "delivered")], found  # its own lo
    for words in ("nothing listens on 127.0.0.53:53 in netns0", "127.0.0.53 is netns0's own loopback",
                  "a server listens on 127.0.0.53:53 in host"):
        assert words in found["why"], found
    sockets = found["evidence"]["sockets"]
    assert any(f"host: UNCONN 127.0.0.53:53 held by pid {host['127.0.0.53:53']} " in s for s in sockets), sockets
    assert found["evidence"]["counters"]["netns0"]["Icmp.OutDestUnreachs"] >= 1, found  # the kernel's refusal


@pytest.mark.parametrize("ns, chain, rule", [
    ("netns0", "OUTPUT", ["-A", "OUTPUT", "-p", "udp", "--dport", "53", "-j", "DROP"]),
    ("host", "FORWARD", ["-I", "FORWARD", "-p", "udp", "--dport", "53", "-j", "DROP"]),
])
def test_a_dns_trace_names_the_rule_that_dropped_the_query(cli_lab: str, ns: str, chain: str,
                                                           rule: list[str]) -> None:
    at_lesson13_step(cli_lab, 4)
    in_ns(cli_lab, ns, "iptables", *rule)  # (the lab's namespace: reset takes it away with the rule)

    def dropped() -> int:  # rule 1's packet counter, as iptables lists it
        listed = in_ns(cli_lab, ns, "iptables", "-L", chain, "-v", "-n", "-x", "--line-numbers").splitlines()
        first = next(line.split() for line in listed if line.startswith("1 "))
        assert first[3] == "DROP" and "dpt:53" in first, listed
        return int(first[1])

    before = dropped()
    status, found = trace_dns_json(cli_lab, "netns0", "example.com")
    assert dropped() > before  # the kernel counted the query on that rule
    assert status == 1 and found["actual"] == "unreachable" and found["where"] == ns, found
    assert f"dropped by {ns} filter {chain} rule 1 `-p udp -m udp --dport 53 -j DROP`" in found["why"], found
    assert found["path"][-1]["ns"] == ns and found["path"][-1]["action"] == "dropped", found
    assert found["reply_path"] == [] and found["nameserver"] == "10.0.2.2", found
