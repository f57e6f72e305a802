"""Break-it challenges: each one breaks a working lab, fails `verify`, and passes again
after its `solution` and after a repair typed by hand with the real binaries (the same
repair or another that restores what works); a repair that breaks something else fails;
a move takes the break back. Real labs on the real kernel; the command line through a pipe.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from support import needs_root, real_lesson_files
from test_grading import typed

from netstep.core import challenges, grading
from netstep.core.engine import Engine
from netstep.core.reconcile import same
from netstep.core.reference import read, states
from netstep.course.challenges import Challenges, parse_challenge_text
from netstep.course.course import Course
from netstep.errors import LessonError
from netstep.state.compare import differences

pytestmark = pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")

COURSE = Course.load()
ALL = Challenges.load(COURSE.lessons)

# Repairs a student might type instead of the challenge's own solution (which is typed
# for the others): each restores what the checks ask, another way.
OTHER_REPAIRS = {
    "wrong-prefix": ["host# ip route add 172.18.0.0/16 dev veth0"],
    "route-lost": ["host# ip addr del 172.18.0.21/16 dev veth1", "host# ip addr add 172.18.0.21/16 dev veth1"],
    "no-default": ["netns1# ip route add 10.0.2.0/24 via 172.18.0.1"],
    "forward-drop": ["host# iptables -D FORWARD 1"],
    "masquerade-wrong-interface": ["host# iptables -t nat -I POSTROUTING 1 -s 172.18.0.0/16 -o eth0 -j MASQUERADE"],
    "no-route-back": ["netns0# ip route add 10.0.2.0/24 via 172.18.0.1"],
    "jump-after-accept": ["host# iptables -D FORWARD -d 172.18.0.10/32 ! -i br0 -o br0 -p tcp --dport 5000 -j ACCEPT"],
    "vm-rule-ports": ["host# iptables -I FORWARD 1 -i br1 -o br1 -j ACCEPT"],
    "vpn-black-hole": ["host# ip link set dev eth0 mtu 1500", "host# iptables -D OUTPUT 1"],
    "pod-lo-dropped": ["netns0# iptables -A INPUT -d 127.0.0.1/32 -p tcp --dport 6000 -j ACCEPT"],
    "resolv-stub": ["host# rm /etc/netns/netns0/resolv.conf", "host# echo nameserver 10.0.2.2 > "
                    "/etc/netns/netns0/resolv.conf"],
}


def test_there_are_at_least_twelve_challenges_across_lessons_2_to_14() -> None:
    assert len(ALL.items) >= 12
    assert set(range(2, 14)) <= {c.lesson for c in ALL.items} <= set(range(2, 15))
    assert len(set(ALL.names())) == len(ALL.items)
    slugs = {le.slug for le in COURSE.lessons}
    for challenge in ALL.items:
        assert challenge.name not in slugs and challenge.story and challenge.breaks and challenge.checks
        assert challenge.hints and challenge.solution and challenge.explain
        # its sysctls are ones the course reads, or a move could not see the break to take it back
        keys = set(COURSE.sysctl_keys())
        assert all(getattr(c.action, "key", None) in (None, *keys) for c in challenge.breaks), challenge.name


def test_a_challenge_file_without_a_break_is_refused_naming_the_file() -> None:
    text = "# A story.\n\n```check\nping host -> 127.0.0.1 reachable\n```\n"
    with pytest.raises(LessonError, match=r"06-nothing\.md.*break block"):
        parse_challenge_text(text, "lessons/challenges/06-nothing.md")
    with pytest.raises(LessonError, match=r"06-bad\.md:4"):
        parse_challenge_text("# A story.\n\n```break\nhost# ip link frobnicate\n```\n", "lessons/challenges/06-bad.md")


def test_an_unknown_challenge_is_refused_with_the_nearest_name() -> None:
    with pytest.raises(Exception, match="forward-off"):
        ALL.find("forward-of")


def _failing(verdict: grading.Verdict) -> list[str]:
    return [f"{r.check.describe()}: {r.actual}" for r in verdict.checks if not r.ok] + verdict.problems


@needs_root
@pytest.mark.parametrize("lesson", sorted({c.lesson for c in ALL.items}))
def test_each_challenge_fails_when_built_and_passes_after_solution_or_a_typed_repair(make_lab, lesson: int) -> None:
    lab = make_lab(f"ch{lesson}")
    engine = Engine(lab)
    for challenge in ALL.of_lesson(lesson):
        begun = challenges.begin(engine, challenge)
        position = challenges.position_of(engine, challenge)
        assert engine.position == position and begun.challenge is challenge
        target = challenges.target_of(engine)  # the challenge the lab holds, by default
        assert target.challenge and target.ref == f"challenge:{challenge.name}"
        broken = grading.verify(engine, target)
        assert not broken.ok, challenge.name
        assert not broken.notes, (challenge.name, broken.notes)  # nothing names the fault
        assert all(r.evidence is None and not r.why for r in broken.checks), challenge.name
        hint = grading.next_hint(engine, target)
        assert hint.stage == "written" and hint.text == challenge.hints[0]
        done = grading.solution(engine, target)
        assert done.verdict.ok, (challenge.name, _failing(done.verdict))
        assert done.broken == challenge.explain and done.ran and not done.removed, (challenge.name, done)

        for repair in ([f"{c.where}# {c.text}" for c in challenge.solution], OTHER_REPAIRS.get(challenge.name)):
            if repair is None:
                continue
            challenges.begin(engine, challenge)  # again: the move takes the repair back, the break returns
            assert not grading.verify(engine, challenges.target_of(engine)).ok, challenge.name
            typed(lab, *repair)
            verdict = grading.verify(engine, challenges.target_of(engine, challenge.name))
            assert verdict.ok, (challenge.name, repair, _failing(verdict))
            assert engine.position == position and not verdict.adopted

        list(engine.goto(position))  # a move: the break and the repair are not the course's
        assert challenges.active(engine) is None
        assert same(read(engine), states(engine).positions[position]), \
            differences(read(engine), states(engine).positions[position])


@needs_root
def test_a_repair_that_breaks_something_else_fails(lab) -> None:
    """The internet comes back with a route in upstream instead of a MASQUERADE, but then
    upstream reaches the containers, which lesson 6's end says it must not."""
    engine = Engine(lab)
    challenges.begin(engine, ALL.find("masquerade-wrong-interface"))
    # as typed in `netstep shell upstream`: the real ip, in the lab's upstream
    subprocess.run(["nsenter", f"--net={lab.path_of('upstream')}", "ip", "route", "add", "172.18.0.0/16", "via",
                    "10.0.2.15"], check=True, timeout=30)
    verdict = grading.verify(engine, challenges.target_of(engine))
    assert not verdict.ok
    assert [r.check.describe() for r in verdict.checks if not r.ok] == ["ping upstream -> 172.18.0.10"], \
        _failing(verdict)
    assert all(r.ok for r in verdict.checks if r.check.target == "internet")
    done = grading.solution(engine, challenges.target_of(engine))  # what is in the way goes
    assert done.verdict.ok and any(r.startswith("upstream#") and "172.18.0.0/16" in r for r in done.removed), \
        done.removed


@needs_root
def test_a_solution_that_must_reset_the_lab_keeps_the_challenges_setup(lab) -> None:
    """hairpin-off's working lab is lesson 9's end and a setup (a MASQUERADE, hairpin on):
    when the student also deleted that MASQUERADE, hairpin alone does not repair it, the
    lab is set to the lesson's end, and the setup and the repair run again on it."""
    engine = Engine(lab)
    challenge = ALL.find("hairpin-off")
    challenges.begin(engine, challenge)
    typed(lab, "host# iptables -t nat -D POSTROUTING -s 172.18.0.0/16 -d 172.18.0.0/16 -o br0 -j MASQUERADE")
    done = grading.solution(engine, challenges.target_of(engine))
    assert done.verdict.ok, _failing(done.verdict)
    rules = subprocess.run(["nsenter", f"--net={lab.path_of('host')}", "iptables-save", "-t", "nat"],
                           capture_output=True, text=True, check=True, timeout=30).stdout
    assert "-A POSTROUTING -s 172.18.0.0/16 -d 172.18.0.0/16 -o br0 -j MASQUERADE" in rules, rules


@needs_root
def test_the_command_line_lists_sets_up_grades_hints_and_solves_through_a_pipe(cli_lab) -> None:
    from support import netstep_cli

    listed = netstep_cli(cli_lab, "challenge")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert len(lines) == len(ALL.items)
    assert lines[ALL.names().index("forward-off")].split(None, 3)[:3] == ["forward-off", "lesson", "6"]

    begun = netstep_cli(cli_lab, "challenge", "forward-off")
    assert begun.returncode == 0, begun.stderr
    assert ALL.find("forward-off").story in begun.stdout and "ip_forward" not in begun.stdout
    failed = netstep_cli(cli_lab, "verify")
    assert failed.returncode == 1 and "challenge:forward-off" in failed.stdout and "ip_forward" not in failed.stdout
    hint = netstep_cli(cli_lab, "hint")
    assert hint.returncode == 0 and ALL.find("forward-off").hints[0][:40] in " ".join(hint.stdout.split())
    assert "(1 more hint after this one)" in hint.stdout and "missing after" not in hint.stdout
    solved = netstep_cli(cli_lab, "solution")
    assert solved.returncode == 0, solved.stdout + solved.stderr
    assert "What was broken" in solved.stdout and "sysctl -w net.ipv4.ip_forward=1" in solved.stdout
    assert netstep_cli(cli_lab, "verify", "forward-off").returncode == 0

    as_json = [json.loads(line) for line in netstep_cli(cli_lab, "challenge", "--json").stdout.splitlines()]
    assert [item["name"] for item in as_json] == ALL.names() and as_json[0]["lesson"] == ALL.items[0].lesson
    again = netstep_cli(cli_lab, "challenge", "output-missing", "--json")  # (the move takes forward-off's back)
    event = json.loads(again.stdout)
    assert event["event"] == "challenge" and event["step"] == "challenge:output-missing" and event["asks"]
    verdict = json.loads(netstep_cli(cli_lab, "verify", "--json").stdout)
    assert verdict["step"] == "challenge:output-missing" and not verdict["ok"] and not verdict["notes"]

    wrong = netstep_cli(cli_lab, "challenge", "forward-of")
    assert wrong.returncode == 1 and "forward-off" in wrong.stderr and "Traceback" not in wrong.stderr
    moved = netstep_cli(cli_lab, "rollback")  # a move: the challenge is over
    assert moved.returncode == 0, moved.stderr
    gone = netstep_cli(cli_lab, "verify", "forward-off")
    assert gone.returncode == 1 and "does not hold challenge forward-off" in gone.stderr
