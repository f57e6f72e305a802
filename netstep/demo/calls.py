"""Engine calls, one at a time, in thread workers: the demo's only way to the lab.

A step can take a second (an expected failure waits for its timeout), so every engine call
runs in a Textual thread worker while the screen stays live. Only one runs at a time: the
app disables the keys that would start another while `operation` is set. The lab's
netlink handles belong to the thread that opened them, so each worker closes its own
before it reports back, and the next worker opens new ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.panel import Panel
from rich.text import Text

from netstep.core.results import StepResult
from netstep.errors import NetstepError
from netstep.i18n import _
from netstep.state.snapshot import Snapshot


class EngineCalls:
    """Mixin for DemoApp: `_run` an engine call, then hand its value back on the UI thread.

    Expects of the app: `engine`, `operation`, `snapshot`, `previous`, `_pending`,
    `commands`, `_leaving`, `cleanup_problems`, and the methods `_show`, `_draw_lab`,
    `_typed`, `_settled`, `_leave`, `_status`, `_refresh`, `_cancel_auto`.
    """

    def _run(self, label: str, work: Callable[[], Any], done: Callable[[Any], None], *, look: bool = True) -> None:
        """Run `work` in a thread worker, then `done(value)` here; `look`: redraw the lab after it."""
        self.operation = label
        self._cancel_auto()
        self._refresh()

        def job() -> None:
            lab = self.engine.lab
            try:
                value = work()
                if lab.exists():
                    self.engine.persist()  # the demo holds the lab's lock until it ends
                snap = lab.snapshot(caches=False) if look and lab.exists() else None
                outcome: tuple = (self._completed, done, value, snap, look)
            except NetstepError as exc:
                outcome = (self._failed, exc)
            finally:
                lab.close_handles(all_threads=False)  # this worker's handles die with it
            self.call_from_thread(*outcome)  # the lab is free from here on

        self.run_worker(job, thread=True, group="engine", name=label, exit_on_error=True)

    def _completed(self, done: Callable[[Any], None], value: Any, snap: Snapshot | None, look: bool) -> None:
        self.operation = None
        if look:
            self.previous, self.snapshot = self.snapshot, snap
        done(value)
        if self._pending is None:
            self._draw_lab()
            self._settled()
        elif not self.commands.running:
            self._typed()

    def _failed(self, exc: NetstepError) -> None:
        self.operation = None
        self._pending = None
        self.commands.stop()
        self._show(result=Panel(Text(str(exc)), title=_("netstep could not do that"), title_align="left",
                                border_style="red"))
        if self._leaving:  # the clean-up failed: say so on the way out
            self.cleanup_problems.append(str(exc))
            self._leave()
        self._settled()

    def _settled(self) -> None:
        """After every engine call: refresh the keys, then quit or go on by itself if asked to."""
        if self._leaving:
            return
        self._refresh()
        if self._quit_requested:
            self.request_quit()
        elif self.options.auto is not None and self.idle:
            self._schedule_auto()

    def _goto(self, position: int) -> list[StepResult]:
        """In the worker: move to `position`, telling the status line how far it got."""
        moves = []
        total = abs(position - self.engine.position)
        for result in self.engine.goto(position):
            moves.append(result)
            self.call_from_thread(self._status, f"{self.operation}: {len(moves)}/{total}")
        return moves
