"""The one exception type that reaches a person.

Every error a user can cause (bad input, a busy lab, a missing tool) is a NetstepError
whose message says what went wrong and what to do next. Front ends catch it once and print
it; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from netstep.i18n import _


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


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that a step in progress is undone."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a lab was open, with where the lab was left (`where`, a sentence)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


class KernelError(NetstepError):
    """The kernel refused an action; the message names the command that failed."""


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """" Did you mean bridge?" for the name nearest to a mistyped `word` (difflib's
    measure), or "" when none is near: appended to an error that names a missing thing."""
    near = difflib.get_close_matches(word.strip().lower(), list(dict.fromkeys(names)), n=1, cutoff=0.6)
    return _(" Did you mean {name}?").format(name=near[0]) if near else ""
