"""Ctrl-C and SIGTERM, held while the engine works and acted on between two actions."""

from __future__ import annotations

import os
import signal
import threading


class SignalGuard:
    """Hold Ctrl-C and SIGTERM while the engine works; act on them only at safe points.

    An action and the journal entry of its undo must not be separated, and a signal that
    lands inside a netlink exchange leaves its answer unread in the socket. So signals are
    only noted; `checkpoint()` (between two actions) raises what the signal's own handler
    raises, and leaving the guard delivers a signal that came later. Only the main thread
    can set handlers; elsewhere (a notebook's worker) signals do not arrive anyway, and
    the guard does nothing.
    """

    held = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.pending: list[int] = []
        self.previous: dict[int, object] = {}
        self.active = threading.current_thread() is threading.main_thread()

    def __enter__(self) -> SignalGuard:
        if self.active:
            self.previous = {s: signal.signal(s, lambda signum, frame: self.pending.append(signum))
                             for s in self.held}
        return self

    def checkpoint(self) -> None:
        """Raise now for a signal that came in (the handler's exception, or KeyboardInterrupt)."""
        if self.pending:
            signum = self.pending[0]
            self.pending.clear()
            handler = self.previous.get(signum)
            if callable(handler):
                handler(signum, None)  # raises KeyboardInterrupt, the front end's exception,
                return  # or notes it in an outer guard, which acts on it at its own checkpoint
            raise KeyboardInterrupt

    def __exit__(self, kind, value, traceback) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        if self.pending and kind is None:
            signum = self.pending[0]
            self.pending.clear()
            handler = self.previous.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
