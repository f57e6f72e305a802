"""The Python face of netstep, for notebooks and the REPL.

    from netstep.tutor import Tutor
    t = Tutor()              # the lab named by $NETSTEP_LAB, or "notebook"
    t.start("veth")          # bring the lab to the lesson's start, show its introduction
    t.step()                 # apply the next step: its diff, checks and views
    t.run("host# ip link add veth9 type veth peer name ceth9")   # your own commands
    t.diff(); t.inspect("netns0"); t.check(); t.back(); t.reset()
    ipr = t.ipr("netns0")    # pyroute2's IPRoute in netns0: the same changes, in Python

Every method returns an object that renders itself (HTML in Jupyter, rich text in a
terminal). A Tutor holds the lab's lock until `close()` or `reset()`.

For an ordinary user, `Tutor()` is a RemoteTutor: the lab's work runs in a process of its
own that joins the lab's user namespace (netstep.worker; a Jupyter kernel, with its
threads, cannot join one), and the results come back to be shown here, the same as root's.

A Tutor does its work on one worker thread of its own. Jupyter's interrupt button raises
KeyboardInterrupt in the main thread, wherever it is; on the worker, an action and the
journal entry of its undo are never separated by it (the cell stops waiting, the step
finishes). That thread never switches namespaces (the engine does that in short-lived
threads of its own).
"""

from __future__ import annotations

import inspect
import os
import pickle
import socket
import struct
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from rich.console import Group
from rich.text import Text

from netstep import i18n
from netstep.core import challenges, grading
from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.core.reset import reset_lab
from netstep.core.results import OwnResult, StepResult
from netstep.course.checks import CheckResult
from netstep.course.course import Course
from netstep.course.lessons import Exercise, Lesson
from netstep.course.predictions import Prediction, Score, answers_of, predicted, question
from netstep.errors import NetstepError
from netstep.i18n import N_
from netstep.kernel import userns
from netstep.kernel.tools import find_sbin_tools
from netstep.ops.trace import Trace
from netstep.present import coaching, traces, views  # noqa: F401 (traces: a Trace draws through the views)
from netstep.present.diagram import Picture, trace_diagram
from netstep.render import RenderMixin
from netstep.state.diagram import lab_diagram
from netstep.state.diff import Diff
from netstep.state.snapshot import Snapshot

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")


@dataclass
class CheckReport(RenderMixin):
    """The results of a set of checks, with a title."""

    title: str
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


@dataclass
class Notice(RenderMixin):
    """A short message for the student (a lesson reached, a lab removed)."""

    text: str


@dataclass
class Questions(RenderMixin):
    """The questions a step's checks ask, and the predictions recorded for them (if any)."""

    ref: str
    questions: list[str]
    said: list[str] = field(default_factory=list)


@dataclass
class Predicted(RenderMixin):
    """A step's (or a verdict's) own output, followed by the predictions marked right or wrong."""

    result: RenderMixin
    predictions: list[Prediction]

    def __getattr__(self, name: str):
        if name in ("result", "predictions"):  # (not set yet: a copy being made, or unpickled)
            raise AttributeError(name)
        return getattr(self.result, name)


@dataclass
class Pictured(RenderMixin):
    """A move's (or a trace's) own output, followed by the lab's diagram after it."""

    result: RenderMixin
    picture: Picture

    def __getattr__(self, name: str):
        if name in ("result", "picture"):  # (not set yet: a copy being made, or unpickled)
            raise AttributeError(name)
        return getattr(self.result, name)

    def _repr_mimebundle_(self, include=(), exclude=(), **kwargs) -> dict:
        own = RenderMixin._repr_mimebundle_(self.result, include, exclude, **kwargs)
        drawn = self.picture._repr_mimebundle_()
        return {"text/plain": own.get("text/plain", "") + "\n" + drawn["text/plain"],
                "text/html": own.get("text/html", "") + drawn["text/html"]}


_current: Tutor | None = None


def current() -> Tutor:
    """The Tutor made last in this process (the one a `%%netstep` cell talks to)."""
    if _current is None:
        raise NetstepError(i18n._("No lab is open: run `t = Tutor()` first."))
    return _current


@dataclass
class Status(RenderMixin):
    """Where a lab stands in the course."""

    lab: str
    done: str  # "step 2.3: Bring up loopback in netns0", or ""
    next: str


class Tutor(RenderMixin):
    """A course on one lab, driven from Python. Shown, it says where the lab stands."""

    def __new__(cls, *args: object, **kwargs: object) -> Tutor:
        if cls is Tutor and os.geteuid() != 0 and not userns.inside():  # an ordinary user (see RemoteTutor)
            return super().__new__(RemoteTutor)
        return super().__new__(cls)

    def __init__(self, lab: str | None = None, *, course: Course | None = None, lang: str | None = None) -> None:
        """`lang`: 'zh' or 'en' (default: from the environment, as the command line's --lang)."""
        global _current
        if lang is not None and lang not in i18n.LANGUAGES:
            raise NetstepError(i18n._("Tutor(lang={lang!r}): netstep speaks {languages}.").format(
                lang=lang, languages=", ".join(i18n.LANGUAGES)))
        i18n.use(lang)  # before the course is read: its lessons come in the language chosen
        find_sbin_tools()
        if i18n.note():
            print(i18n.note())
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netstep")
        self._iprs: list[IPRoute] = []
        self.lab = Lab(lab or os.environ.get("NETSTEP_LAB", "notebook"))
        self._call(self.lab.lock)
        try:
            self.engine = self._call(Engine, self.lab, course)
        except BaseException:
            self._call(self.lab.close)
            self._worker.shutdown()
            raise
        self._said: tuple[str, list[str]] | None = None  # predictions for a step: (its ref, answers)
        self._predictions: list[Prediction] = []
        _current = self

    def _call(self, fn: Callable[..., T], *args: object) -> T:
        return self._worker.submit(fn, *args).result()

    def _move(self, fn: Callable[..., T], *args: object) -> T:
        """`_call` for a move of the engine. Once `ipr` has handed out a client, the lab may
        have changed behind the engine's back, so a move reads its starting state afresh
        instead of trusting the engine's last one (see netstep.core.moments)."""
        if self._iprs:
            self.engine.moments.moved = False
        try:
            return self._call(fn, *args)
        finally:
            self._call(self.engine.persist)  # the lab stays locked for the notebook's life

    def __enter__(self) -> Tutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the course -------------------------------------------------------------------

    def start(self, lesson: str | int) -> Lesson | Exercise:
        """Bring the lab to the state `lesson` starts from; returns the lesson to read.

        `exercise2` brings it to where lesson 2's "Your turn" starts: the lesson's end.
        """
        ref = str(lesson).strip()
        if ref.lower().startswith("exercise"):
            target = self._call(grading.target_of, self.engine, ref)
            self._move(lambda: list(self.engine.goto(target.position)))
            found = self.engine.steps[target.position - 1].lesson
            assert found is not None and found.exercise is not None
            return found.exercise
        found = self.engine.course.find(ref)
        self._move(self.engine.start_lesson, found)
        return found

    def step(self, ref: str | None = None) -> StepResult | Predicted | Notice | grading.Solution:
        """Apply the next step of the course ("show me").

        With a step's `ref` ("2.4"): if you typed some of it yourself, only what is missing
        runs (as `solution`); if it is done already, nothing happens.
        """
        if ref is not None:
            target = self._call(grading.target_of, self.engine, ref)
            if target.exercise:  # an exercise is not a step of the course
                return self.solution(ref)
            if target.position <= self.engine.position:
                return Notice(i18n._("Step {ref} is done already: `t.status()` says where the lab is.").format(
                    ref=target.ref))
            if target.position > self.engine.position + 1 or self._typed():
                return self.solution(ref)
        upcoming = self.engine.next_step()
        before = self._call(self.engine.moments.last)
        result = self._move(self.engine.apply_next)
        return self._pictured(self._marked(upcoming.ref if upcoming else "", result), before, result.diff,
                              i18n._("after step {ref}: {title}").format(ref=result.step.ref, title=result.step.title))

    # -- predict, then see ---------------------------------------------------------------

    def predict(self, *answers: str) -> Questions:
        """Say what the next step's checks will show, in order: "r" (reachable) or "u".

        Without answers, shows the questions. The step's output then marks each prediction.
        """
        upcoming = self.engine.next_step()
        if upcoming is None:
            raise NetstepError(i18n._("The course is finished: there is no next step to predict."))
        questions = [question(c, self.lab.internet) for c in upcoming.checks]
        if not answers:
            return Questions(upcoming.ref, questions)
        said = answers_of(answers, len(questions))
        self._said = (upcoming.ref, said)
        return Questions(upcoming.ref, questions, said)

    def score(self) -> Score:
        """Your predictions so far, in this notebook: how many were right, and the wrong ones."""
        return Score(N_("so far"), list(self._predictions))

    def _marked(self, ref: str, result):
        """`result`, with the predictions for step `ref` marked against its checks (if any were made)."""
        if self._said is None or self._said[0] != ref:
            return result
        checks = result.verdict.checks if isinstance(result, grading.Solution) else result.checks
        if len(checks) != len(self._said[1]):
            return result
        marks = predicted(checks, self._said[1], ref)
        self._said = None
        self._predictions += marks
        return Predicted(result, marks)

    # -- type it yourself -------------------------------------------------------------------

    def verify(self, ref: str | None = None) -> grading.Verdict | Predicted:
        """Compare the lab with the course after step `ref` (default: the next step), then run its checks."""
        target = self._call(challenges.target_of, self.engine, ref)
        if target.position >= self.engine.position and not self._typed(target):
            if target.challenge:
                return Notice(i18n._("Nothing typed yet for the challenge: find what is broken (`t.trace`, "
                                     "`t.inspect`), fix it in a `%%netstep` cell, then verify again (`t.hint()` "
                                     "helps)."))
            what = i18n._("the exercise") if target.exercise else i18n._("step {ref}").format(ref=target.ref)
            return Notice(i18n._("Nothing typed yet for {what}: write its commands in a `%%netstep` cell and run "
                                 "it, then verify again (`t.hint()` helps).").format(what=what))
        verdict = self._marked(target.ref, self._move(grading.verify, self.engine, target))
        title = i18n._("your lab, checked against {target}").format(target=_named(target.ref))
        return self._pictured(verdict, None, None, title)

    def challenge(self, name: str | None = None) -> challenges.Begun | Notice:
        """A break-it challenge: the lab at a lesson's end, one thing broken, unsaid. Find it
        (`t.trace`, `t.inspect`), fix it in a `%%netstep` cell, then `t.verify()`;
        `t.hint()` and `t.solution()` as for a step. Without a name, the list."""
        if name is None:
            found = challenges.catalogue(self.engine).items
            return Notice("\n".join(f"{c.name}  " + i18n._("(lesson {number})").format(number=c.lesson) + f"  {c.story}"
                                     for c in found))
        challenge = challenges.catalogue(self.engine).find(name)
        return self._move(challenges.begin, self.engine, challenge)

    def _typed(self, target: grading.Target | None = None) -> bool:
        """Whether the student changed the lab since the course's last move (by cell or by shell),
        or for a challenge, since its setup and break (which are journaled as the student's own)."""
        held = challenges.active(self.engine) if target is not None and target.challenge else None
        hidden = len(held.setup) + len(held.breaks) if held is not None else 0
        return len(self.engine.journal.own) > hidden or bool(self._call(self.engine.changes_since_last_step))

    def hint(self, ref: str | None = None) -> grading.Hint:
        """The next command you are missing for step `ref` (an exercise's written hints first)."""
        return self._call(grading.next_hint, self.engine, self._call(challenges.target_of, self.engine, ref))

    def solution(self, ref: str | None = None) -> grading.Solution | Predicted:
        """Run what is missing for step `ref`, then verify it."""
        target = self._call(challenges.target_of, self.engine, ref)
        before = self._call(self.engine.moments.last)
        solved = self._marked(target.ref, self._move(grading.solution, self.engine, target))
        title = i18n._("after the solution of {target}").format(target=_named(target.ref))
        return self._pictured(solved, before, None, title)

    def _pictured(self, result, before: Snapshot | None, change: Diff | None, title: str) -> Pictured:
        """`result` with the lab's diagram after it: what changed since `before` marked
        (`change`: the move's own diff, when it has one)."""
        after = self._call(self.engine.moments.last)
        return Pictured(result, Picture(lab_diagram(after, before, title=title, internet=self.lab.internet,
                                                    change=change, servers=self._call(self.engine.servers))))

    def picture(self) -> Picture:
        """The lab as a diagram, now: what changed since the last step (your own work) marked."""
        before = self._call(self.engine.moments.last)
        now = self._call(self.engine.snapshot)
        title = i18n._("lab '{name}' now").format(name=self.lab.name)
        return Picture(lab_diagram(now, before, title=title, internet=self.lab.internet,
                                   servers=self._call(self.engine.servers)))

    def back(self) -> StepResult:
        """Roll back the last step applied."""
        return self._move(self.engine.undo_last)

    def check(self, lesson: str | int | None = None) -> CheckReport:
        """Run the current step's checks again, or a lesson's final checks, on the lab as it is."""
        if lesson is None:
            current = self.engine.current_step()
            if current is None:
                raise NetstepError(i18n._("No step is applied yet: name a lesson, as in t.check('veth')."))
            return CheckReport(i18n._("Checks of step {ref}").format(ref=current.ref),
                               self._call(self.engine.run_checks, current.checks))
        found = self.engine.course.find(str(lesson))
        checks = self.engine.final_checks(found)
        return CheckReport(i18n._("Checks of lesson {number}").format(number=found.number),
                           self._call(self.engine.run_checks, checks))

    def rollback(self, *, all: bool = False) -> Notice:
        moves = self._move(self.engine.rollback_all if all else self.engine.rollback_lesson)
        return Notice(i18n.ngettext("Rolled back {count} step.", "Rolled back {count} steps.", len(moves)).format(
            count=len(moves)))

    # -- by hand -------------------------------------------------------------------------

    def run(self, commands: str, where: str = "host") -> OwnResult:
        """Run your own commands (`host# ...`, `netns0# ...`, or bare ones in `where`)."""
        return self._move(self.engine.run_own, commands, where)

    def undo_mine(self) -> Diff:
        """Take back every command you ran with `run`."""
        return self._move(self.engine.undo_own)

    # -- looking ------------------------------------------------------------------------------

    def trace(self, source: str, target: str, *, port: int | None = None, kind: str | None = None,
              size: int | None = None) -> Pictured:
        """Send one probe and show its path there and back, and where and why it stopped, in
        words and drawn on the lab's diagram: `t.trace("netns0", "internet")`,
        `t.trace("host", "10.0.2.15", port=5005, kind="http")`, `t.trace("netns0", "10.0.2.2", size=1472)`
        (a ping of that payload that may not be fragmented), `t.trace("netns0", "example.com", kind="dns")`
        (a name looked up as a program there does). (Its `.result` is the Trace.)"""
        found: Trace = self._call(lambda: self.engine.trace(source, target, port=port, kind=kind, size=size))
        return Pictured(found, Picture(trace_diagram(found, self.lab.internet)))

    def inspect(self, *namespaces: str) -> Snapshot:
        names = list(namespaces) or self.lab.namespace_names()
        for name in names:
            self.lab.require(name)
        return self._call(self.engine.snapshot, names)

    def diff(self) -> Diff:
        """What changed since the last step (or since your last commands)."""
        return self._call(self.engine.changes_since_last_step)

    def status(self) -> Status:
        done, upcoming = self.engine.current_step(), self.engine.next_step()
        return Status(
            self.lab.name,
            i18n._("step {ref}: {title}").format(ref=done.ref, title=done.title) if done else "",
            i18n._("step {ref}: {title}").format(ref=upcoming.ref, title=upcoming.title) if upcoming else "",
        )

    def ipr(self, ns: str) -> IPRoute:
        """pyroute2's IPRoute bound to lab namespace `ns`, to make in Python the changes a
        step makes with `ip` (`ipr.link("add", ifname="veth9", kind="veth", peer="ceth9")`).
        It works in a notebook's cell (see netstep.kernel.threaded) and is closed with the
        tutor. The lab's checks and diffs see what it changes, as they see `%%netstep` cells."""
        # Imported here: it loads pyroute2 (~0.2 s), which a Tutor otherwise loads only to work.
        from netstep.kernel.threaded import ThreadedIPRoute

        sock = self._call(self.lab.socket, ns, socket.AF_NETLINK, socket.SOCK_DGRAM, socket.NETLINK_ROUTE)
        client = ThreadedIPRoute(sock)
        self._iprs.append(client)
        return client

    # -- the end ---------------------------------------------------------------------------

    def _close_iprs(self) -> None:
        while self._iprs:
            self._iprs.pop().close()

    def reset(self) -> Notice:
        """Remove the lab entirely and let it go."""
        self._close_iprs()  # first: an open socket keeps its namespace alive
        self._call(reset_lab, self.lab)
        self.close()
        return Notice(i18n._("Lab '{name}' removed.").format(name=self.lab.name))

    def close(self) -> None:
        self._close_iprs()
        self._call(self.lab.close)
        self._worker.shutdown()


class RemoteTutor(Tutor):
    """An ordinary user's Tutor: the same methods, each run by a Tutor in a process of its
    own that joined the lab's user namespace (netstep.worker), its result shown here.

    Interrupted (Jupyter's interrupt button), a call stops waiting and the step finishes
    there, as on a Tutor's worker thread; the next call first takes that reply. `ipr`'s
    client is made here, on a netlink socket made in the lab and handed over."""

    def __init__(self, lab: str | None = None, *, course: Course | None = None, lang: str | None = None) -> None:
        global _current
        name = lab or os.environ.get("NETSTEP_LAB", "notebook")
        env = dict(os.environ)
        if lang is not None:  # the worker reads the language from the environment, as the command line does
            if lang not in i18n.LANGUAGES:
                raise NetstepError(i18n._("Tutor(lang={lang!r}): netstep speaks {languages}.").format(
                    lang=lang, languages=", ".join(i18n.LANGUAGES)))
            i18n.use(lang)
            env["LANGUAGE"] = {"zh": "zh_CN"}.get(lang, lang)
        self._iprs = []
        self._unanswered = 0
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self._process = subprocess.Popen([sys.executable, "-m", "netstep.worker", name, str(theirs.fileno())],
                                             pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                                             start_new_session=True, env=env)
        self._sock = mine
        try:
            send(mine, course)
            kind, value = self._reply()
            if kind == "error":
                raise value
        except BaseException:
            self._end()
            raise
        self.lab = Lab(name)  # (its name and mode, for what a Tutor shows; never opened here)
        self.engine = _RemoteEngine(self)
        _current = self

    def _reply(self) -> tuple[str, object]:
        try:
            kind, value = receive(self._sock)
        except EOFError:
            raise NetstepError(i18n._("The notebook's lab process ended: run `t = Tutor()` again.")) from None
        if kind == "fd":
            _, fds, _, _ = socket.recv_fds(self._sock, 1, 1)
            value = fds[0]
        return kind, value

    def _remote(self, name: str, *args: object, **kwargs: object):
        while self._unanswered:  # the replies to calls that were interrupted
            self._reply()
            self._unanswered -= 1
        send(self._sock, (name, args, kwargs))
        self._unanswered += 1
        kind, value = self._reply()
        self._unanswered -= 1
        if kind == "error":
            raise value
        return value

    def ipr(self, ns: str) -> IPRoute:
        from netstep.kernel.threaded import ThreadedIPRoute

        client = ThreadedIPRoute(socket.socket(fileno=self._remote("ipr", ns)))
        self._iprs.append(client)
        return client

    def reset(self) -> Notice:
        self._close_iprs()  # first: an open socket keeps its namespace alive
        try:
            return self._remote("reset")
        finally:
            self._end()

    def close(self) -> None:
        self._close_iprs()
        if self._process.poll() is None:
            with suppress(NetstepError, OSError):
                self._remote("close")
        self._end()

    def _end(self) -> None:
        self._sock.close()
        try:
            self._process.wait(10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# The messages between a RemoteTutor and its process: a pickle's length, then the pickle.
_HEADER = struct.Struct("!Q")


def send(sock: socket.socket, message: object) -> None:
    """One message: its pickle's length, then the pickle."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(sock: socket.socket) -> object:
    """The next message; EOFError once the other end is closed."""
    (size,) = _HEADER.unpack(_exactly(sock, _HEADER.size))
    return pickle.loads(_exactly(sock, size))


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError
        data += chunk
    return bytes(data)


def _forward(name: str):
    def call(self: RemoteTutor, *args: object, **kwargs: object):
        return self._remote(name, *args, **kwargs)

    call.__name__ = name
    call.__doc__ = getattr(Tutor, name).__doc__
    return call


# Every public method of a Tutor that RemoteTutor does not define itself runs in the lab's
# process: one that is added to Tutor cannot be forgotten here (`challenge` once was, and ran
# in the notebook's own process, outside the lab).
for _name, _method in list(vars(Tutor).items()):
    if inspect.isfunction(_method) and not _name.startswith("_") and _name not in vars(RemoteTutor):
        setattr(RemoteTutor, _name, _forward(_name))


class _RemoteEngine:
    """What a notebook reads of a Tutor's engine (`t.engine.course`), fetched from the lab's process."""

    def __init__(self, tutor: RemoteTutor) -> None:
        self._tutor = tutor

    def __getattr__(self, name: str):
        return self._tutor._remote("getattr", f"engine.{name}")


# -- how a Tutor's own objects look ---------------------------------------------------------


@views.renderable.register
def _(report: CheckReport):
    return Group(Text(report.title, style="bold"), *(views.renderable(r) for r in report.results))


@views.renderable.register
def _(notice: Notice):
    return Text(notice.text)


@views.renderable.register
def _(status: Status):
    where = (i18n._("Lab '{lab}' is after {step}.").format(lab=status.lab, step=status.done) if status.done else
             i18n._("Lab '{lab}' is at the start of the course.").format(lab=status.lab))
    upcoming = (i18n._("Next: {step} (t.step()).").format(step=status.next) if status.next else
                i18n._("The course is finished."))
    return Text.assemble((where, "bold"), " ", upcoming)


@views.renderable.register
def _(tutor: Tutor):
    return views.renderable(tutor.status())


@views.renderable.register
def _(asked: Questions):
    return coaching.questions_view(asked.ref, asked.questions, asked.said)


def _named(ref: str) -> str:
    return ref if ref.lower().startswith(("exercise", "challenge:")) else i18n._("step {ref}").format(ref=ref)


@views.renderable.register
def _(pictured: Pictured):
    return Group(views.renderable(pictured.result), pictured.picture)


@views.renderable.register
def _(marked: Predicted):
    return Group(views.renderable(marked.result), coaching.predictions_view(marked.predictions))
