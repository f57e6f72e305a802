"""The terminal the command line writes to: a rich Console made only when something is drawn."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


class LazyConsole:
    """A rich Console, made on first use. `reset` and `run --json` print plain lines only,
    and importing rich would be a quarter of `reset`'s time. Its attributes are the
    Console's; code that hands a console to rich (a progress bar) passes `.console`."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stderr = stderr
        self._console: Console | None = None

    @property
    def console(self) -> Console:
        if self._console is None:
            # Imported on first use, for start-up speed: rich costs ~100 ms to import.
            from rich.console import Console

            import netstep.present.traces  # netstep's objects draw through these two
            import netstep.present.views  # noqa: F401

            self._console = Console(stderr=self.stderr, highlight=False)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.console, name)

    @property
    def stream(self):
        return sys.stderr if self.stderr else sys.stdout

    def plain(self, text: str) -> None:
        """A plain line of text, through rich only if rich is in use already."""
        if self._console is None:
            print(text, file=self.stream, flush=True)
        else:
            self._console.print(text, markup=False)


def text(*parts):
    """rich Text from (text, style) parts, rich imported only now."""
    from rich.text import Text

    return Text.assemble(*parts)
