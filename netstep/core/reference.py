"""The course's states: what the course reaches at every position, built for real once.

A student's lab is graded against what the course itself builds, and a hidden lab is the
only sound source of that: the kernel derives routes, pairs veths across namespaces and
changes sysctls in ways a model would have to imitate (and would get wrong where it
matters most). One pass over the whole course in a hidden lab keeps the state after
every step, after every command (for hints), and after each lesson's exercise solution;
the pass takes a few seconds, so its result is kept on disk, machine-wide, under a key
made of the lessons' text and the code that applies and reads them. A key that changes
with both can never be stale; every lab (every student of a class) shares it, and a
`verify` after the first answers from it at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar, overload

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.core.reset import reset_lab
from netstep.course.course import Course
from netstep.course.lessons import Lesson
from netstep.errors import KernelError, NetstepError
from netstep.i18n import _
from netstep.state.snapshot import Snapshot, from_json, to_json

ROOT = "/run/netstep/reference"  # beside the labs' folder, so no list of labs shows it
CACHE = os.path.join(ROOT, "states")
CODE = Path(__file__).resolve().parent.parent  # the package: its ops, state and kernel shape every state


@dataclass
class CommandState:
    """One command of a step or an exercise solution, and the course's state after it."""

    where: str
    text: str
    after: Snapshot


T = TypeVar("T")


class OnDemand(Sequence[T], Generic[T]):
    """A list read from JSON whose items are decoded the first time each is asked for: a
    `verify` needs two or three of the course's ~100 states, and decoding them all took
    more CPU (~8 ms) than its checks."""

    def __init__(self, raw: list, decode: Callable[[object], T]) -> None:
        self._raw = raw
        self._decode = decode
        self._decoded: dict[int, T] = {}

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if index not in self._decoded:
            self._decoded[index] = self._decode(self._raw[index])  # (IndexError as a list's)
        return self._decoded[index]


@dataclass
class CourseStates:
    """The course's configuration after each of its steps, commands and exercise solutions."""

    # (lists while they are built; OnDemand when read from the cache)
    positions: Sequence[Snapshot] = field(default_factory=list)  # [p]: after p steps
    commands: Sequence[list[CommandState]] = field(default_factory=list)  # [i]: step i's commands
    exercises: dict[str, list[CommandState]] = field(default_factory=dict)  # ref: its solution's commands
    # Why the pass stopped before the course's end ("" when it went through): a lesson this
    # machine's kernel cannot run (lesson 10 without br_netfilter) leaves the ones before it gradable.
    stopped: str = ""

    def require(self, position: int) -> None:
        """A clear error where the states end before `position` (after that many steps)."""
        if position >= len(self.positions):
            raise NetstepError(_("verify, hint and solution compare the lab with the course's own, built "
                                 "beside it, and on this machine that lab stops before this point: "
                                 "{why}").format(why=self.stopped))

    def exercise_state(self, ref: str, position: int) -> Snapshot:
        done = self.exercises.get(ref)
        return done[-1].after if done else self.positions[position]

    def to_json(self) -> dict:
        def commands(items: list[CommandState]) -> list:
            return [[c.where, c.text, to_json(c.after)] for c in items]

        return {"positions": [to_json(s) for s in self.positions],
                "commands": [commands(step) for step in self.commands],
                "exercises": {ref: commands(items) for ref, items in self.exercises.items()},
                "stopped": self.stopped}

    @classmethod
    def from_json(cls, data: dict) -> CourseStates:
        def commands(items: list) -> list[CommandState]:
            return [CommandState(where, text, from_json(after)) for where, text, after in items]

        return cls(OnDemand(data["positions"], from_json), OnDemand(data["commands"], commands),
                   {ref: commands(items) for ref, items in data["exercises"].items()}, data["stopped"])


def sysctl_keys(course: Course) -> tuple[str, ...]:
    return course.sysctl_keys()


def read(engine: Engine) -> Snapshot:
    """The configuration of every namespace of the engine's lab, read as the states are."""
    engine.lab.notice_outside_changes()
    return engine.lab.snapshot(caches=False, sysctls=sysctl_keys(engine.course))


def key(course: Course) -> str:
    """The cache key: the lessons' text, the course variant, the code that builds and reads, and
    whether the kernel has br_netfilter (without it, the pass stops at the lesson that needs it)."""
    bridge = os.path.isdir("/proc/sys/net/bridge")
    digest = hashlib.sha256(f"containers={course.containers} br_netfilter={bridge}".encode())
    for lesson in course.lessons:
        digest.update(Path(lesson.path).read_bytes() if os.path.exists(lesson.path) else lesson.path.encode())
    for folder in ("ops", "state", "kernel", "course"):
        for path in sorted((CODE / folder).glob("*.py")):
            digest.update(path.read_bytes())
    digest.update((CODE / "core" / "sandbox.py").read_bytes())
    return digest.hexdigest()[:24]


_loaded: dict[str, CourseStates] = {}  # the states this process has read, by key


def states(engine: Engine) -> CourseStates:
    """The course's states, from the machine-wide cache, or built now in a hidden lab."""
    if engine.lab.host_mode:
        raise NetstepError(
            "verify, hint and solution compare a lab with a sandbox built beside it, which host mode's lab "
            "host (this machine's own network) cannot be compared with. Use a sandbox lab (without --host)."
        )
    name = key(engine.course)
    if name in _loaded:
        return _loaded[name]
    path = os.path.join(CACHE, name + ".json")
    try:
        with open(path) as f:
            found = CourseStates.from_json(json.load(f))
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        found = build(engine)
        # A pass that stopped is kept machine-wide only where the key explains it (no
        # br_netfilter): a failure of another kind may pass next time, and a cached short
        # pass would leave every later lesson ungradable until the code or lessons change.
        if not found.stopped or not os.path.isdir("/proc/sys/net/bridge"):
            os.makedirs(CACHE, mode=0o755, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp"
            with open(tmp, "w") as f:
                json.dump(found.to_json(), f)
            os.replace(tmp, path)
    _loaded[name] = found
    return found


def build(engine: Engine) -> CourseStates:
    """Apply the whole course, and each exercise's solution at its lesson's end, in a hidden lab."""
    lab = Lab(engine.lab.name, root=ROOT)
    lab.lock(build=False)
    try:
        reset_lab(lab)  # a reference left behind by a killed build
    finally:
        lab.close()
    lab.lock()
    try:
        ref = Engine(lab, engine.course)
        ref.sole_writer = True
        keys = sysctl_keys(engine.course)

        def now() -> Snapshot:
            return lab.snapshot(caches=False, sysctls=keys)

        found = CourseStates(positions=[now()])
        for lesson in engine.course.lessons:
            try:
                build_lesson(ref, lesson, found, now)
            except KernelError as exc:  # this kernel cannot run the lesson: keep the states before it
                del found.positions[engine.course.start_of(lesson) + 1:]
                del found.commands[engine.course.start_of(lesson):]
                found.stopped = _("lesson {number} cannot run here: {error}").format(number=lesson.number,
                                                                                    error=exc)
                break
        ref.journal.close()
        return found
    finally:
        try:
            reset_lab(lab)
        finally:
            lab.close()


def build_lesson(ref: Engine, lesson: Lesson, found: CourseStates, now: Callable[[], Snapshot]) -> None:
    """One lesson's steps, then its exercise's solution, each state noted in `found`."""
    for step in lesson.steps:
        done: list[CommandState] = []

        def noted(count: int, total: int, step=step, done=done) -> None:
            command = step.commands[count - 1]
            done.append(CommandState(command.where, command.text, now()))

        ref.apply_next(run_checks=False, show=False, progress=noted)
        found.commands.append(done)
        found.positions.append(done[-1].after if done else now())
    if lesson.exercise is not None:
        solved = []
        for command in lesson.exercise.solution:
            ref.run_own(f"{command.where}# {command.text}")
            solved.append(CommandState(command.where, command.text, now()))
        found.exercises[lesson.exercise.ref] = solved
        ref.follow_student()
