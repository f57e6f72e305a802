"""What the engine returns: the results of a move and of a student's own commands.

They render themselves (netstep.render): the engine never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netstep.core.reconcile import Reconciliation
from netstep.course.checks import CheckResult
from netstep.course.lessons import Command, Step
from netstep.render import RenderMixin
from netstep.state.diff import Diff
from netstep.state.snapshot import Snapshot


@dataclass
class StepResult(RenderMixin):
    """What one move did: the step, which way, its diff, its checks and what to show."""

    step: Step
    direction: str  # "apply" or "undo"
    diff: Diff
    checks: list[CheckResult] = field(default_factory=list)
    shown: Snapshot | None = None
    elapsed: float = 0.0
    internet: str = ""
    # what the move took back or put back of the student's own changes before it went on
    reconciled: Reconciliation = field(default_factory=Reconciliation)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks)


@dataclass
class OwnResult(RenderMixin):
    """What a student's own commands did."""

    commands: list[Command]
    diff: Diff
    elapsed: float = 0.0
