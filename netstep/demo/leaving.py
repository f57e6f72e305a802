"""Leaving, and going on by itself: `q`, SIGTERM/SIGHUP, --rollback-on-exit and --auto.

Quitting waits for the engine call in progress, so a step is never cut in half. With
--rollback-on-exit or --auto the lab is then rolled back and removed, through the engine.
--auto schedules the next step each time the app settles; anything the presenter does
in between calls the scheduled step off (`_auto_turn`).
"""

from __future__ import annotations

import os

from netstep.core.reset import reset_lab
from netstep.i18n import _


class Leaving:
    """Mixin for DemoApp. Expects: `engine`, `options`, `end`, `idle`, `operation`, `failures`,
    `applied`, `cleanup_problems`, `_leaving`, `_quit_requested`, `hung_up`, `_auto_timer`, `_auto_turn`,
    and the methods `_run`, `_status`, `action_next`, `exit`, `set_timer`, `call_later`.
    """

    async def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        """Quit once the engine is idle; with --rollback-on-exit or --auto, roll back and remove the lab first."""
        if self._leaving:
            return
        if not self.idle:
            self._quit_requested = True
            self._status(_("{doing}; then quitting").format(doing=self.operation or _("finishing")))
            return
        self._quit_requested = False
        self._leaving = True
        self._cancel_auto()
        if self.options.cleanup_on_exit and self.engine.lab.exists():
            self._run(_("rolling the lab back and removing it"), self._clean_up, self._leave, look=False)
        else:
            self._leave()

    def _clean_up(self) -> None:
        """In the worker: undo every step, then remove the lab (in host mode, only what it added)."""
        self.engine.rollback_all()
        self.cleanup_problems = reset_lab(self.engine.lab)

    def _leave(self, _value: object = None) -> None:
        status = 1 if self.options.auto is not None and self.failures else 0
        if self.hung_up:  # no terminal to restore: Textual's way out, writing to it, deadlocks (seen in tmux)
            os._exit(status)
        self.exit(return_code=status)

    def farewell(self) -> str:
        """One line for the terminal once the app is gone: what ran, and where the lab is."""
        checks = (_("every check came out as expected") if not self.failures
                  else _("{count} check(s) did not come out as expected").format(count=self.failures))
        done = _("netstep demo: {count} step(s) applied, {checks}.").format(count=len(self.applied), checks=checks)
        name = self.engine.lab.name
        if not self.engine.lab.exists():
            left = "".join("\n" + _("netstep: could not undo: {problem}").format(problem=problem)
                           for problem in self.cleanup_problems)
            return done + " " + _("Lab '{name}' was rolled back and removed.").format(name=name) + left
        where = self.engine.current_step()
        if where is None:
            return done + " " + _("Lab '{name}' is at the start of the course.").format(name=name)
        return done + " " + _("Lab '{name}' stands after step {ref}; `python -m netstep --lab {name} rollback --all` "
                              "undoes it.").format(name=name, ref=where.ref)

    def _schedule_auto(self) -> None:
        self._cancel_auto()
        turn = self._auto_turn
        if self.options.auto:
            self._auto_timer = self.set_timer(self.options.auto, lambda: self._auto_step(turn))
        else:
            self.call_later(self._auto_step, turn)

    def _auto_step(self, turn: int) -> None:
        """Go on by itself: the next step, or at the end roll back, remove the lab and exit."""
        if turn != self._auto_turn or not self.idle:
            return  # something else happened since this was scheduled
        self._auto_timer = None
        if self.engine.position < self.end:
            self.action_next()
        else:
            self.request_quit()

    def _cancel_auto(self) -> None:
        self._auto_turn += 1
        if self._auto_timer is not None:
            self._auto_timer.stop()
            self._auto_timer = None
