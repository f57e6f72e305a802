"""Break-it challenges: a working lab at a lesson's end with one thing broken, unsaid.

A challenge is content, like a lesson: one Markdown file in `lessons/challenges/`, named
`NN-name.md` (NN: the lesson whose end the lab is built at; `name`: what the student
types). Its `# ` heading is the one-line story, its prose what the student is told, an
optional `setup` block what the working lab has beyond the lesson's end (a lesson that
takes its work back at its end, as lessons 8 to 13 do), a `break` block the commands
that break the lab (both run hidden), `check` blocks what must
work again, `hint` blocks staged hints, a `solution` block one repair and an `explain`
block what was broken. The format is in docs/lesson-format.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from netstep.course.checks import Check
from netstep.course.essentials import Essential
from netstep.course.lessons import FENCE_RE, FILE_RE, Command, Lesson, LineParser, lessons_dir
from netstep.errors import LessonError, NetstepError, did_you_mean
from netstep.i18n import language
from netstep.render import RenderMixin

BLOCKS = ("setup", "break", "check", "hint", "solution", "explain", "grade", "notes")


@dataclass
class Challenge(RenderMixin):
    """One challenge: where it starts, how it breaks the lab, and what must work again."""

    name: str
    lesson: int  # the lab is built at this lesson's end
    story: str  # the one-line story (the file's `# ` heading)
    prose: str = ""  # what the student is told, beyond the story
    setup: list[Command] = field(default_factory=list)  # the working lab beyond the lesson's end, run hidden
    breaks: list[Command] = field(default_factory=list)  # run hidden, after the setup
    checks: list[Check] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)
    solution: list[Command] = field(default_factory=list)
    explain: str = ""  # what was broken, said by `solution`
    notes: str = ""  # presenter notes
    grade: list[Essential] = field(default_factory=list)
    grade_checks: list[Check] = field(default_factory=list)
    path: str = ""

    @property
    def ref(self) -> str:
        return f"challenge:{self.name}"


def challenges_dir(folder: str | os.PathLike | None = None) -> Path:
    return Path(folder) if folder else lessons_dir() / "challenges"


def parse_challenge(path: str | os.PathLike) -> Challenge:
    path = str(path)
    match = FILE_RE.match(os.path.basename(path))
    if not match:
        raise LessonError(path, 1, "a challenge file is named NN-name.md (NN: the lesson it starts at the end of), "
                                   "such as 06-forward-off.md")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NetstepError(f"Cannot read challenge file {path}: {exc}.") from None
    return parse_challenge_text(text, path)


def parse_challenge_text(text: str, path: str) -> Challenge:
    """Parse a challenge's Markdown; `path` (NN-name.md) says its lesson and name."""
    match = FILE_RE.match(os.path.basename(path))
    if not match:
        raise LessonError(path, 1, "a challenge file is named NN-name.md, such as 06-forward-off.md")
    grammar = LineParser(path)
    challenge = Challenge(match.group(2), int(match.group(1)), "", path=path)
    prose: list[str] = []
    lines = text.splitlines()
    block_end = -1  # the line a fenced block being read ends at
    for index, line in enumerate(lines):
        if index <= block_end:
            continue
        fence = FENCE_RE.match(line)
        if fence is not None:
            block_end = grammar.fence_end(lines, index, fence.group(1))
            if fence.group(2) in BLOCKS:
                _block(challenge, grammar, fence.group(2), lines[index + 1:block_end], index + 2)
            else:
                prose.extend(lines[index:block_end + 1])
        elif line.startswith("# ") and not challenge.story:
            challenge.story = line[2:].strip()
        elif line.startswith(("# ", "## ")):
            raise LessonError(path, index + 1, "a challenge has one '# ' heading, its story, and no steps ('## ')")
        else:
            prose.append(line)
    challenge.prose = "\n".join(prose).strip()
    for what, missing in (("'# story' heading", not challenge.story), ("break block", not challenge.breaks),
                          ("check block", not challenge.checks), ("solution block", not challenge.solution),
                          ("explain block", not challenge.explain), ("hint block", not challenge.hints)):
        if missing:
            raise LessonError(path, 1, f"a challenge needs a {what}")
    return challenge


def _block(challenge: Challenge, grammar: LineParser, lang: str, body: list[str], first: int) -> None:
    if lang == "setup":
        challenge.setup += grammar.commands(body, first)
    elif lang == "break":
        challenge.breaks += grammar.commands(body, first)
    elif lang == "solution":
        challenge.solution += grammar.commands(body, first)
    elif lang == "check":
        challenge.checks += grammar.checks(body, first)
    elif lang == "hint":
        challenge.hints += [" ".join(p.split()) for p in "\n".join(body).split("\n\n") if p.strip()]
    elif lang == "explain":
        challenge.explain = "\n".join([challenge.explain, *body]).strip()
    elif lang == "notes":
        challenge.notes = "\n".join([challenge.notes, *body]).strip()
    else:
        grammar.grade(challenge, body, first)


@dataclass
class Challenges(RenderMixin):
    """Every challenge of the course, in lesson order, and how to find one by name."""

    items: list[Challenge]

    @classmethod
    def load(cls, lessons: list[Lesson], folder: str | os.PathLike | None = None) -> Challenges:
        """The challenges whose lesson is in `lessons` (a challenge of a lesson the course
        lacks is left out, so a course of fewer lessons still loads); the course's own
        challenges each in the chosen language where it is translated (`challenges/zh/`),
        as Course.load picks lessons."""
        where = challenges_dir(folder)
        numbers = {lesson.number for lesson in lessons}
        files = sorted(p for p in where.glob("*.md") if FILE_RE.match(p.name)) if where.is_dir() else []
        if not folder:
            files = [p.parent / language() / p.name if (p.parent / language() / p.name).exists() else p
                     for p in files]
        found = [parse_challenge(p) for p in files]
        return cls([c for c in found if c.lesson in numbers])

    def find(self, name: str) -> Challenge:
        key = name.strip().lower().removeprefix("challenge:")
        for challenge in self.items:
            if challenge.name == key:
                return challenge
        near = did_you_mean(key, [c.name for c in self.items])
        raise NetstepError(f"There is no challenge '{name}'.{near} `python -m netstep challenge` lists them.")

    def of_lesson(self, number: int) -> list[Challenge]:
        return [c for c in self.items if c.lesson == number]

    def names(self) -> list[str]:
        return [c.name for c in self.items]
