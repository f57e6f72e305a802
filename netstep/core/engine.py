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
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import replace
from functools import partial

from netstep.core import ownership
from netstep.core.journal import Journal
from netstep.core.lab import Lab
from netstep.core.moments import Moments
from netstep.core.reconcile import Change, Reconciliation, reconcile, same
from netstep.core.results import OwnResult, StepResult
from netstep.core.signals import SignalGuard
from netstep.course.actions import Action, Restore
from netstep.course.checks import Check, CheckResult
from netstep.course.course import Course
from netstep.course.lessons import Command, Lesson, Step, parse_lines
from netstep.course.scale import built_with
from netstep.errors import NetstepError
from netstep.kernel import servers
from netstep.ops import apply as executor
from netstep.ops import files, probes
from netstep.ops.trace import Trace, trace
from netstep.ops.witness import Witness
from netstep.state.diff import Diff, diff
from netstep.state.evidence import RouteLookups, RuleCount, moved_since, read_rule_counts
from netstep.state.snapshot import CACHE_PARTS, COUNT_PARTS, Snapshot, from_json, to_json

# Actions whose work no snapshot of the lab holds (processes, the lab's files): a student's
# own are taken back from the journal, not by reconciling the lab's state.
UNSEEN = ("HttpServer", "DnsServer", "StopServers", "EtcFile")


class Engine:
    """A course on a lab. The lab must be locked (used as a context manager) while in use."""

    def __init__(self, lab: Lab, course: Course | None = None) -> None:
        self.lab = lab
        self.course = self._course_for(lab, course)
        self.journal = Journal(lab.journal_path, compact=True)
        self.moments = Moments(lab, self._sysctl_keys)
        # True while nothing but this engine can change the lab between its moves (`run`'s loop,
        # the hidden reference lab): a move then trusts its last state instead of reading the lab
        # for the student's changes. A notebook or the demo leaves it False: a terminal beside
        # them may be typing.
        self.sole_writer = False
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
        path = os.path.join(lab.dir, "course.json")
        built = built_with(lab)
        has_steps = bool(Journal(lab.journal_path).steps)
        if course is None:
            course = Course.load(mode="host" if lab.host_mode else "sandbox")
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
                   progress: Callable[[int, int], None] | None = None, read: bool = True) -> StepResult:
        """Apply the next step, run its checks and read what it shows (`show`: for a person).

        `progress(done, total)` hears of each action (for large labs). Without `read` no
        state is read and the result has no diff (see `skip_to`).
        """
        step = self.next_step()
        if step is None:
            raise NetstepError("The course is finished: there is no next step. `rollback --all` starts over.")
        followed = self.follow_student()
        with SignalGuard() as guard:
            result = self._apply(step, guard, run_checks, show, progress, read)
        result.reconciled = followed
        return result

    def _forward(self, *, run_checks: bool, read: bool) -> StepResult:
        """One step forward within a move that has already followed the student."""
        step = self.next_step()
        assert step is not None
        with SignalGuard() as guard:
            return self._apply(step, guard, run_checks, True, None, read)

    def _apply(self, step: Step, guard: SignalGuard, run_checks: bool, show: bool, progress,
               read: bool = True) -> StepResult:
        started = time.monotonic()
        if read:
            names, rules_of = self.moments.touched(step.actions)
            before = self.moments.before(names, rules_of)
            self.moments.changing()
        else:
            self.moments.lapse()
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
        if read:
            after = self.moments.moment(names, rules_of)
            self.moments.remember(after)
        change = diff(before, after, title=step.title) if read else Diff(title=step.title)
        result = StepResult(step, "apply", change, internet=self.lab.internet)
        counts = self._counts(step) if run_checks and show else {}
        if run_checks:
            result.checks = self.run_checks(step.checks)
        if run_checks and show:
            result.shown = self._shown(step, counts)
        result.elapsed = time.monotonic() - started
        return result

    def undo_last(self, *, read: bool = True) -> StepResult:
        """Undo the last applied step; without `read`, reading no state (see `skip_to`)."""
        if not self.position:
            raise NetstepError("Nothing to roll back: no step of the course is applied.")
        started = time.monotonic()
        before = self.moments.last() if self.moments.moved else None
        followed = self.follow_student()
        if followed.changes:  # the student's own work (an exercise, say) is what `back` takes back first
            result = self._followed(followed, before)
            result.elapsed = time.monotonic() - started
            return result
        result = self._back(read=read)
        result.reconciled = followed  # (only what it left alone, in host mode: named)
        return result

    def _back(self, *, read: bool = True) -> StepResult:
        """One step back within a move that has already followed the student."""
        step = self.steps[self.position - 1]
        started = time.monotonic()
        record = self.journal.steps[-1]
        if record.get("adopted"):
            return self._undo_adopted(step, record, started)
        undos = [Action.from_dict(e["undo"]) for e in record["entries"] if e["undo"] is not None]
        title = f"undo: {step.title}"
        with SignalGuard():  # a rollback, once begun, finishes
            if not read:
                self.moments.lapse()
                self._undo_entries(record)
                self.journal.pop()
                return StepResult(step, "undo", Diff(title=title), internet=self.lab.internet)
            names, rules_of = self.moments.touched(undos)
            before = self.moments.before(names, rules_of)
            self.moments.changing()
            self._undo_entries(record)
            self.journal.pop()
            after = self.moments.moment(names, rules_of)
        self.moments.remember(after)
        result = StepResult(step, "undo", diff(before, after, title=title), internet=self.lab.internet)
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

    def goto(self, position: int, *, run_checks: bool = False, read: bool = True) -> Iterator[StepResult]:
        """Apply or undo steps until `position` steps are applied, yielding each move.

        The student's own commands (an exercise, say) are taken back first: a course
        position is exactly the state the course reaches there.
        """
        if not 0 <= position <= len(self.steps):
            raise NetstepError(f"There is no position {position} in the course.")
        before = self.moments.last() if self.moments.moved else None
        followed = self.follow_student()
        if followed.changes:
            yield self._followed(followed, before)
            followed = Reconciliation()
        while self.position != position:
            result = self._back(read=read) if self.position > position else self._forward(run_checks=run_checks,
                                                                                           read=read)
            result.reconciled, followed = followed, Reconciliation()  # (what host mode left alone: named once)
            yield result

    def persist(self) -> None:
        """Write the lab's last known state for the next process now. It is written as the
        lab's lock is let go anyway; a front end that holds the lock for a whole session (a
        notebook, the demo) calls this after each move, so that a kill or a restarted
        kernel does not lose it (`diff` compares the lab with it)."""
        self.moments.save()

    def skip_to(self, position: int) -> None:
        """Move to `position` as `goto` does when nobody is shown the moves (the way to a
        lesson's start): no state is read for a diff on the way, and the lab is read once
        at the end, for the diff of the move after."""
        moved = False
        for _ in self.goto(position, read=False):
            moved = True
        if moved:
            self.moments.settle()

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
        """Undo every step. In host mode the lab's stand-in client goes too, so that the
        machine is as it was before the course (the lab makes it again when next used)."""
        results = list(self.goto(0))
        if self.lab.standin.wanted:
            self.lab.remove_standin()
            self.moments.forget()
        return results

    # -- the student's own commands ---------------------------------------------------------

    def run_own(self, text: str, where: str = "host") -> OwnResult:
        """Apply commands a student typed (`host# ip link ...` lines, or bare commands run in
        `where`), outside the course: they are journaled and `undo_own` takes them back."""
        commands = parse_lines(text, where)
        started = time.monotonic()
        before = self.moments.read()
        self.keep_position()
        self.moments.changing()
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
            after = self.moments.read()
            self.moments.remember(after)
        return OwnResult(done, diff(before, after, title="your commands"), time.monotonic() - started)

    def undo_own(self) -> Diff:
        """Take back the student's own work: every command run with `run_own`, and what they
        typed anywhere else in the lab's namespaces."""
        before = self.moments.read()
        self.follow_student()
        return diff(before, self.moments.last(), title="your commands, undone")

    # -- following the student -----------------------------------------------------------------

    @property
    def _position_path(self) -> str:
        return os.path.join(self.lab.dir, "position.json")

    def _keep_position(self, state: Snapshot) -> None:
        """Write the course position's state before the student's own commands change the lab."""
        tmp = self._position_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(to_json(state), f)
        os.replace(tmp, self._position_path)

    def keep_position(self) -> None:
        """The student's own work is about to change the lab: keep the position's state first,
        so the next course move brings the lab back to it."""
        if not self.journal.own and not os.path.exists(self._position_path):
            self._keep_position(self.position_state())

    def settle_on(self, state: Snapshot, *, position: bool) -> None:
        """The lab now holds `state` (read by the caller). With `position`, that state is the
        course position's (a step the student did was adopted): their own work is no longer
        theirs to take back."""
        if position:
            while self.journal.own:
                self.journal.own_drop()
            if os.path.exists(self._position_path):
                os.unlink(self._position_path)
        self.moments.remember(state)

    def position_state(self) -> Snapshot:
        """The lab's configuration at its course position: as the last move left it, before
        any command the student ran through netstep (a notebook's `%%netstep`) or typed in
        a shell. Where nothing recorded it (no move yet), the lab as it is now."""
        known = self.known_position_state()
        return known if known is not None else self.moments.last()

    def known_position_state(self) -> Snapshot | None:
        """The position's state as recorded by a move, or None where no move recorded one."""
        try:
            with open(self._position_path) as f:
                return from_json(json.load(f))
        except FileNotFoundError:
            pass
        if self.moments.moved or os.path.exists(self.lab.last_snapshot_path):
            return self.moments.last()
        return None

    def student_changed(self) -> bool:
        """The lab differs from its course position: the student typed something since (in
        a namespace netstep did not make, only what the lab made there counts)."""
        if not self.sole_writer:
            self.lab.notice_outside_changes()
        if self.sole_writer and self.moments.moved and not self.journal.own \
                and not os.path.exists(self._position_path):
            return False
        owners = self._owners()
        return not same(ownership.restrict(self.moments.read(), owners),
                        ownership.restrict(self.position_state(), owners))

    def _owners(self) -> dict[str, ownership.Owned]:
        """What the lab made in each namespace it did not make (host mode's lab host, a lent
        upstream), from the journal: its steps' actions and the student's own through netstep."""
        own = self.lab.own_namespaces()
        foreign = [ns for ns in self.lab.namespace_names() if ns not in own]
        if not foreign:
            return {}
        actions = [Action.from_dict(e["do"]) for record in self.journal.steps for e in record["entries"]]
        actions += [Action.from_dict(e["do"]) for e in self.journal.own]
        return ownership.owned(actions, foreign, self.lab.rule_mark)

    def follow_student(self) -> Reconciliation:
        """Bring the lab back to its course position if the student changed it, naming what
        was taken away and put back, and stop the servers they started in the lab's own
        namespaces. Rules and routes are found by content, so a move never fails on an
        index the student's own rule shifted. Host mode's lab host is the machine's own
        namespace: there only what the lab made is reconciled, and the student's other
        changes are named (`kept`), never removed."""
        if self.sole_writer and self.moments.moved and not self.journal.own \
                and not os.path.exists(self._position_path):
            return Reconciliation()  # this process's own last move left the lab: nothing typed since
        followed = Reconciliation(self._stop_student_servers())
        if not self.sole_writer:
            self.lab.notice_outside_changes()
        target = self.position_state()
        actual = self.moments.read()
        read, adjust = self.moments.read, None
        owners = self._owners()
        if owners:
            taken = self._undo_own_in(owners)
            if taken:
                followed.changes += taken
                actual = self.moments.read()
            followed.kept = ownership.others(actual, target, owners)
            whole, target, actual = target, ownership.restrict(target, owners), ownership.restrict(actual, owners)

            def read() -> Snapshot:
                return ownership.restrict(self.moments.read(), owners)

            def adjust(action: Action) -> Action:
                return ownership.placed(action, whole, self.moments.read() if isinstance(action, Restore) else whole,
                                        owners)
        if not same(actual, target):
            followed.changes += self.land(target, actual=actual, read=read, adjust=adjust).changes
        actual = self.moments.read()
        self._undo_unseen()
        while self.journal.own:
            self.journal.own_drop()
        for path in (self._position_path, os.path.join(self.lab.dir, "challenge.json")):  # (a challenge's break
            if os.path.exists(path):  # is the student's to take back: netstep.core.challenges)
                os.unlink(path)
        self.moments.remember(actual)
        return followed

    def _undo_own_in(self, foreign: dict[str, ownership.Owned]) -> list[Change]:
        """Take back, newest first and by their own recorded undos, the student's commands
        run through netstep (a notebook's `%%netstep`) in a namespace netstep did not make:
        they are netstep's doing, yet a reconciliation there sees only what the lab's
        steps made (a `set eth0 down` of the machine's own link, say)."""
        out = []
        for entry in reversed(self.journal.own):
            done, undo = Action.from_dict(entry["do"]), entry.get("undo")
            if done.ns in foreign and undo and undo.get("type") not in UNSEEN:
                executor.apply(self.lab, Action.from_dict(undo))
                out.append(Change(None, True, f"{done.ns}# {done.command()}"))
        return out

    def land(self, target: Snapshot, *, actual: Snapshot | None = None,
             read: Callable[[], Snapshot] | None = None,
             adjust: Callable[[Action], Action] | None = None) -> Reconciliation:
        """Reconcile the lab to `target`, or, if that cannot complete, back to where it was
        (`actual`, read now if not given): never left in between without saying so, and
        the error names `reset`, the way out that always works. `adjust` sees each action
        before it is applied (host mode places a rule it puts back among all the others)."""
        read = read or self.moments.read
        apply = partial(executor.apply, self.lab)
        actual = actual if actual is not None else read()
        position = self.position_state()
        self.moments.changing()
        with SignalGuard():  # once begun, it finishes (or goes back)
            try:
                return reconcile(read, apply, target, actual=actual, adjust=adjust)
            except (NetstepError, OSError) as exc:
                cause = exc
            try:
                reconcile(read, apply, actual, adjust=adjust)
                where = "The lab is back as it was before this command"
            except (NetstepError, OSError) as exc:
                where = f"Bringing it back as it was failed too ({exc}), so it may be half-way"
            finally:  # the position stays known: the next move still knows where to bring the lab
                if not os.path.exists(self._position_path):
                    self._keep_position(position)
                self.moments.remember(self.moments.read())
        raise NetstepError(f"netstep could not bring the lab to where the course stands: {cause} {where}. "
                           f"`python -m netstep --lab {self.lab.name} reset` removes the lab whatever state it "
                           "is in; `start` then rebuilds any lesson.") from cause

    @property
    def _kept_servers_path(self) -> str:
        return os.path.join(self.lab.dir, "kept-servers.json")

    def _kept_servers(self) -> list[list]:
        """[pid, command] of the servers a step the student did by hand started (adopted with it)."""
        try:
            with open(self._kept_servers_path) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return []

    def keep_student_servers(self) -> None:
        """The student's servers now belong to the position (a step they did was adopted):
        later moves stop them only when they undo that step."""
        kept = [[s.pid, s.command] for s in self.lab.student_servers()]
        tmp = self._kept_servers_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(kept, f)
        os.replace(tmp, self._kept_servers_path)

    def _stop_student_servers(self, *, kept_too: bool = False) -> list[Change]:
        """Stop what the student started that listens in the lab's own namespaces (a kept
        server of an adopted step only with `kept_too`), as changes that name each."""
        kept = {(pid, command) for pid, command in self._kept_servers()}
        found = [s for s in self.lab.student_servers() if kept_too or (s.pid, s.command) not in kept]
        if kept_too and os.path.exists(self._kept_servers_path):
            os.unlink(self._kept_servers_path)
        if not found:
            return []
        self.lab.stop_student_servers(found)
        return [Change(None, True, f"stopped {s.describe()}") for s in found]

    def _undo_unseen(self) -> None:
        """Take back the student's own commands whose work no snapshot holds, so no
        reconciliation can: the servers they started or stopped and the lab's files they
        wrote, last first, from the journal."""
        for entry in reversed(self.journal.own):
            undo = entry.get("undo")
            if undo and undo.get("type") in UNSEEN:
                with suppress(NetstepError):  # (a server the student stopped by hand is gone already)
                    executor.apply(self.lab, Action.from_dict(undo))

    def _followed(self, followed: Reconciliation, before: Snapshot | None) -> StepResult:
        step = self.current_step() or self.steps[0]
        return StepResult(step, "undo", diff(before or self.moments.last(), self.moments.last(),
                                             title="your own changes, taken back"),
                          internet=self.lab.internet, reconciled=followed)

    def _undo_adopted(self, step: Step, record: dict, started: float) -> StepResult:
        """Undo a step the student did by hand: bring the lab to the state before it, as it
        was kept when the step was adopted."""
        before = self.moments.last()
        target = from_json(record["before"])
        self._stop_student_servers(kept_too=True)
        with SignalGuard():
            self.land(target)
            self.journal.pop()
        after = self.moments.read()
        self.moments.remember(after)
        result = StepResult(step, "undo", diff(before, after, title=f"undo: {step.title}"),
                            internet=self.lab.internet)
        result.elapsed = time.monotonic() - started
        return result

    # -- looking ---------------------------------------------------------------------------------

    def run_checks(self, checks: list[Check]) -> list[CheckResult]:
        if not checks:
            return []
        for check in checks:
            self.lab.require(check.source)
        checks = [c.settled(self.lab.read_sysctl(c.when.ns, c.when.key)) if c.when else c for c in checks]
        witness = Witness(self.lab, checks, self.moments.last(), RouteLookups(self.lab.ipr))
        try:
            return probes.run(checks, self.lab.path_of, self.lab.internet, witness,
                              resolv=lambda ns: files.resolv_conf(self.lab.dir, ns))
        finally:
            witness.close()

    def trace(self, source: str, target: str, *, port: int | None = None, kind: str | None = None,
              size: int | None = None) -> Trace:
        """One probe from `source` to `target`, and what every namespace's kernel did with it
        (`kind` "dns": `target` is a name, looked up as a program in `source` does)."""
        return trace(self.lab, source, target, port=port, kind=kind, size=size)

    def final_checks(self, lesson: Lesson) -> list[Check]:
        """The checks that describe a finished lesson: those of its last step that has any."""
        for step in reversed(lesson.steps):
            if step.checks:
                return step.checks
        return []

    def _sysctl_keys(self) -> tuple[str, ...]:
        return self.course.sysctl_keys()

    def snapshot(self, names: list[str] | None = None) -> Snapshot:
        return self.moments.read(names, caches=True)

    def servers(self) -> dict[str, list[str]]:
        """The lab's own servers (the lessons' HTTP and DNS servers) by namespace, as a
        picture shows them: "http 172.18.0.10:5000", "dns 10.0.2.2:53"."""
        out: dict[str, list[str]] = {}
        for _pid, options in servers.running(self.lab.dir):
            kind = "dns" if options["module"] == servers.DNS else "http"
            port = options.get("--port", "53")
            out.setdefault(options.get("--name", "?"), []).append(f"{kind} {options.get('--bind', '?')}:{port}")
        return {ns: sorted(found) for ns, found in out.items()}

    def changes_since_last_step(self) -> Diff:
        """What changed since the last step: the student's own work, typically."""
        return diff(self.moments.last(), self.moments.read(), title="since the last step")

    def _counts(self, step: Step) -> dict[str, list[RuleCount]]:
        """The rule counters of the namespaces a `show counters` names, read before the
        step's checks: what the checks made each rule count is the difference."""
        names = {ns for show in step.shows if show.what == "counters" for ns in show.namespaces}
        return {ns: read_rule_counts(lambda argv, ns=ns: self.lab.exec(ns, argv))
                for ns in sorted(names) if self.lab.has_namespace(ns)}

    def _shown(self, step: Step, counts: dict[str, list[RuleCount]] | None = None) -> Snapshot | None:
        """What the step's `show` blocks name, after its checks. The configuration is the one
        the move just read (`Moments.last()` holds every namespace's); only the caches a
        show names (ARP, the bridge's table, conntrack) are read now, since checks change
        them. Reading each shown namespace whole again cost a terminal's run of the course
        an iptables-save and a conntrack process per show."""
        wanted: dict[str, set[str]] = {}
        for show in step.shows:
            parts = set(CACHE_PARTS) if show.what == "all" else {show.what} & {*CACHE_PARTS, *COUNT_PARTS}
            for ns in show.namespaces:
                if self.lab.has_namespace(ns):
                    wanted.setdefault(ns, set()).update(parts)
        if not wanted:
            return None
        last = self.moments.last().namespaces
        states = {}
        for ns, parts in wanted.items():
            if ns not in last:  # not known to the last move (cannot happen after one): read it whole
                states[ns] = self.snapshot([ns])[ns]
            else:
                states[ns] = replace(last[ns], **self.lab.read_caches(ns, parts - set(COUNT_PARTS)))
            if "counters" in parts and ns in (counts or {}):
                after = read_rule_counts(lambda argv, ns=ns: self.lab.exec(ns, argv))
                states[ns] = replace(states[ns], counters=moved_since(counts[ns], after))
        return Snapshot(states)
