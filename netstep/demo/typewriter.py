"""Commands that appear as if typed, at a steady pace, while the step runs in the background."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.timer import Timer
from textual.widgets import Static

from netstep.demo.stage import typed

FRAMES_PER_SECOND = 30
LONGEST = 2.5  # seconds: a long step types faster rather than keep the room waiting


class Typewriter(Static):
    """A Static that reveals (prompt, command) lines a few characters a frame."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._lines: Sequence[tuple[str, str]] = ()
        self._shown = 0
        self._total = 0
        self._per_frame = 1
        self._timer: Timer | None = None
        self._done: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        return self._timer is not None

    def show(self, lines: Sequence[tuple[str, str]], *, undone: bool = False) -> None:
        """Show the lines at once."""
        self.stop()
        self._lines = lines
        self.display = bool(lines)
        self.update(typed(lines, undone=undone))

    def type(self, lines: Sequence[tuple[str, str]], cps: float, done: Callable[[], None]) -> None:
        """Reveal the lines at `cps` characters a second (0: at once), then call `done`."""
        self.stop()
        self._lines, self._done = lines, done
        self.display = bool(lines)
        self._total = sum(len(text) for _, text in lines)
        if cps <= 0 or not self._total:
            self._finish()
            return
        seconds = min(self._total / cps, LONGEST)
        self._per_frame = max(1, round(self._total / (seconds * FRAMES_PER_SECOND)))
        self._shown = 0
        self.update(typed(lines, 0))
        self._timer = self.set_interval(1 / FRAMES_PER_SECOND, self._tick)

    def _tick(self) -> None:
        self._shown += self._per_frame
        if self._shown >= self._total:
            self._finish()
        else:
            self.update(typed(self._lines, self._shown))

    def _finish(self) -> None:
        self.stop()
        self.update(typed(self._lines))
        done, self._done = self._done, None
        if done is not None:
            done()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
