"""The one exception type that reaches a person.

Every error a user can cause (bad input, a busy lab, a missing tool) is a NetstepError
whose message says what went wrong and what to do next. Front ends catch it once and print
it; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class NetstepError(Exception):
    """An error with a message meant for the person at the keyboard."""


class LessonError(NetstepError):
    """A lesson file that cannot be loaded; the message starts with `file:line:`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line


class LabBusy(NetstepError):
    """Another process holds the lab's lock."""


class NameConflict(NetstepError):
    """A name the lesson wants is already taken by something netstep did not make."""


class KernelError(NetstepError):
    """The kernel refused an action; the message names the command that failed."""
