"""The student's own work on the command line: predict, start, shell, verify, hint, solution.

Run as a student runs them: `python -m netstep` in a subprocess, answers typed through a
pipe and through a terminal (a pty), commands typed by hand into `netstep shell`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
from support import CLI_ENV, converse_on_pty, needs_root, netstep_cli, real_lesson_files

from netstep.course.course import Course

pytestmark = [needs_root, pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")]

def netstep(lab: str, *args: str, stdin: str = "", timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return netstep_cli(lab, *args, stdin=stdin, timeout=timeout, env={**CLI_ENV, "COLUMNS": "200"})


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-3000:]}"


def veth_answers(right: bool) -> list[str]:
    """Lesson 2's checks, answered right (each as the kernel will show it) or all wrong."""
    lesson = Course.load().find("veth")
    expected = [check.expect for step in lesson.steps for check in step.checks]
    flip = {"reachable": "unreachable", "unreachable": "reachable"}
    return [answer[0] if right else flip[answer][0] for answer in expected]


# -- predictions ------------------------------------------------------------------------------


@pytest.mark.parametrize("right", [True, False], ids=["all-right", "all-wrong"])
def test_predictions_through_a_pipe(cli_lab: str, right: bool) -> None:
    """--predict asks even when the answers come from a pipe, and with --yes."""
    answers = veth_answers(right)
    total = len(answers)
    result = netstep(cli_lab, "run", "veth", "--predict", "--yes", stdin="\n".join(answers) + "\n")
    assert result.returncode == 0, show(result)
    assert "Will netns0 reach 172.18.0.11? [y/n]" in result.stdout
    assert result.stdout.count("Will netns0 reach internet (203.0.113.8)?") == 1, show(result)  # asked once
    score = f"predictions: {total if right else 0} of {total} right (lesson2)"
    assert score in result.stdout, show(result)
    # the closing line says how the checks came out, apart from the predictions
    assert result.stdout.rstrip().endswith("Every check came out as expected."), show(result)
    if right:
        assert "✘" not in result.stdout, show(result)
    else:  # each wrong one is named under its step, with the kernel's reason
        assert "✘ step 2.6, ping netns0 → 10.0.2.15: you said reachable; it was unreachable, Network is " \
            "unreachable (no route)" in result.stdout, show(result)
        assert "✘ step 2.5, ping host → 172.18.0.10: you said unreachable; it was reachable" in result.stdout, \
            show(result)
        assert "✘ step 2.6, ping netns0 → internet (203.0.113.8): you said reachable" in result.stdout, show(result)


def test_predictions_in_json(cli_lab: str) -> None:
    answers = veth_answers(True)
    answers[0] = "r" if answers[0] == "u" else "u"
    answers[1] = ""  # skipped: no prediction for that check
    result = netstep(cli_lab, "run", "veth", "--predict", "--yes", "--json", stdin="\n".join(answers) + "\n")
    assert result.returncode == 0, show(result)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    checks = [line for line in lines if "kind" in line]
    assert [c.get("predicted", " ")[0] for c in checks] == [a or " " for a in answers]
    scores = [line for line in lines if line.get("event") == "predictions"]
    assert len(scores) == 1 and scores[0]["right"] == len(answers) - 2 and scores[0]["total"] == len(answers) - 1
    assert scores[0]["wrong"][0]["check"] == "ping netns0 -> 127.0.0.1" and scores[0]["wrong"][0]["step"] == "2.3"
    assert "Will netns0 reach 127.0.0.1? [y/n]" in result.stderr  # questions never mix into the JSON


def test_predictions_that_run_out_are_a_clear_error(cli_lab: str) -> None:
    result = netstep(cli_lab, "run", "veth", "--predict", "--yes", stdin="r\nmaybe\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr, show(result)
    assert "Answer y (it gets through), n (it does not), or press Enter to skip." in result.stdout
    assert "predictions are read one a line" in result.stderr, show(result)


def _expected_outcomes(text: str) -> list[str]:
    """Whatever in `text` tells how a check will come out: the lesson's expectation or a result."""
    return re.findall(r"(?i)expect(?:ed)? (?:un)?reachable|got (?:un)?reachable|\b(?:un)?reachable \(|"
                      r"✔|✘|you said", text)


def _before_each_step(output: str, steps) -> dict[str, str]:
    """For each step, what the terminal showed from its heading to the moment it ran."""
    shown = {}
    for step in steps:
        start = output.index(f"Step {step.ref}: {step.title}")
        shown[step.ref] = output[start:output.index(f"Applied step {step.ref}", start)]
    return shown


@pytest.mark.parametrize("right", [True, False], ids=["all-right", "all-wrong"])
def test_a_terminal_run_asks_by_default_and_shows_no_answer_first(cli_lab: str, right: bool) -> None:
    """`run` on a terminal, without options: before each step with checks, each question
    once, naming what is tried; nothing on screen tells an outcome before the step runs;
    expected and actual come together after it."""
    answers = veth_answers(right)
    pending = list(answers)
    asked: list[str] = []

    def reply(text: str) -> str | None:
        if text.rstrip().endswith("[y/n]"):
            asked.append(text.rstrip().splitlines()[-1])
            return {"r": "y", "u": "n"}[pending.pop(0)] + "\n"
        if "Press Enter to apply this step" in text:
            return "\n"
        return None

    argv = [sys.executable, "-m", "netstep", "--lab", cli_lab, "run", "veth"]
    code, output = converse_on_pty(argv, reply, columns=160)
    assert code == 0, output[-3000:]
    lesson = Course.load().find("veth")
    questions = [f"Will {c.source} reach {'internet (203.0.113.8)' if c.target == 'internet' else c.target}? [y/n]"
                 for step in lesson.steps for c in step.checks]
    assert asked == questions, asked  # each asked once, in order
    for ref, text in _before_each_step(output, lesson.steps).items():
        assert not _expected_outcomes(text), f"step {ref} told an outcome before it ran:\n{text}"
    assert f"predictions: {len(answers) if right else 0} of {len(answers)} right (lesson2)" in output, output[-3000:]
    assert "expected reachable, got reachable" in output  # after the step: expected and actual together


def test_enter_skips_a_question(cli_lab: str) -> None:
    asked: list[str] = []

    def reply(text: str) -> str | None:
        if text.rstrip().endswith("[y/n]"):
            asked.append(text.rstrip().splitlines()[-1])
            return "\n" if len(asked) > 1 else "y\n"  # the first answered, every other one skipped
        if "Press Enter to apply this step" in text:
            return "\n"
        return None

    code, output = converse_on_pty([sys.executable, "-m", "netstep", "--lab", cli_lab, "run", "veth"], reply,
                                   columns=160)
    assert code == 0, output[-3000:]
    assert len(asked) == sum(len(s.checks) for s in Course.load().find("veth").steps)
    assert "predictions: 1 of 1 right (lesson2)" in output, output[-3000:]


@pytest.mark.parametrize("option", ["--no-predict", "--yes", "--json"])
def test_no_question_with_no_predict_yes_or_json(cli_lab: str, option: str) -> None:
    """--no-predict, --yes and --json never ask, on a terminal too; nor do they show an answer first."""
    def reply(text: str) -> str | None:
        if text.rstrip().endswith("[y/n]"):
            return "q\n"  # a question asked: the run stops, and the test fails below
        if "Press Enter to apply this step" in text:
            return "\n"
        return None

    argv = [sys.executable, "-m", "netstep", "--lab", cli_lab, "run", "veth", option]
    code, output = converse_on_pty(argv, reply, columns=160)
    assert code == 0 and "[y/n]" not in output, output[-3000:]
    assert "predictions:" not in output
    if option != "--json":
        lesson = Course.load().find("veth")
        assert "The checks ask:" in output and "Will netns0 reach 127.0.0.1?" in output  # the questions, shown
        for ref, text in _before_each_step(output, lesson.steps).items():
            assert not _expected_outcomes(text), f"step {ref} told an outcome before it ran:\n{text}"
    else:
        assert '"ok": true' in output and '"ok": false' not in output


def test_q_at_a_question_stops_the_run(cli_lab: str) -> None:
    def reply(text: str) -> str | None:
        if text.rstrip().endswith("[y/n]"):
            return "q\n"
        if "Press Enter to apply this step" in text:
            return "\n"
        return None

    code, output = converse_on_pty([sys.executable, "-m", "netstep", "--lab", cli_lab, "run", "veth"], reply,
                                   columns=160)
    assert code == 0 and "Applied step 2.2" in output and "Applied step 2.3" not in output, output[-3000:]


# -- typing a lesson by hand ------------------------------------------------------------------

LESSON2_BY_HAND = [
    "ip link add veth0 type veth peer name ceth0",
    "ip link set ceth0 netns netns0",
    "ip netns exec netns0 ip link set lo up",
    "ip link set veth0 up",
    "ip addr add 172.18.0.11/16 dev veth0",
    "ip netns exec netns0 ip link set ceth0 up",
    "ip netns exec netns0 ip addr add 172.18.0.10/16 dev ceth0",
]


def type_lesson2(lab: str, lines: list[str]) -> None:
    started = netstep(lab, "start", "veth")
    assert started.returncode == 0, show(started)
    assert "none of its steps is applied" in started.stdout
    typed = netstep(lab, "shell", stdin="\n".join(lines) + "\nexit\n")
    assert typed.returncode == 0, show(typed)


def test_a_lesson_typed_by_hand_verifies_and_the_course_goes_on(cli_lab: str) -> None:
    type_lesson2(cli_lab, LESSON2_BY_HAND)
    result = netstep(cli_lab, "verify", "lesson2")
    assert result.returncode == 0, show(result)
    assert "Counted as done" in result.stdout and "Not there yet" not in result.stdout, show(result)
    assert "different from the course's own lab" not in result.stdout  # typed as the course types it
    again = netstep(cli_lab, "verify", "2.6", "--json")
    verdict = json.loads(again.stdout)
    assert again.returncode == 0 and verdict["ok"] and not verdict["adopted"] and verdict["problems"] == []
    assert verdict["notes"] == []
    following = netstep(cli_lab, "next")
    assert "Applied step 3.1" in following.stdout, show(following)
    rolled = netstep(cli_lab, "rollback", "--all")  # the hand-typed steps are undone like the course's
    assert rolled.returncode == 0 and "rolled back 2.1" in rolled.stdout, show(rolled)
    fresh = netstep(cli_lab, "verify", "1.1", "--json")
    assert json.loads(fresh.stdout)["problems"] == ["host needs a chain ROOT_NS"], show(fresh)


def test_the_articles_nsenter_reaches_the_labs_namespace_in_the_shell(cli_lab: str) -> None:
    """Lesson 1 teaches `nsenter --net=/var/run/netns/netns0`: typed in `netstep shell`, the
    real nsenter enters the lab's netns0 (the shell binds the lab's folder on /run/netns,
    and /var/run/netns reaches it), so lesson 2 typed that way verifies."""
    nsenter = "nsenter --net=/var/run/netns/netns0"
    lines = [line.replace("ip netns exec netns0", nsenter) for line in LESSON2_BY_HAND]
    assert sum(nsenter in line for line in lines) == 3
    type_lesson2(cli_lab, lines)
    result = netstep(cli_lab, "verify", "lesson2")
    assert result.returncode == 0, show(result)
    assert "Counted as done" in result.stdout


@pytest.mark.parametrize(("change", "named"), [
    (lambda lines: [line for line in lines if "ceth0 up" not in line], "ceth0 in netns0 is DOWN, it should be UP"),
    (lambda lines: [line.replace("172.18.0.10/16", "172.18.0.12/16") for line in lines],
     "netns0 needs an address 172.18.0.10/16 on ceth0"),
], ids=["left-out", "changed"])
def test_a_command_left_out_or_changed_is_named(cli_lab: str, change, named: str) -> None:
    type_lesson2(cli_lab, change(LESSON2_BY_HAND))
    result = netstep(cli_lab, "verify", "lesson2")
    assert result.returncode == 1, show(result)
    assert named in result.stdout, show(result)
    assert "Traceback" not in result.stderr
    verdict = json.loads(netstep(cli_lab, "verify", "lesson2", "--json").stdout)
    assert not verdict["ok"] and named in verdict["differences"]
    assert "2.1" not in [r for r in journal_of(cli_lab)]  # nothing was counted as done


def journal_of(lab: str) -> list[str]:
    from netstep.core.journal import Journal

    return [s["ref"] for s in Journal(os.path.join("/run/netstep/labs", lab, "journal.json")).steps]


def test_hint_then_solution_from_the_command_line(cli_lab: str) -> None:
    type_lesson2(cli_lab, LESSON2_BY_HAND[:2])
    stages = [netstep(cli_lab, "hint", "2.4") for _ in range(3)]  # the idea, the blanks, the command
    assert all(h.returncode == 0 for h in stages), [show(h) for h in stages]
    assert "lo in netns0" in stages[0].stdout and "ip link" not in stages[0].stdout, show(stages[0])
    assert "netns0# ip link set ____ up" in stages[1].stdout, show(stages[1])
    assert "netns0# ip link set lo up" in stages[2].stdout, show(stages[2])
    assert "(2 more commands missing after this one)" in stages[2].stdout
    done = netstep(cli_lab, "solution", "2.4")
    assert done.returncode == 0, show(done)
    assert "netns0# ip link set lo up" in done.stdout and "host# ip link set veth0 up" in done.stdout
    assert journal_of(cli_lab)[-1] == "2.4"


def test_an_exercise_from_start_to_solution(cli_lab: str) -> None:
    started = netstep(cli_lab, "start", "exercise6")
    assert started.returncode == 0 and "keep one container in" in started.stdout, show(started)
    failing = netstep(cli_lab, "verify", "exercise6")
    assert failing.returncode == 1
    assert "host needs an iptables rule FORWARD -j DROP|REJECT" in failing.stdout, show(failing)
    hints = [netstep(cli_lab, "hint", "exercise6").stdout for _ in range(5)]  # the lesson's two, then staged
    assert "FORWARD chain" in hints[0] and "172.18.0.20" in hints[1], hints
    assert "needs a rule in the FORWARD chain" in hints[2] and "iptables" not in hints[2], hints
    assert "host# iptables -A FORWARD -s ____ ! -o ____ -j ____" in hints[3], hints
    assert "host# iptables -A FORWARD -s 172.18.0.20/32 ! -o br0 -j DROP" in hints[4], hints
    typed = netstep(cli_lab, "shell", stdin="iptables -A FORWARD -s 172.18.0.20 -o eth0 -j REJECT\n")
    assert typed.returncode == 0
    passing = netstep(cli_lab, "verify", "exercise6")
    assert passing.returncode == 0 and "Well done" in passing.stdout, show(passing)
    moved = netstep(cli_lab, "next")  # going on takes the exercise back first
    assert moved.returncode == 0 and "Applied step 7.1" in moved.stdout, show(moved)
    assert "removed what you added" in moved.stdout and "-j REJECT" in moved.stdout, show(moved)
    assert json.loads(netstep(cli_lab, "verify", "7.1", "--json").stdout)["notes"] == []


@pytest.mark.parametrize(("args", "words"), [
    (["verify", "9.9"], "There is no step '9.9'"),
    (["hint", "exercise42"], "There is no exercise"),
    (["start", "nothing"], "There is no lesson or exercise 'nothing'"),
    (["start", "exercis3"], "Did you mean exercise3?"),
    (["run", "brige"], "There is no lesson 'brige'. Did you mean bridge?"),
    (["verify", "2.9"], "There is no step '2.9'. Did you mean 2.6?"),
])
def test_bad_targets_are_clear_errors(cli_lab: str, args: list[str], words: str) -> None:
    result = netstep(cli_lab, *args)
    assert result.returncode == 1 and "Traceback" not in result.stderr and words in result.stderr, show(result)


def test_predictions_for_the_whole_course_score_each_lesson_and_the_run(cli_lab: str) -> None:
    course = Course.load()
    answers = [check.expect[0] for step in course.steps for check in step.checks]
    result = netstep(cli_lab, "run", "all", "--predict", "--yes", stdin="\n".join(answers) + "\n")
    assert result.returncode == 0, show(result)
    for lesson in course.lessons:
        total = sum(len(step.checks) for step in lesson.steps)
        assert f"predictions: {total} of {total} right ({lesson.name})" in result.stdout, show(result)
    assert f"predictions: {len(answers)} of {len(answers)} right (the run)" in result.stdout, show(result)
