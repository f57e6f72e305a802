"""The command line, run as a student runs it: `python -m netstep --lab NAME ...` in a subprocess.

Every test uses a lab of its own and removes it at the end (`reset`, then Lab.destroy() as
a fallback), whatever happened.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import (
    LABS_ROOT,
    REPO,
    httpd_pids,
    lesson_markdown,
    mounts_under,
    needs_root,
    netstep_cli,
    real_lesson_files,
    sysctl_keys,
    write_lesson,
)

from netstep.core.engine import Engine
from netstep.core.journal import Journal
from netstep.core.lab import Lab
from netstep.course.course import Course

pytestmark = [
    needs_root,
    pytest.mark.skipif(len(real_lesson_files()) < 7, reason="the CLI tests need the seven lessons in lessons/"),
]

JSON_KEYS = {"lesson", "step", "from", "to", "kind", "expect", "actual", "reason", "ok"}
ENV = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}


def netstep(lab: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return netstep_cli(lab, *args, timeout=timeout, env=ENV)


def show(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, show(result)
    assert "Traceback" not in result.stderr, show(result)


def assert_clear_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """A refusal: non-zero exit, no traceback, a message on stderr that says what is wrong."""
    assert result.returncode != 0, show(result)
    assert "Traceback" not in result.stderr + result.stdout, show(result)
    assert result.stderr.strip(), show(result)
    for word in words:
        assert word in result.stderr, f"{word!r} not in stderr\n{show(result)}"


def json_lines(stdout: str, *, events: bool = False) -> list[dict]:
    """stdout of a --json command: every non-empty line must be one JSON object. The check
    lines, or with `events` the {"event": "step"} lines."""
    records = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"stdout holds a line that is not JSON: {line!r}") from None
        assert isinstance(record, dict), line
        if ("event" in record) == events:
            records.append(record)
    return records


def journal_refs(name: str) -> list[str]:
    return [s["ref"] for s in Journal(os.path.join(LABS_ROOT, name, "journal.json")).steps]


@pytest.fixture(scope="module")
def course() -> Course:
    return Course.load()


def refs_through(course: Course, number: int) -> list[str]:
    return [s.ref for s in course.steps if s.lesson.number <= number]


# -- list --------------------------------------------------------------------------------------


def test_list_prints_every_lesson(course: Course, cli_lab: str) -> None:
    result = netstep(cli_lab, "list")
    assert_ok(result)
    assert len(course.lessons) >= 7 and [le.number for le in course.lessons[:7]] == list(range(1, 8))
    for lesson in course.lessons:
        title = re.sub(r"^Lesson \d+:\s*", "", lesson.title)
        line = next((ln for ln in result.stdout.splitlines() if lesson.slug in ln.split()
                     or f" {lesson.slug} " in ln), None)
        assert line is not None, f"{lesson.slug} not listed\n{show(result)}"
        assert re.search(rf"\b{lesson.number}\b", line), f"lesson number {lesson.number} not on {line!r}"
        assert title in result.stdout, f"title {title!r} not listed\n{show(result)}"


# -- run -------------------------------------------------------------------------------------------


def test_run_all_json_then_rollback_all_and_reset(course: Course, cli_lab: str) -> None:
    result = netstep(cli_lab, "run", "all", "--yes", "--json")
    assert_ok(result)
    records = json_lines(result.stdout)
    expected = [(s.lesson.name, s.ref, c) for s in course.steps for c in s.checks]
    assert len(records) == len(expected), show(result)
    for record, (lesson, ref, check) in zip(records, expected, strict=True):
        assert set(record) >= JSON_KEYS, f"missing keys {JSON_KEYS - set(record)} in {record}"
        assert (record["lesson"], record["step"], record["from"], record["kind"], record["expect"]) == (
            lesson, ref, check.source, check.kind, check.expect), record
    failed = [r for r in records if r["ok"] is not True]
    assert not failed, f"checks not ok: {failed}"
    assert journal_refs(cli_lab) == [s.ref for s in course.steps]
    lab_dir = os.path.join(LABS_ROOT, cli_lab)
    if any(type(a).__name__ == "HttpServer" for s in course.steps for a in s.actions):
        assert httpd_pids(lab_dir), "the course's HTTP server is not running after `run all`"

    rolled = netstep(cli_lab, "rollback", "--all")
    assert_ok(rolled)
    assert journal_refs(cli_lab) == []
    assert httpd_pids(lab_dir) == []

    reset = netstep(cli_lab, "reset")
    assert_ok(reset)
    assert not os.path.exists(lab_dir)
    assert mounts_under(lab_dir) == []
    assert httpd_pids(lab_dir) == []


@pytest.mark.parametrize("ref", ["lesson3", "3", "veth-conflict", "path"])
def test_run_one_lesson_on_a_fresh_lab(course: Course, cli_lab: str, ref: str) -> None:
    lesson = course.find("lesson3")
    if ref == "path":
        ref = lesson.path
    result = netstep(cli_lab, "run", ref, "--yes", "--json")
    assert_ok(result)
    records = json_lines(result.stdout)
    assert len(records) == sum(len(s.checks) for s in lesson.steps)
    assert {r["lesson"] for r in records} == {"lesson3"}
    assert all(r["ok"] is True for r in records), [r for r in records if not r["ok"]]
    assert journal_refs(cli_lab) == refs_through(course, 3)


def test_run_lesson3_in_the_terminal(course: Course, cli_lab: str) -> None:
    result = netstep(cli_lab, "run", "lesson3", "--yes")
    assert_ok(result)
    lesson = course.find("lesson3")
    assert lesson.steps[0].title in result.stdout
    assert journal_refs(cli_lab) == refs_through(course, 3)


def test_run_json_without_yes_keeps_stdout_json(course: Course, cli_lab: str) -> None:
    """With --json, stdout holds only JSON lines, even when the steps are not pre-approved."""
    result = netstep(cli_lab, "run", "lesson1", "--json")
    assert_ok(result)
    records = json_lines(result.stdout)
    assert len(records) == sum(len(s.checks) for s in course.find("lesson1").steps)


def test_run_exits_non_zero_when_a_check_fails(course: Course, cli_lab: str, tmp_path: Path) -> None:
    """A lesson whose check expects the wrong outcome: exit 1, and the JSON says which check."""
    lesson = write_lesson(tmp_path, "02-wrong.md", lesson_markdown("Lesson 2: Wrong", [
        ("Expect too much", ["host# iptables -N WRONG"], ["ping host -> 10.0.2.2 unreachable",
                                                           "ping host -> 10.0.2.2 reachable"]),
    ]))
    result = netstep(cli_lab, "run", str(lesson), "--yes", "--json")
    assert result.returncode != 0, show(result)
    assert "Traceback" not in result.stderr, show(result)
    records = json_lines(result.stdout)
    assert [(r["expect"], r["actual"], r["ok"]) for r in records] == [
        ("unreachable", "reachable", False), ("reachable", "reachable", True)]


# -- moving step by step, and looking ----------------------------------------------------------------


def test_next_back_diff_and_inspect(course: Course, cli_lab: str) -> None:
    first = course.steps[0]
    assert_ok(netstep(cli_lab, "next"))
    assert journal_refs(cli_lab) == [first.ref]
    assert_ok(netstep(cli_lab, "next"))
    assert journal_refs(cli_lab) == [s.ref for s in course.steps[:2]]

    back = netstep(cli_lab, "back")
    assert_ok(back)
    assert journal_refs(cli_lab) == [first.ref]

    # A change made by hand (as in `netstep shell`) shows in `diff`.
    with Lab(cli_lab) as lab:
        lab.ipr("host").link("add", ifname="handmade0", kind="bridge")
    diff = netstep(cli_lab, "diff")
    assert_ok(diff)
    assert "handmade0" in diff.stdout, show(diff)

    inspect = netstep(cli_lab, "inspect", "host", "--json")
    assert_ok(inspect)
    text = json.dumps(json.loads(inspect.stdout))
    for word in ("eth0", "10.0.2.15/24", "handmade0"):
        assert word in text, f"{word} not in inspect --json\n{show(inspect)}"

    everything = netstep(cli_lab, "inspect", "--all", "--json")
    assert_ok(everything)
    text = json.dumps(json.loads(everything.stdout))
    for word in ("upstream", "203.0.113.8", "10.0.2.2/24"):
        assert word in text, f"{word} not in inspect --all --json\n{show(everything)}"

    plain = netstep(cli_lab, "inspect")
    assert_ok(plain)
    assert "eth0" in plain.stdout and "10.0.2.15" in plain.stdout, show(plain)


def test_check_and_rollback_a_lesson(course: Course, cli_lab: str) -> None:
    assert_ok(netstep(cli_lab, "run", "2", "--yes", "--json"))
    lesson2 = course.find("lesson2")
    final = [c for c in next(s for s in reversed(lesson2.steps) if s.checks).checks]

    checked = netstep(cli_lab, "check", "lesson2", "--json")
    assert_ok(checked)
    records = json_lines(checked.stdout)
    assert [(r["from"], r["kind"], r["expect"]) for r in records] == [(c.source, c.kind, c.expect) for c in final]
    assert all(r["ok"] is True for r in records)

    assert_ok(netstep(cli_lab, "check", "--json"))

    # Give netns0 a default route by hand: lesson 2's "10.0.2.15 is out of reach" no longer
    # holds, and `check` says so.
    assert any(c.source == "netns0" and c.target == "10.0.2.15" and c.expect == "unreachable" for c in final)
    with Lab(cli_lab) as lab:
        lab.ipr("netns0").route("add", dst="0.0.0.0/0", gateway="172.18.0.11")
    broken = netstep(cli_lab, "check", "lesson2", "--json")
    assert broken.returncode != 0, show(broken)
    assert "Traceback" not in broken.stderr
    wrong = [r for r in json_lines(broken.stdout) if not r["ok"]]
    assert [(r["to"], r["actual"]) for r in wrong if r["to"] == "10.0.2.15"] == [("10.0.2.15", "reachable")]

    with Lab(cli_lab) as lab:
        lab.ipr("netns0").route("del", dst="0.0.0.0/0", gateway="172.18.0.11")
    rolled = netstep(cli_lab, "rollback")
    assert_ok(rolled)
    assert journal_refs(cli_lab) == refs_through(course, 1)


def test_check_all_checks_each_finished_lesson_and_the_last_decides(course: Course, cli_lab: str) -> None:
    assert_clear_error(netstep(cli_lab, "check", "all"), "No lesson is finished yet")
    assert_ok(netstep(cli_lab, "run", "lesson3", "--yes", "--json"))
    checked = netstep(cli_lab, "check", "all", "--json")
    assert_ok(checked)  # lesson 3's end holds, though lesson 2's end no longer does (netns0's lo is up)
    records = json_lines(checked.stdout)
    finals = [(le.name, check) for le in course.lessons[:3] for check in [s for s in le.steps if s.checks][-1].checks]
    assert [(r["lesson"], r["from"], r["to"]) for r in records] == \
        [(name, c.source, "203.0.113.8" if c.target == "internet" else c.target) for name, c in finals]
    assert all(r["ok"] for r in records if r["lesson"] == "lesson3")
    shown = netstep(cli_lab, "check", "all")
    assert "lesson3's end: 4 of 4 as the lesson expects" in shown.stdout, show(shown)
    with Lab(cli_lab) as lab:  # lesson 3's end no longer holds: host reaches netns1 no more
        lab.ipr("netns1").link("set", index=lab.ipr("netns1").link_lookup(ifname="ceth1")[0], state="down")
    broken = netstep(cli_lab, "check", "all")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr, show(broken)


def test_reset_removes_the_lab(cli_lab: str) -> None:
    assert_ok(netstep(cli_lab, "next"))
    lab_dir = os.path.join(LABS_ROOT, cli_lab)
    assert mounts_under(lab_dir)
    assert_ok(netstep(cli_lab, "reset"))
    assert not os.path.exists(lab_dir)
    assert mounts_under(lab_dir) == []


def test_doctor(cli_lab: str) -> None:
    before = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    result = netstep(cli_lab, "doctor")
    assert_ok(result)
    assert "root" in result.stdout
    after = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    assert not {n for n in after - before if n.startswith("doctor")}, "doctor left its test lab behind"
    assert not os.path.exists(os.path.join(LABS_ROOT, cli_lab)), "doctor should not build the --lab lab"
    assert "✔ a scratch namespace, pinned by a bind mount, with a veth pair, an address, a bridge, an iptables " \
        "rule and a MASQUERADE worked" in result.stdout
    assert "✔ pyroute2, netstep's netlink library, is installed" in result.stdout
    # Its trial namespace went with its process: nothing of it is where doctor ran.
    assert subprocess.run(["ip", "link", "show", "doctor0"], capture_output=True).returncode != 0


# -- bad input: one clear message, never a traceback ------------------------------------------------


def test_unknown_lesson(course: Course, cli_lab: str) -> None:
    result = netstep(cli_lab, "run", "lesson99", "--yes")
    assert_clear_error(result, "lesson99")
    far = netstep(cli_lab, "run", "xyzzy", "--yes")
    assert_clear_error(far, "There is no lesson 'xyzzy'")
    assert "Did you mean" not in far.stderr  # nothing near enough to suggest
    assert_clear_error(netstep(cli_lab, "run", "brige", "--yes"), "Did you mean bridge?")
    assert_clear_error(netstep(cli_lab, "check", "gatway"), "Did you mean gateway?")
    for lesson in course.lessons:
        assert lesson.name in result.stderr, f"{lesson.name} not listed\n{show(result)}"


def test_unknown_namespace_for_inspect(cli_lab: str) -> None:
    result = netstep(cli_lab, "inspect", "nosuchns")
    assert_clear_error(result, "nosuchns")


# One invocation of every command the CLI has (the list is checked against the parser below).
EVERY_COMMAND = [["list"], ["run", "1", "--yes"], ["next"], ["back"], ["check", "1"], ["inspect"], ["diff"],
                 ["rollback", "--all"], ["reset"], ["shell"], ["doctor"], ["notebooks", "--out", "/tmp/nsbad"],
                 ["trace", "netns0", "10.0.2.15"],
                 ["demo", "--auto", "0.1"], ["start", "1"], ["verify"], ["hint"], ["solution"],
                 ["challenge", "forward-off"]]


def test_every_command_is_tried_with_a_bad_lab_name() -> None:
    from netstep.cli import COMMANDS

    assert sorted(c[0] for c in EVERY_COMMAND) == sorted(COMMANDS)


@pytest.mark.parametrize("name", ["../x", "bad name/../x"])
@pytest.mark.parametrize("args", EVERY_COMMAND, ids=lambda a: a[0])
def test_bad_lab_name(args: list[str], name: str) -> None:
    result = netstep(name, *args)
    assert_clear_error(result, name, "not a usable lab name")
    assert not os.path.exists("/run/netstep/x")
    assert not os.path.exists(os.path.join(LABS_ROOT, "..", "x"))
    assert not os.path.exists("/tmp/nsbad")


def test_malformed_lesson_file(cli_lab: str, tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "05-bad.md", lesson_markdown("Lesson 5: Bad", [
        ("Good step", ["host# iptables -N FINE"], []),
        ("Bad step", ["host# ip link set lo up", "host# curl http://10.0.2.2"], []),
    ]))
    line = path.read_text().splitlines().index("host# curl http://10.0.2.2") + 1
    result = netstep(cli_lab, "run", str(path), "--yes")
    assert_clear_error(result, f"{path}:{line}:", "curl")
    assert journal_refs(cli_lab) == []


def test_malformed_lesson_with_brackets_in_the_error(cli_lab: str, tmp_path: Path) -> None:
    """The offending text is shown as written, even when it looks like terminal markup."""
    path = write_lesson(tmp_path, "05-bad.md", lesson_markdown("Lesson 5: Bad", [
        ("Bad step", ["host# ip link set [/]x up"], []),
    ]))
    result = netstep(cli_lab, "run", str(path), "--yes")
    assert_clear_error(result, f"{path}:10:", "[/]x")


def test_busy_lab(cli_lab: str) -> None:
    with Lab(cli_lab):
        result = netstep(cli_lab, "next", timeout=60)
        assert_clear_error(result, "busy")
    assert journal_refs(cli_lab) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_leaves_a_consistent_lab(course: Course, cli_lab: str, make_lab, signum: int) -> None:
    """Ctrl-C (or SIGTERM) in the middle of `run all`: the lab is left after a whole step."""
    reference = make_lab("r")
    fresh = reference.snapshot(caches=False, sysctls=sysctl_keys(course))
    proc = subprocess.Popen([sys.executable, "-m", "netstep", "--lab", cli_lab, "run", "all", "--yes", "--json"],
                            cwd=REPO, env=ENV, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while len(journal_refs(cli_lab)) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert "Traceback" not in stderr, stderr
    assert re.search(r"interrupted; .* The lab is after step \d\.\d \(.*\): `python -m netstep next` applies "
                     r"step \d\.\d\.", " ".join(stderr.split())), stderr  # where the lab now is

    with Lab(cli_lab) as lab:
        engine = Engine(lab, course)  # raises if a step was left half-applied
        assert engine.position >= 7  # the 8th step had begun when the signal was sent
        engine.rollback_all()
        now = lab.snapshot(caches=False, sysctls=sysctl_keys(course))
        assert now.same_config(fresh)


def test_a_command_called_in_process_freezes_nothing(cli_lab, capsys):
    """`python -m netstep` freezes the objects a command keeps to its end out of the
    collector's sight (netstep/__main__.py); a caller that goes on after main() (a test, a
    notebook) must not find its objects frozen."""
    import gc

    from netstep.cli import main

    frozen = gc.get_freeze_count()
    assert main(["--lab", cli_lab, "run", "lesson1", "--yes", "--json"]) == 0
    assert '"ok": true' in capsys.readouterr().out
    assert gc.get_freeze_count() == frozen
