"""What the demo was asked to do (--from, --to, --auto, --rollback-on-exit), checked up front.

Everything here is validated before a lab is made or locked, so that a bad lesson number
or a missing terminal is one clear error and leaves nothing behind.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from netstep.course.course import Course
from netstep.errors import NetstepError
from netstep.i18n import _


@dataclass(frozen=True)
class DemoOptions:
    """Lesson numbers and modes; positions are counted in steps of the course."""

    first_lesson: int | None = None  # --from: fast-forward (or roll back) to its start first
    last_lesson: int | None = None  # --to: the last lesson shown; None means the last one
    auto: float | None = None  # --auto: seconds between steps, then roll back and exit
    rollback_on_exit: bool = False
    typing_cps: float = 70.0  # characters a second of the "typed" commands; 0 shows them at once

    @property
    def cleanup_on_exit(self) -> bool:
        """Roll back and remove the lab when leaving: asked for, or implied by --auto (a booth loop)."""
        return self.rollback_on_exit or self.auto is not None

    def start(self, course: Course) -> int | None:
        """The position to bring the lab to first, or None to take the lab as it is."""
        number = self.first_lesson or (1 if self.auto is not None else None)
        return None if number is None else course.start_of(_lesson(course, number))

    def end(self, course: Course) -> int:
        """The position after the last step the demo may apply."""
        if self.last_lesson is None:
            return len(course.steps)
        lesson = _lesson(course, self.last_lesson)
        return course.start_of(lesson) + len(lesson.steps)


def _lesson(course: Course, number: int):
    return next(lesson for lesson in course.lessons if lesson.number == number)


def options_from_args(args, course: Course, *, need_terminal: bool = True) -> DemoOptions:
    """DemoOptions from `python -m netstep demo ...` arguments, or a NetstepError saying what is wrong."""
    first = course.find(args.from_lesson).number if args.from_lesson else None
    last = course.find(args.to_lesson).number if args.to_lesson else None
    if first is not None and last is not None and first > last:
        raise NetstepError(_("--from {first} comes after --to {last}: the demo would have nothing to show.").format(
            first=first, last=last))
    if args.auto is not None and not args.auto >= 0:
        raise NetstepError(_("--auto takes the seconds between steps: 0 or more, such as --auto 5."))
    if need_terminal and not (sys.stdin.isatty() and sys.__stderr__.isatty()):  # Textual draws on stderr
        raise NetstepError(_("The demo is a full-screen app and needs a terminal; for a log of the course use "
                             "`python -m netstep run all --yes`."))
    return DemoOptions(first, last, args.auto, bool(args.rollback_on_exit),
                       typing_cps=0.0 if args.auto == 0 else DemoOptions.typing_cps)
