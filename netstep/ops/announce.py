"""Announcing an undo just before the kernel change it takes back.

`apply` (netstep.ops.apply) listens for the action it applies; the operation that knows
its undo before changing anything calls `about_to_change(undo)` right before the change,
and the engine journals it: a kill between the change and the return still leaves a
journal that can take the change back. Actions applied inside another do not announce.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netstep.course.actions import Action

_ready = threading.local()


@contextmanager
def listening(ready: Callable[[Action], None] | None) -> Iterator[None]:
    """Have `ready` hear the undo of the action applied inside (once, if it is told)."""
    outer = getattr(_ready, "fn", None)
    _ready.fn = ready
    try:
        yield
    finally:
        _ready.fn = outer


def about_to_change(undo: Action) -> Action:
    """Tell `apply`'s caller the undo, right before the kernel change; returns `undo`."""
    fn = getattr(_ready, "fn", None)
    if fn is not None:
        _ready.fn = None  # once per action
        fn(undo)
    return undo
