"""The instructor demo (`python -m netstep demo`), driven for real.

The app runs headlessly under Textual's Pilot at 100x30 against real labs: keys are
pressed, and the assertions are on the engine (its position) and on the lab (its
configuration compared with snapshots taken before), never on timing. The command line
runs under a pseudo-terminal (`--auto 0`) and in tmux at 120x36 (keys sent to it).

Pilot scenarios run in asyncio.run() from plain test functions: the app must be made
before its event loop runs (it hands the lab's netlink handles over to its workers), and
lab snapshots taken while it runs are taken in a thread of their own, like its workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

import pytest
from support import LABS_ROOT, REPO, config_diff, needs_root, run_on_pty, unique_name, wait_for_screen

from netstep.course.course import Course
from netstep.demo.options import DemoOptions

pytestmark = needs_root

COURSE = Course.load()
TOTAL = len(COURSE.steps)
START = {lesson.number: COURSE.start_of(lesson) for lesson in COURSE.lessons}


# -- helpers -----------------------------------------------------------------------------------


async def settle(pilot, limit: float = 30.0) -> None:
    """Wait until the app has no engine call running and nothing left to show."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        await pilot.pause(0.01)
        if pilot.app.idle:
            return
    raise AssertionError(f"the demo was still busy after {limit} s: {pilot.app.operation}")


async def until(pilot, predicate, limit: float = 30.0) -> None:
    """Wait (bounded) until `predicate()` holds, then until the app is idle."""
    deadline = time.monotonic() + limit
    while not predicate():
        assert time.monotonic() < deadline, "the demo never got there"
        await pilot.pause(0.01)
    await settle(pilot, limit)


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await settle(pilot)


async def config_of(lab):
    """The lab's configuration, read in a thread of its own (as the app's workers do)."""

    def read():
        try:
            return lab.snapshot(caches=False)
        finally:
            lab.close_handles()

    return await asyncio.to_thread(read)


async def assert_config(lab, before) -> None:
    now = await config_of(lab)
    assert now.same_config(before), "\n".join(config_diff(before, now))


def run_app(engine, options: DemoOptions, scenario) -> object:
    """Make the app, run `scenario(pilot)` against it at 100x30, and return the app."""
    from netstep.demo.app import DemoApp

    app = DemoApp(engine, options)
    app.animation_level = "none"  # scrolling jumps instead of gliding: the keys need not wait for it

    async def main() -> None:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot)
            await scenario(pilot)

    asyncio.run(main())
    return app


def stage_text(app) -> str:
    """What the stage shows, as plain text."""
    from rich.console import Console

    console = Console(width=100, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    for name in ("title", "narration", "commands", "result"):
        console.print(app.query_one(f"#{name}").content)
    return console.export_text()


# -- Pilot: the keys, against a real lab ---------------------------------------------------------


def test_forward_through_the_course_back_jump_and_every_key(lab):
    from netstep.core.engine import Engine
    from netstep.demo.screens import GotoScreen, InspectScreen, NotesScreen

    engine = Engine(lab)
    seen: dict[int, object] = {}

    async def scenario(pilot) -> None:
        app = pilot.app
        assert engine.position == 0
        assert not app.check_action("back", ())  # nothing to roll back at the first step
        seen[0] = await config_of(lab)
        # Forward through all seven lessons, with both keys that advance.
        for n in range(TOTAL):
            await press(pilot, "right" if n % 2 else "space")
            assert engine.position == n + 1
            assert app.last_result is not None and app.last_result.step is engine.steps[n]
            if engine.position in (START[3], TOTAL - 5):
                seen[engine.position] = await config_of(lab)
        assert app.failures == 0, "every check of the course should come out as expected"
        assert "Checks" in stage_text(app)
        assert not app.check_action("next", ())  # disabled at the end
        await press(pilot, "right", "space")
        assert engine.position == TOTAL

        # Back five steps: each rolls back for real, and the configuration is what it was.
        for n in range(5):
            await press(pilot, "left")
            assert engine.position == TOTAL - 1 - n
            assert app.last_result.direction == "undo"
        assert "Rolled back" in stage_text(app)
        await assert_config(lab, seen[TOTAL - 5])

        # A number key jumps to a lesson, rolling back as needed.
        await press(pilot, "3")
        assert engine.position == START[3]
        await assert_config(lab, seen[START[3]])
        assert "Lesson 3" in stage_text(app)

        # `g N` jumps too, here fast-forwarding.
        await pilot.press("g")
        assert isinstance(app.screen, GotoScreen)
        await pilot.press("5")
        await until(pilot, lambda: engine.position == START[5])
        assert not isinstance(app.screen, GotoScreen)
        await pilot.press("g", "escape")  # and escape changes nothing
        await settle(pilot)
        assert engine.position == START[5]

        # `c` runs the current step's checks again (4.5: the containers reach each other).
        await press(pilot, "c")
        assert app.rechecked and all(result.ok for result in app.rechecked)
        assert "run again" in stage_text(app)

        # `i` inspects a namespace, one at a time.
        await pilot.press("i")
        await until(pilot, lambda: isinstance(app.screen, InspectScreen) and app.screen.shown)
        assert app.screen.shown == "host"
        await pilot.press("down")
        await until(pilot, lambda: app.screen.shown != "host")
        await pilot.press("escape")
        assert not isinstance(app.screen, InspectScreen)

        # `p` shows the presenter notes of the step on stage.
        await press(pilot, "right")
        await pilot.press("p")
        assert isinstance(app.screen, NotesScreen)
        await pilot.pause(0.05)
        await pilot.press("p")
        assert not isinstance(app.screen, NotesScreen)

        # Scrolling keys, and a narrow terminal puts the picture under the stage.
        await press(pilot, "down", "pagedown", "pageup", "up")
        await pilot.resize_terminal(80, 30)
        await pilot.pause(0.1)
        assert app.query_one("#body").has_class("-narrow")
        await pilot.resize_terminal(100, 30)
        await pilot.pause(0.1)
        assert not app.query_one("#body").has_class("-narrow")

        # 1 rolls everything back: the lab is configured as when it was new.
        await press(pilot, "1")
        assert engine.position == 0
        await assert_config(lab, seen[0])
        await press(pilot, "left")  # nothing to roll back
        assert engine.position == 0
        await press(pilot, "7")
        assert engine.position == START[7]

        await pilot.press("q")

    app = run_app(engine, DemoOptions(typing_cps=0), scenario)
    assert app.return_code == 0
    # q leaves the lab as it is.
    assert lab.exists() and engine.position == START[7]


def test_ask_the_room_holds_the_answers_back_then_reveals_them(lab):
    from netstep.core.engine import Engine

    engine = Engine(lab)

    async def scenario(pilot) -> None:
        app = pilot.app
        await press(pilot, "2")  # lesson 2: 2.1 and 2.2 check nothing, 2.3 asks two questions
        assert not app.check_action("ask", ())
        await press(pilot, "a")
        assert engine.position == START[2]  # nothing asked, nothing applied
        await press(pilot, "right", "right")
        assert app.check_action("ask", ())
        await press(pilot, "a")
        text = stage_text(app)
        assert engine.position == START[2] + 2, "asking applies nothing"
        assert "Ask the room" in text and "Will netns0 reach 127.0.0.1?" in text
        assert "netns0# ip link set lo up" in text
        assert "expected" not in text and "✔" not in text, "the answers are held back"
        await press(pilot, "a")  # the next key reveals: the step runs, its checks show
        assert engine.position == START[2] + 3
        text = stage_text(app)
        assert "✔  ping netns0 → 127.0.0.1" in text and "Ask the room" not in text
        await press(pilot, "right", "a")  # asked on 2.5, revealed with space
        assert "Ask the room" in stage_text(app) and engine.position == START[2] + 4
        await press(pilot, "space")
        assert engine.position == START[2] + 5 and "✔  ping host → 172.18.0.10" in stage_text(app)
        assert app.failures == 0
        await pilot.press("q")

    app = run_app(engine, DemoOptions(typing_cps=0), scenario)
    assert app.return_code == 0


def test_typed_commands_and_quit_while_a_step_runs(lab):
    """With typing on, a step's result waits for its commands; q waits for the step to finish."""
    from netstep.core.engine import Engine

    engine = Engine(lab)

    async def scenario(pilot) -> None:
        app = pilot.app
        await press(pilot, "right")  # 1.1, typed at 400 characters a second
        assert engine.position == 1 and "iptables -N ROOT_NS" in stage_text(app)
        await pilot.press("right", "q")  # q while 1.2 is being applied and typed
        for _ in range(500):
            if app.return_code is not None:
                break
            await pilot.pause(0.01)

    app = run_app(engine, DemoOptions(typing_cps=400), scenario)
    assert app.return_code == 0
    assert engine.position == 2, "the step in progress finished before the demo quit"
    assert not engine.journal.steps or engine.journal.steps[-1]["complete"]


def test_auto_from_lesson_6_to_the_end_rolls_back_and_removes_the_lab(lab):
    from netstep.core.engine import Engine

    engine = Engine(lab)

    async def scenario(pilot) -> None:
        app = pilot.app
        for _ in range(3000):  # bounded: the run ends by itself
            if app.return_code is not None:
                return
            await pilot.pause(0.01)
        raise AssertionError("the --auto demo did not end by itself")

    app = run_app(engine, DemoOptions(first_lesson=6, last_lesson=7, auto=0, typing_cps=0), scenario)
    assert app.return_code == 0 and app.failures == 0
    # fast-forwarded to 6, then each step of lessons 6 and 7
    assert app.applied == [step.ref for step in COURSE.steps[START[6]:] if step.lesson.number <= 7]
    assert not lab.exists() and not os.path.exists(lab.dir)


def test_bad_arguments_are_refused_before_any_lab_is_made():
    from argparse import Namespace

    from netstep.demo.options import options_from_args
    from netstep.errors import NetstepError

    def args(**kw):
        base = {"from_lesson": None, "to_lesson": None, "auto": None, "rollback_on_exit": False}
        return Namespace(**{**base, **kw})

    for bad in ({"from_lesson": "99"}, {"from_lesson": "5", "to_lesson": "3"}, {"auto": -1.0}):
        with pytest.raises(NetstepError):
            options_from_args(args(**bad), COURSE, need_terminal=False)
    options = options_from_args(args(from_lesson="veth", to_lesson="lesson4", auto=0.0), COURSE, need_terminal=False)
    assert (options.start(COURSE), options.end(COURSE)) == (START[2], START[5])
    assert options.cleanup_on_exit and options.typing_cps == 0
    name = unique_name("demo")
    result = subprocess.run([sys.executable, "-m", "netstep", "--lab", name, "demo"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 1 and "needs a terminal" in result.stderr
    assert not os.path.exists(os.path.join(LABS_ROOT, name))


def test_every_step_has_presenter_notes():
    for step in COURSE.steps:
        lines = [line for line in step.notes.splitlines() if line.strip()]
        assert 2 <= len(lines) <= 5, f"step {step.ref} needs 2-5 lines of presenter notes"
        assert "Q:" in step.notes, f"step {step.ref}: the question students usually ask"


def test_topology_draws_namespaces_veth_lines_and_the_bridge():
    """The picture is drawn from the lab's diagram (the model the SVG is drawn from): boxes,
    a line per veth to the host, the bridge with its ports, and a step's marks as styles."""
    from netstep.present.topology import GONE, NEW, Topology
    from netstep.state.diagram import lab_diagram
    from netstep.state.snapshot import Link, NamespaceState, Snapshot

    host = NamespaceState("host", links=(
        Link("lo", "loopback", True), Link("eth0", "veth", True, peer="eth0@upstream"),
        Link("veth0", "veth", True, master="br0", peer="ceth0@netns0"),
        Link("veth1", "veth", False, master="br0", peer="ceth1@netns1"), Link("br0", "bridge", True)),
        addresses=("eth0 10.0.2.15/24", "br0 172.18.0.1/16"), routes=("default via 10.0.2.2 dev eth0",),
        rules=("nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE",),
        sysctls=(("net.ipv4.ip_forward", "1"),))
    containers = [NamespaceState(f"netns{i}", links=(Link("lo", "loopback", True),
                                                     Link(f"ceth{i}", "veth", True, peer=f"veth{i}@host")),
                                 addresses=(f"ceth{i} 172.18.0.{10 * i + 10}/16",)) for i in (0, 1)]
    upstream = NamespaceState("upstream", addresses=("eth0 10.0.2.2/24", "lo 203.0.113.8/32"),
                              links=(Link("lo", "loopback", True), Link("eth0", "veth", True, peer="eth0@host")))
    snap = Snapshot({"host": host, containers[0].name: containers[0], containers[1].name: containers[1],
                     "upstream": upstream})
    for width in (40, 30, 72):
        text = Topology(lab_diagram(snap, internet="203.0.113.8")).render(width).plain
        lines = text.splitlines()
        assert max(len(line) for line in lines) <= width
        for word in ("upstream · router", "host · forwarding", "netns0", "netns1", "br0 bridge 172.18.0.1/16",
                     "ports veth0 veth1", "172.18.0.10/16", "172.18.0.20/16", "internet 203.0.113.8",
                     "MASQUERADE", "eth0 ⇄ eth0", "gw 10.0.2.2"):
            assert word in text, (width, word, text)
        assert width < 40 or "veth1 DOWN" in text  # on its line, when the line fits
    # Two containers side by side at 40 columns, each hanging from the host by its line.
    text = Topology(lab_diagram(snap)).render(40).plain
    row = next(line for line in text.splitlines() if "netns0" in line)
    assert "netns1" in row and row.count("┴") == 2
    # A step that added netns1 and took a FORWARD rule away: netns1's box, line and port
    # are highlighted, the rule is still drawn, faded; what stayed is drawn as it was.
    forward = "filter -A FORWARD -i br0 -j ACCEPT"
    before = Snapshot({"host": replace(host, rules=(*host.rules, forward), links=host.links[:3] + host.links[4:]),
                       "netns0": containers[0], "upstream": upstream})
    drawn = Topology(lab_diagram(snap, before)).render(40)

    def style(word: str) -> str:
        at = drawn.plain.index(word)
        return " ".join(str(span.style) for span in drawn.spans if span.start <= at < span.end)

    assert style("netns1") == style("172.18.0.20/16") == style("veth1 DOWN") == style("ports veth0") == NEW
    assert style("netns0") == "bold" and style("172.18.0.10/16") == style("MASQUERADE") == ""
    assert style("FORWARD ACCEPT") == GONE


# -- the command line, on terminals -----------------------------------------------------------


def test_cli_auto_runs_to_the_end_and_leaves_no_lab():
    from netstep.core.lab import Lab

    name = unique_name("demo")
    try:
        argv = [sys.executable, "-m", "netstep", "--lab", name, "demo", "--auto", "0", "--to", "7"]
        code, output = run_on_pty(argv, 120, 36, timeout=80)
        text = output.decode(errors="replace")
        assert code == 0, text[-2000:]
        through7 = sum(len(lesson.steps) for lesson in COURSE.lessons if lesson.number <= 7)  # --to 7
        assert f"{through7} step(s) applied, every check came out as expected" in text, text[-2000:]
        assert f"Lab '{name}' was rolled back and removed" in text
        assert not os.path.exists(os.path.join(LABS_ROOT, name)), "the --auto demo left its lab behind"
    finally:
        if os.path.exists(os.path.join(LABS_ROOT, name)):
            Lab(name).destroy()


TMUX = shutil.which("tmux")


def tmux(*args: str) -> str:
    """A tmux command's output (the tests' own sessions: new-session, send-keys, capture-pane...)."""
    return subprocess.run([TMUX, *args], capture_output=True, text=True, timeout=30, check=False).stdout


@pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")
def test_tmux_120x36_keys_no_color_and_rollback_on_exit():
    from netstep.core.lab import Lab

    name = unique_name("demo")
    session = f"netstep-{name}"
    folder = tempfile.mkdtemp()
    done = os.path.join(folder, "rc")
    demo = f"{sys.executable} -m netstep --lab {name} demo --rollback-on-exit"
    # COLUMNS and LINES (pytest sets them) would override the size of the terminal.
    command = f"cd {REPO} && env -u COLUMNS -u LINES NO_COLOR=1 TERM=xterm-256color {demo}; echo $? > {done}; sleep 30"

    def screen(escapes: bool = False) -> str:
        return tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", session)

    def wait_for(text: str) -> str:
        return wait_for_screen(screen, text)

    try:
        tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", command)
        wait_for("Next: step 1.1")
        first = wait_for("Quit")  # the footer, drawn last
        assert "the lab" in first and "upstream · router" in first, first
        for n in (1, 2, 3):
            tmux("send-keys", "-t", session, "Right")
            wait_for(f"{n}/{TOTAL} steps applied")
        shown = wait_for("lo DOWN")  # the picture: netns0 exists, its loopback is down
        assert "netns0" in shown
        tmux("send-keys", "-t", session, "Left")
        # The status line and the stage are drawn apart: wait for the stage, then read both.
        assert f"2/{TOTAL} steps applied" in wait_for("Rolled back")
        # NO_COLOR: no hue anywhere, only the grey ramp (and bold, underline).
        colours = re.findall(r"\x1b\[([0-9;]*)m", screen(escapes=True))
        for codes in colours:
            parts = codes.split(";")
            for i, part in enumerate(parts):
                if part in ("38", "48") and i + 2 < len(parts) and parts[i + 1] == "5":
                    assert int(parts[i + 2]) >= 232 or int(parts[i + 2]) in (0, 7, 8, 15), codes
                if part in ("38", "48") and i + 4 < len(parts) and parts[i + 1] == "2":
                    assert len(set(parts[i + 2:i + 5])) == 1, codes
            assert not any(p.isdigit() and (31 <= int(p) <= 36 or 91 <= int(p) <= 96) for p in parts), codes
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 30
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.1)
        with open(done) as f:
            assert f.read().strip() == "0"
        assert not os.path.exists(os.path.join(LABS_ROOT, name)), "--rollback-on-exit left the lab behind"
    finally:
        tmux("kill-session", "-t", session)
        shutil.rmtree(folder, ignore_errors=True)
        if os.path.exists(os.path.join(LABS_ROOT, name)):
            with contextlib.suppress(Exception):
                Lab(name).destroy()


def test_t_traces_a_check_of_the_step_on_stage(lab):
    """`t` traces the step's failing check first (6.2: no MASQUERADE), then the next, in a pop-up."""
    from netstep.core.engine import Engine
    from netstep.demo.screens import TraceScreen

    engine = Engine(lab)
    target = next(i for i, step in enumerate(COURSE.steps) if step.ref == "6.2")
    traced: list = []

    async def scenario(pilot) -> None:
        app = pilot.app
        assert not app.check_action("trace", ())  # no step applied: nothing to trace
        await asyncio.to_thread(lambda: [None for _ in engine.goto(target)])
        lab.close_handles()
        await press(pilot, "right")
        assert engine.current_step().ref == "6.2"
        await pilot.press("t")
        await until(pilot, lambda: isinstance(app.screen, TraceScreen))
        traced.append(app.screen.trace)
        await pilot.press("escape")
        assert not isinstance(app.screen, TraceScreen)
        await pilot.press("q")

    run_app(engine, DemoOptions(typing_cps=0), scenario)
    found = traced[0]
    assert found.check.source == "netns0" and found.result.actual == "unreachable"
    assert found.finding.where == "upstream" and "no route back" in found.finding.why


def test_w_breaks_the_lab_for_the_room_then_repairs_it_and_a_move_takes_it_back(lab):
    """`w` at lesson 6's end applies one of lesson 6's challenges: its story on stage, what
    broke never said, the lab no longer the course's and failing its checks; `w` again
    repairs it and says what it was; `w` once more breaks it another way, and `←` takes
    that break back (the student's, not a step of the course)."""
    from netstep.core import challenges, grading
    from netstep.core.engine import Engine
    from netstep.core.reference import read, states
    from netstep.course.challenges import Challenges

    engine = Engine(lab)
    end = START[6] + len(COURSE.find("6").steps)
    mine = Challenges.load(COURSE.lessons).of_lesson(6)
    seen: dict = {}

    async def scenario(pilot) -> None:
        app = pilot.app
        await asyncio.to_thread(lambda: [None for _ in engine.goto(end)])
        lab.close_handles()
        await press(pilot, "w")
        held = challenges.active(engine)
        seen["held"], seen["stage"] = held, stage_text(app)
        seen["broken"] = await asyncio.to_thread(
            lambda: grading.verify(engine, challenges.target(engine, held), adopt=False))
        lab.close_handles()
        await press(pilot, "w")
        seen["repaired"] = stage_text(app)
        seen["after"] = challenges.active(engine)
        await press(pilot, "w")
        seen["second"] = challenges.active(engine)
        await press(pilot, "left")
        seen["back"] = await asyncio.to_thread(lambda: (engine.position, read(engine)))
        lab.close_handles()
        await pilot.press("q")

    run_app(engine, DemoOptions(typing_cps=0), scenario)
    held = seen["held"]
    assert held is not None and held.name == mine[0].name
    assert held.story in " ".join(seen["stage"].split()) and "What's broken?" in seen["stage"]
    assert not any(c.text in seen["stage"] for c in held.breaks)  # what broke is not said
    assert not seen["broken"].ok
    assert "What was broken" in seen["repaired"] and seen["after"] is not None  # repaired, still its lab
    assert seen["second"] is not None and seen["second"].name == mine[1].name
    position, state = seen["back"]
    assert position == end and same_as_course(state, states(engine).positions[end])


def same_as_course(actual, expected) -> bool:
    from netstep.core.reconcile import same

    return same(actual, expected)


def test_the_lesson_prompt_waits_for_a_two_digit_lesson_when_numbers_skip(tmp_path) -> None:
    """In a course of lessons 1, 2 and 14, `1` may start `14`: the prompt waits for Enter or
    the next digit; `9` jumps at once (no lesson 90 or more)."""
    from support import lesson_markdown, write_lesson
    from textual.app import App

    from netstep.demo.screens import GotoScreen

    for name in ("01-a.md", "02-b.md", "14-n.md"):
        write_lesson(tmp_path, name, lesson_markdown(name, [("1", ["host# iptables -N X"], [])]))
    gapped = Course.load(tmp_path)
    answers: list = []

    class Holder(App):
        pass

    async def main() -> None:
        app = Holder()
        async with app.run_test(size=(80, 20)) as pilot:
            for keys in (["1", "4"], ["1", "enter"], ["9"]):
                app.push_screen(GotoScreen.of(gapped), answers.append)
                await pilot.pause()
                for key in keys:
                    await pilot.press(key)
                    await pilot.pause()

    asyncio.run(main())
    assert answers == [14, 1, 9]


def test_the_demo_speaks_chinese_keys_panels_and_notes(lab):
    """`--lang zh demo`: the footer's keys, the stage's panels and the presenter notes in
    Chinese (the keys' words are Textual's bindings, which a class reads before `--lang`)."""
    from test_translations import _kept, _screen_words

    from netstep import i18n
    from netstep.core.engine import Engine

    seen: dict = {}
    with i18n.speaking("zh"):
        course = Course.load()
        engine = Engine(lab, course)

        async def scenario(pilot) -> None:
            await press(pilot, "right", "right", "right")  # step 1.3 applied: its diff and checks on stage
            seen["stage"] = stage_text(pilot.app)
            seen["screen"] = pilot.app.export_screenshot()
            await press(pilot, "p")
            seen["notes"] = pilot.app.export_screenshot()
            await pilot.press("escape")
            await pilot.press("q")

        run_app(engine, DemoOptions(typing_cps=0), scenario)
    screen = seen["screen"].replace("&#160;", " ")
    for key in ("下一步", "后退", "问全场", "检查", "跟踪", "哪里坏了？", "退出"):
        assert key in screen, key
    assert "Ask the room" not in screen and "What's broken" not in screen
    assert "第 1.3 步" in seen["stage"] and "符合预期" in seen["stage"], seen["stage"]
    english = sorted({w for w in _screen_words(seen["stage"]) if not _kept(w)})
    assert not english, f"English prose on the Chinese demo's stage: {english}"
    assert "讲解备注" in seen["notes"].replace("&#160;", " ")


@pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")
def test_tmux_80_columns_in_chinese_keeps_panels_aligned():
    """`--lang zh demo` in an 80-column tmux: wide characters counted twice, no line runs
    past the screen, and a panel's right border stands in one column from top to bottom."""
    from rich.cells import cell_len

    from netstep.core.lab import Lab

    name = unique_name("demozh")
    session = f"netstep-{name}"
    demo = f"{sys.executable} -m netstep --lab {name} --lang zh demo --rollback-on-exit"
    command = f"cd {REPO} && env -u COLUMNS -u LINES TERM=xterm-256color {demo}; sleep 30"

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", session)

    try:
        tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "30", command)
        wait_for_screen(screen, "← 后退")  # the footer, drawn last (80 columns cut it after a few keys)
        for n in (1, 2, 3):
            tmux("send-keys", "-t", session, "Right")
            wait_for_screen(screen, f"{n}/{TOTAL}")
        shown = wait_for_screen(screen, "符合预期")  # step 1.3's checks
        lines = shown.splitlines()
        assert all(cell_len(line.rstrip()) <= 80 for line in lines), shown
        top = next(i for i, line in enumerate(lines) if "╭─ 变化" in line)
        bottom = next(i for i in range(top, len(lines)) if "╰" in lines[i])
        right = {cell_len(line[:max(line.rfind(c) for c in "╮│╯")]) for line in lines[top:bottom + 1]}
        assert len(right) == 1, "\n".join(lines[top:bottom + 1])
        assert "下一步" in shown and "问全场" in shown and "实验环境" in shown and "路由器" in shown, shown
        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 30
        while os.path.exists(os.path.join(LABS_ROOT, name)) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        tmux("kill-session", "-t", session)
        if os.path.exists(os.path.join(LABS_ROOT, name)):
            with contextlib.suppress(Exception):
                Lab(name).destroy()


@pytest.mark.skipif(TMUX is None, reason="needs tmux (apt-get install tmux)")
def test_the_terminal_going_away_rolls_the_lab_back_and_ends_the_demo():
    """tmux's session killed under a running demo (as an SSH session that drops): SIGHUP.
    With --rollback-on-exit the lab is rolled back and removed, and the process ends (it
    once outlived its session, deadlocked writing to the dead terminal on Textual's way out)."""
    from netstep.core.lab import Lab

    name = unique_name("hup")
    session = f"netstep-{name}"
    demo = f"{sys.executable} -m netstep --lab {name} demo --rollback-on-exit"
    marker = f"--lab {name} demo"

    def running() -> list[int]:
        found = subprocess.run(["pgrep", "-f", "--", marker], capture_output=True, text=True, check=False).stdout
        return [int(pid) for pid in found.split()]

    try:
        tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
             f"cd {REPO} && env -u COLUMNS -u LINES TERM=xterm-256color {demo}")
        wait_for_screen(lambda: tmux("capture-pane", "-p", "-t", session), "→ Next")  # the footer, drawn last
        tmux("send-keys", "-t", session, "Right")
        wait_for_screen(lambda: tmux("capture-pane", "-p", "-t", session), f"1/{TOTAL} steps applied")
        assert running() and os.path.exists(os.path.join(LABS_ROOT, name))
        tmux("kill-session", "-t", session)
        deadline = time.monotonic() + 60
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not running(), "the demo outlived its terminal"
        assert not os.path.exists(os.path.join(LABS_ROOT, name)), "--rollback-on-exit left the lab behind"
    finally:
        tmux("kill-session", "-t", session)
        for pid in running():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if os.path.exists(os.path.join(LABS_ROOT, name)):
            with contextlib.suppress(Exception):
                Lab(name).destroy()
