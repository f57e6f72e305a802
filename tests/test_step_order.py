"""A step reads in the order a student thinks: the scene, the question, the commands; they
run; what changed and the checks; only then the prose that explains the result.

Checked where the student sees it: the interactive CLI on a pseudo-terminal (nothing the
student should find out comes before the pause), `run --yes`, the generated notebooks
(a markdown cell before the run cell, one after it) and the demo under Pilot.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from support import REPO, needs_root, real_lesson_files, unique_name

from netstep.course.course import Course
from netstep.notebooks import lesson_notebook

pytestmark = pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")
COURSE = Course.load()


def words(markdown: str, n: int = 6) -> str:
    """The first `n` words of some prose, as a terminal shows them (markup gone, one line)."""
    plain = re.sub(r"[`*_\[\]]", "", markdown.split("\n\n")[0])
    return " ".join(plain.split()[:n])


def flat(text: str) -> str:
    """Terminal output without escapes or line breaks: what the eye reads, in order."""
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b\][^\x07]*\x07", "", text)
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def _read_until(fd: int, marker: bytes, timeout: float = 60) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + timeout
    while marker not in out:
        assert time.monotonic() < deadline, f"never saw {marker!r}; got:\n{out.decode(errors='replace')[-2000:]}"
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return bytes(out)


def _drain(fd: int, timeout: float = 30) -> None:
    """Read what is left until the program closes its terminal."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                if not os.read(fd, 65536):
                    return
            except OSError:
                return


@needs_root
def test_the_interactive_cli_pauses_before_anything_the_student_should_find_out():
    lab = unique_name("order")
    step = COURSE.find("lesson1").steps[0]
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.chdir(REPO)
            env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
            argv = [sys.executable, "-m", "netstep", "--lab", lab, "run", "lesson1"]
            os.execve(sys.executable, argv, env)
        finally:
            os._exit(127)
    try:
        first = flat(_read_until(fd, b"Press Enter").decode(errors="replace"))
        os.write(fd, b"\n")
        second = flat(_read_until(fd, b"Press Enter").decode(errors="replace"))
        os.write(fd, b"q\n")
        _drain(fd)
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
        subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], cwd=REPO, capture_output=True)
    # Before the pause: the heading, the scene and the commands; not the explanation.
    assert f"Step {step.ref}: {step.title}" in first
    assert words(step.before) in first
    assert "iptables -N ROOT_NS" in first
    assert words(step.after) not in first and "What changed" not in first
    # After Enter: what changed, then the explanation; then the next step's scene.
    assert "What changed" in second and words(step.after) in second
    assert second.index("What changed") < second.index(words(step.after))
    following = COURSE.find("lesson1").steps[1]
    assert second.index(words(step.after)) < second.index(f"Step {following.ref}")


@needs_root
def test_run_yes_prints_every_step_in_order():
    lab = unique_name("order")
    lesson = COURSE.find("lesson2")
    try:
        result = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "run", "lesson2", "--yes"],
                                cwd=REPO, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"})
    finally:
        subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], cwd=REPO, capture_output=True)
    assert result.returncode == 0, result.stderr
    out = flat(result.stdout)
    at = 0
    for step in lesson.steps:
        marks = [f"Step {step.ref}: {step.title}", words(step.before)]
        if step.commands:
            marks.append(f"{step.commands[0].where}# {step.commands[0].text}")
        marks.append("What changed")
        if step.checks:
            marks.append("expected")
        if step.after:
            marks.append(words(step.after))
        for mark in marks:
            found = out.find(mark, at)
            assert found >= 0, f"step {step.ref}: {mark!r} missing or out of order"
            at = found + len(mark)


def test_each_notebook_step_is_scene_run_cell_then_explanation():
    for lesson in COURSE.lessons:
        cells = lesson_notebook(lesson).cells
        for step in lesson.steps:
            heading = next(i for i, c in enumerate(cells) if c.source.startswith(f"## {step.title}"))
            scene = cells[heading].source
            assert words(step.before, 4).split()[0] in scene
            if step.after:
                assert step.after not in scene, f"{step.ref}: the explanation comes before the run"
            # Between the scene and the run cell ("show me"): predict, then type it yourself and verify.
            run = next(i for i in range(heading + 1, len(cells)) if cells[i].source == f't.step("{step.ref}")')
            between = cells[heading + 1 : run]
            codes = [c.source.split("(")[0].split("\n")[0] for c in between if c.cell_type == "code"]
            assert codes == ["t.predict"] * bool(step.checks) + ["%%netstep", "t.verify"] * bool(step.commands)
            if step.after:
                assert all(step.after not in c.source for c in between)
                assert cells[run + 1].cell_type == "markdown" and cells[run + 1].source == step.after
            # No answer before the question: the scene holds the questions, never an expectation
            # nor the commands; the commands come after "type it yourself", folded away.
            for check in step.checks:
                assert f"Will {check.source} " in scene and check.expect not in scene.split("The checks ask:")[-1]
            if step.commands:
                typed = next(i for i in range(heading, run) if cells[i].source.startswith("%%netstep"))
                shown = [i for i in range(heading, run) if f"{step.commands[0].where}# {step.commands[0].text}"
                         in cells[i].source]
                assert shown == [run - 1] and typed < run - 1, f"{step.ref}: the commands come after the typing"
                assert cells[run - 1].source.startswith("<details>\n<summary>Show me the commands</summary>")


@needs_root
def test_run_json_prints_a_step_line_with_the_exact_diff():
    lab = unique_name("order")
    try:
        result = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "run", "lesson2", "--yes", "--json"],
                                cwd=REPO, capture_output=True, text=True, timeout=300)
        nxt = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "next", "--json"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    finally:
        subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], cwd=REPO, capture_output=True)
    assert result.returncode == 0 and nxt.returncode == 0, result.stderr + nxt.stderr
    events = [r for line in result.stdout.splitlines() if "event" in (r := json.loads(line))]
    assert [e["step"] for e in events] == [s.ref for s in COURSE.find("lesson2").steps]
    add = events[0]
    assert add["commands"] == ["host# ip link add veth0 type veth peer name ceth0"]
    assert {"ns": "host", "part": "devices", "change": "+", "before": None,
            "after": "veth0: veth DOWN peer ceth0"} in add["diff"]
    quiet = next(e for e in events if e["step"] == "2.6")  # checks only: nothing changed
    assert quiet["commands"] == [] and quiet["diff"] == []
    moved = events[1]  # ceth0 into netns0: its veth0 end's peer changes, and netns0 gains it
    assert {(d["ns"], d["part"], d["change"]) for d in moved["diff"]} >= {("host", "devices", "~"),
                                                                         ("netns0", "devices", "+")}
    next_lines = [json.loads(line) for line in nxt.stdout.splitlines()]
    assert next_lines[0]["event"] == "step" and next_lines[0]["step"] == "3.1"


@needs_root
def test_the_demo_shows_the_explanation_with_the_result(lab):
    """Every narration the stage shows for the first step, in order: the scene while the step
    runs, the explanation once its result is on screen (recorded as drawn, so a slow or a
    fast machine sees the same sequence)."""
    from rich.console import Console

    from netstep.core.engine import Engine
    from netstep.demo.app import DemoApp
    from netstep.demo.options import DemoOptions

    engine = Engine(lab)
    step = engine.next_step()
    app = DemoApp(engine, DemoOptions())
    app.animation_level = "none"
    drawn: list[tuple[str, bool]] = []  # (narration text, whether a result was on stage)
    show = app._show

    def recording(**parts):
        if parts.get("narration") is not None:
            console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
            console.print(parts["narration"])
            drawn.append((" ".join(console.export_text().split()), bool(parts.get("result"))))
        return show(**parts)

    app._show = recording

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause(0.2)
            await pilot.press("right")
            deadline = time.monotonic() + 120  # a guard against a hang, not a timing
            while not (app.idle and app.last_result is not None):
                assert time.monotonic() < deadline
                await pilot.pause(0.02)
            await pilot.pause(0.1)

    asyncio.run(main())
    scenes = [i for i, (text, _) in enumerate(drawn) if words(step.before, 4) in text]
    explained = [i for i, (text, _) in enumerate(drawn) if words(step.after, 4) in text]
    assert scenes and explained, drawn
    assert scenes[0] < explained[0], drawn  # the scene first, the explanation after it
    assert drawn[explained[0]][1], drawn  # the explanation comes with the result
    assert not any(words(step.after, 4) in text for text, _ in drawn[:scenes[0] + 1]), drawn
