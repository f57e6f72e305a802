"""The engine: a course applied to a lab, one step at a time, and undone exactly.

The lab's journal is the course position: the list of steps applied so far, each with
the actions it ran and their undos. An action is written to the journal before it is
applied, so an interruption at any moment leaves a record of everything the lab did. A
step is atomic: if applying it fails or is interrupted (Ctrl-C, SIGTERM), the actions it
already ran are undone before the error goes on.

The engine never prints: every method returns results that render themselves.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from netstep import checks as checks_mod
from netstep import executor
from netstep.actions import (
    Action,
    AddLink,
    AddNetns,
    DeleteLink,
    DeleteNetns,
    Iptables,
    MoveLink,
    Restore,
    SetLinkUp,
    Sysctl,
)
from netstep.checks import Check, CheckResult
from netstep.diff import Diff, diff
from netstep.errors import NetstepError
from netstep.lab import Lab
from netstep.lessons import Command, Course, Lesson, Step, parse_lines
from netstep.render import RenderMixin
from netstep.snapshot import Snapshot, from_json, to_json


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

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks)


@dataclass
class OwnResult(RenderMixin):
    """What a student's own commands did."""

    commands: list[Command]
    diff: Diff
    elapsed: float = 0.0


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


class Journal:
    """The applied steps and the student's own commands, as an append-only log.

    Each change is one JSON line appended before (or right after) the kernel change it
    records, so a kill at any moment leaves a readable journal; loading replays the lines
    and rewrites them compactly. No fsync: a machine that goes down takes the lab's
    namespaces with it, while a killed process leaves its writes in the page cache.
    """

    def __init__(self, path: str, *, compact: bool = False) -> None:
        """Read the journal at `path`; `compact` rewrites it (only with the lab's lock held)."""
        self.path = path
        self.steps: list[dict] = []
        self.own: list[dict] = []  # commands a student ran by hand through the engine
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # a write cut short by a kill: that change never started
                    if line.strip():
                        self._replay(json.loads(line))
            if compact:
                self._compact()
        self._file = None

    def _replay(self, op: dict) -> None:
        kind = op["op"]
        if kind == "begin":
            self.steps.append({"index": op["index"], "ref": op["ref"], "entries": [], "complete": False})
        elif kind == "do":
            self.steps[-1]["entries"].append({"do": op["action"], "undo": None})
        elif kind == "undo":
            self._set_undo(self.steps[-1]["entries"][-1], op)
        elif kind == "complete":
            self.steps[-1]["complete"] = True
        elif kind == "drop":
            self.steps[-1]["entries"].pop()
        elif kind == "pop":
            self.steps.pop()
        elif kind == "own":
            self.own.append({"do": op["action"], "undo": None, "text": op["text"], "where": op["where"]})
        elif kind == "own-undo":
            self._set_undo(self.own[-1], op)
        elif kind == "own-drop":
            self.own.pop()

    @staticmethod
    def _set_undo(entry: dict, op: dict) -> None:
        entry["undo"] = op["undo"]
        for flag in ("prepared", "failed"):  # prepared: told before the change, which may not have happened
            if op.get(flag):
                entry[flag] = True
            else:
                entry.pop(flag, None)

    def _compact(self) -> None:
        lines = []
        for step in self.steps:
            lines.append({"op": "begin", "index": step["index"], "ref": step["ref"]})
            for entry in step["entries"]:
                lines.append({"op": "do", "action": entry["do"]})
                if entry["undo"] is not None or entry.get("failed"):
                    lines.append({"op": "undo", "undo": entry["undo"], **_flags(entry)})
            if step["complete"]:
                lines.append({"op": "complete"})
        for entry in self.own:
            lines.append({"op": "own", "action": entry["do"], "text": entry["text"], "where": entry["where"]})
            if entry["undo"] is not None:
                lines.append({"op": "own-undo", "undo": entry["undo"], **_flags(entry)})
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        os.replace(tmp, self.path)

    def _log(self, op: dict) -> None:
        self._replay(op)
        if self._file is None:
            self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the journal's life)
        self._file.write(json.dumps(op) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def begin(self, index: int, ref: str) -> dict:
        self._log({"op": "begin", "index": index, "ref": ref})
        return self.steps[-1]

    def intend(self, action: Action) -> None:
        self._log({"op": "do", "action": action.to_dict()})

    def prepare(self, undo: Action) -> None:
        """The undo of the action in progress, known before its kernel change."""
        self._log({"op": "undo", "undo": undo.to_dict(), "prepared": True})

    def done(self, undo: Action) -> None:
        self._log({"op": "undo", "undo": undo.to_dict()})

    def failed(self) -> None:
        """The action in progress failed: its prepared undo must not run (what is there may
        not be the lab's), and a reset says to check it (it may have changed something)."""
        self._log({"op": "undo", "undo": None, "failed": True})

    def complete(self) -> None:
        self._log({"op": "complete"})

    def drop(self) -> None:
        """Forget the last step's newest action (it was undone)."""
        self._log({"op": "drop"})

    def pop(self) -> None:
        """Forget the last step (it was undone)."""
        self._log({"op": "pop"})

    def own_intend(self, action: Action, text: str, where: str) -> None:
        self._log({"op": "own", "action": action.to_dict(), "text": text, "where": where})

    def own_prepare(self, undo: Action) -> None:
        self._log({"op": "own-undo", "undo": undo.to_dict(), "prepared": True})

    def own_done(self, undo: Action) -> None:
        self._log({"op": "own-undo", "undo": undo.to_dict()})

    def own_drop(self) -> None:
        self._log({"op": "own-drop"})


def _flags(entry: dict) -> dict:
    return {flag: True for flag in ("prepared", "failed") if entry.get(flag)}


class Engine:
    """A course on a lab. The lab must be locked (used as a context manager) while in use."""

    def __init__(self, lab: Lab, course: Course | None = None) -> None:
        self.lab = lab
        self.course = self._course_for(lab, course)
        self.journal = Journal(lab.journal_path, compact=True)
        self._last_snapshot: Snapshot | None = None
        self._moved = False  # True once this engine made a move: its last state is current
        if self.journal.steps and not self.journal.steps[-1]["complete"]:
            ref = self.journal.steps[-1]["ref"]
            raise NetstepError(
                f"Lab '{lab.name}' was stopped in the middle of step {ref} and may be half-built. "
                f"Run `python -m netstep --lab {lab.name} reset` to remove it and start over."
            )
        self._check_journal()

    @staticmethod
    def _course_for(lab: Lab, course: Course | None) -> Course:
        """The course, in the variant the lab was built with (lesson 4 with N containers)."""
        from netstep.scale import built_with

        path = os.path.join(lab.dir, "course.json")
        built = built_with(lab)
        has_steps = bool(Journal(lab.journal_path).steps)
        if course is None:
            course = Course.load()
            return course.with_containers(built) if built else course
        if has_steps and course.containers != built:
            was = f"with --containers {built}" if built else "without --containers"
            raise NetstepError(f"Lab '{lab.name}' was built {was}: run it the same way, or `reset` it first.")
        if course.containers:
            with open(path, "w") as f:
                json.dump({"containers": course.containers}, f)
        elif os.path.exists(path):
            os.unlink(path)
        return course

    def _check_journal(self) -> None:
        steps = self.course.steps
        for i, record in enumerate(self.journal.steps):
            if record["index"] != i or i >= len(steps) or record["ref"] != steps[i].ref:
                raise NetstepError(
                    f"Lab '{self.lab.name}' was built from another version of the lessons. "
                    f"Run `python -m netstep --lab {self.lab.name} reset` to start it over."
                )

    # -- where we are --------------------------------------------------------------------

    @property
    def position(self) -> int:
        """How many steps of the course are applied."""
        return len(self.journal.steps)

    @property
    def steps(self) -> list[Step]:
        return self.course.steps

    def current_step(self) -> Step | None:
        return self.steps[self.position - 1] if self.position else None

    def next_step(self) -> Step | None:
        return self.steps[self.position] if self.position < len(self.steps) else None

    # -- moving ------------------------------------------------------------------------------

    def apply_next(self, *, run_checks: bool = True, show: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> StepResult:
        """Apply the next step, run its checks and read what it shows (`show`: for a person).

        `progress(done, total)` hears of each action (for large labs).
        """
        step = self.next_step()
        if step is None:
            raise NetstepError("The course is finished: there is no next step. `rollback --all` starts over.")
        with SignalGuard() as guard:
            return self._apply(step, guard, run_checks, show, progress)

    def _apply(self, step: Step, guard: SignalGuard, run_checks: bool, show: bool, progress) -> StepResult:
        started = time.monotonic()
        names, rules_of = self._touched(step.actions)
        before = self._before(names, rules_of)
        record = self.journal.begin(self.position, step.ref)
        try:
            for done, action in enumerate(step.actions, 1):
                guard.checkpoint()  # an interrupted step is undone, never left half-applied
                self.journal.intend(action)
                try:
                    undo = executor.apply(self.lab, action, ready=self.journal.prepare)
                except BaseException:
                    self.journal.failed()
                    raise
                self.journal.done(undo)
                if progress is not None:
                    progress(done, len(step.actions))
        except BaseException:
            self._undo_entries(record)
            self.journal.pop()
            raise
        self.journal.complete()
        after = self._moment(names, rules_of)
        self._remember(after)
        result = StepResult(step, "apply", diff(before, after, title=step.title), internet=self.lab.internet)
        if run_checks:
            result.checks = self.run_checks(step.checks)
        if run_checks and show:
            result.shown = self._shown(step)
        result.elapsed = time.monotonic() - started
        return result

    def undo_last(self) -> StepResult:
        if not self.position:
            raise NetstepError("Nothing to roll back: no step of the course is applied.")
        step = self.steps[self.position - 1]
        started = time.monotonic()
        record = self.journal.steps[-1]
        undos = [Action.from_dict(e["undo"]) for e in record["entries"] if e["undo"] is not None]
        with SignalGuard():  # a rollback, once begun, finishes
            names, rules_of = self._touched(undos)
            before = self._before(names, rules_of)
            self._undo_entries(record)
            self.journal.pop()
            after = self._moment(names, rules_of)
        self._remember(after)
        result = StepResult(step, "undo", diff(before, after, title=f"undo: {step.title}"), internet=self.lab.internet)
        result.elapsed = time.monotonic() - started
        return result

    def _undo_entries(self, record: dict) -> None:
        """Undo a step's applied actions, newest first, keeping the journal in step."""
        with SignalGuard():
            while record["entries"]:
                entry = record["entries"][-1]
                if entry["undo"] is not None:
                    executor.apply(self.lab, Action.from_dict(entry["undo"]))
                self.journal.drop()

    def goto(self, position: int, *, run_checks: bool = False) -> Iterator[StepResult]:
        """Apply or undo steps until `position` steps are applied, yielding each move.

        The student's own commands (an exercise, say) are taken back first: a course
        position is exactly the state the course reaches there.
        """
        if not 0 <= position <= len(self.steps):
            raise NetstepError(f"There is no position {position} in the course.")
        if self.journal.own:
            self.undo_own()
        while self.position > position:
            yield self.undo_last()
        while self.position < position:
            yield self.apply_next(run_checks=run_checks)

    def start_lesson(self, lesson: Lesson) -> list[StepResult]:
        """Bring the lab to the state `lesson` starts from."""
        return list(self.goto(self.course.start_of(lesson)))

    def rollback_lesson(self) -> list[StepResult]:
        """Undo the steps of the current lesson (or of the previous one, at its start)."""
        step = self.current_step()
        if step is None:
            raise NetstepError("Nothing to roll back: no step of the course is applied.")
        return list(self.goto(self.course.start_of(step.lesson)))

    def rollback_all(self) -> list[StepResult]:
        return list(self.goto(0))

    # -- the student's own commands ---------------------------------------------------------

    def run_own(self, text: str, where: str = "host") -> OwnResult:
        """Apply commands a student typed (`host# ip link ...` lines, or bare commands run in
        `where`), outside the course: they are journaled and `undo_own` takes them back."""
        commands = parse_lines(text, where)
        started = time.monotonic()
        before = self._snapshot()
        done: list[Command] = []
        try:
            with SignalGuard():
                for command in commands:
                    self.journal.own_intend(command.action, command.text, command.where)
                    try:
                        undo = executor.apply(self.lab, command.action, ready=self.journal.own_prepare)
                    except BaseException:
                        self.journal.own_drop()
                        raise
                    self.journal.own_done(undo)
                    done.append(command)
        finally:
            after = self._snapshot()
            self._remember(after)
        return OwnResult(done, diff(before, after, title="your commands"), time.monotonic() - started)

    def undo_own(self) -> Diff:
        """Take back every command run with `run_own`, newest first."""
        before = self._snapshot()
        with SignalGuard():
            while self.journal.own:
                entry = self.journal.own[-1]
                if entry["undo"] is not None:
                    try:
                        executor.apply(self.lab, Action.from_dict(entry["undo"]))
                    except NetstepError:
                        if not entry.get("prepared"):  # else a kill came before its change: nothing to undo
                            raise
                self.journal.own_drop()
        after = self._snapshot()
        self._remember(after)
        return diff(before, after, title="your commands, undone")

    # -- looking ---------------------------------------------------------------------------------

    def run_checks(self, checks: list[Check]) -> list[CheckResult]:
        if not checks:
            return []
        for check in checks:
            self.lab.require(check.source)
        return checks_mod.run(checks, self.lab.path_of, self.lab.internet)

    def final_checks(self, lesson: Lesson) -> list[Check]:
        """The checks that describe a finished lesson: those of its last step that has any."""
        for step in reversed(lesson.steps):
            if step.checks:
                return step.checks
        return []

    def _sysctl_keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(a.key for s in self.steps for a in s.actions if hasattr(a, "key")))

    def _snapshot(self, names: list[str] | None = None, *, caches: bool = False) -> Snapshot:
        return self.lab.snapshot(names, caches=caches, sysctls=self._sysctl_keys())

    def snapshot(self, names: list[str] | None = None) -> Snapshot:
        return self._snapshot(names, caches=True)

    def _touched(self, actions: list[Action]) -> tuple[list[str], set[str]]:
        """The namespaces `actions` can change, and those whose rules or sysctls they can change.

        A step is diffed over these only: the namespaces its actions name, and the other
        end of each veth whose state they change (a veth going down, away or gone takes its
        peer's carrier, so the peer's routes turn `linkdown`). Enslaving a veth or giving it
        an address does not reach the peer: 30 containers plugged into a bridge read the
        host alone.
        """
        names: set[str] = set()
        rules_of: set[str] = set()
        carriers: dict[str, set[str] | None] = {}  # ns -> veths whose peers change (None: all)
        for action in actions:
            names.add(action.ns)
            if isinstance(action, MoveLink):
                names.add(action.to)
            elif isinstance(action, AddLink) and action.peer_ns:
                names.add(action.peer_ns)
            elif isinstance(action, (AddNetns, DeleteNetns)):
                names.add(action.name)
            elif isinstance(action, (Iptables, Sysctl)):
                rules_of.add(action.ns)
            elif isinstance(action, Restore):  # rebuilds whatever its image holds: every peer may change
                image = action.image
                rebuilt = {image.get("netns"), *(end["ns"] for link in image.get("links", ())
                                                 for end in (link, link.get("peer")) if end)} - {None}
                names.update(rebuilt, image.get("routes", {}))
                carriers.update(dict.fromkeys(rebuilt))
            if isinstance(action, (SetLinkUp, DeleteLink, MoveLink)):
                wanted = carriers.setdefault(action.ns, set())
                if wanted is not None:
                    wanted.add(action.name)
            elif isinstance(action, DeleteNetns):
                carriers[action.name] = None
        known = self._last()
        for ns in list(names):
            if ns not in carriers:
                continue
            wanted = carriers[ns]
            state = known.namespaces.get(ns)
            for link in state.links if state else ():
                if link.peer and "@" in link.peer and (wanted is None or link.name in wanted):
                    names.add(link.peer.split("@", 1)[1])
        order = self.lab.namespace_names()
        return sorted(names, key=lambda n: order.index(n) if n in order else len(order)), rules_of

    def _moment(self, names: list[str], rules_of: set[str]) -> Snapshot:
        """The configuration of `names`, reading iptables only in `rules_of`."""
        return self.lab.snapshot(names, caches=False, sysctls=self._sysctl_keys(), rules_of=rules_of,
                                 known=self._last())

    def _before(self, names: list[str], rules_of: set[str]) -> Snapshot:
        """The state a move starts from. Right after this engine's own last move nothing else
        has changed the lab's configuration (checks only add to caches), so that state is
        reused; otherwise (a new process: a student may have worked by hand) it is read."""
        if self._moved:
            last = self._last()
            return Snapshot({n: last.namespaces[n] for n in names if n in last.namespaces})
        return self._moment(names, rules_of)

    def _last(self) -> Snapshot:
        """The lab's configuration after the last move (read in full the first time)."""
        if self._last_snapshot is None:
            try:
                with open(self.lab.last_snapshot_path) as f:
                    self._last_snapshot = from_json(json.load(f))
            except FileNotFoundError:
                self._last_snapshot = self._snapshot()
        return self._last_snapshot

    def _remember(self, moment: Snapshot) -> None:
        """Fold the state after a move into the lab's last known state (for `diff`)."""
        merged = {name: state for name, state in self._last().namespaces.items()
                  if self.lab.has_namespace(name) and name not in moment.namespaces}
        merged.update(moment.namespaces)
        self._moved = True
        order = self.lab.namespace_names()
        present = sorted((n for n in merged if n in order), key=order.index)
        self._last_snapshot = Snapshot({n: merged[n] for n in present})
        tmp = self.lab.last_snapshot_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(to_json(self._last_snapshot)))  # dumps: C encoder; dump is pure Python
        os.replace(tmp, self.lab.last_snapshot_path)

    def remember_all(self) -> None:
        """Read the whole lab as the last known state (after work done outside the engine)."""
        self._remember(self._snapshot())

    def changes_since_last_step(self) -> Diff:
        """What changed since the last step: the student's own work, typically."""
        return diff(self._last(), self._snapshot(), title="since the last step")

    def _shown(self, step: Step) -> Snapshot | None:
        names = list(dict.fromkeys(ns for show in step.shows for ns in show.namespaces))
        names = [n for n in names if self.lab.has_namespace(n)]
        return self.snapshot(names) if names else None


from netstep.reset import reset_lab  # noqa: E402, F401 (its old home; netstep.reset keeps it light)
