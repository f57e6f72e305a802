"""The demo's pop-ups: presenter notes, a namespace to inspect, a lesson to jump to.

Each is a modal screen: while one is open, the demo's own keys do nothing, and escape (or
the key that opened it) closes it. None of them touches the lab: the inspect screen is
handed a snapshot the app took through the engine.
"""

from __future__ import annotations

from typing import ClassVar

from rich.console import RenderableType
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from netstep.course.course import Course
from netstep.demo.keys import translated
from netstep.i18n import N_, _
from netstep.present import (
    traces,  # noqa: F401 (a Trace draws through the views)
    views,
)
from netstep.state.snapshot import Snapshot


class NotesScreen(ModalScreen[None]):
    """What to say during this step and the question students usually ask."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,p,q", "dismiss", N_("Close"), key_display="esc")]

    def __init__(self, notes: RenderableType) -> None:
        super().__init__()
        self._bindings = translated(self._bindings)
        self.notes = notes

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="notes", can_focus=False) as box:
            box.border_title = _("Presenter notes")
            box.border_subtitle = _("esc or p closes")
            yield Static(self.notes)


class TraceScreen(ModalScreen[None]):
    """One probe's path there and back, and where and why it stopped (a Trace, drawn)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,t,q", "dismiss", N_("Close"), key_display="esc")]

    def __init__(self, trace: RenderableType, title: str) -> None:
        super().__init__()
        self._bindings = translated(self._bindings)
        self.trace = trace
        self.title_text = title

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="trace", can_focus=False) as box:
            box.border_title = self.title_text
            box.border_subtitle = _("↑↓ scroll · esc or t closes")
            yield Static(self.trace)


class InspectScreen(ModalScreen[None]):
    """One namespace at a time, in full: devices, addresses, routes, rules, caches."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,i,q", "dismiss", N_("Close"), key_display="esc")]

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self._bindings = translated(self._bindings)
        self.snapshot = snapshot
        self.shown = ""  # the namespace on view

    def compose(self) -> ComposeResult:
        names = list(self.snapshot.namespaces)
        with Horizontal(id="inspect") as box:
            box.border_title = _("Inspect a namespace")
            box.border_subtitle = _("↑↓ choose · esc closes")
            yield OptionList(*(Option(name, id=name) for name in names), id="namespaces")
            with VerticalScroll(id="state", can_focus=False):
                yield Static(id="state-view")

    def on_mount(self) -> None:
        options = self.query_one("#namespaces", OptionList)
        options.focus()
        if options.option_count:
            options.highlighted = 0
            self.show(options.get_option_at_index(0).id or "")

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.show(event.option.id or "")

    def show(self, name: str) -> None:
        self.shown = name
        state = self.snapshot.namespaces.get(name)
        self.query_one("#state-view", Static).update(views.renderable(state) if state else "")
        self.query_one("#state", VerticalScroll).scroll_home(animate=False)


class GotoScreen(ModalScreen["int | None"]):
    """`g N`: the number of the lesson to jump to. A digit that cannot grow into a longer
    lesson number jumps at once; otherwise Enter confirms."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", N_("Cancel"))]

    def __init__(self, lessons: int) -> None:
        super().__init__()
        self._bindings = translated(self._bindings)
        self.lessons = lessons  # the highest lesson number: a digit that no longer number could start jumps

    @classmethod
    def of(cls, course: Course) -> GotoScreen:
        """The prompt for `course`, whose lesson numbers may skip (1-7 and 14)."""
        return cls(max((lesson.number for lesson in course.lessons), default=0))

    def compose(self) -> ComposeResult:
        with Vertical(id="goto") as box:
            box.border_title = _("Jump to lesson")
            box.border_subtitle = _("1-{last} · esc cancels").format(last=self.lessons)
            yield Input(placeholder=_("lesson number"), type="integer", id="lesson-number")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.value.isdigit() and int(event.value) > 0 and int(event.value) * 10 > self.lessons:
            self.dismiss(int(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(int(event.value) if event.value.isdigit() else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
