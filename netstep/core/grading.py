"""Grading a student's own work by what works: verify, hint and solution.

The student types a step's or an exercise's commands themselves (in `netstep shell`, a
`%%netstep` cell, ...), any way that works. `verify` passes when the lab does what the
target asks: its checks (and a `grade` block's checks, never shown before), and its
essentials compared by meaning (netstep.course.essentials): a lesson's `grade` block, or
else what the step's own commands change. Everything else that differs from the
course's own state is a note, never a failure. A step verified is adopted: the lab's
position moves past it, and undoing it brings the lab back to the state before it, as
the lab was (netstep.core.reconcile). `hint` comes in stages, `solution` brings the lab
to a passing state from wherever it is, naming what it removed.

The course's own states come from netstep.core.reference, built once and kept.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace

from netstep.core.engine import Engine
from netstep.core.reconcile import Change
from netstep.core.reference import CommandState, read, states
from netstep.core.results import StepResult
from netstep.course.checks import Check, CheckResult
from netstep.course.essentials import Essential, derived
from netstep.course.lessons import Command, parse_lines
from netstep.errors import NetstepError, did_you_mean
from netstep.i18n import _
from netstep.render import RenderMixin
from netstep.state.compare import described_differences
from netstep.state.snapshot import Snapshot, to_json


@dataclass(frozen=True)
class Target:
    """What the student is aiming at: a step's result, or an exercise's, and how it is graded."""

    ref: str  # "2.4", or "exercise2"
    title: str
    position: int  # course steps applied at the target
    checks: tuple[Check, ...] = ()  # the step's or exercise's own checks, and its grade block's
    essentials: tuple[Essential, ...] = ()  # written in a grade block (else derived from the course)
    hints: tuple[str, ...] = ()  # an exercise's written hints
    goal: str = ""  # what the target asks, in the lesson's words (a step's title, an exercise's prose)
    exercise: bool = False
    challenge: bool = False  # a break-it challenge (netstep.core.challenges): graded by its checks alone
    fix: tuple[Command, ...] = ()  # a challenge's repair, run by `solution`
    setup: tuple[Command, ...] = ()  # what a challenge's working lab has beyond its lesson's end
    broken: str = ""  # what a challenge broke, said by `solution`


@dataclass
class Verdict(RenderMixin):
    """How the lab does against a target: the essentials it lacks, the checks, and notes."""

    target: Target
    problems: list[str] = field(default_factory=list)  # essentials that do not hold, in plain words
    checks: list[CheckResult] = field(default_factory=list)
    skipped: list[Check] = field(default_factory=list)  # checks from a namespace the lab lacks
    notes: list[str] = field(default_factory=list)  # differences from the course's own state: not failures
    adopted: bool = False  # the lab's position moved past the target

    @property
    def ok(self) -> bool:
        return not self.problems and not self.skipped and all(r.ok for r in self.checks)

    @property
    def differences(self) -> list[str]:  # the older name, for JSON readers
        return self.problems

    def as_json(self) -> dict:
        return {"event": "verify", "step": self.target.ref, "title": self.target.title, "ok": self.ok,
                "problems": self.problems, "differences": self.problems, "notes": self.notes,
                "adopted": self.adopted, "checks": [r.as_json(step=self.target.ref) for r in self.checks],
                "skipped": [c.describe() for c in self.skipped]}


@dataclass
class Hint(RenderMixin):
    """The next thing the student is missing, at the stage they reached: an idea, a
    command with blanks, or the command."""

    target: Target
    command: Command | None = None
    text: str = ""
    remaining: int = 0  # commands missing after this one
    stage: str = "text"  # "written", "idea", "blanks", "command", "text"

    def as_json(self) -> dict:
        return {"event": "hint", "step": self.target.ref, "stage": self.stage, "text": self.text,
                "command": None if self.command is None else f"{self.command.where}# {self.command.text}",
                "remaining": self.remaining}


@dataclass
class Solution(RenderMixin):
    """What `solution` ran for the student, what it removed, and the verdict after it."""

    ran: list[Command]
    verdict: Verdict
    removed: list[str] = field(default_factory=list)  # what was in the way, as commands that took it away
    restored: list[str] = field(default_factory=list)  # what was then set as the course has it
    broken: str = ""  # a challenge's: what had been broken

    def as_json(self) -> dict:
        return {"event": "solution", "step": self.verdict.target.ref, "ok": self.verdict.ok,
                "ran": [f"{c.where}# {c.text}" for c in self.ran], "removed": self.removed,
                "restored": self.restored, "verdict": self.verdict.as_json()}


def target_of(engine: Engine, ref: str | None = None) -> Target:
    """The target named by `ref`: a step ("2.4"), a lesson (its last step), an exercise
    ("exercise2"), or by default the next step."""
    steps = engine.steps
    if ref is not None and ref.strip().lower().startswith("exercise"):
        return exercise_target(engine, ref.strip()[len("exercise"):].strip(" -") or "?")
    if ref is None:
        if engine.position >= len(steps):
            raise NetstepError(_("The course is finished: name a step to verify, as in `verify 2.4`."))
        index = engine.position
    else:
        index = next((i for i, step in enumerate(steps) if step.ref == ref.strip()), -1)
        if index < 0:
            try:
                lesson = engine.course.find(ref)
            except NetstepError:
                near = did_you_mean(ref, [s.ref for s in steps] + engine.course.names())
                raise NetstepError(_("There is no step '{ref}'.{near} Name a step as `2.4` (lesson 2, step 4), a "
                                     "lesson, or an exercise as `exercise2`; `python -m netstep list` shows them."
                                     ).format(ref=ref, near=near)) from None
            index = engine.course.start_of(lesson) + len(lesson.steps) - 1
    step = steps[index]
    return Target(step.ref, step.title, index + 1, tuple(step.checks) + tuple(step.grade_checks),
                  tuple(step.grade), goal=step.title)


def exercise_target(engine: Engine, lesson_ref: str) -> Target:
    """The "Your turn" exercise of a lesson: from the lesson's end, graded on its own checks
    and grade block (what its text asks, no more)."""
    try:
        lesson = engine.course.find(lesson_ref)
    except NetstepError:
        near = did_you_mean(f"exercise{lesson_ref}", [f"exercise{le.number}" for le in engine.course.lessons
                                                      if le.exercise is not None])
        raise NetstepError(_("There is no exercise 'exercise{ref}'.{near} Name one as `exercise2`, the "
                             "\"Your turn\" of lesson 2.").format(ref=lesson_ref, near=near)) from None
    exercise = lesson.exercise
    if exercise is None:
        raise NetstepError(_("{lesson} has no \"Your turn\" exercise.").format(lesson=lesson.name))
    end = engine.course.start_of(lesson) + len(lesson.steps)
    checks = list(exercise.checks) + list(exercise.grade_checks)
    return Target(exercise.ref, exercise.title, end, tuple(checks), tuple(exercise.grade), tuple(exercise.hints),
                  goal=exercise.prose, exercise=True)


def _expected(engine: Engine, target: Target) -> tuple[Snapshot, Snapshot, list[CommandState]]:
    """The course's state where the student starts (the lab's position, or the target's
    start if that is later), where the target ends, and the commands between, with the
    state after each."""
    found = states(engine)
    found.require(target.position)
    if target.challenge:  # it starts and ends at the course's own state, which the break left
        return found.positions[target.position], found.positions[target.position], []
    if target.exercise:
        return found.positions[target.position], found.exercise_state(target.ref, target.position), \
            found.exercises.get(target.ref, [])
    first = min(engine.position, target.position - 1)
    commands = [c for index in range(first, target.position) for c in found.commands[index]]
    return found.positions[first], found.positions[target.position], commands


def essentials(engine: Engine, target: Target) -> list[Essential]:
    """What the target must have: its grade block's essentials, or what its commands change.
    A step further ahead than the next one (`verify lesson2` at the lesson's start) needs
    what every step on the way changes, too."""
    if target.challenge:
        return list(target.essentials)
    start, end, _commands = _expected(engine, target)
    ahead = not target.exercise and engine.position < target.position - 1
    if target.essentials and not ahead:
        return list(target.essentials)
    return [*target.essentials, *(e for e in derived(start, end) if e not in target.essentials)]


def verify(engine: Engine, target: Target, *, adopt: bool = True, actual: Snapshot | None = None) -> Verdict:
    """Grade the lab against `target` by what works; adopt a step that passes. `actual`: the
    lab as this command read it already, if nothing changed it since."""
    if not target.exercise and not target.challenge and target.position < engine.position:
        raise NetstepError(_("Step {ref} is already behind the lab (it stands after {last}): `back` or `rollback` "
                             "first to do it again.").format(ref=target.ref,
                                                             last=engine.steps[engine.position - 1].ref))
    _start, expected, _commands = _expected(engine, target)
    actual = read(engine) if actual is None else actual
    verdict = Verdict(target)
    failing = [e for e in essentials(engine, target) if not e.holds(actual)]
    verdict.problems = [e.problem(actual) for e in failing]
    runnable = [c for c in target.checks if engine.lab.has_namespace(c.source)]
    verdict.skipped = [c for c in target.checks if c not in runnable]
    verdict.checks = engine.run_checks(runnable)
    verdict.notes = notes(actual, expected, failing)
    if target.challenge and not verdict.ok:  # what names the fault is the student's to find (trace, inspect):
        verdict.notes = []  # the differences from the course's state, and where and why each probe stopped
        verdict.checks = [replace(r, where=None, why="", evidence=None) for r in verdict.checks]
    if verdict.ok and adopt and not target.exercise and not target.challenge and target.position > engine.position:
        _adopt(engine, target, actual)
        verdict.adopted = True
    return verdict


def notes(actual: Snapshot, expected: Snapshot, failing: list[Essential]) -> list[str]:
    """The lab's other differences from the course's state: not those a problem names
    already, nor a kernel route that only follows an address noted already (a /16 where
    the course has a /24 brings its own subnet route)."""
    found = described_differences(actual, expected)
    addressed = {(key[1], key[2].split(" ", 1)[0]) for key, _text in found if key and key[0] == "address"}
    out = []
    for key, text in found:
        if key is not None and any(_names(essential, key) for essential in failing):
            continue
        if key is not None and key[0] == "route" and " proto kernel " in f" {key[2]} ":
            words = key[2].split()
            if "dev" in words and (key[1], words[words.index("dev") + 1]) in addressed:
                continue
        out.append(text)
    return out


def _names(essential: Essential, key: tuple[str, ...]) -> bool:
    """Whether `essential`'s problem is about the fact `key` (its kind, namespace and object)."""
    if (essential.what, essential.ns) != (key[0], key[1]):
        return False
    if key[0] == "namespace":
        return True
    words = essential.spec.replace("=", " ").split()
    if key[0] == "address":  # key: "DEVICE ADDRESS/LEN"
        return bool(words) and words[0] == key[2].split(" ", 1)[-1]
    if key[0] == "route":
        return bool(words) and words[0] == key[2].split()[0]
    if key[0] == "device":
        return bool(words) and words[0] == key[2]
    if key[0] == "rule":
        return set(words) <= set(key[2].split())
    return key[0] == "sysctl" and bool(words) and words[0] == key[2]


def advance(engine: Engine, *, show: bool = True) -> StepResult | Verdict:
    """`next`: when the student already did the next step by hand, count it as done ("you
    already did 2.4"); otherwise apply it, after bringing the lab back to its position
    (the result names what that took back)."""
    step = engine.next_step()
    if step is not None and step.commands and not engine.lab.host_mode and engine.student_changed():
        target = target_of(engine)
        if essentials(engine, target):
            verdict = verify(engine, target)
            if verdict.ok:
                return verdict
    return engine.apply_next(show=show)


def _adopt(engine: Engine, target: Target, actual: Snapshot) -> None:
    """Count the steps up to `target` as done, by the student's hand: undoing one brings the
    lab back to the state before it (the lab's own position state for the first)."""
    found = states(engine)
    found.require(target.position)
    first = engine.position
    for index in range(first, target.position):
        kept = engine.known_position_state() if index == first else None
        before = kept if kept is not None else found.positions[index]
        engine.journal.adopt(index, engine.steps[index].ref, to_json(before))
    engine.settle_on(actual, position=True)
    engine.keep_student_servers()  # a server the step starts, started by hand, is the position's now


def missing(engine: Engine, target: Target, actual: Snapshot | None = None) -> list[Command]:
    """The target's commands whose effect the lab lacks, in order (`actual`: the lab as
    read already).

    A command's effect is what it changed in the course's own run, compared by meaning
    (essentials); only the part that no later command changes again is looked for, so
    "bring veth0 up" is not blamed for a master that a later command sets.
    """
    start, _end, commands = _expected(engine, target)
    actual = read(engine) if actual is None else actual
    effects, previous = [], start
    for done in commands:
        effects.append(derived(previous, done.after))
        previous = done.after
    out = []
    for i, done in enumerate(commands):
        later = {(e.ns, e.what, e.spec.split()[0] if e.spec else "") for effect in effects[i + 1:] for e in effect}
        own = [e for e in effects[i] if (e.ns, e.what, e.spec.split()[0] if e.spec else "") not in later]
        if own and any(not e.holds(actual) for e in own):
            out.append(_command(engine, done))
        elif not effects[i] and not all(r.ok for r in engine.run_checks(_runnable(engine, target))):
            out.append(_command(engine, done))  # a server: no state shows it, the checks do
    return out


def _runnable(engine: Engine, target: Target) -> list[Check]:
    return [c for c in target.checks if engine.lab.has_namespace(c.source)]


def _command(engine: Engine, done: CommandState) -> Command:
    return parse_lines(f"{done.where}# {done.text}", done.where)[0]


BLANK = "____"
VALUES = re.compile(r"(?<![\w.])(\d+\.\d+\.\d+\.\d+(?:/\d+)?|\d+\.\d+\.\d+\.\d+:\d+)(?![\w.])")


NAMED_BY = ("set", "dev", "via", "name", "netns", "master", "-i", "-o", "-j", "--to-destination", "--dport", "add",
            "delete", "del")


def blanks(text: str) -> str:
    """The command with its values left for the student to fill: addresses, a sysctl's
    value, and the names after `set`, `dev`, `via`, `name`, `netns`, `master`, `-i`, `-o`, `-j`."""
    words = text.split()
    out = []
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        if VALUES.fullmatch(word) or (before in NAMED_BY and i >= 3):
            out.append(BLANK)
        elif words[0] == "sysctl" and "=" in word:
            out.append(word.split("=", 1)[0] + "=" + BLANK)
        else:
            out.append(word)
    return " ".join(out)


def idea(engine: Engine, target: Target, command: Command, actual: Snapshot | None = None) -> str:
    """What the command must change, and where, without the command: its essentials (a
    device's, as the lab has it: "veth0 in host is DOWN, it should be UP")."""
    previous, _end, commands = _expected(engine, target)
    actual = read(engine) if actual is None else actual
    for done in commands:
        if (done.where, done.text) == (command.where, command.text):
            found = [e for e in derived(previous, done.after) if not e.holds(actual)]
            if found:
                return _("What is missing: {ideas}.").format(ideas=_("; ").join(
                    e.problem(actual) if e.what == "device" and e.ns in actual.namespaces
                    and actual[e.ns].link(e.spec.split()[0]) is not None else e.idea() for e in found[:2]))
        previous = done.after
    return _("Something must still happen in {ns}.").format(ns=command.where)


STAGES = ("idea", "blanks", "command")


def hint(engine: Engine, target: Target, *, given: int = 0, stage: int = 0,
         actual: Snapshot | None = None, commands: list[Command] | None = None) -> Hint:
    """The next thing the student is missing, at `stage` (0: the idea, 1: the command with
    blanks, 2: the command). An exercise's written hints come first: `given` of them were shown.
    `actual` and `commands`: the lab as read and what it misses, if the caller found them
    already (the lab is read once: each reading costs a netlink dump and an iptables-save a
    namespace)."""
    if given < len(target.hints):
        return Hint(target, text=target.hints[given], remaining=len(target.hints) - given - 1, stage="written")
    actual = read(engine) if actual is None else actual
    commands = missing(engine, target, actual) if commands is None else commands
    if commands:
        command = commands[0]
        kind = STAGES[min(stage, 2)]
        if kind == "idea":
            return Hint(target, text=idea(engine, target, command, actual), remaining=len(commands) - 1, stage=kind)
        if kind == "blanks":
            shown = Command(command.where, blanks(command.text), command.action, command.line)
            return Hint(target, shown, remaining=len(commands) - 1, stage=kind)
        return Hint(target, command, remaining=len(commands) - 1, stage=kind)
    verdict = verify(engine, target, adopt=False, actual=actual)
    if verdict.problems:
        return Hint(target, text=_("Every command is there, but {problem}.").format(problem=verdict.problems[0]))
    if not verdict.ok:
        failed = next((r for r in verdict.checks if not r.ok), None)
        if failed is not None:
            return Hint(target, text=_("Look at {check}: it came out {actual}. `trace` shows where the packet goes."
                                       ).format(check=failed.check.describe(), actual=_(failed.actual)))
    return Hint(target, text=_("Nothing is missing: run `verify` to have it counted."))


def _hints_path(engine: Engine) -> str:
    return os.path.join(engine.lab.dir, "hints.json")


def next_hint(engine: Engine, target: Target) -> Hint:
    """The next hint for `target`; each call goes one stage further, remembered in the lab."""
    try:
        with open(_hints_path(engine)) as f:
            counts = json.load(f)
    except (FileNotFoundError, ValueError):
        counts = {}
    seen = counts.get(target.ref, {})
    if not isinstance(seen, dict):
        seen = {"written": int(seen)}
    given = int(seen.get("written", 0))
    actual = None if given < len(target.hints) else read(engine)
    commands = [] if actual is None else missing(engine, target, actual)
    stage = int(seen.get(commands[0].text, 0)) if commands else 0
    found = hint(engine, target, given=given, stage=stage, actual=actual,
                 commands=None if actual is None else commands)
    if found.stage == "written":
        seen["written"] = given + 1
    elif commands:
        seen[commands[0].text] = stage + 1
    counts[target.ref] = seen
    with open(_hints_path(engine) + ".tmp", "w") as f:
        json.dump(counts, f)
    os.replace(_hints_path(engine) + ".tmp", _hints_path(engine))
    return found


def solution(engine: Engine, target: Target) -> Solution:
    """Bring the lab to a passing state for `target` from wherever it is, then verify it.

    The commands the student is missing run first; if the lab still fails (something the
    student typed is in the way: a route out of the wrong device, a rule that blocks), the
    lab is brought to the course's own state at the target, and what that removed is named.
    """
    if not target.challenge and not target.exercise and target.position < engine.position:
        raise NetstepError(_("Step {ref} is already applied: `back` or `rollback` first to do it again.").format(
            ref=target.ref))
    actual = read(engine)
    if target.challenge:  # its repair, where the lab still fails (as far as it applies to what the student left)
        commands = [] if verify(engine, target, adopt=False, actual=actual).ok else list(target.fix)
    else:
        commands = missing(engine, target, actual)
    ran: list[Command] = []
    for command in commands:
        try:
            engine.run_own(f"{command.where}# {command.text}")
            ran.append(command)
        except NetstepError:
            break  # in the way of something the student typed: the state is set below
    verdict = verify(engine, target, actual=None if commands else actual)  # (read again if anything ran)
    removed: list[str] = []
    restored: list[str] = []
    if not verdict.ok:
        _start, expected, _commands = _expected(engine, target)
        changes = _force(engine, expected)
        removed = [c.describe() for c in changes if c.removes]
        restored = [c.describe() for c in changes if not c.removes]
        if target.challenge and target.setup:  # the working lab is the lesson's end and the setup
            engine.run_own("\n".join(f"{c.where}# {c.text}" for c in (*target.setup, *target.fix)))
        verdict = verify(engine, target)
    return Solution(ran, verdict, removed, restored, broken=target.broken)


def _force(engine: Engine, expected: Snapshot) -> list[Change]:
    """Set the lab to `expected`, keeping the position's state for the moves after."""
    engine.keep_position()
    done = engine.land(expected, read=lambda: read(engine))
    engine.settle_on(read(engine), position=False)
    return done.changes
