"""The demo app: the course on stage, one step at a time, driven by a few keys.

Every engine call blocks (a step with an expected failure waits about a second), so each
runs in a Textual thread worker, one at a time: while one runs, the keys that would start
another are disabled (check_action), and `q` waits for it to finish. The app never
touches the kernel: it moves, checks and looks at the lab only through Engine and Lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import ClassVar

from rich.console import RenderableType
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.timer import Timer
from textual.widgets import Footer, Static

from netstep.core import challenges, grading
from netstep.core.engine import Engine
from netstep.core.results import StepResult
from netstep.course.lessons import Lesson, Step
from netstep.demo import stage
from netstep.demo.calls import EngineCalls
from netstep.demo.keys import translated
from netstep.demo.leaving import Leaving
from netstep.demo.options import DemoOptions
from netstep.demo.screens import GotoScreen, InspectScreen, NotesScreen, TraceScreen
from netstep.demo.typewriter import Typewriter
from netstep.i18n import N_, _, ngettext
from netstep.present.topology import Topology
from netstep.state.diagram import lab_diagram
from netstep.state.snapshot import Snapshot

NARROW = 96  # below this many columns the picture goes under the stage

CSS = """
#top { height: 1; background: $primary-background; }
#where { width: 1fr; padding: 0 1; text-style: bold; }
#status { width: auto; padding: 0 1; }
#body { height: 1fr; }
#stage { width: 1fr; padding: 1 2 0 2; }
#side { width: 44; border: round $accent; padding: 0 1; }
#body.-narrow { layout: vertical; }
#body.-narrow #side { width: 1fr; height: auto; max-height: 50%; }
#title, #narration, #commands { margin-bottom: 1; }
NotesScreen, InspectScreen, GotoScreen, TraceScreen { align: center middle; }
#notes { width: 90%; max-width: 100; height: auto; max-height: 85%; border: round $warning; padding: 1 2;
         background: $surface; }
#notes > Static { height: auto; }
#trace { width: 96%; height: auto; max-height: 90%; border: round $error; padding: 0 1; background: $surface; }
#trace > Static { height: auto; }
#inspect { width: 94%; height: 90%; border: round $accent; background: $surface; }
#namespaces { width: 14; height: 1fr; }
#state { width: 1fr; padding: 0 1; }
#goto { width: 44; height: auto; border: round $accent; padding: 1 2; background: $surface; }
"""


class DemoApp(EngineCalls, Leaving, App[int]):
    """`python -m netstep demo`: see the module docstring. Exits with 0, or 1 when --auto saw a check fail."""

    TITLE = "netstep demo"
    ENABLE_COMMAND_PALETTE = False
    CSS = CSS
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("right", "next", N_("Next"), key_display="→"),
        Binding("space", "next", N_("Next"), show=False),
        Binding("left", "back", N_("Back"), key_display="←"),
        Binding("g", "goto_prompt", N_("Lesson N"), key_display="g/1-9"),
        *(Binding(str(n), f"lesson({n})", show=False) for n in range(1, 10)),
        Binding("a", "ask", N_("Ask the room")),
        Binding("c", "recheck", N_("Checks")),
        Binding("i", "inspect", N_("Inspect")),
        Binding("t", "trace", N_("Trace")),
        Binding("p", "notes", N_("Notes")),
        Binding("w", "broken", N_("What's broken?")),
        Binding("q", "quit", N_("Quit")),
        Binding("up", "scroll_stage(-1)", show=False),
        Binding("down", "scroll_stage(1)", show=False),
        Binding("pageup", "scroll_stage(-10)", show=False),
        Binding("pagedown", "scroll_stage(10)", show=False),
    ]

    def __init__(self, engine: Engine, options: DemoOptions | None = None) -> None:
        super().__init__()
        self._bindings = translated(self._bindings)
        # The lab's netlink handles belong to the thread that opened them: close this
        # thread's (make the app before its event loop runs); each worker opens its own.
        engine.lab.close_handles()
        self.engine = engine
        self.options = options or DemoOptions()
        self.end = self.options.end(engine.course)
        self.operation: str | None = None  # what the engine is busy with
        self.on_stage: Step | None = None  # the step whose notes `p` shows
        self.asking: Step | None = None  # the step whose checks' questions are on stage, answers held back
        self.last_result: StepResult | None = None  # the move on stage, if one is
        self.snapshot: Snapshot | None = None
        self.previous: Snapshot | None = None
        self.failures = 0  # checks that did not come out as expected
        self.rechecked: list = []  # the results of the last `c`
        self.traced: list = []  # the checks `t` traced, in order
        self.applied: list[str] = []  # the steps applied with →, space or --auto, in order
        self.broken: list[str] = []  # the challenges `w` applied, in order
        self.repaired = ""  # the challenge `w` last repaired (pressed again: the next one)
        self.cleanup_problems: list[str] = []  # what removing the lab could not undo
        self._pending: Callable[[], None] | None = None  # a result waiting for the typing to end
        self._quit_requested = False
        self._leaving = False
        self.hung_up = False  # SIGHUP: the terminal is gone
        self._auto_timer: Timer | None = None
        self._auto_turn = 0  # bumped whenever a scheduled step is called off
        self.commands = Typewriter(id="commands")

    # -- layout ---------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield Static(id="where")
            yield Static(id="status")
        with Horizontal(id="body"):
            with VerticalScroll(id="stage", can_focus=False):
                yield Static(id="title")
                yield Static(id="narration")
                yield self.commands
                yield Static(id="result")
            with VerticalScroll(id="side", can_focus=False) as side:
                side.border_title = _("the lab")
                yield Static(id="topology")
        yield Footer()

    def on_mount(self) -> None:
        for signum, handler in ((signal.SIGTERM, self.request_quit), (signal.SIGHUP, self._hung_up)):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # killed, or the terminal went
                asyncio.get_running_loop().add_signal_handler(signum, handler)
        self.query_one("#body").set_class(self.size.width < NARROW, "-narrow")
        start = self.options.start(self.engine.course)
        if start is not None and start != self.engine.position:
            lesson = self.engine.steps[start].lesson if start < len(self.engine.steps) else None
            label = (_("bringing the lab to lesson {number}").format(number=lesson.number) if lesson else
                     _("bringing the lab to the end"))
            self._run(label, lambda: self._goto(start), self._arrived)
        else:
            self._run(_("reading the lab"), list, self._arrived)

    def on_resize(self, event) -> None:
        self.query_one("#body").set_class(event.size.width < NARROW, "-narrow")

    # -- state ------------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """No engine call running and no result waiting to be shown."""
        return self.operation is None and self._pending is None and not self.commands.running

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        engine = self.engine
        if action == "lesson":
            number = parameters[0] if parameters else 0
            if not any(lesson.number == number for lesson in engine.course.lessons):
                return False
            return (self.idle and self._may_visit(int(number))) or None
        if action == "next":
            return (self.idle and engine.position < self.end) or None
        if action == "ask":
            upcoming = engine.next_step()
            return (self.idle and engine.position < self.end and upcoming is not None
                    and bool(upcoming.checks)) or None
        if action == "back":
            return (self.idle and engine.position > 0) or None
        if action == "recheck":
            current = engine.current_step()
            return (self.idle and current is not None and bool(current.checks)) or None
        if action == "trace":
            current = engine.current_step()
            return (self.idle and current is not None and bool(current.checks)) or None
        if action in ("goto_prompt", "inspect", "broken"):
            return self.idle or None
        if action == "notes":
            return self.on_stage is not None or None
        return True

    def _may_visit(self, number: int) -> bool:
        last = self.options.last_lesson
        return last is None or number <= last

    def _lesson(self, number: int) -> Lesson:
        return next(lesson for lesson in self.engine.course.lessons if lesson.number == number)

    # -- moves --------------------------------------------------------------------------------

    def action_ask(self) -> None:
        """Put the next step's questions on stage and hold the answers back; pressed again, reveal them."""
        step = self.engine.next_step()
        if step is None or not self.idle:
            return
        if self.asking is step:
            self.action_next()
            return
        self.asking, self.on_stage, self.last_result = step, step, None
        self.commands.show(stage.command_lines(step))
        self._show(title=stage.step_title(step), narration=stage.narration(step.before),
                   result=stage.questions_view(step, self.engine.lab.internet))

    def action_next(self) -> None:
        step = self.engine.next_step()
        if step is None or not self.idle:
            return
        asked, self.asking = self.asking is step, None
        self.on_stage, self.last_result = step, None
        self._show(title=stage.step_title(step), narration=stage.narration(step.before),
                   result=stage.questions_view(step, self.engine.lab.internet) if asked else "")
        self._pending = None
        self.commands.type(stage.command_lines(step), self.options.typing_cps, self._typed)
        self._run(_("applying step {ref}").format(ref=step.ref), self.engine.apply_next, self._applied)

    def _applied(self, result: StepResult) -> None:
        self.last_result = result
        self.applied.append(result.step.ref)
        self.failures += sum(not check.ok for check in result.checks)
        # The explanation only once the result is on screen; the scene-setting stays otherwise.
        after = stage.narration(result.step.after) if result.step.after else None
        self._pending = lambda: self._show(result=stage.result_view(result), narration=after, reveal=True)

    def _typed(self) -> None:
        if self._pending is not None and self.operation is None:
            show, self._pending = self._pending, None
            show()
            self._draw_lab()
            self._settled()

    def action_back(self) -> None:
        step = self.engine.current_step()
        if step is None or not self.idle:
            return
        self.asking = None
        self.on_stage, self.last_result = step, None
        self._show(title=stage.step_title(step, _("Rolling back")), narration="", result="")
        self.commands.show(stage.command_lines(step), undone=True)
        self._run(_("rolling back step {ref}").format(ref=step.ref), self.engine.undo_last, self._undone)

    def _undone(self, result: StepResult) -> None:
        self.last_result = result
        self._show(title=stage.step_title(result.step, _("Rolled back")),
                   narration=Text(_("The lab is back where it was before this step."), style="italic"),
                   result=stage.result_view(result), reveal=True)

    def action_lesson(self, number: int) -> None:
        if not self.idle or not self._may_visit(number):
            return
        target = self.engine.course.start_of(self._lesson(number))
        self._run(_("jumping to lesson {number}").format(number=number), lambda: self._goto(target), self._arrived)

    def _arrived(self, moves: list[StepResult]) -> None:
        """The lab is where it was asked to be: put the next lesson's card (or the end) on stage."""
        applied = sum(move.direction == "apply" for move in moves)
        note = ""
        if applied:
            note = ngettext("Fast-forwarded through {count} step (checks skipped).",
                            "Fast-forwarded through {count} steps (checks skipped).", applied).format(count=applied)
        elif moves:
            note = ngettext("Rolled back {count} step.", "Rolled back {count} steps.", len(moves)).format(
                count=len(moves))
        self.last_result, self.asking = None, None
        self.commands.show([])
        step = self.engine.next_step()
        if step is None or self.engine.position >= self.end:
            self.on_stage = self.engine.current_step()
            self._show(title=Text(""), narration=stage.end_card(self.on_stage, note), result="")
            return
        self.on_stage = step
        assert step.lesson is not None
        if step.index:
            stands = _("The lab stands after step {ref}.").format(ref=self.engine.current_step().ref)
            note = (note + " " if note else "") + stands
        self._show(title=Text(step.lesson.title, style="bold cyan"),
                   narration=stage.lesson_card(step.lesson, step, note), result="")

    # -- what's broken? --------------------------------------------------------------------------

    def action_broken(self) -> None:
        """Break the lab for the room: a challenge of the lesson on stage, its story on stage
        and nothing of what broke. Pressed while the lab holds it: repair it and say what it
        was; once more: the lesson's next challenge. The next move takes the break back."""
        if not self.idle:
            return
        held = challenges.active(self.engine)
        if held is not None and held.name != self.repaired:
            self.repaired = held.name
            self._run(_("repairing {name}").format(name=held.name),
                      lambda: grading.solution(self.engine, challenges.target(self.engine, held)), self._repaired)
            return
        pick = self._next_challenge()
        if pick is None:
            return
        self.asking, self.last_result = None, None
        self.commands.show([])
        self._run(_("breaking the lab ({name})").format(name=pick.name), lambda: challenges.begin(self.engine, pick),
                  self._broke)

    def _next_challenge(self):
        """A challenge of the latest lesson reached that has any, one not shown yet if there is one."""
        found = challenges.catalogue(self.engine)
        step = self.engine.current_step() or self.engine.next_step()
        reached = step.lesson.number if step is not None and step.lesson is not None else 0
        lessons = sorted({c.lesson for c in found.items})
        lesson = max((n for n in lessons if n <= reached), default=lessons[0] if lessons else None)
        if lesson is None:
            return None
        mine = found.of_lesson(lesson)
        fresh = [c for c in mine if c.name not in self.broken]
        return fresh[0] if fresh else mine[len(self.broken) % len(mine)]

    def _broke(self, begun: challenges.Begun) -> None:
        from netstep.present.coaching import begun_view

        self.broken.append(begun.challenge.name)
        self.repaired = ""
        self.on_stage = self.engine.current_step()
        self._show(title=Text(_("What's broken? {name}").format(name=begun.challenge.name), style="bold red"),
                   narration=Text(_("Something in the lab is broken. c runs the lesson's checks, t traces them, i "
                                    "inspects; w again repairs it and says what it was."), style="italic"),
                   result=begun_view(begun, self.engine.lab.internet), reveal=True)

    def _repaired(self, solved: grading.Solution) -> None:
        from netstep.present import views

        self._show(title=Text(_("What was broken"), style="bold green"), narration="",
                   result=views.renderable(solved), reveal=True)

    # -- looking ------------------------------------------------------------------------------

    def action_recheck(self) -> None:
        step = self.engine.current_step()
        if step is None or not step.checks or not self.idle:
            return
        self._run(_("checking step {ref}").format(ref=step.ref), lambda: self.engine.run_checks(step.checks),
                  lambda results: self._rechecked(step, results), look=False)

    def _rechecked(self, step: Step, results: list) -> None:
        self.rechecked = results
        self.failures += sum(not r.ok for r in results) if self.options.auto is not None else 0
        shown = self.last_result
        if shown is not None and shown.step is step and shown.direction == "apply":
            self._show(result=stage.result_view(shown, results, _("Checks, run again")))
        else:
            self.on_stage = step
            self._show(title=stage.step_title(step), narration="",
                       result=stage.checks_view(results, _("Checks, run again")))
            self.commands.show([])

    def action_inspect(self) -> None:
        if self.idle and self.engine.lab.exists():
            self._run(_("reading the lab"), self.engine.snapshot, lambda snap: self.push_screen(InspectScreen(snap)),
                      look=False)

    def action_trace(self) -> None:
        """Trace a check of the current step: a failing one first, then each in turn."""
        step = self.engine.current_step()
        if step is None or not step.checks or not self.idle:
            return
        check = stage.check_to_trace(step, self.last_result, self.traced)
        if check is None:
            return
        self.traced.append(check)
        title = _("Trace: {check}").format(check=check.describe())
        self._run(_("tracing {check}").format(check=check.describe(self.engine.lab.internet)),
                  lambda: self.engine.trace(check.source, check.target, port=check.port, kind=check.kind,
                                            size=check.size),
                  lambda found: self.push_screen(TraceScreen(found, title)), look=False)

    def action_notes(self) -> None:
        step = self.on_stage
        if step is None:
            return
        upcoming = self.engine.next_step()
        if upcoming is step:
            steps = self.engine.steps
            upcoming = steps[self.engine.position + 1] if self.engine.position + 1 < len(steps) else None
        self.push_screen(NotesScreen(stage.notes_view(step, upcoming)))

    def action_goto_prompt(self) -> None:
        if self.idle:
            self.push_screen(GotoScreen.of(self.engine.course), self._goto_answer)

    def _goto_answer(self, number: int | None) -> None:
        if number is None:
            return
        if self.check_action("lesson", (number,)):
            self.action_lesson(number)
        else:
            self.notify(_("There is no lesson {number} in this demo.").format(number=number), severity="warning")

    def action_scroll_stage(self, lines: int) -> None:
        self.query_one("#stage", VerticalScroll).scroll_relative(y=lines, animate=False)

    # -- drawing ------------------------------------------------------------------------------

    def _show(self, *, title: RenderableType | None = None, narration: RenderableType | None = None,
              result: RenderableType | None = None, reveal: bool = False) -> None:
        """Update parts of the stage; `reveal`: scroll the result into view if it does not fit."""
        if title is not None:
            self.query_one("#title", Static).update(title)
            self.query_one("#stage", VerticalScroll).scroll_home(animate=False)
        if narration is not None:
            self.query_one("#narration", Static).update(narration)
        if result is not None:
            widget = self.query_one("#result", Static)
            widget.update(result)
            if reveal:
                self.call_after_refresh(self.query_one("#stage", VerticalScroll).scroll_to_widget, widget,
                                        animate=True, duration=0.4)
        self._refresh()

    def _draw_lab(self) -> None:
        """The lab's picture, from the same diagram the SVG is drawn from: what the step changed marked."""
        drawn = None if self.snapshot is None else lab_diagram(self.snapshot, self.previous,
                                                               internet=self.engine.lab.internet)
        self.query_one("#topology", Static).update(Topology(drawn))

    def _hung_up(self) -> None:
        """The terminal went away (tmux killed, an SSH session dropped): quit as on SIGTERM
        (with --rollback-on-exit, the lab rolled back and removed), then end the process
        without Textual's way out, whose writes to the dead terminal deadlocked (the process
        outlived its tmux session). Until then, what it draws goes to /dev/null: a write to
        the dead terminal fails, and the thread that writes for Textual does not survive it."""
        self.hung_up = True
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)
        self.request_quit()

    def _status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def _refresh(self) -> None:
        """The header (where we are, what the engine does) and the keys the footer offers."""
        engine = self.engine
        step = self.on_stage
        where = step.lesson.title if step is not None and step.lesson is not None else "netstep"
        self.query_one("#where", Static).update(Text(where, overflow="ellipsis", no_wrap=True))
        place = _("{done}/{total} steps applied · lab {name}").format(done=engine.position, total=len(engine.steps),
                                                                       name=engine.lab.name)
        busy = self.operation or (_("typing") if self.commands.running else "")
        self._status(f"⏳ {busy} · {place}" if busy else place)
        self.refresh_bindings()
