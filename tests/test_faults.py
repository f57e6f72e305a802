"""A matrix of faults, each made by the test in a lab at one of the course's positions: the
check and `trace` must both name the fault (where and why), agree with each other, and
draw nothing after a drop as delivered.

Each fault is what a student might type or break: a DROP or a REJECT in FORWARD, INPUT
or OUTPUT (the request's or the reply's), a FORWARD policy of DROP (routed, or bridged
where br_netfilter hands bridged frames to iptables), a missing route, a link down, a
missing address, a missing MASQUERADE, a link too narrow for a packet that may not be
fragmented (at a router on the way, and at the source). Checks run as the course would run them, with
the kernel's own counters as evidence (no mocks): a verdict that names a rule names the
one whose counter moved.
"""

from __future__ import annotations

import os

import pytest
from support import needs_root

from netstep.core.engine import Engine
from netstep.course.checks import Check
from netstep.course.course import Course
from netstep.course.lessons import CHECK_RE, SIZED_PING_RE

pytestmark = needs_root

BRIDGE_NETFILTER = os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables")


class Fault:
    """A fault made at the course's position `after` (a step's ref), the check it breaks, and
    what the verdict must say: the namespace, words of the why, and the reason if it matters."""

    def __init__(self, after: str, commands: list[str], check: str, where: str, words: list[str],
                 reason: str | None = None, back: bool = False,
                 then: tuple[str, list[str]] | None = None) -> None:
        self.after, self.commands, self.check = after, commands, check
        self.where, self.words, self.reason, self.back = where, words, reason, back
        # where and why the trace, a second probe, stops, where the first changed the kernel's state
        self.then = then or (where, words)


REJECT_WORDS = ["rejected by host filter FORWARD rule 1 `-s 172.18.0.20 -j REJECT`", "“Connection refused”"]
FAULTS = {
    # the issue's own case: a student's REJECT answers with icmp-port-unreachable, which is no closed port
    "forward-reject-ping": Fault("6.8", ["host# iptables -I FORWARD 1 -s 172.18.0.20 -j REJECT"],
                                 "ping netns1 -> internet reachable", "host", REJECT_WORDS, "filtered"),
    "forward-reject-tcp": Fault("6.8", ["host# iptables -A FORWARD -s 172.18.0.20 -o eth0 -j REJECT"],
                                "tcp netns1 -> internet:9 unreachable", "host",
                                ["rejected by host filter FORWARD rule 1 `-s 172.18.0.20 -o eth0 -j REJECT`"],
                                "filtered"),
    "forward-drop": Fault("6.8", ["host# iptables -I FORWARD 1 -s 172.18.0.20 -j DROP"],
                          "ping netns1 -> internet unreachable", "host",
                          ["dropped by host filter FORWARD rule 1 `-s 172.18.0.20 -j DROP`"], "no-answer"),
    "forward-drop-reply": Fault("6.8", ["host# iptables -A FORWARD -d 172.18.0.20 -j DROP"],
                                "ping netns1 -> internet unreachable", "host",
                                ["dropped by host filter FORWARD rule 1 `-d 172.18.0.20 -j DROP`", "on the way back"],
                                "no-answer", back=True),
    "forward-policy-drop": Fault("6.5", [], "ping netns0 -> internet unreachable", "host",
                                 ["dropped by host filter FORWARD policy DROP"], "no-answer"),
    "input-reject": Fault("5.3", ["host# iptables -A INPUT -s 172.18.0.10 -j REJECT"],
                          "ping netns0 -> 172.18.0.1 reachable", "host",
                          ["rejected by host filter INPUT rule 1 `-s 172.18.0.10 -j REJECT`"], "filtered"),
    "input-drop": Fault("4.5", ["netns1# iptables -A INPUT -p icmp -j DROP"],
                        "ping netns0 -> 172.18.0.20 unreachable", "netns1",
                        ["dropped by netns1 filter INPUT rule 1 `-p icmp -j DROP`"], "no-answer"),
    "output-drop": Fault("4.5", ["netns0# iptables -A OUTPUT -d 172.18.0.20 -j DROP"],
                         "ping netns0 -> 172.18.0.20 unreachable", "netns0",
                         ["dropped by netns0 filter OUTPUT rule 1 `-d 172.18.0.20 -j DROP`"], "filtered"),
    "output-reject": Fault("4.5", ["netns0# iptables -A OUTPUT -p tcp -j REJECT"],
                           "tcp netns0 -> 172.18.0.20:9 unreachable", "netns0",
                           ["rejected by netns0 filter OUTPUT rule 1 `-p tcp -j REJECT`"], "filtered"),
    "output-drop-reply": Fault("4.5", ["netns1# iptables -A OUTPUT -d 172.18.0.10 -j DROP"],
                               "ping netns0 -> 172.18.0.20 unreachable", "netns1",
                               ["dropped by netns1 filter OUTPUT rule 1 `-d 172.18.0.10 -j DROP`", "on the way back"],
                               "no-answer", back=True),
    "missing-route": Fault("5.3", ["netns0# ip route del default"], "ping netns0 -> 10.0.2.15 unreachable",
                           "netns0", ["netns0 has no route to 10.0.2.15"], "no-route"),
    "missing-route-on-the-way": Fault("6.8", ["host# ip route del default"], "ping netns0 -> internet unreachable",
                                      "host", ["host has no route to 203.0.113.8"], "net-unreachable"),
    "link-down": Fault("4.5", ["host# ip link set veth1 down"], "ping netns0 -> 172.18.0.20 unreachable",
                       "netns0", ["veth1 in host is down", "on the way to netns1"]),
    "missing-address": Fault("4.5", ["netns1# ip addr del 172.18.0.20/16 dev ceth1"],
                             "ping netns0 -> 172.18.0.20 unreachable", "netns0",
                             ["nobody on that link has 172.18.0.20"]),
    "missing-masquerade": Fault("6.8", ["host# iptables -t nat -D POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"],
                                "ping netns0 -> internet unreachable", "upstream",
                                ["no route back to 172.18.0.10", "no MASQUERADE or SNAT"], back=True),
    "mtu-on-the-way": Fault("6.8", ["host# ip link set eth0 mtu 1400"],
                            "ping -M do -s 1472 netns0 -> internet unreachable", "host",
                            ["host could not forward it: larger than the MTU of eth0 (1400)", "“fragmentation needed”"],
                            "too-big",  # and netns0 keeps the path's MTU it was told: the trace's probe stays home
                            then=("netns0", ["an earlier “fragmentation needed” taught it a smaller MTU",
                                             "ip route get 203.0.113.8"])),
    "mtu-at-the-source": Fault("6.8", ["netns0# ip link set ceth0 mtu 1400"],
                               "ping -M do -s 1472 netns0 -> internet unreachable", "netns0",
                               ["netns0 refuses to send it: it is larger than the MTU of ceth0 (1400)"], "too-big"),
}
if BRIDGE_NETFILTER:  # the lesson 4 check that issue 19 saw answered with "?" (the policy DROP of 6.5 and
    # no rule that lets bridged frames pass: the lesson's 6.6 adds one, which the fault takes away)
    FAULTS["bridged-policy-drop"] = Fault(
        "6.6", ["host# iptables -D FORWARD -i br0 -o br0 -j ACCEPT"], "ping netns0 -> 172.18.0.20 reachable", "host",
        ["dropped by host filter FORWARD policy DROP", "crossed the bridge br0"], "no-answer")
    FAULTS["bridged-policy-drop-expected"] = Fault(  # the lesson's 6.5 shows the break: proven, not waited for
        "6.5", [], "ping netns0 -> 172.18.0.20 unreachable", "host",
        ["dropped by host filter FORWARD policy DROP", "crossed the bridge br0"], "no-answer")


def parse_check(line: str) -> Check:
    sized = SIZED_PING_RE.match(line)
    size = int(sized[1] or sized[2]) if sized else None
    match = CHECK_RE.match("ping " + line[sized.end():] if sized else line)
    assert match, line
    host, _, port = match[3].partition(":")
    return Check(match[1], match[2], host, int(port) if port else None, match[4], match[5], size=size)


def at(engine: Engine, ref: str) -> None:
    """The lab brought to the course's position after step `ref`."""
    refs = [step.ref for step in engine.steps]
    for _ in engine.goto(refs.index(ref) + 1):
        pass


@pytest.fixture(scope="module")
def course() -> Course:
    return Course.load()


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_a_fault_is_named_by_the_check_and_by_the_trace(name: str, make_lab, course: Course) -> None:
    fault = FAULTS[name]
    engine = Engine(make_lab("fa"), course)
    at(engine, fault.after)
    if fault.commands:
        engine.run_own("\n".join(fault.commands))
    check = parse_check(fault.check)

    result = engine.run_checks([check])[0]
    assert result.actual == "unreachable", result
    assert result.where == fault.where, result
    for words in fault.words:
        assert words in result.why, result
    if fault.reason:
        assert result.reason == fault.reason, result
    assert result.evidence, result
    if check.expect == "unreachable" and fault.reason == "no-answer" and not fault.back:
        assert result.concluded == "evidence", result  # the rule's counter proved it: no waiting out the silence

    traced = engine.trace(check.source, check.target, port=check.port, kind=check.kind, size=check.size)
    found = traced.as_json()
    assert traced.result.actual == "unreachable", found
    where, said = fault.then
    assert traced.finding.where == where, found  # the same verdict as the check's
    for words in said:
        assert words in traced.finding.why, found
    if fault.reason:
        assert traced.result.reason == fault.reason, found
    # Nothing after the drop is drawn as delivered: the path stops there, in the namespace named.
    stopped = traced.reply if fault.back else traced.forward
    assert stopped is not None and stopped.hops, found
    assert stopped.hops[-1].action == "dropped" and stopped.hops[-1].ns == where, found
    if fault.back:
        assert traced.forward.delivered, found
    else:
        assert not traced.forward.delivered and traced.reply is None, found
    assert [hop.action for hop in stopped.hops].count("dropped") == 1, found


def test_a_reject_is_told_from_a_port_where_nothing_listens(make_lab, course: Course) -> None:
    """Both read "Connection refused" at the socket; the REJECT rule's counter tells them apart."""
    lab = make_lab("fa")
    engine = Engine(lab, course)
    at(engine, "6.8")
    # --reject-with is beyond the course's grammar: the real iptables makes the rule
    rule = ["iptables", "-A", "FORWARD", "-s", "172.18.0.20", "-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"]
    assert lab.exec("host", rule).returncode == 0
    closed, rejected = engine.run_checks([parse_check("tcp netns0 -> internet:9 unreachable"),
                                          parse_check("tcp netns1 -> internet:9 unreachable")])
    assert closed.reason == "refused" and closed.where == "upstream", closed
    assert "nothing listens on 203.0.113.8:9 in upstream" in closed.why, closed
    assert "rule" not in closed.evidence, closed
    assert rejected.reason == "filtered" and rejected.where == "host", rejected
    assert "rejected by host filter FORWARD rule 1 `-s 172.18.0.20 -p tcp -j REJECT --reject-with tcp-reset`" \
        in rejected.why, rejected
    assert "nothing listens" not in rejected.why, rejected
    assert "REJECT" in rejected.evidence["rule"], rejected
    # a lesson that expects a closed port is not satisfied by a firewall's answer
    assert not engine.run_checks([parse_check("tcp netns1 -> internet:9 unreachable (refused)")])[0].ok
