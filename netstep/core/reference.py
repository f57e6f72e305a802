"""The reference lab: the state the course reaches, built for real to compare against.

A student's lab is graded against a second lab, hidden from them, that netstep builds by
applying the course itself up to the same point, then removes. Building it for real is
the only sound source of "what the course reaches": the kernel derives routes, pairs
veths across namespaces and changes sysctls in ways a model would have to imitate (and
would get wrong where it matters most). A reference lab takes about a second to build,
which is short next to the time a student spends typing, so it is built fresh each time
rather than cached, and can never be stale.

The reference also keeps what applying each step journaled there, undos included: once
a student's own work matches, those records become their lab's journal, so rollback and
reset undo the student's work exactly as they undo the course's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.core.reset import reset_lab
from netstep.course.lessons import Command
from netstep.errors import NetstepError
from netstep.state.snapshot import Snapshot

ROOT = "/run/netstep/reference"  # beside the labs' folder, so no list of labs shows it


@dataclass
class Reference:
    """The course's state at `position` (steps applied), and how it got there from `start`."""

    start: int
    position: int
    before: Snapshot  # after `start` steps
    after: Snapshot  # after `position` steps, and the extra commands
    # each command from `start` on (steps first, extra commands last), with the state after it
    commands: list[tuple[Command, Snapshot]] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)  # the journal records of steps start..position
    extra_undos: list[dict] = field(default_factory=list)  # own-command journal entries


def sysctl_keys(engine: Engine, extra: Sequence[Command] = ()) -> tuple[str, ...]:
    """The sysctls worth comparing: every one the course (or `extra`) sets."""
    actions = [a for step in engine.course.steps for a in step.actions] + [c.action for c in extra]
    return tuple(dict.fromkeys(a.key for a in actions if hasattr(a, "key")))


def read(engine: Engine, extra: Sequence[Command] = ()) -> Snapshot:
    """The configuration of every namespace of the engine's lab, as the reference reads it."""
    return engine.lab.snapshot(caches=False, sysctls=sysctl_keys(engine, extra))


def build(engine: Engine, start: int, position: int, extra: Sequence[Command] = (), *,
          each: bool = False) -> Reference:
    """Build the course on a hidden lab to `position` steps, then run `extra` commands.

    `start` (at most `position`) is where the student's lab stands: the steps from there
    on, and `extra`, are journaled in the reference, and with `each` the state after each
    of their commands is kept too (for hints).
    """
    if engine.lab.host_mode:
        raise NetstepError(
            "verify, hint and solution compare a lab with a sandbox built beside it, which host mode's lab "
            "host (this machine's own network) cannot be compared with. Use a sandbox lab (without --host)."
        )
    lab = Lab(engine.lab.name, root=ROOT)
    lab.lock(build=False)
    try:
        reset_lab(lab)  # a reference left behind by a killed verify
    finally:
        lab.close()
    lab.lock()
    try:
        ref = Engine(lab, engine.course)
        keys = sysctl_keys(engine, extra)
        ref.skip_to(start)
        reference = Reference(start, position, before=lab.snapshot(caches=False, sysctls=keys),
                              after=Snapshot())
        while ref.position < position:
            step = ref.next_step()
            assert step is not None

            def noted(done: int, total: int, step=step) -> None:
                reference.commands.append((step.commands[done - 1], lab.snapshot(caches=False, sysctls=keys)))

            ref.apply_next(run_checks=False, progress=noted if each else None)
        for command in extra:
            ref.run_own(f"{command.where}# {command.text}")
            if each:
                reference.commands.append((command, lab.snapshot(caches=False, sysctls=keys)))
        reference.records = [dict(record) for record in ref.journal.steps[start:position]]
        reference.extra_undos = [dict(entry) for entry in ref.journal.own]
        reference.after = lab.snapshot(caches=False, sysctls=keys)
        ref.journal.close()
        return reference
    finally:
        try:
            reset_lab(lab)
        finally:
            lab.close()
