"""Lessons: executable Markdown files parsed into steps of commands, checks and views.

The format is described in docs/lesson-format.md. Everything is checked when a file is
loaded: a malformed file or a command outside the grammar is a LessonError naming the file
and line, never a surprise in the middle of a run.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from netstep.course.actions import Action
from netstep.course.checks import EXPECTS, KINDS, REASONS, Check, Condition
from netstep.course.commands import SYSCTL_KEY, parse
from netstep.course.essentials import Essential, parse_essential
from netstep.errors import LessonError, NetstepError
from netstep.render import RenderMixin
from netstep.state.snapshot import PARTS

FILE_RE = re.compile(r"^(\d\d)-([a-z0-9-]+)\.md$")
PROMPT_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)#\s*(.*)$")
CHECK_RE = re.compile(r"^(\w+)\s+(\S+)\s*->\s*(\S+)\s+(\w+)(?:\s+\(([\w-]+)\))?"
                      r"(?:\s+if\s+(\S+)\s+([^\s=]+)=(\S+)\s+else\s+(\w+)(?:\s+\(([\w-]+)\))?)?\s*$")
# `ping -M do -s 1472 FROM -> ...`: an echo of that payload that may not be fragmented
SIZED_PING_RE = re.compile(r"^ping\s+(?:-M\s+do\s+-s\s+(\d+)|-s\s+(\d+)\s+-M\s+do)\s+")
# `dns FROM NAME EXPECT [(REASON)]`: a name has no port and is not an address.
DNS_RE = re.compile(r"^dns\s+(\S+)\s+([A-Za-z0-9][A-Za-z0-9.-]*)\s+(\w+)(?:\s+\(([\w-]+)\))?\s*$")
FENCE_RE = re.compile(r"^(`{3,}|~{3,})\s*([\w-]*)")
EXECUTABLE = ("console", "check", "show", "notes", "hint", "solution", "grade")
EXERCISE = "Your turn"  # a `## Your turn: ...` heading starts the lesson's exercise
EXERCISE_HEADINGS = (EXERCISE, "轮到你了")  # ... in each language the lessons are written in
MODES = ("sandbox", "host")
# `<!-- host mode only -->` ... `<!-- end -->`: prose for one mode's students (invisible on
# a Markdown viewer, which shows both).
ONLY_RE = re.compile(r"^<!--\s*(sandbox|host mode) only\s*-->$")
# In a lesson's introduction: the whole lesson is the sandbox's (its addresses exist only
# in the sandbox's frame); a host-mode course leaves it out.
SANDBOX_LESSON = "<!-- lesson: sandbox only -->"
END_ONLY = "<!-- end -->"


@dataclass(frozen=True)
class Command:
    where: str
    text: str  # as written, without the prompt
    action: Action
    line: int


@dataclass(frozen=True)
class Show:
    what: str
    namespaces: tuple[str, ...]


@dataclass
class Step(RenderMixin):
    """One step. Its prose is cut where its commands begin (its checks, in a step without
    commands): `before` sets the scene and is read before the step runs; `after` explains
    the result, and is read only once the result is there."""

    title: str
    before: str = ""
    after: str = ""
    commands: list[Command] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    shows: list[Show] = field(default_factory=list)
    notes: str = ""  # presenter notes: what to say, the question students usually ask
    grade: list[Essential] = field(default_factory=list)  # what typed-by-hand work must have
    grade_checks: list[Check] = field(default_factory=list)  # checks for grading only, never shown first
    line: int = 0
    lesson: Lesson | None = field(default=None, repr=False)
    index: int = 0  # within the lesson

    @property
    def actions(self) -> list[Action]:
        return [c.action for c in self.commands]

    @property
    def prose(self) -> str:
        """All of the step's prose, in the file's order."""
        return "\n\n".join(part for part in (self.before, self.after) if part)

    @property
    def ref(self) -> str:
        lesson = self.lesson
        return f"{lesson.number}.{self.index + 1}" if lesson else str(self.index + 1)


@dataclass
class Exercise(RenderMixin):
    """A lesson's "Your turn": a task the student does alone, from the lesson's end.

    It is not a step of the course: its solution is a list of commands the student is
    graded against (verify builds it in the reference lab), never applied by `run`.
    """

    title: str
    prose: str = ""
    hints: list[str] = field(default_factory=list)  # shown one at a time, before any command
    solution: list[Command] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: str = ""  # presenter notes, as a step's
    grade: list[Essential] = field(default_factory=list)  # as a step's
    grade_checks: list[Check] = field(default_factory=list)
    line: int = 0
    lesson: Lesson | None = field(default=None, repr=False)

    @property
    def ref(self) -> str:
        return f"exercise{self.lesson.number}" if self.lesson else "exercise"


@dataclass
class Lesson(RenderMixin):
    number: int
    slug: str
    title: str
    intro: str
    steps: list[Step]
    path: str
    exercise: Exercise | None = None
    modes: tuple[str, ...] = MODES  # the modes whose course has it

    @property
    def name(self) -> str:
        return f"lesson{self.number}"


def parse_lesson(path: str | os.PathLike, mode: str = "sandbox") -> Lesson:
    """The lesson as the students of `mode` (sandbox or host) read it."""
    path = str(path)
    match = FILE_RE.match(os.path.basename(path))
    if not match:
        raise LessonError(path, 1, "a lesson file is named NN-slug.md, such as 04-bridge.md")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        line = text_line = 1
        try:
            raw = Path(path).read_bytes()
            line = raw[: exc.start].count(b"\n") + 1
        except OSError:
            line = text_line
        raise LessonError(path, line, "the file is not UTF-8 text") from None
    except OSError as exc:
        raise NetstepError(f"Cannot read lesson file {path}: {exc.strerror}.") from None
    return parse_lesson_text(text, path, mode)


def parse_lesson_text(text: str, path: str, mode: str = "sandbox") -> Lesson:
    """Parse a lesson's Markdown; `path` (named NN-slug.md) is where it says it came from.
    Prose marked for the other mode (`<!-- host mode only -->`) is left out."""
    match = FILE_RE.match(os.path.basename(path))
    if not match:
        raise LessonError(path, 1, "a lesson file is named NN-slug.md, such as 04-bridge.md")
    if "\0" in text:
        raise LessonError(path, text[: text.index("\0")].count("\n") + 1, "the file holds a NUL byte")
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    return _Parser(path, int(match.group(1)), match.group(2), mode).parse(text)


class _Parser:
    def __init__(self, path: str, number: int, slug: str, mode: str = "sandbox") -> None:
        self.path, self.number, self.slug, self.mode = path, number, slug, mode
        self.only: tuple[str, int] | None = None  # the mode of the section the parser is in, and its line
        self.modes = MODES
        self.title = ""
        self.intro: list[str] = []
        self.steps: list[Step] = []
        self.exercise: Exercise | None = None
        self.prose: list[str] = []
        # Where the current step's prose reached when its first console / check block came.
        self.cut_console: int | None = None
        self.cut_check: int | None = None

    def error(self, line: int, message: str) -> LessonError:
        return LessonError(self.path, line, message)

    def parse(self, text: str) -> Lesson:
        lines = text.splitlines()
        i = 0
        while i < len(lines):
            line, n = lines[i], i + 1
            fence = FENCE_RE.match(line)
            if fence:
                end = self._fence_end(lines, i, fence.group(1))
                lang = fence.group(2)
                if lang in EXECUTABLE:
                    if self._kept():  # (a block in the other mode's section is not this course's)
                        self._block(lang, lines[i + 1 : end], n + 1)
                elif self._kept():
                    self.prose.extend(lines[i : end + 1])
                i = end + 1
                continue
            only = ONLY_RE.match(line.strip())
            if line.strip() == SANDBOX_LESSON:
                if self.steps:
                    raise self.error(n, f"{SANDBOX_LESSON} belongs in the lesson's introduction")
                self.modes = ("sandbox",)
            elif only or line.strip() == END_ONLY:
                self._mark(only.group(1) if only else None, n)
            elif self.only and line.startswith("# "):
                raise self.error(self.only[1], f"this '{self.only[0]} only' section has no {END_ONLY} before the "
                                               "lesson's title")
            elif not self._kept():
                pass
            elif line.startswith("# ") and not self.title:
                self.title = line[2:].strip()
            elif line.startswith("## "):
                self._close_step()
                title = line[3:].strip()
                if not title:
                    raise self.error(n, "a step heading needs a title")
                if self.exercise:
                    raise self.error(n, f"the '{EXERCISE}' section comes last in a lesson")
                if title.startswith(EXERCISE_HEADINGS):
                    if not self.steps:
                        raise self.error(n, f"a '{EXERCISE}' section follows the lesson's steps")
                    self.exercise = Exercise(title=title, line=n)
                else:
                    self.steps.append(Step(title=title, line=n))
            else:
                self.prose.append(line)
            i += 1
        if self.only:
            raise self.error(self.only[1], f"this '{self.only[0]} only' section is never closed with {END_ONLY}")
        self._close_step()
        if not self.title:
            raise self.error(1, "the lesson has no '# Title' heading")
        if not self.steps:
            raise self.error(len(lines) or 1, "the lesson has no steps ('## ' headings)")
        if self.exercise and not (self.exercise.solution and self.exercise.checks):
            raise self.error(self.exercise.line, f"a '{EXERCISE}' section needs a solution block and a check block")
        lesson = Lesson(self.number, self.slug, self.title, "\n".join(self.intro).strip(), self.steps, self.path,
                        self.exercise, self.modes)
        for index, step in enumerate(self.steps):
            step.lesson, step.index = lesson, index
        if self.exercise:
            self.exercise.lesson = lesson
        return lesson

    def _mark(self, only: str | None, n: int) -> None:
        if only and self.only:
            raise self.error(n, f"a '{only} only' section cannot start inside another (line {self.only[1]})")
        if not only and not self.only:
            raise self.error(n, f"{END_ONLY} closes nothing: open a section with <!-- host mode only --> or "
                                "<!-- sandbox only -->")
        self.only = (only, n) if only else None

    def _kept(self) -> bool:
        """Whether the prose here is for this parser's mode."""
        return self.only is None or self.only[0].split()[0] == self.mode

    def _fence_end(self, lines: list[str], start: int, marker: str) -> int:
        for j in range(start + 1, len(lines)):
            if lines[j].strip() == marker or (lines[j].startswith(marker) and not lines[j][len(marker):].strip()):
                return j
        raise self.error(start + 1, f"this {marker} block is never closed")

    def _close_step(self) -> None:
        if self.exercise:
            self.exercise.prose = "\n".join(self.prose).strip()
        elif self.steps:
            cut = next((c for c in (self.cut_console, self.cut_check) if c is not None), len(self.prose))
            self.steps[-1].before = "\n".join(self.prose[:cut]).strip()
            self.steps[-1].after = "\n".join(self.prose[cut:]).strip()
        else:
            self.intro.append("\n".join(self.prose).strip())
        self.prose = []
        self.cut_console = self.cut_check = None

    def _block(self, lang: str, body: list[str], first: int) -> None:
        if not self.steps:
            raise self.error(first - 1, f"a {lang} block must be inside a step (after a '## ' heading)")
        if self.exercise:
            self._exercise_block(lang, body, first)
            return
        if lang in ("hint", "solution"):
            raise self.error(first - 1, f"a {lang} block belongs in a '## {EXERCISE}: ...' section")
        step = self.steps[-1]
        if lang == "console" and self.cut_console is None:
            self.cut_console = len(self.prose)
        elif lang == "check" and self.cut_check is None:
            self.cut_check = len(self.prose)
        if lang == "notes":
            step.notes = "\n".join([step.notes, *body]).strip()
            return
        if lang == "grade":
            self._grade(step, body, first)
            return
        for offset, raw in enumerate(body):
            n, line = first + offset, raw.strip()
            if not line or (lang != "console" and line.startswith("#")):
                continue
            if lang == "console":
                self._command(step, line, n)
            elif lang == "check":
                step.checks.append(self._check(line, n))
            else:
                step.shows.append(self._show(line, n))

    def _exercise_block(self, lang: str, body: list[str], first: int) -> None:
        exercise = self.exercise
        assert exercise is not None
        if lang == "hint":
            paragraphs = "\n".join(body).split("\n\n")
            exercise.hints += [" ".join(p.split()) for p in paragraphs if p.strip()]
        elif lang == "solution":
            holder = Step(title=exercise.title)
            for offset, raw in enumerate(body):
                if raw.strip():
                    self._command(holder, raw.strip(), first + offset)
            exercise.solution += holder.commands
        elif lang == "notes":
            exercise.notes = "\n".join([exercise.notes, *body]).strip()
        elif lang == "grade":
            self._grade(exercise, body, first)
        elif lang == "check":
            exercise.checks += [self._check(raw.strip(), first + offset) for offset, raw in enumerate(body)
                                if raw.strip() and not raw.strip().startswith("#")]
        else:
            raise self.error(first - 1, f"a '{EXERCISE}' section holds hint, solution, check and notes blocks, "
                                        f"not {lang}: its commands are the student's to type")

    def _grade(self, holder: Step | Exercise, body: list[str], first: int) -> None:
        """A `grade` block: essentials (`host has route ...`) and checks, for grading only."""
        for offset, raw in enumerate(body):
            n, line = first + offset, raw.strip()
            if not line or line.startswith("#"):
                continue
            if CHECK_RE.match(line):
                holder.grade_checks.append(self._check(line, n))
                continue
            try:
                holder.grade.append(parse_essential(line))
            except ValueError as exc:
                raise self.error(n, str(exc)) from None

    def _command(self, step: Step, line: str, n: int) -> None:
        match = PROMPT_RE.match(line)
        if not match:
            raise self.error(n, f"a command line starts with a prompt such as 'host# ' or 'netns0# ': {line!r}")
        where, text = match.group(1), match.group(2).strip()
        if not text or text.startswith("#"):
            return
        try:
            action = parse(text, where)
        except ValueError as exc:
            raise self.error(n, str(exc)) from None
        step.commands.append(Command(where, text, action, n))

    def _check(self, line: str, n: int) -> Check:
        if line.split()[:1] == ["dns"]:
            return self._dns_check(line, n)
        size = None
        sized = SIZED_PING_RE.match(line)
        if sized:
            size = int(sized.group(1) or sized.group(2))
            if not 0 <= size <= 65507:
                raise self.error(n, f"a ping's payload is 0 to 65507 bytes, not {size}")
            line = "ping " + line[sized.end():]
        elif line.startswith("ping -"):
            raise self.error(n, "a ping check takes one option, a large echo that may not be fragmented: "
                                f"'ping -M do -s SIZE FROM -> TARGET ...': {line!r}")
        match = CHECK_RE.match(line)
        if not match:
            raise self.error(n, "a check reads 'KIND FROM -> TARGET reachable|unreachable [(REASON)]', "
                                f"optionally followed by 'if NS KEY=VALUE else EXPECT [(REASON)]': {line!r}")
        kind, source, target, expect, reason, where, key, value, other, other_reason = match.groups()
        if kind not in KINDS:
            raise self.error(n, f"unknown check kind '{kind}': use {', '.join(KINDS)}")
        self._outcome(expect, reason, n)
        when, otherwise = None, None
        if where is not None:
            if not SYSCTL_KEY.match(key):
                raise self.error(n, f"'if {where} {key}={value}': a condition is a sysctl under net.ipv4., net.ipv6. "
                                    "or net.bridge., as in 'if host net.bridge.bridge-nf-call-iptables=1'")
            self._outcome(other, other_reason, n)
            when, otherwise = Condition(where, key, value), (other, other_reason)
        host, _, port_text = target.partition(":")
        port_text, slash, path = port_text.partition("/")
        path = slash + path
        if path and (kind != "http" or not re.match(r"^/[A-Za-z0-9._/-]*$", path)):
            raise self.error(n, f"only an http check asks for a path (ADDRESS:PORT/PATH), in plain characters: "
                                f"'{target}'")
        port = None
        if kind == "ping" and port_text:
            raise self.error(n, "a ping has no port")
        if kind != "ping":
            if not port_text.isdigit() or not 0 < int(port_text) < 65536:
                raise self.error(n, f"a {kind} check needs ADDRESS:PORT, not '{target}'")
            port = int(port_text)
        if host != "internet":
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise self.error(n, f"'{host}' is not an IPv4 address or 'internet'") from None
        return Check(kind, source, host, port, expect, reason, n, when, otherwise, size=size, path=path)

    def _dns_check(self, line: str, n: int) -> Check:
        match = DNS_RE.match(line)
        if not match:
            raise self.error(n, f"a dns check reads 'dns FROM NAME reachable|unreachable [(REASON)]': {line!r}")
        source, name, expect, reason = match.groups()
        self._outcome(expect, reason, n)
        return Check("dns", source, name.rstrip(".").lower(), None, expect, reason, n)

    def _outcome(self, expect: str, reason: str | None, n: int) -> None:
        if expect not in EXPECTS:
            raise self.error(n, f"expected outcome '{expect}' should be reachable or unreachable")
        if reason is not None and (reason not in REASONS or expect != "unreachable"):
            raise self.error(n, f"'({reason})' is not a reason for '{expect}': use one of {', '.join(REASONS)} "
                                "after unreachable")

    def _show(self, line: str, n: int) -> Show:
        words = line.split()
        if words[0] not in (*PARTS, "all") or len(words) < 2:
            raise self.error(n, f"a show line is 'WHAT NAMESPACE...', WHAT one of {', '.join(PARTS)} or all")
        return Show(words[0], tuple(words[1:]))


class LineParser:
    """A lesson file's line grammar (its commands, checks and grade lines, and where a fenced
    block ends), for other content written in it: the challenges (netstep.course.challenges)."""

    def __init__(self, path: str) -> None:
        self._parser = _Parser(path, 0, "")

    def fence_end(self, lines: list[str], start: int, marker: str) -> int:
        return self._parser._fence_end(lines, start, marker)

    def commands(self, body: list[str], first: int) -> list[Command]:
        holder = Step(title="")
        for offset, raw in enumerate(body):
            if raw.strip():
                self._parser._command(holder, raw.strip(), first + offset)
        return holder.commands

    def checks(self, body: list[str], first: int) -> list[Check]:
        return [self._parser._check(raw.strip(), first + offset) for offset, raw in enumerate(body)
                if raw.strip() and not raw.strip().startswith("#")]

    def grade(self, holder, body: list[str], first: int) -> None:
        """A `grade` block into `holder`'s `grade` and `grade_checks`."""
        self._parser._grade(holder, body, first)


def parse_lines(text: str, where: str = "host") -> list[Command]:
    """Commands typed by hand: `netns0# ip ...` lines, or bare commands run in `where`.

    Raises NetstepError naming the line that is wrong; nothing runs unless all parse.
    """
    commands = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PROMPT_RE.match(line)
        place, command = (match.group(1), match.group(2).strip()) if match else (where, line)
        try:
            action = parse(command, place)
        except ValueError as exc:
            raise NetstepError(f"line {n}: {exc}: {line!r}") from None
        commands.append(Command(place, command, action, n))
    if not commands:
        raise NetstepError("There is no command to run.")
    return commands


# -- the course ------------------------------------------------------------------------------


def lessons_dir() -> Path:
    """The course's lessons: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent.parent  # the netstep package
    for candidate in (here / "_lessons", here.parent / "lessons"):
        if candidate.is_dir():
            return candidate
    raise NetstepError("netstep cannot find its lessons folder; reinstall it with `pip install .`.")
