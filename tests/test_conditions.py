"""Checks whose outcome the kernel decides: `... if host KEY=VALUE else EXPECT`.

Lesson 6's DROP policy cuts container-to-container traffic only where br_netfilter is
loaded (net.bridge.bridge-nf-call-iptables is 1 on the lab host). The condition is read
from the lab when the check runs; both of its cases are tested here on the real kernel:
the switch at 1, at 0 (what a kernel without the module does to bridged frames), and a
sysctl that does not exist (the module not loaded: the condition does not hold).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from support import lesson_markdown, needs_root, real_lesson_files, write_lesson

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.checks import Check, Condition
from netstep.course.lessons import parse_lesson
from netstep.errors import LessonError

SWITCH = "net.bridge.bridge-nf-call-iptables"
CONDITIONAL = f"ping netns0 -> 172.18.0.20 unreachable (no-answer) if host {SWITCH}=1 else reachable"


def test_a_condition_parses_and_settles_either_way(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "05-cond.md", lesson_markdown("Lesson 5: C", [("Step", [], [CONDITIONAL])]))
    check = parse_lesson(path).steps[0].checks[0]
    assert (check.expect, check.reason, check.when, check.otherwise) == \
        ("unreachable", "no-answer", Condition("host", SWITCH, "1"), ("reachable", None))
    assert check.expectation() == f"unreachable (no-answer) if host {SWITCH}=1, else reachable"
    held = check.settled("1")
    assert (held.expect, held.reason, held.because) == ("unreachable", "no-answer", f"{SWITCH} is 1 in host")
    assert held == check  # still the lesson's check
    off, absent = check.settled("0"), check.settled(None)
    assert (off.expect, off.reason, off.because) == ("reachable", None, f"{SWITCH} is 0 in host")
    assert (absent.expect, absent.because) == ("reachable", f"host has no {SWITCH}")
    plain = Check("ping", "netns0", "10.0.2.15", None, "reachable")
    assert plain.settled(None) is plain and plain.expectation() == "reachable"


@pytest.mark.parametrize(("line", "message"), [
    ("ping netns0 -> 172.18.0.20 unreachable if host kernel.panic=1 else reachable", "a condition is a sysctl"),
    (f"ping netns0 -> 172.18.0.20 unreachable if host {SWITCH}=1 else maybe", "should be reachable or unreachable"),
    (f"ping netns0 -> 172.18.0.20 unreachable if host {SWITCH}=1 else reachable (no-route)", "is not a reason"),
    (f"ping netns0 -> 172.18.0.20 unreachable if host {SWITCH}=1", "optionally followed by 'if NS KEY=VALUE"),
])
def test_a_bad_condition_names_its_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lesson(tmp_path, "05-cond.md", lesson_markdown("Lesson 5: C", [("Step", [], [line])]))
    with pytest.raises(LessonError) as info:
        parse_lesson(path)
    assert message in str(info.value) and ":10:" in str(info.value)


@needs_root
@pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")
def test_the_drop_policy_cuts_the_bridge_exactly_where_bridged_frames_meet_iptables(lab: Lab) -> None:
    engine = Engine(lab)
    course = engine.course
    masquerade, bridge = course.find("masquerade"), course.find("bridge")
    drop = next(s for s in masquerade.steps if s.title == "Set the forward policy to DROP")
    list(engine.goto(course.start_of(masquerade) + drop.index + 1))
    check = next(c for c in drop.checks if c.when)
    seen = lab.read_sysctl("host", SWITCH)
    (result,) = engine.run_checks([check])
    assert result.ok, result
    if seen == "1":  # br_netfilter loaded: the bridged ping meets the FORWARD policy
        assert (result.actual, result.check.because) == ("unreachable", f"{SWITCH} is 1 in host")
        assert not all(r.ok for r in engine.run_checks(engine.final_checks(bridge)))  # lesson 4's checks break
        lab.write_sysctl("host", SWITCH, "0")  # (the lab host's own switch; destroyed with the lab)
        (result,) = engine.run_checks([check])
        assert (result.ok, result.actual, result.check.because) == (True, "reachable", f"{SWITCH} is 0 in host")
    else:
        assert (result.actual, result.check.because) == ("reachable", f"host has no {SWITCH}")
    # A switch this kernel lacks is the module not loaded: the condition does not hold.
    missing = replace(check, when=Condition("host", "net.bridge.bridge-nf-call-nothing", "1"))
    (result,) = engine.run_checks([missing])
    assert (result.ok, result.actual, result.check.because) == \
        (True, "reachable", "host has no net.bridge.bridge-nf-call-nothing")
    # Docker's -i br0 -o br0 rule (the next step) lets the containers reach each other again.
    if seen is not None:
        lab.write_sysctl("host", SWITCH, seen)
    list(engine.goto(engine.position + 1))
    assert all(r.ok for r in engine.run_checks(engine.final_checks(bridge)))
