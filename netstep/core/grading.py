"""Grading a student's own work: verify, hint and solution.

The student types a step's commands themselves (in `netstep shell`, a `%%netstep` cell,
...). `verify` compares their lab, namespace by namespace, with a reference lab that the
course itself built to the same point (netstep.reference), then runs the step's checks.
When both match, the step counts as done: the reference's journal records, undos
included, become the lab's, so `next` goes on from there and rollback undoes the
student's work as exactly as the course's. `hint` names the first command whose effect
is missing; `solution` runs the missing commands for the student.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from netstep.core.engine import Engine
from netstep.core.reference import Reference, build, read
from netstep.course.actions import Action
from netstep.course.checks import Check, CheckResult
from netstep.course.lessons import Command
from netstep.errors import NetstepError, did_you_mean
from netstep.render import RenderMixin
from netstep.state.compare import changed, differences, facts


@dataclass(frozen=True)
class Target:
    """What the student is aiming at: the state after a step (or an exercise), and its checks."""

    ref: str  # "2.4", or "exercise2"
    title: str
    position: int  # course steps applied at the target
    checks: tuple[Check, ...] = ()
    extra: tuple[Command, ...] = ()  # an exercise's solution, run after the lesson's steps
    hints: tuple[str, ...] = ()  # an exercise's written hints


@dataclass
class Verdict(RenderMixin):
    """How the lab compares with a target: every difference, in words, and the checks."""

    target: Target
    differences: list[str] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)
    skipped: list[Check] = field(default_factory=list)  # checks from a namespace the lab lacks
    adopted: bool = False  # the lab's journal now counts the target as done

    @property
    def ok(self) -> bool:
        return not self.differences and not self.skipped and all(r.ok for r in self.checks)

    def as_json(self) -> dict:
        return {"event": "verify", "step": self.target.ref, "title": self.target.title, "ok": self.ok,
                "differences": self.differences, "adopted": self.adopted,
                "checks": [r.as_json(step=self.target.ref) for r in self.checks],
                "skipped": [c.describe() for c in self.skipped]}


@dataclass
class Hint(RenderMixin):
    """The next thing the student is missing: one command, or a sentence."""

    target: Target
    command: Command | None = None
    text: str = ""
    remaining: int = 0  # commands missing after this one


@dataclass
class Solution(RenderMixin):
    """What `solution` ran for the student, and the verdict after it."""

    ran: list[Command]
    verdict: Verdict


def target_of(engine: Engine, ref: str | None = None) -> Target:
    """The target named by `ref`: a step ("2.4"), a lesson (its last step), an exercise
    ("exercise2"), or by default the next step."""
    steps = engine.steps
    if ref is not None and ref.strip().lower().startswith("exercise"):
        return exercise_target(engine, ref.strip()[len("exercise"):].strip(" -") or "?")
    if ref is None:
        if engine.position >= len(steps):
            raise NetstepError("The course is finished: name a step to verify, as in `verify 2.4`.")
        index = engine.position
    else:
        index = next((i for i, step in enumerate(steps) if step.ref == ref.strip()), -1)
        if index < 0:
            try:
                lesson = engine.course.find(ref)
            except NetstepError:
                near = did_you_mean(ref, [s.ref for s in steps] + engine.course.names())
                raise NetstepError(f"There is no step '{ref}'.{near} Name a step as `2.4` (lesson 2, step 4), or "
                                   "a lesson; `python -m netstep list` shows them.") from None
            index = engine.course.start_of(lesson) + len(lesson.steps) - 1
    step = steps[index]
    return Target(step.ref, step.title, index + 1, tuple(step.checks))


def exercise_target(engine: Engine, lesson_ref: str) -> Target:
    """The "Your turn" exercise of a lesson: the lesson's end, then the exercise's solution."""
    try:
        lesson = engine.course.find(lesson_ref)
    except NetstepError:
        near = did_you_mean(f"exercise{lesson_ref}", [f"exercise{le.number}" for le in engine.course.lessons
                                                      if le.exercise is not None])
        raise NetstepError(f"There is no exercise 'exercise{lesson_ref}'.{near} Name one as `exercise2`, the "
                           "\"Your turn\" of lesson 2.") from None
    exercise = lesson.exercise
    if exercise is None:
        raise NetstepError(f"{lesson.name} has no \"Your turn\" exercise.")
    end = engine.course.start_of(lesson) + len(lesson.steps)
    return Target(exercise.ref, exercise.title, end, tuple(exercise.checks), tuple(exercise.solution),
                  tuple(exercise.hints))


def _reference(engine: Engine, target: Target, *, each: bool = False) -> Reference:
    start = min(engine.position, target.position)
    return build(engine, start, target.position, target.extra, each=each)


def verify(engine: Engine, target: Target) -> Verdict:
    """Compare the lab with the course's state at `target`, run its checks; adopt it if all match."""
    reference = _reference(engine, target)
    actual = read(engine, target.extra)
    verdict = Verdict(target, differences(actual, reference.after))
    runnable = [c for c in target.checks if engine.lab.has_namespace(c.source)]
    verdict.skipped = [c for c in target.checks if c not in runnable]
    verdict.checks = engine.run_checks(runnable)
    if verdict.ok and (target.position > engine.position or target.extra):
        adopt(engine, reference)
        verdict.adopted = True
    return verdict


def adopt(engine: Engine, reference: Reference) -> None:
    """Journal the student's work as the reference did the course's, undos included.

    The student's lab now equals the reference, so the reference's undos, run newest
    first, take it back to where the reference started: the course's state at the lab's
    position. Commands run by hand through the engine are covered by these records and
    leave the journal.
    """
    journal = engine.journal
    while journal.own:
        journal.own_drop()
    for record in reference.records:
        journal.begin(record["index"], record["ref"])
        for entry in record["entries"]:
            journal.intend(Action.from_dict(entry["do"]))
            journal.done(Action.from_dict(entry["undo"]))
        journal.complete()
    for entry in reference.extra_undos:
        journal.own_intend(Action.from_dict(entry["do"]), entry["text"], entry["where"])
        journal.own_done(Action.from_dict(entry["undo"]))
    engine.moments.remember(engine.moments.read())


def missing(engine: Engine, target: Target) -> tuple[Reference, list[Command], list[Command]]:
    """The commands (from the lab's position to `target`) whose effect the lab lacks, in order.

    A command's effect is what it changed in the reference; only the part that no later
    command changes again is looked for, so "bring veth0 up" is not blamed for a master
    that a later command sets. A command with no visible effect (a server) is left to the
    checks: they come back apart, as the third item.
    """
    reference = _reference(engine, target, each=True)
    have = facts(read(engine, target.extra))
    effects, previous = [], facts(reference.before)
    for _, snapshot in reference.commands:
        now = facts(snapshot)
        effects.append(changed(previous, now))
        previous = now
    out, silent = [], []
    for i, (command, _) in enumerate(reference.commands):
        later = set().union(*effects[i + 1:]) if i + 1 < len(effects) else set()
        own = {key: value for key, value in effects[i].items() if key not in later}
        if not effects[i]:
            silent.append(command)
        elif own and any(have.get(key) != value for key, value in own.items()):
            out.append(command)
    return reference, out, silent


def hint(engine: Engine, target: Target, *, given: int = 0) -> Hint:
    """The next command the student is missing (or what else is wrong), one at a time.

    An exercise's written hints come first: `given` says how many were already shown.
    """
    if given < len(target.hints):
        return Hint(target, text=target.hints[given], remaining=len(target.hints) - given - 1)
    reference, commands, silent = missing(engine, target)
    if commands:
        return Hint(target, commands[0], remaining=len(commands) - 1)
    wrong = differences(read(engine, target.extra), reference.after)
    if wrong:
        return Hint(target, text=f"Every command is there, but {wrong[0]}"
                    + (f" (and {len(wrong) - 1} more difference(s): `verify` lists them)." if len(wrong) > 1 else "."))
    results = engine.run_checks([c for c in target.checks if engine.lab.has_namespace(c.source)])
    if silent and not all(r.ok for r in results):
        return Hint(target, silent[0])
    return Hint(target, text="Nothing is missing: run `verify` to have it counted.")


def hints_given(engine: Engine, target: Target) -> int:
    """How many of an exercise's written hints this lab was shown already."""
    try:
        with open(os.path.join(engine.lab.dir, "hints.json")) as f:
            return int(json.load(f).get(target.ref, 0))
    except (FileNotFoundError, ValueError, AttributeError):
        return 0


def next_hint(engine: Engine, target: Target) -> Hint:
    """The next hint for `target`, remembering in the lab how many written hints were shown."""
    given = hints_given(engine, target)
    found = hint(engine, target, given=given)
    if given < len(target.hints):
        path = os.path.join(engine.lab.dir, "hints.json")
        try:
            with open(path) as f:
                counts = json.load(f)
        except (FileNotFoundError, ValueError):
            counts = {}
        counts[target.ref] = given + 1
        with open(path + ".tmp", "w") as f:
            json.dump(counts, f)
        os.replace(path + ".tmp", path)
    return found


def solution(engine: Engine, target: Target) -> Solution:
    """Apply what the student is missing for `target`, then verify (and so adopt) it.

    From a lab where the student typed nothing, this is the course's own step; from a
    half-typed one, only the missing commands run. Anything wrong the student typed is
    not undone: the verdict names it.
    """
    if target.position < engine.position:
        raise NetstepError(f"Step {target.ref} is already applied: `rollback` first to do it again.")
    _, commands, silent = missing(engine, target)
    for command in commands:
        engine.run_own(f"{command.where}# {command.text}")
    if silent:  # a server: started only if the checks say it is not there yet
        results = engine.run_checks([c for c in target.checks if engine.lab.has_namespace(c.source)])
        if not all(r.ok for r in results):
            for command in silent:
                engine.run_own(f"{command.where}# {command.text}")
            commands = [*commands, *silent]
    return Solution(commands, verify(engine, target))
