"""The engine on a real lab: steps applied, checked, undone exactly, and refused when unsafe.

Each test writes a tiny course to tmp_path, runs it on a lab of its own (real namespaces
on the real kernel) and destroys the lab at the end, whatever happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import config_diff, httpd_pids, lesson_markdown, mounts_under, needs_root, sysctl_keys, write_lesson

from netstep.core.engine import Engine
from netstep.core.journal import Journal
from netstep.core.lab import Lab
from netstep.core.results import StepResult
from netstep.course.actions import Action
from netstep.course.checks import Check
from netstep.course.course import Course
from netstep.course.lessons import Command
from netstep.errors import KernelError, LabBusy, NameConflict, NetstepError
from netstep.kernel import namespaces
from netstep.ops import apply as executor
from netstep.state.snapshot import to_json

pytestmark = needs_root

# A container on a veth cable, a bridge, rules of every kind the grammar has, a sysctl.
BUILD = [
    "host# ip netns add netns0",
    "host# ip link add veth0 type veth peer name ceth0",
    "host# ip link set ceth0 netns netns0",
    "host# ip link set veth0 up",
    "host# ip addr add 172.18.0.11/16 dev veth0",
    "netns0# ip link set lo up",
    "netns0# ip link set ceth0 up",
    "netns0# ip addr add 172.18.0.10/16 dev ceth0",
    "host# ip link add br0 type bridge",
    "host# iptables -N TINY",
    "host# iptables -A TINY -s 172.18.0.0/16 -j ACCEPT",
    "host# iptables -P FORWARD DROP",
    "host# sysctl -w net.ipv4.ip_forward=1",
]
BUILD_CHECKS = [
    "ping netns0 -> 172.18.0.11 reachable",
    "ping host -> 172.18.0.10 reachable",
    "ping netns0 -> 10.0.2.15 unreachable (no-route)",
    "ping host -> 172.18.0.99 unreachable (host-unreachable)",
]


def course_of(folder: Path, *steps: tuple[str, list[str], list[str]], title: str = "Lesson 1: Tiny") -> Course:
    """A one-lesson course made of `steps` (title, console lines, check lines)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_lesson(folder, "01-tiny.md", lesson_markdown(title, list(steps)))
    return Course.load(folder)


def config(lab: Lab, course: Course):
    return lab.snapshot(caches=False, sysctls=sysctl_keys(course))


def assert_same_config(lab: Lab, course: Course, expected, what: str) -> None:
    now = config(lab, course)
    assert now.same_config(expected), f"{what}:\n" + "\n".join(config_diff(expected, now))


def check(line: str) -> Check:
    """A Check from a check line, through the lesson parser (the only way lessons make them)."""
    kind, source, _, target, expect, *reason = line.split()
    host, _, port = target.partition(":")
    return Check(kind, source, host, int(port) if port else None, expect,
                 reason[0].strip("()") if reason else None)


def check_results(engine: Engine, *lines: str) -> dict[str, tuple[str, str]]:
    results = engine.run_checks([check(line) for line in lines])
    return {line: (r.actual, r.reason) for line, r in zip(lines, results, strict=True)}


# -- applying --------------------------------------------------------------------------------


def test_apply_next_reports_diff_and_checks(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Build", BUILD, BUILD_CHECKS))
    engine = Engine(lab, course)
    assert engine.position == 0

    result = engine.apply_next()

    assert isinstance(result, StepResult)
    assert result.direction == "apply"
    assert result.step is course.steps[0]
    assert engine.position == 1
    lines = result.diff.lines()
    expected = [
        "+ namespace netns0",
        "+ host links: veth0: veth UP peer ceth0@netns0",
        "+ host links: br0: bridge DOWN",
        "+ netns0 links: ceth0: veth UP peer veth0@host",
        "+ host addresses: veth0 172.18.0.11/16",
        "+ netns0 addresses: ceth0 172.18.0.10/16",
        "+ host routes: 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11",
        "+ netns0 routes: 172.18.0.0/16 dev ceth0 proto kernel scope link src 172.18.0.10",
        "+ host rules: filter -N TINY",
        "+ host rules: filter -A TINY -s 172.18.0.0/16 -j ACCEPT",
        "+ host rules: filter -P FORWARD DROP",
        "~ host sysctls: net.ipv4.ip_forward = 0 -> net.ipv4.ip_forward = 1",
    ]
    missing = [line for line in expected if line not in lines]
    assert not missing, f"missing from the diff: {missing}\nthe diff: {lines}"
    assert not any(line.startswith("- ") for line in lines), lines

    outcomes = [(r.check.target, r.actual, r.reason, r.ok) for r in result.checks]
    assert outcomes == [
        ("172.18.0.11", "reachable", "reply", True),
        ("172.18.0.10", "reachable", "reply", True),
        ("10.0.2.15", "unreachable", "no-route", True),
        ("172.18.0.99", "unreachable", "host-unreachable", True),
    ]
    assert result.ok
    # The journal on disk says the step is complete, with one undo per command.
    steps = Journal(lab.journal_path).steps
    assert [(s["ref"], s["complete"], len(s["entries"])) for s in steps] == [("1.1", True, len(BUILD))]
    assert all(entry["undo"] is not None for entry in steps[0]["entries"])


def test_checks_report_what_actually_happened(lab: Lab, tmp_path: Path) -> None:
    """A check that expects the wrong thing comes out not ok, with the real outcome."""
    wrong = ["ping netns0 -> 10.0.2.15 reachable", "ping host -> 172.18.0.10 unreachable",
             "ping netns0 -> 172.18.0.11 unreachable (no-route)"]
    course = course_of(tmp_path, ("Build", BUILD, wrong))
    result = Engine(lab, course).apply_next()
    assert [(r.actual, r.reason, r.ok) for r in result.checks] == [
        ("unreachable", "no-route", False), ("reachable", "reply", False), ("reachable", "reply", False)]
    assert not result.ok
    as_json = result.checks[0].as_json("lesson1", "1.1")
    assert {k: as_json[k] for k in ("lesson", "step", "from", "to", "kind", "expect", "actual", "reason", "ok")} == {
        "lesson": "lesson1", "step": "1.1", "from": "netns0", "to": "10.0.2.15", "kind": "ping",
        "expect": "reachable", "actual": "unreachable", "reason": "no-route", "ok": False}


def test_apply_without_checks_runs_none(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Build", BUILD, BUILD_CHECKS))
    result = Engine(lab, course).apply_next(run_checks=False)
    assert result.checks == []
    assert lab.has_namespace("netns0")


def test_finished_course_has_no_next_step(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Mark", ["host# iptables -N MARKER"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    assert engine.next_step() is None
    with pytest.raises(NetstepError, match="finished"):
        engine.apply_next()
    engine.undo_last()
    with pytest.raises(NetstepError, match="Nothing to roll back"):
        engine.undo_last()


# -- undoing ----------------------------------------------------------------------------------


def test_undo_last_restores_the_config_exactly(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Build", BUILD, []))
    engine = Engine(lab, course)
    before = config(lab, course)

    engine.apply_next()
    assert not config(lab, course).same_config(before)
    result = engine.undo_last()

    assert result.direction == "undo"
    assert engine.position == 0
    assert_same_config(lab, course, before, "undo of the build step")
    assert not lab.has_namespace("netns0")
    assert "- namespace netns0" in result.diff.lines()
    assert "- host rules: filter -N TINY" in result.diff.lines()
    assert lab.read_sysctl("host", "net.ipv4.ip_forward") == "0"
    assert Journal(lab.journal_path).steps == []


def test_undo_of_lo_up_removes_its_address(lab: Lab, tmp_path: Path) -> None:
    """Bringing lo up adds 127.0.0.1/8; bringing it down again must take that away too."""
    course = course_of(tmp_path, ("Netns", ["host# ip netns add netns0"], []),
                       ("Lo", ["netns0# ip link set lo up"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)
    engine.apply_next()
    assert "lo 127.0.0.1/8" in config(lab, course)["netns0"].addresses
    engine.undo_last()
    assert_same_config(lab, course, before, "undo of `ip link set lo up`")


def test_rollback_all_returns_to_a_fresh_lab(make_lab, tmp_path: Path) -> None:
    course = course_of(
        tmp_path,
        ("Build", BUILD, []),
        ("Bridge", ["host# ip link set br0 up", "host# ip addr add 172.19.0.1/16 dev br0",
                    "netns0# ip route add default via 172.18.0.11"], []),
        ("Server", ["netns0# python3 -m http.server --bind 172.18.0.10 5000"], []),
        ("Nat", ["host# iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"], []),
        ("Delete", ["host# ip link delete br0", "host# ip netns delete netns0"], []),
    )
    fresh_lab, lab = make_lab("f"), make_lab()
    fresh = config(fresh_lab, course)
    engine = Engine(lab, course)
    assert config(lab, course).same_config(fresh)
    moves = list(engine.goto(len(course.steps)))
    assert [m.direction for m in moves] == ["apply"] * 5

    undone = engine.rollback_all()

    assert [r.step.ref for r in undone] == ["1.5", "1.4", "1.3", "1.2", "1.1"]
    assert engine.position == 0
    assert_same_config(lab, course, fresh, "rollback_all")
    assert httpd_pids(lab.dir) == []


# -- deletions are undone exactly -------------------------------------------------------------

# A lab with two containers (one behind the bridge), routes, rules in two tables, a chain to
# delete; each case deletes something from it, and its undo must rebuild it exactly.
WIRED = [
    "host# ip link add br0 type bridge",
    "host# ip link set br0 up",
    "host# ip addr add 10.9.0.1/24 dev br0",
    "host# ip netns add netns1",
    "host# ip link add veth1 type veth peer name ceth1",
    "host# ip link set ceth1 netns netns1",
    "host# ip link set veth1 master br0",
    "host# ip link set veth1 up",
    "netns1# ip link set lo up",
    "netns1# ip link set ceth1 up",
    "netns1# ip addr add 10.9.0.20/24 dev ceth1",
    "netns1# ip route add default via 10.9.0.1",
    "host# ip netns add netns0",
    "host# ip link add veth0 type veth peer name ceth0",
    "host# ip link set ceth0 netns netns0",
    "host# ip link set veth0 up",
    "host# ip addr add 172.18.0.11/16 dev veth0",
    "netns0# ip link set lo up",
    "netns0# ip link set ceth0 up",
    "netns0# ip addr add 172.18.0.10/16 dev ceth0",
    "netns0# ip route add default via 172.18.0.11",
    "host# ip route add 10.50.0.0/16 via 172.18.0.10",
    "host# iptables -N TINY",
    "host# iptables -N EMPTY",
    "host# iptables -A TINY -s 172.18.0.0/16 -j ACCEPT",
    "host# iptables -A TINY -s 10.9.0.0/24 -j ACCEPT",
    "host# iptables -A TINY -d 10.9.0.0/24 -j RETURN",
    "host# iptables -A FORWARD -j TINY",
    "host# iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE",
    "host# sysctl -w net.ipv4.ip_forward=1",
]
WIRED_CHECKS = ["ping netns0 -> 172.18.0.11 reachable", "ping netns1 -> 10.9.0.1 reachable"]


@dataclass(frozen=True)
class Deletion:
    command: str
    gone: str  # how to see that it really was deleted: "ns part entry" or "namespace NAME"


DELETIONS = [
    Deletion("host# ip route delete 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11",
             "host routes 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11"),
    Deletion("host# ip route delete 10.50.0.0/16 via 172.18.0.10",
             "host routes 10.50.0.0/16 via 172.18.0.10 dev veth0"),
    Deletion("netns0# ip route delete default via 172.18.0.11",
             "netns0 routes default via 172.18.0.11 dev ceth0"),
    Deletion("host# ip addr del 172.18.0.11/16 dev veth0", "host addresses veth0 172.18.0.11/16"),
    Deletion("host# iptables -D TINY -s 10.9.0.0/24 -j ACCEPT", "host rules filter -A TINY -s 10.9.0.0/24 -j ACCEPT"),
    Deletion("host# iptables -D FORWARD -j TINY", "host rules filter -A FORWARD -j TINY"),
    Deletion("host# iptables -t nat -D POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE",
             "host rules nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"),
    Deletion("host# iptables -P FORWARD DROP", "host rules <policy ACCEPT>"),
    Deletion("host# iptables -X EMPTY", "host rules filter -N EMPTY"),
    Deletion("host# ip link set veth1 nomaster", "host links veth1: veth UP master br0 peer ceth1@netns1"),
    Deletion("host# ip link set veth0 down", "host links veth0: veth UP peer ceth0@netns0"),
    Deletion("host# ip link delete veth0", "host links veth0: veth UP peer ceth0@netns0"),
    Deletion("netns0# ip link delete ceth0", "host links veth0: veth UP peer ceth0@netns0"),
    Deletion("host# ip link delete veth1", "host links veth1: veth UP master br0 peer ceth1@netns1"),
    Deletion("host# ip link delete br0", "host links br0: bridge UP"),
    Deletion("host# ip netns delete netns0", "namespace netns0"),
    Deletion("host# ip netns delete netns1", "namespace netns1"),
    Deletion("netns1# ip link set ceth1 netns host", "netns1 links ceth1: veth UP peer veth1@host"),
    Deletion("netns0# sysctl -w net.ipv4.conf.all.rp_filter=2", "netns0 sysctls <rp_filter>"),
]


def _present(snapshot, gone: str) -> bool:
    words = gone.split(" ", 2)
    if words[0] == "namespace":
        return words[1] in snapshot.namespaces
    ns, part, entry = words
    state = snapshot[ns]
    if entry == "<policy ACCEPT>":
        return "filter -P FORWARD DROP" not in state.rules
    if entry == "<rp_filter>":
        return ("net.ipv4.conf.all.rp_filter", "2") not in state.sysctls
    return entry in state.part(part)


@pytest.mark.parametrize("case", DELETIONS, ids=[d.command.split("# ", 1)[1] for d in DELETIONS])
def test_deletion_is_undone_exactly(lab: Lab, tmp_path: Path, case: Deletion) -> None:
    course = course_of(tmp_path, ("Wire", WIRED, WIRED_CHECKS), ("Take apart", [case.command], []))
    engine = Engine(lab, course)
    wired = engine.apply_next()
    assert wired.ok, [r.as_json() for r in wired.checks]
    before = config(lab, course)
    assert _present(before, case.gone), f"the test lab lacks what the case deletes: {case.gone}"

    engine.apply_next()
    assert not _present(config(lab, course), case.gone), f"`{case.command}` did not remove {case.gone}"

    engine.undo_last()
    assert_same_config(lab, course, before, f"undo of `{case.command}`")
    # The rebuilt lab works as before, too.
    again = engine.run_checks(course.steps[0].checks)
    assert all(r.ok for r in again), [r.as_json() for r in again]


def _forward(lab: Lab) -> list[str]:
    return [line for line in lab.exec("host", ["iptables", "-S", "FORWARD"]).stdout.splitlines()
            if line.startswith("-A ")]


@pytest.mark.parametrize(("also_gone", "expected"), [
    ((), ["1", "2", "3"]),  # nothing else changed: back in its place
    (("1",), ["2", "3"]),  # the rule before it went: before the rule after it
    (("3",), ["1", "2"]),  # the rule after it went: after the rule before it
    (("1", "3"), ["2"]),  # both went (an index recorded earlier, 2, is too big now)
], ids=["alone", "before-gone", "after-gone", "both-gone"])
def test_a_deleted_rule_goes_back_among_its_neighbours(lab: Lab, also_gone: tuple[str, ...],
                                                       expected: list[str]) -> None:
    """A rule's undo finds its place by content: the rules it was between, wherever they are
    after the student's own deletions, never an index that may no longer exist."""
    for n in ("1", "2", "3"):
        executor.apply(lab, Action.from_dict({"type": "Iptables", "ns": "host",
                                              "args": ["-A", "FORWARD", "-s", f"10.9.9.{n}/32", "-j", "DROP"]}))
    undo = executor.apply(lab, Action.from_dict({"type": "Iptables", "ns": "host",
                                                 "args": ["-D", "FORWARD", "-s", "10.9.9.2/32", "-j", "DROP"]}))
    undo = Action.from_dict(json.loads(json.dumps(undo.to_dict())))  # as the journal keeps it
    for n in also_gone:
        lab.exec("host", ["iptables", "-D", "FORWARD", "-s", f"10.9.9.{n}/32", "-j", "DROP"])
    executor.apply(lab, undo)
    assert _forward(lab) == [f"-A FORWARD -s 10.9.9.{n}/32 -j DROP" for n in expected]


def test_deleting_a_link_and_undoing_it_twice_stays_exact(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Wire", WIRED, []), ("Take apart", ["host# ip link delete veth0",
                                                                      "host# ip netns delete netns0"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)
    for _ in range(2):
        engine.apply_next()
        assert not lab.has_namespace("netns0")
        engine.undo_last()
        assert_same_config(lab, course, before, "undo of deleting veth0 and netns0")


def test_first_route_wins_order_is_restored(lab: Lab, tmp_path: Path) -> None:
    """Lesson 3's conflict: two routes to 172.18.0.0/16; deleting the first and undoing must
    put them back in the same order, so the same one wins again."""
    two_cables = [
        "host# ip netns add netns0",
        "host# ip link add veth0 type veth peer name ceth0",
        "host# ip link set ceth0 netns netns0",
        "host# ip link set veth0 up",
        "host# ip addr add 172.18.0.11/16 dev veth0",
        "netns0# ip link set lo up",
        "netns0# ip link set ceth0 up",
        "netns0# ip addr add 172.18.0.10/16 dev ceth0",
        "host# ip netns add netns1",
        "host# ip link add veth1 type veth peer name ceth1",
        "host# ip link set ceth1 netns netns1",
        "host# ip link set veth1 up",
        "host# ip addr add 172.18.0.21/16 dev veth1",
        "netns1# ip link set lo up",
        "netns1# ip link set ceth1 up",
        "netns1# ip addr add 172.18.0.20/16 dev ceth1",
    ]
    course = course_of(tmp_path, ("Two cables", two_cables, []), ("Delete the first route", [
        "host# ip route delete 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)
    conflict = [r for r in before["host"].routes if r.startswith("172.18.0.0/16 ")]
    assert [r.split(" dev ")[1].split()[0] for r in conflict] == ["veth0", "veth1"]
    # veth0's route wins: the host looks for 172.18.0.20 on the wrong cable.
    assert check_results(engine, "ping host -> 172.18.0.20 unreachable", "ping host -> 172.18.0.10 reachable") == {
        "ping host -> 172.18.0.20 unreachable": ("unreachable", "host-unreachable"),
        "ping host -> 172.18.0.10 reachable": ("reachable", "reply")}

    engine.apply_next()
    after_delete = [r for r in config(lab, course)["host"].routes if r.startswith("172.18.0.0/16 ")]
    assert [r.split(" dev ")[1].split()[0] for r in after_delete] == ["veth1"]
    assert check_results(engine, "ping host -> 172.18.0.20 reachable")["ping host -> 172.18.0.20 reachable"] == (
        "reachable", "reply")

    engine.undo_last()
    now = config(lab, course)
    assert list(now["host"].routes) == list(before["host"].routes)
    assert_same_config(lab, course, before, "undo of the route deletion")
    assert check_results(engine, "ping host -> 172.18.0.20 unreachable", "ping host -> 172.18.0.10 reachable") == {
        "ping host -> 172.18.0.20 unreachable": ("unreachable", "host-unreachable"),
        "ping host -> 172.18.0.10 reachable": ("reachable", "reply")}


# -- the HTTP server --------------------------------------------------------------------------------


SERVER_BASE = BUILD[:8]  # netns0 on veth0, both ends addressed


def test_http_server_answers_and_is_stopped_by_undo(lab: Lab, tmp_path: Path) -> None:
    course = course_of(
        tmp_path,
        ("Cable", SERVER_BASE, []),
        ("Serve", ["netns0# python3 -m http.server --bind 172.18.0.10 5000"],
         ["http host -> 172.18.0.10:5000 reachable", "tcp host -> 172.18.0.10:5001 unreachable (refused)"]),
    )
    engine = Engine(lab, course)
    engine.apply_next()
    result = engine.apply_next()
    assert [(r.actual, r.reason) for r in result.checks] == [("reachable", "HTTP 200"), ("unreachable", "refused")]
    pids = httpd_pids(lab.dir)
    assert len(pids) == 1, pids

    engine.undo_last()

    assert httpd_pids(lab.dir) == []
    assert pids[0] not in httpd_pids("netstep.kernel.httpd")
    assert not os.path.exists(lab.run_dir), "servers need no files: they are found by command line"
    assert check_results(engine, "http host -> 172.18.0.10:5000 unreachable")[
        "http host -> 172.18.0.10:5000 unreachable"] == ("unreachable", "refused")


def test_http_server_is_stopped_by_destroy(tmp_path: Path) -> None:
    from support import unique_name

    course = course_of(tmp_path, ("Cable", SERVER_BASE, []),
                       ("Serve", ["netns0# python3 -m http.server --bind 172.18.0.10 5000"],
                        ["http host -> 172.18.0.10:5000 reachable"]))
    lab = Lab(unique_name("d"))
    try:
        lab.lock()
        engine = Engine(lab, course)
        engine.apply_next()
        assert engine.apply_next().ok
        assert len(httpd_pids(lab.dir)) == 1
    finally:
        lab.destroy()
        lab.close()
    assert httpd_pids(lab.dir) == []
    assert not os.path.exists(lab.dir)
    assert mounts_under(lab.dir) == []


def test_stopping_servers_signals_only_this_labs(lab: Lab) -> None:
    """Servers are found by command line: one whose --lab is exactly this lab's folder is
    stopped, even with no pid file; one of a lab whose name only starts the same is not."""
    import subprocess
    import sys

    def fake(folder: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "netstep.kernel.httpd",
                                 "--name", "netns0", "--lab", folder])

    ours, other = fake(lab.dir), fake(lab.dir + "x")
    try:
        for _ in range(200):  # until both have their command lines (httpd_pids matches either)
            if sorted(httpd_pids(lab.dir)) == sorted([ours.pid, other.pid]):
                break
            time.sleep(0.01)
        else:
            pytest.fail(f"the stand-in servers never showed up: {httpd_pids(lab.dir)}")
        lab.stop_servers()
        assert httpd_pids(lab.dir) == [other.pid]  # ours is gone (and reaped), the other lab's runs on
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
        ours.kill()
        ours.wait()


def test_http_server_that_cannot_bind_fails_the_step(lab: Lab, tmp_path: Path) -> None:
    """An address the namespace does not own: the server cannot start; the step is undone."""
    course = course_of(tmp_path, ("Cable", SERVER_BASE, []),
                       ("Serve", ["host# iptables -N BEFORE",
                                  "netns0# python3 -m http.server --bind 172.18.0.77 5000"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)
    with pytest.raises(KernelError, match=r"172\.18\.0\.77:5000"):
        engine.apply_next()
    assert engine.position == 1
    assert_same_config(lab, course, before, "a failed server start")
    assert httpd_pids(lab.dir) == []


# -- refusals ---------------------------------------------------------------------------------------


def _mounted_at(path: str) -> bool:
    """Whether something is mounted on `path`, read from the kernel's mount table."""
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def test_a_namespace_file_left_by_a_kill_is_not_a_name_in_use(lab: Lab, tmp_path: Path) -> None:
    """A kill -9 between making a namespace's file and mounting the namespace on it leaves
    an empty file. Restoring a deleted namespace there (as reset does) and deleting it
    again must work: it is the lab's leftover, not a namespace someone made."""
    course = course_of(tmp_path, ("Add", ["host# ip netns add netns1"], []),
                       ("Delete", ["host# ip netns delete netns1"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    engine.apply_next()
    path = lab.path_of("netns1")
    assert not os.path.exists(path)
    open(path, "w").close()  # what the kill leaves behind
    assert not lab.has_namespace("netns1")

    engine.undo_last()  # restore netns1: over the leftover file
    assert _mounted_at(path) and lab.has_namespace("netns1")
    engine.undo_last()  # delete it again
    assert not os.path.exists(path) and not _mounted_at(path)

    # A namespace really there is still a name in use.
    engine.apply_next()
    with pytest.raises(NameConflict):
        lab.add_container("netns1")
    assert _mounted_at(path)
    # So is anything else that is not an empty file: it is not the lab's leftover.
    other = lab.path_of("netns2")
    os.mkdir(other)
    with pytest.raises(NameConflict):
        lab.add_container("netns2")
    os.rmdir(other)
    Path(other).write_text("someone's notes")
    with pytest.raises(NameConflict):
        lab.add_container("netns2")
    assert Path(other).read_text() == "someone's notes"
    os.unlink(other)


def _ip_links(path: str) -> list[dict]:
    return json.loads(subprocess.run(["nsenter", f"--net={path}", "ip", "-j", "-d", "link", "show"], check=True,
                                     capture_output=True, text=True).stdout)


def test_peers_are_named_right_after_a_namespace_is_removed_and_its_id_reused(lab: Lab, tmp_path: Path) -> None:
    """The host remembers which namespace each of its namespace ids stands for. When netns0
    goes, the kernel frees its id and gives it to the next namespace that needs one: the
    host's veth into netns1 must then be named by netns1, as read independently."""
    cable = ["host# ip link add {v} type veth peer name {c}", "host# ip link set {c} netns {ns}"]
    course = course_of(tmp_path, ("netns0", ["host# ip netns add netns0",
                                             *[x.format(v="veth0", c="ceth0", ns="netns0") for x in cable]], []),
                       ("gone", ["host# ip netns delete netns0"], []),
                       ("netns1", ["host# ip netns add netns1",
                                   *[x.format(v="veth1", c="ceth1", ns="netns1") for x in cable]], []))
    engine = Engine(lab, course)
    engine.apply_next()
    host = lab.path_of("host")
    old_id = {x["ifname"]: x for x in _ip_links(host)}["veth0"]["link_netnsid"]
    assert lab.snapshot()["host"].link("veth0").peer == "ceth0@netns0"  # the id is remembered now
    engine.apply_next()
    deadline = time.monotonic() + 10  # the kernel frees a dead namespace's id from a work queue
    while old_id in [x["nsid"] for x in json.loads(subprocess.run(
            ["nsenter", f"--net={host}", "ip", "-j", "netns", "list-id"], capture_output=True, text=True,
            check=True).stdout or "[]")]:
        assert time.monotonic() < deadline, "the kernel kept the dead namespace's id"
        time.sleep(0.02)
    engine.apply_next()

    veth1 = {x["ifname"]: x for x in _ip_links(host)}["veth1"]
    assert veth1["link_netnsid"] == old_id  # the case this test is for: the id was given again
    ceth1 = {x["ifindex"]: x for x in _ip_links(lab.path_of("netns1"))}[veth1["link_index"]]
    assert ceth1["ifname"] == "ceth1"
    assert lab.snapshot()["host"].link("veth1").peer == "ceth1@netns1"


def test_name_conflict_leaves_the_hand_made_link_alone(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Cable", ["host# ip netns add netns0",
                                            "host# ip link add veth0 type veth peer name ceth0",
                                            "host# ip link set ceth0 netns netns0"], []))
    engine = Engine(lab, course)
    ipr = lab.ipr("host")
    ipr.link("add", ifname="veth0", kind="veth", peer="ceth0")
    hand_made = {name: ipr.link_lookup(ifname=name)[0] for name in ("veth0", "ceth0")}
    before = config(lab, course)

    with pytest.raises(NameConflict) as info:
        engine.apply_next()

    assert "veth0" in str(info.value)
    assert engine.position == 0
    assert {name: ipr.link_lookup(ifname=name) for name in hand_made} == {
        name: [index] for name, index in hand_made.items()}
    assert not lab.has_namespace("netns0"), "the step's first action (ip netns add) was not undone"
    assert_same_config(lab, course, before, "a step refused for a name conflict")
    assert Journal(lab.journal_path).steps == []


def test_name_conflict_on_the_peer_name(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Cable", ["host# ip link add veth0 type veth peer name ceth0"], []))
    engine = Engine(lab, course)
    lab.ipr("host").link("add", ifname="ceth0", kind="bridge")
    with pytest.raises(NameConflict, match="ceth0"):
        engine.apply_next()
    assert lab.ipr("host").link_lookup(ifname="ceth0")
    assert not lab.ipr("host").link_lookup(ifname="veth0")


def test_a_held_lab_is_busy(lab: Lab) -> None:
    second = Lab(lab.name)
    with pytest.raises(LabBusy) as info:
        second.__enter__()
    assert lab.name in str(info.value)
    assert "busy" in str(info.value)
    assert lab.has_namespace("host"), "the refused opener must not touch the held lab"


def test_the_lock_is_free_after_the_holder_closes(make_lab) -> None:
    lab = make_lab()
    lab.close()
    with Lab(lab.name) as again:
        assert again.has_namespace("host")
    lab.lock()  # the fixture destroys it while holding the lock


@pytest.mark.parametrize("bad", ["../x", "", "Default", "a b", "x" * 40, "-lab", "lab/1", "1lab"])
def test_bad_lab_names_are_refused(bad: str) -> None:
    with pytest.raises(NetstepError, match="not a usable lab name"):
        Lab(bad)


def test_incomplete_journal_asks_for_reset(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Mark", ["host# iptables -N MARKER"], []))
    journal = Journal(lab.journal_path)
    journal.begin(0, "1.1")
    journal.intend(course.steps[0].actions[0])
    journal.close()

    with pytest.raises(NetstepError) as info:
        Engine(lab, course)

    message = str(info.value)
    assert "reset" in message
    assert lab.name in message
    assert "1.1" in message


def test_journal_from_other_lessons_asks_for_reset(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Mark", ["host# iptables -N MARKER"], []))
    journal = Journal(lab.journal_path)
    journal.begin(0, "9.9")
    journal.complete()
    journal.close()
    with pytest.raises(NetstepError, match="reset"):
        Engine(lab, course)


def test_failure_in_the_middle_of_a_step_undoes_its_first_actions(lab: Lab, tmp_path: Path) -> None:
    course = course_of(
        tmp_path,
        ("Mark", ["host# iptables -N MARKER"], []),
        ("Half", ["host# ip netns add netns0", "host# ip link add veth0 type veth peer name ceth0",
                  "host# ip link set nosuchdev up", "host# iptables -N NEVER"], []),
    )
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)

    with pytest.raises(KernelError, match="nosuchdev"):
        engine.apply_next()

    assert engine.position == 1
    assert_same_config(lab, course, before, "a step that failed at its third command")
    assert not lab.has_namespace("netns0")
    assert [(s["ref"], s["complete"]) for s in Journal(lab.journal_path).steps] == [("1.1", True)]
    # The lab stays usable: a new engine opens it and the course goes on from the same place.
    again = Engine(lab, course)
    assert again.position == 1
    again.undo_last()
    assert again.position == 0


@dataclass(frozen=True)
class _Interrupt(Action):
    """A test-only action that behaves like Ctrl-C arriving while a step is applied."""

    def command(self) -> str:
        return "(Ctrl-C)"


def _interrupt(action: _Interrupt, lab) -> Action:
    raise KeyboardInterrupt


executor.HANDLERS[_Interrupt] = _interrupt


def test_keyboard_interrupt_in_a_step_undoes_it(lab: Lab, tmp_path: Path) -> None:
    course = course_of(tmp_path, ("Cable", ["host# ip netns add netns0",
                                            "host# ip link add veth0 type veth peer name ceth0",
                                            "host# ip link set ceth0 netns netns0",
                                            "host# iptables -N HALF"], []))
    step = course.steps[0]
    step.commands.insert(3, Command("host", "(Ctrl-C)", _Interrupt("host"), 0))
    engine = Engine(lab, course)
    before = config(lab, course)

    with pytest.raises(KeyboardInterrupt):
        engine.apply_next()

    assert engine.position == 0
    assert_same_config(lab, course, before, "a step interrupted after three commands")
    assert Journal(lab.journal_path).steps == []
    Engine(lab, course)  # not "stopped in the middle of a step"


def test_destroy_removes_everything_of_the_lab(tmp_path: Path, make_lab) -> None:
    from support import unique_name

    neighbour = make_lab("n")  # a second lab beside it must survive
    course = course_of(tmp_path, ("Build", BUILD, []))
    lab = Lab(unique_name("d"))
    try:
        lab.lock()
        Engine(lab, course).apply_next()
        assert mounts_under(lab.dir)
    finally:
        lab.destroy()
        lab.close()
    assert not os.path.exists(lab.dir)
    assert mounts_under(lab.dir) == []
    assert neighbour.has_namespace("host") and neighbour.has_namespace("upstream")
    assert os.path.exists(neighbour.dir)


def test_journal_keeps_an_undo_told_before_the_change(tmp_path: Path) -> None:
    """An undo journaled before its change is marked `prepared` until the change is done,
    survives a reload and a compaction as such, and a failed action drops it."""
    from netstep.course.actions import AddLink, DeleteLink

    path = str(tmp_path / "journal.json")
    journal = Journal(path)
    journal.begin(0, "1.1")
    journal.intend(AddLink("host", name="veth0"))
    journal.prepare(DeleteLink("host", name="veth0"))
    journal.close()
    for compact in (False, True):  # as a kill left it, and rewritten
        entry = Journal(path, compact=compact).steps[0]["entries"][0]
        assert entry["prepared"] and entry["undo"]["name"] == "veth0"
    journal = Journal(path)
    journal.done(DeleteLink("host", name="veth0"))
    journal.intend(AddLink("host", name="veth1"))
    journal.prepare(DeleteLink("host", name="veth1"))
    journal.failed()
    journal.close()
    done, failed = Journal(path, compact=True).steps[0]["entries"]
    assert "prepared" not in done and done["undo"]["name"] == "veth0"
    assert failed["undo"] is None and failed["failed"]


def test_a_veth_going_down_shows_in_its_peers_namespace(lab: Lab, tmp_path: Path) -> None:
    """A step in the host that takes veth0 down changes netns0 too (ceth0 loses its carrier,
    so its route turns `linkdown`): the diff shows it, and what the engine remembers for
    the next step equals the kernel. Enslaving veth0 to a bridge does not reach netns0."""
    course = course_of(tmp_path, ("Cable", SERVER_BASE, []), ("Bridge", ["host# ip link add br0 type bridge"], []),
                       ("Plug", ["host# ip link set veth0 master br0"], []),
                       ("Unplug", ["host# ip link set veth0 down"], []))
    engine = Engine(lab, course)
    engine.apply_next()
    engine.apply_next()
    plug = engine.apply_next()
    assert [line for line in plug.diff.lines() if line.split()[1] == "netns0"] == []
    down = engine.apply_next()
    in_netns0 = [line for line in down.diff.lines() if line.split()[1] == "netns0"]
    assert any("linkdown" in line for line in in_netns0), down.diff.lines()
    assert engine.moments.last().same_config(config(lab, course)), "\n".join(config_diff(config(lab, course),
                                                                                   engine.moments.last()))


def test_a_snapshot_right_after_a_carrier_change_shows_its_routes(lab: Lab) -> None:
    """The kernel marks a peer's routes `linkdown` (and clears the mark) from a work queue of
    its own, up to a second late; a snapshot taken at once must still show it, every time."""
    lab.add_container("netns0")
    for ns, command in (("host", f"link add veth0 type veth peer name ceth0 netns {lab.path_of('netns0')}"),
                        ("netns0", "addr add 10.9.0.2/24 dev ceth0"), ("netns0", "link set ceth0 up")):
        assert lab.exec(ns, ["ip", *command.split()]).returncode == 0, command
    index = lab.link_index("host", "veth0")
    known = lab.snapshot(["netns0"], caches=False)
    for _ in range(20):
        for state in ("up", "down"):
            lab.ipr("host").link("set", index=index, state=state)
            # As a step reads it: no iptables-save (its process would give the kernel time).
            routes = lab.snapshot(["netns0"], caches=False, rules_of=set(), known=known)["netns0"].routes
            assert [r.endswith(" linkdown") for r in routes] == [state == "down"], (state, routes)


def test_undoing_ip_forward_puts_back_what_the_kernel_reset_with_it(lab: Lab, tmp_path: Path) -> None:
    """Writing ip_forward also sets every device's forwarding and all.accept_redirects (the
    kernel's rule): the undo puts back the values another tool had set."""
    course = course_of(tmp_path, ("Forward", ["host# sysctl -w net.ipv4.ip_forward=1"], []))
    engine = Engine(lab, course)
    assert lab.read_sysctl("host", "net.ipv4.ip_forward") == "0"
    by_hand = (("ipv4/conf/eth0/forwarding", "1"), ("ipv4/conf/all/accept_redirects", "0"))
    lab.write_net_settings("host", by_hand)
    before = dict(lab.read_forwarding_settings("host", "ipv4"))
    assert before["ipv4/conf/eth0/forwarding"] == "1" and before["ipv4/conf/all/accept_redirects"] == "0"
    engine.apply_next(run_checks=False)
    during = dict(lab.read_forwarding_settings("host", "ipv4"))
    assert during["ipv4/conf/lo/forwarding"] == during["ipv4/conf/default/forwarding"] == "1"  # the kernel's doing
    engine.undo_last()
    assert lab.read_sysctl("host", "net.ipv4.ip_forward") == "0"
    assert dict(lab.read_forwarding_settings("host", "ipv4")) == before


def test_stopping_servers_leaves_other_children_alone(lab: Lab) -> None:
    """Looking for the lab's servers must not reap a child process of someone else's (a
    notebook's, say): its owner must still read its exit status."""
    import subprocess

    child = subprocess.Popen(["sh", "-c", "exit 3"])
    for _ in range(200):  # until it has ended, unreaped
        with open(f"/proc/{child.pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)
    else:
        pytest.fail("the child never ended")
    lab.stop_servers()
    assert child.wait(timeout=5) == 3


def test_a_veth_whose_other_end_is_outside_the_lab_is_not_deleted(lab: Lab, tmp_path: Path) -> None:
    """Deleting one end of a veth deletes both; an end in a namespace the lab does not know
    could not be named in the undo, let alone put back, so netstep refuses and keeps it."""
    outside = str(tmp_path / "outside")
    namespaces.create(outside)  # the test's own namespace, not the lab's
    try:
        fd = os.open(outside, os.O_RDONLY)
        try:
            lab.ipr("host").link("add", ifname="cross0", kind="veth", peer={"ifname": "far0", "net_ns_fd": fd})
        finally:
            os.close(fd)
        engine = Engine(lab)
        with pytest.raises(NetstepError, match="outside the lab"):
            engine.run_own("ip link delete cross0")
        assert lab.link_index("host", "cross0") is not None
        assert not engine.journal.own  # nothing journaled: nothing was changed
    finally:
        if lab.link_index("host", "cross0") is not None:
            lab.ipr("host").link("del", index=lab.link_index("host", "cross0"))
        namespaces.remove(outside)


def test_the_last_state_file_is_never_stale(make_lab) -> None:
    """last.json (the state another process starts from) is removed when a change begins
    and written, if the change's state is known, as the lock is let go; a change whose
    state was never read back leaves none, so the next process reads the lab afresh."""
    lab = make_lab()
    path = lab.last_snapshot_path
    engine = Engine(lab)
    engine.apply_next(run_checks=False)
    assert not os.path.exists(path)  # a kill now would leave nothing to be trusted
    known = json.loads(json.dumps(to_json(engine.moments.last())))
    lab.close()
    with open(path) as f:
        assert json.load(f) == known
    lab.lock()
    engine = Engine(lab)
    assert json.loads(json.dumps(to_json(engine.moments.read()))) == known
    engine.moments.changing()  # a change begun whose state is never read back (a crash in a read, say)
    assert not os.path.exists(path)
    lab.close()
    assert not os.path.exists(path)
    lab.lock()
    engine = Engine(lab)
    engine.apply_next(run_checks=False)
    lab.destroy()  # nothing is written for a lab that is gone
    lab.close()
    assert not os.path.exists(path)


@pytest.mark.parametrize("command", ["host# ip link delete veth1", "netns1# ip link delete ceth1",
                                     "host# ip link delete br0"])
def test_a_deleted_link_comes_back_with_its_mtu_and_hairpin(lab: Lab, tmp_path: Path, command: str) -> None:
    """Lessons 9 and 11 set a port's hairpin and a link's MTU: a deletion's undo (of the port,
    of its peer, of its bridge) gives both back, as the kernel held them."""
    tuned = ["host# ip link set veth1 mtu 1400", "netns1# ip link set ceth1 mtu 1300",
             "host# bridge link set dev veth1 hairpin on"]
    course = course_of(tmp_path, ("Wire", [*WIRED, *tuned], []), ("Take apart", [command], []))
    engine = Engine(lab, course)
    engine.apply_next()
    before = config(lab, course)
    assert "host links veth1: veth UP master br0 peer ceth1@netns1 mtu 1400 hairpin on" in \
        [f"host links {e}" for e in before["host"].part("links")]
    engine.apply_next()
    engine.undo_last()
    assert_same_config(lab, course, before, f"undo of `{command}`")


@pytest.mark.parametrize("mode", ["tap", "tun"])
def test_a_deleted_tap_comes_back_in_its_own_namespace(lab: Lab, mode: str) -> None:
    """A TAP or TUN device is made by an ioctl that acts in the caller's namespace: its undo
    and an AddLink of one must make it in the lab's namespace, never in netstep's own."""
    lab.add_container("netns0")
    where = ["nsenter", f"--net={lab.path_of('netns0')}", "--"]
    subprocess.run([*where, "ip", "tuntap", "add", "tap7", "mode", mode], check=True)
    undo = executor.apply(lab, Action.from_dict({"type": "DeleteLink", "ns": "netns0", "name": "tap7"}))
    executor.apply(lab, Action.from_dict(json.loads(json.dumps(undo.to_dict()))))  # as the journal keeps it
    executor.apply(lab, Action.from_dict({"type": "AddLink", "ns": "netns0", "name": "tap8", "kind": mode}))
    read = json.loads(subprocess.run([*where, "ip", "-d", "-j", "link"], check=True, capture_output=True,
                                     text=True).stdout)
    made = {link["ifname"]: link["linkinfo"]["info_data"]["type"] for link in read if "linkinfo" in link}
    assert made == {"tap7": mode, "tap8": mode}
    here = json.loads(subprocess.run(["ip", "-j", "link"], check=True, capture_output=True, text=True).stdout)
    assert not {"tap7", "tap8"} & {link["ifname"] for link in here}  # (this test's own namespace)
