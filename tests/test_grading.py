"""Grading a student's own work against the course: verify, hint, solution, exercises.

Real labs on the real kernel. The student's typing is `Engine.run_own` here (the same
path as a `%%netstep` cell); typing in `netstep shell` is tested in test_practice.py.
"""

from __future__ import annotations

import pytest
from support import needs_root, real_lesson_files

from netstep.core.engine import Engine
from netstep.core.grading import hint, solution, target_of, verify
from netstep.core.lab import Lab
from netstep.core.reference import build, read
from netstep.state.compare import differences
from netstep.state.snapshot import Link, NamespaceState, Snapshot

pytestmark = pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")


def _state(**parts) -> Snapshot:
    return Snapshot({"host": NamespaceState("host", **parts)})


def test_differences_are_plain_words() -> None:
    expected = _state(links=(Link("veth0", "veth", True, master="br0", peer="ceth0@netns0", mac="aa"),),
                      addresses=("veth0 172.18.0.11/16",),
                      routes=("172.18.0.0/16 dev br0 proto kernel scope link src 172.18.0.1",),
                      sysctls=(("net.ipv4.ip_forward", "1"),))
    actual = _state(links=(Link("veth0", "veth", False, peer="ceth0@netns0", mac="bb"),),
                    addresses=("veth0 172.18.0.11/16", "veth0 172.18.0.99/16"),
                    routes=("10.0.0.0/8 dev veth0 linkdown",), sysctls=(("net.ipv4.ip_forward", "0"),))
    assert differences(actual, expected) == [
        "veth0 in host has no master, expected master br0",
        "veth0 in host is DOWN, expected UP",
        "extra address 172.18.0.99/16 on veth0 in host",
        "extra route 10.0.0.0/8 dev veth0 in host",
        "missing route 172.18.0.0/16 dev br0 proto kernel scope link src 172.18.0.1 in host",
        "net.ipv4.ip_forward is 0 in host, expected 1",
    ]
    assert differences(expected, expected) == []


def test_what_the_kernel_picks_is_ignored_and_a_missing_namespace_is_one_sentence() -> None:
    one = _state(links=(Link("veth0", "veth", True, mac="aa:aa"),), routes=("10.0.0.0/8 dev veth0 linkdown",))
    two = _state(links=(Link("veth0", "veth", True, mac="bb:bb"),), routes=("10.0.0.0/8 dev veth0",))
    assert differences(one, two) == []
    more = Snapshot({**two.namespaces, "netns0": NamespaceState("netns0", links=(Link("lo", "loopback", True),),
                                                                addresses=("lo 127.0.0.1/8",))})
    assert differences(two, more) == ["missing namespace netns0"]
    assert differences(more, two) == ["extra namespace netns0"]
    first = _state(routes=("10.0.0.0/8 dev a", "10.0.0.0/8 dev b"))
    second = _state(routes=("10.0.0.0/8 dev b", "10.0.0.0/8 dev a"))
    assert differences(first, second) == [
        "the routes in host are in another order (the first that matches wins): expected 10.0.0.0/8 dev b; "
        "10.0.0.0/8 dev a"]


TYPED_2_1_TO_2_4 = """\
host# ip link add veth0 type veth peer name ceth0
host# ip link set ceth0 netns netns0
netns0# ip link set lo up
host# ip link set veth0 up
host# ip addr add 172.18.0.11/16 dev veth0
"""


@needs_root
def test_typed_steps_are_adopted_and_rolled_back_exactly(lab: Lab) -> None:
    engine = Engine(lab)
    engine.start_lesson(engine.course.find("veth"))
    start = engine.position
    engine.run_own(TYPED_2_1_TO_2_4.replace("172.18.0.11", "172.18.0.12"))
    verdict = verify(engine, target_of(engine, "2.4"))
    assert not verdict.ok and not verdict.adopted
    assert verdict.differences == ["missing address 172.18.0.11/16 on veth0 in host",
                                   "extra address 172.18.0.12/16 on veth0 in host",
                                   "missing route 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.11 "
                                   "in host",
                                   "extra route 172.18.0.0/16 dev veth0 proto kernel scope link src 172.18.0.12 "
                                   "in host"]
    assert engine.position == start
    engine.run_own("host# ip addr del 172.18.0.12/16 dev veth0\nhost# ip addr add 172.18.0.11/16 dev veth0")
    verdict = verify(engine, target_of(engine, "2.4"))
    assert verdict.ok and verdict.adopted, verdict.differences
    assert engine.position == start + 4 and not engine.journal.own
    assert engine.next_step().ref == "2.5"
    while engine.position > start:  # each adopted step undoes exactly as the course's would
        engine.undo_last()
        assert differences(read(engine), build(engine, engine.position, engine.position).after) == []


@needs_root
def test_a_sysctl_typed_by_hand_is_restored_by_rollback(lab: Lab) -> None:
    engine = Engine(lab)
    masquerade = engine.course.find("masquerade")
    engine.start_lesson(masquerade)
    list(engine.goto(engine.course.start_of(masquerade) + 1))
    step = engine.next_step()
    assert step.commands[0].text == "sysctl -w net.ipv4.ip_forward=1"
    before = lab.read_sysctl("host", "net.ipv4.ip_forward")
    engine.run_own("host# sysctl -w net.ipv4.ip_forward=1")
    assert verify(engine, target_of(engine)).adopted
    engine.undo_last()
    assert lab.read_sysctl("host", "net.ipv4.ip_forward") == before


@needs_root
def test_hints_name_the_missing_commands_one_at_a_time(lab: Lab) -> None:
    engine = Engine(lab)
    engine.start_lesson(engine.course.find("veth"))
    target = target_of(engine, "2.4")
    seen = []
    for _ in range(5):
        given = hint(engine, target)
        assert given.command is not None, given.text
        seen.append(f"{given.command.where}# {given.command.text}")
        assert given.remaining == 4 - len(seen) + 1
        engine.run_own(seen[-1])
    assert "\n".join(seen) + "\n" == TYPED_2_1_TO_2_4
    assert hint(engine, target).text.startswith("Nothing is missing")
    engine.run_own("host# ip link set veth0 down")  # a later command undone by hand: it is named again
    assert hint(engine, target).command.text == "ip link set veth0 up"


@needs_root
def test_solution_finishes_a_half_typed_step(lab: Lab) -> None:
    engine = Engine(lab)
    engine.start_lesson(engine.course.find("veth"))
    engine.run_own("host# ip link add veth0 type veth peer name ceth0")
    done = solution(engine, target_of(engine, "2.2"))
    assert [c.text for c in done.ran] == ["ip link set ceth0 netns netns0"]
    assert done.verdict.ok and done.verdict.adopted
    assert engine.next_step().ref == "2.3"


@needs_root
def test_every_exercise_is_graded_and_its_solution_passes(lab: Lab) -> None:
    engine = Engine(lab)
    for lesson in engine.course.lessons:
        end = engine.course.start_of(lesson) + len(lesson.steps)
        list(engine.goto(end))
        target = target_of(engine, f"exercise{lesson.number}")
        assert target.hints and target.extra
        before = verify(engine, target)
        assert not before.ok and before.differences and not before.adopted, target.ref
        done = solution(engine, target)
        assert done.verdict.ok, (target.ref, done.verdict.differences, done.verdict.checks)
        assert engine.position == end and engine.journal.own
        list(engine.goto(end))  # the course's own position takes the exercise back
        assert not engine.journal.own
        assert differences(read(engine), build(engine, end, end).after) == [], target.ref


@needs_root
def test_the_whole_course_typed_by_hand_verifies_step_by_step_and_rolls_back(lab: Lab) -> None:
    engine = Engine(lab)
    for step in engine.course.steps:
        if step.commands:
            engine.run_own("\n".join(f"{c.where}# {c.text}" for c in step.commands))
        verdict = verify(engine, target_of(engine))
        assert verdict.ok and verdict.adopted, (step.ref, verdict.differences, verdict.checks)
    assert engine.position == len(engine.steps) and not engine.journal.own
    engine.rollback_all()  # every step typed by hand is undone through the reference's undos
    assert differences(read(engine), build(engine, 0, 0).after) == []


@needs_root
def test_an_exercise_through_the_tutor() -> None:
    from support import unique_name

    from netstep.tutor import Notice, Tutor

    t = Tutor(unique_name("tut"))
    try:
        exercise = t.start("exercise3")
        conflict = t.engine.course.find("veth-conflict")
        assert exercise.ref == "exercise3"
        assert t.engine.position == t.engine.course.start_of(conflict) + len(conflict.steps)  # the lesson's end
        assert isinstance(t.verify("exercise3"), Notice)  # nothing typed yet: said, not graded
        assert t.hint("exercise3").text.startswith("When two routes match")
        t.run("host# ip route add 172.18.0.10/32 dev veth0")
        verdict = t.verify("exercise3")
        assert verdict.ok and verdict.adopted
        t.start("gateway")  # moving on takes the exercise back
        assert not t.engine.journal.own
    finally:
        t.reset()
