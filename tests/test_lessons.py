"""Lesson files: errors point at the file and line; the real course loads and is well formed."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from support import lesson_markdown, real_lesson_files, write_lesson

from netstep.course.actions import Iptables, SetLinkUp
from netstep.course.course import Course
from netstep.course.lessons import parse_lesson
from netstep.errors import LessonError, NetstepError

ROOT = Path(__file__).resolve().parent.parent

FENCE = "```"

GOOD = f"""\
# Lesson 5: A good lesson

Introduction.

## First step

Prose.

{FENCE}console
host# ip netns add netns0
host# # a comment after the prompt is skipped

netns0# ip link set lo up
{FENCE}

{FENCE}check
ping netns0 -> 127.0.0.1 reachable
ping netns0 -> 10.0.2.15 unreachable (no-route)
tcp host -> 10.0.2.2:80 unreachable (refused)
http upstream -> internet:8080 unreachable
{FENCE}

{FENCE}show
routes host netns0
all netns0
{FENCE}

{FENCE}text
host# this is prose, never run
{FENCE}

## Second step

{FENCE}console
host# sudo iptables -N MARKER
{FENCE}
"""


def load_error(path: Path) -> LessonError:
    with pytest.raises(LessonError) as info:
        parse_lesson(path)
    return info.value


def assert_error_at(path: Path, line: int, *words: str) -> None:
    error = load_error(path)
    message = str(error)
    assert message.startswith(f"{path}:{line}: "), f"expected {path}:{line}: at the start of {message!r}"
    assert error.path == str(path)
    assert error.line == line
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def line_of(path: Path, needle: str) -> int:
    """1-based number of the first line of `path` containing `needle`."""
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {path}")


# -- a good file ------------------------------------------------------------------------------


def test_good_lesson_parses(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "05-good.md", GOOD)
    lesson = parse_lesson(path)
    assert (lesson.number, lesson.slug, lesson.name) == (5, "good", "lesson5")
    assert lesson.title == "Lesson 5: A good lesson"
    assert lesson.intro == "Introduction."
    assert [s.title for s in lesson.steps] == ["First step", "Second step"]
    first, second = lesson.steps
    assert [s.ref for s in lesson.steps] == ["5.1", "5.2"]
    assert [(c.where, c.text) for c in first.commands] == [("host", "ip netns add netns0"),
                                                          ("netns0", "ip link set lo up")]
    assert first.commands[0].line == line_of(path, "host# ip netns add netns0")
    assert first.actions[1] == SetLinkUp("netns0", name="lo", up=True)
    assert second.actions == [Iptables("host", table="filter", args=("-N", "MARKER"))]
    kinds = [(c.kind, c.source, c.target, c.port, c.expect, c.reason) for c in first.checks]
    assert kinds == [
        ("ping", "netns0", "127.0.0.1", None, "reachable", None),
        ("ping", "netns0", "10.0.2.15", None, "unreachable", "no-route"),
        ("tcp", "host", "10.0.2.2", 80, "unreachable", "refused"),
        ("http", "upstream", "internet", 8080, "unreachable", None),
    ]
    assert [(s.what, s.namespaces) for s in first.shows] == [("routes", ("host", "netns0")), ("all", ("netns0",))]
    assert "this is prose, never run" in first.prose
    assert second.checks == [] and second.shows == []


# -- malformed files: file:line: message ------------------------------------------------------


def test_unknown_command(tmp_path: Path) -> None:
    text = GOOD.replace("netns0# ip link set lo up", "netns0# ip link set lo up\nhost# curl 10.0.2.2")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "curl"), "unknown command 'curl'")


def test_command_with_shell_metacharacters(tmp_path: Path) -> None:
    text = GOOD.replace("host# ip netns add netns0", "host# ip netns add netns0; reboot")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "reboot"), "no shell")


def test_unclosed_fence(tmp_path: Path) -> None:
    text = GOOD + f"\n## Third step\n\n{FENCE}console\nhost# ip netns add netns9\n"
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "## Third step") + 2, "never closed")


def test_unclosed_prose_fence(tmp_path: Path) -> None:
    text = GOOD + "\n~~~text\nsome prose\n"
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "~~~text"), "never closed")


def test_console_line_without_prompt(tmp_path: Path) -> None:
    text = GOOD.replace("netns0# ip link set lo up", "ip link set lo up")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "ip link set lo up"), "prompt")


def test_bad_check_line(tmp_path: Path) -> None:
    text = GOOD.replace("ping netns0 -> 127.0.0.1 reachable", "ping netns0 127.0.0.1 reachable")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "ping netns0 127.0.0.1"), "KIND FROM -> TARGET")


def test_bad_check_outcome(tmp_path: Path) -> None:
    text = GOOD.replace("ping netns0 -> 127.0.0.1 reachable", "ping netns0 -> 127.0.0.1 works")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "127.0.0.1 works"), "'works'")


def test_bad_check_address(tmp_path: Path) -> None:
    text = GOOD.replace("ping netns0 -> 127.0.0.1 reachable", "ping netns0 -> example.com reachable")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "example.com"), "'example.com'")


def test_tcp_check_without_port(tmp_path: Path) -> None:
    text = GOOD.replace("tcp host -> 10.0.2.2:80 unreachable", "tcp host -> 10.0.2.2 unreachable")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "tcp host -> 10.0.2.2 "), "ADDRESS:PORT")


def test_unknown_check_kind(tmp_path: Path) -> None:
    text = GOOD.replace("ping netns0 -> 127.0.0.1 reachable", "udp netns0 -> 127.0.0.1:53 reachable")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "udp netns0"), "unknown check kind 'udp'")


def test_reason_with_reachable(tmp_path: Path) -> None:
    text = GOOD.replace("ping netns0 -> 127.0.0.1 reachable", "ping netns0 -> 127.0.0.1 reachable (no-route)")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "reachable (no-route)"), "(no-route)")


def test_unknown_reason(tmp_path: Path) -> None:
    text = GOOD.replace("10.0.2.15 unreachable (no-route)", "10.0.2.15 unreachable (gremlins)")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "gremlins"), "(gremlins)")


def test_show_with_unknown_part(tmp_path: Path) -> None:
    text = GOOD.replace("routes host netns0", "colours host netns0")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, "colours host"), "show line")


def test_show_without_namespace(tmp_path: Path) -> None:
    text = GOOD.replace("routes host netns0", "routes")
    path = write_lesson(tmp_path, "05-bad.md", text)
    line = path.read_text(encoding="utf-8").splitlines().index("routes") + 1
    assert_error_at(path, line, "show line")


def test_no_title(tmp_path: Path) -> None:
    text = GOOD.replace("# Lesson 5: A good lesson\n", "")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, 1, "Title")


def test_no_steps(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "05-bad.md", "# Lesson 5: Nothing to do\n\nJust prose.\n\nMore prose.\n")
    assert_error_at(path, 5, "no steps")


def test_block_before_the_first_step(tmp_path: Path) -> None:
    text = GOOD.replace("Introduction.\n", f"Introduction.\n\n{FENCE}console\nhost# ip netns add netns7\n{FENCE}\n")
    path = write_lesson(tmp_path, "05-bad.md", text)
    assert_error_at(path, line_of(path, f"{FENCE}console"), "inside a step")


def test_non_utf8_bytes(tmp_path: Path) -> None:
    path = tmp_path / "05-bad.md"
    lines = GOOD.encode().split(b"\n")
    lines[7] = b"Caf\xe9 au lait, in Latin-1."  # line 8
    path.write_bytes(b"\n".join(lines))
    assert_error_at(path, 8, "UTF-8")


def test_nul_byte(tmp_path: Path) -> None:
    path = tmp_path / "05-bad.md"
    lines = GOOD.split("\n")
    lines[4] = "Prose with a \0 in it."
    path.write_text("\n".join(lines), encoding="utf-8")
    assert_error_at(path, 5, "NUL")


def test_bad_file_name(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "bad-name.md", GOOD)
    assert_error_at(path, 1, "NN-slug.md")


def test_missing_file_is_a_netstep_error(tmp_path: Path) -> None:
    with pytest.raises(NetstepError, match=r"05-missing\.md"):
        parse_lesson(tmp_path / "05-missing.md")


def test_course_load_reports_the_bad_file(tmp_path: Path) -> None:
    write_lesson(tmp_path, "01-one.md", lesson_markdown("Lesson 1: One", [("A", ["host# ip netns add netns0"], [])]))
    bad = write_lesson(tmp_path, "02-two.md", lesson_markdown("Lesson 2: Two", [("B", ["host# telnet x"], [])]))
    with pytest.raises(LessonError) as info:
        Course.load(tmp_path)
    assert str(info.value).startswith(f"{bad}:{line_of(bad, 'telnet')}: ")


# -- Course.find -------------------------------------------------------------------------------


@pytest.fixture
def small_course(tmp_path: Path) -> Course:
    folder = tmp_path / "course"
    folder.mkdir()
    for number, slug in ((1, "netns"), (2, "veth"), (3, "veth-conflict")):
        write_lesson(folder, f"{number:02d}-{slug}.md",
                     lesson_markdown(f"Lesson {number}: {slug}", [("Step", [f"host# iptables -N L{number}"], [])]))
    return Course.load(folder)


@pytest.mark.parametrize("ref", ["lesson3", "3", "03", "veth-conflict", "LESSON3", " lesson3 "])
def test_find_by_name_number_or_slug(small_course: Course, ref: str) -> None:
    lesson = small_course.find(ref)
    assert (lesson.number, lesson.slug) == (3, "veth-conflict")
    assert lesson is small_course.lessons[2]


def test_find_by_path_of_a_course_file(small_course: Course) -> None:
    path = small_course.lessons[1].path
    lesson = small_course.find(path)
    assert (lesson.number, lesson.slug) == (2, "veth")
    assert [le.number for le in small_course.lessons] == [1, 2, 3]


def test_find_by_path_of_a_new_file(small_course: Course, tmp_path: Path) -> None:
    extra = write_lesson(tmp_path, "04-extra.md",
                         lesson_markdown("Lesson 4: Extra", [("Step", ["host# iptables -N EXTRA"], [])]))
    lesson = small_course.find(str(extra))
    assert (lesson.number, lesson.slug, lesson.path) == (4, "extra", str(extra))
    assert [le.number for le in small_course.lessons] == [1, 2, 3, 4]
    assert small_course.start_of(lesson) == 3


def test_a_gap_in_the_numbers_is_a_course_all_the_same(tmp_path: Path) -> None:
    """Lessons written apart (8 and 10 before 9) load in order of their numbers; each keeps its own."""
    for number, slug in ((1, "netns"), (8, "firewall"), (10, "bridge-filter")):
        write_lesson(tmp_path, f"{number:02d}-{slug}.md",
                     lesson_markdown(f"Lesson {number}: {slug}", [("Step", [f"host# iptables -N L{number}"], [])]))
    course = Course.load(tmp_path)
    assert [(le.number, le.name) for le in course.lessons] == [(1, "lesson1"), (8, "lesson8"), (10, "lesson10")]
    assert course.find("10").slug == "bridge-filter" and course.start_of(course.find("lesson10")) == 2
    assert [s.ref for s in course.steps] == ["1.1", "8.1", "10.1"]
    with pytest.raises(NetstepError, match="There is no lesson '9'"):
        course.find("9")


def test_find_by_path_of_a_malformed_file(small_course: Course, tmp_path: Path) -> None:
    bad = write_lesson(tmp_path, "04-bad.md", lesson_markdown("Lesson 4: Bad", [("Step", ["host# wget x"], [])]))
    with pytest.raises(LessonError) as info:
        small_course.find(str(bad))
    assert str(info.value).startswith(f"{bad}:{line_of(bad, 'wget')}: ")


@pytest.mark.parametrize("ref", ["lesson9", "9", "bridge", "no-such.md", ""])
def test_find_unknown_lists_the_lessons(small_course: Course, ref: str) -> None:
    with pytest.raises(NetstepError) as info:
        small_course.find(ref)
    message = str(info.value)
    assert not isinstance(info.value, LessonError)
    for name in ("lesson1", "lesson2", "lesson3", "veth-conflict"):
        assert name in message, f"{name} not listed in {message!r}"


def test_start_of_counts_steps(tmp_path: Path) -> None:
    write_lesson(tmp_path, "01-a.md", lesson_markdown("A", [("1", [], ["ping host -> 10.0.2.2 reachable"]),
                                                          ("2", ["host# iptables -N A"], [])]))
    write_lesson(tmp_path, "02-b.md", lesson_markdown("B", [("1", ["host# iptables -N B"], [])]))
    course = Course.load(tmp_path)
    assert [s.ref for s in course.steps] == ["1.1", "1.2", "2.1"]
    assert course.start_of(course.lessons[1]) == 2
    assert course.start_of(course.lessons[0]) == 0


def test_a_course_with_a_gap_in_its_lesson_numbers_loads(tmp_path: Path) -> None:
    """Lessons are written in parallel: 1, 2 and 14 make a course, 14 found by its number."""
    for name, title in (("01-a.md", "A"), ("02-b.md", "B"), ("14-n.md", "N")):
        write_lesson(tmp_path, name, lesson_markdown(title, [("1", [f"host# iptables -N {title}"], [])]))
    course = Course.load(tmp_path)
    assert [le.number for le in course.lessons] == [1, 2, 14]
    assert [s.ref for s in course.steps] == ["1.1", "2.1", "14.1"]
    assert course.find("14") is course.find("lesson14") is course.lessons[2]
    assert course.start_of(course.find("14")) == 2


# -- the real course ------------------------------------------------------------------------------


needs_lessons = pytest.mark.skipif(not real_lesson_files(), reason="lessons/ has no lesson files yet")


@pytest.fixture(scope="module")
def real_course() -> Course:
    return Course.load()


@needs_lessons
@pytest.mark.parametrize("path", real_lesson_files(), ids=[p.name for p in real_lesson_files()])
def test_every_lesson_file_loads(path: Path) -> None:
    lesson = parse_lesson(path)
    assert lesson.title
    assert lesson.steps


@needs_lessons
def test_course_loads_every_file(real_course: Course) -> None:
    assert [Path(le.path).name for le in real_course.lessons] == [p.name for p in real_lesson_files()]


@needs_lessons
def test_lesson_numbers_are_distinct_and_rising(real_course: Course) -> None:
    """Lessons past the article are written apart, so a number may be missing for a while
    (8 and 10 before 9); none is used twice, and the course runs in their order."""
    numbers = [lesson.number for lesson in real_course.lessons]
    assert numbers == sorted(set(numbers)) and numbers[0] == 1


@needs_lessons
def test_course_has_the_articles_seven_lessons_first(real_course: Course) -> None:
    numbers = [lesson.number for lesson in real_course.lessons]
    assert numbers[:7] == [1, 2, 3, 4, 5, 6, 7], \
        f"lessons present: {[Path(le.path).name for le in real_course.lessons]}"


@needs_lessons
def test_commands_are_followed_by_checks(real_course: Course) -> None:
    """In lessons 2 to 7, a step that changes something is checked in it or a later step of its lesson."""
    unchecked = []
    for lesson in real_course.lessons:
        if lesson.number < 2:
            continue
        for i, step in enumerate(lesson.steps):
            if step.commands and not any(later.checks for later in lesson.steps[i:]):
                unchecked.append(f"{step.ref} {step.title!r} ({Path(lesson.path).name}:{step.line})")
    assert not unchecked, f"steps with commands and no check after them: {unchecked}"


@needs_lessons
def test_check_sources_are_lab_namespaces(real_course: Course) -> None:
    """A check runs from host, upstream or a container some step of the course made before it."""
    made = {"host", "upstream"}
    wrong = []
    for step in real_course.steps:
        for command in step.commands:
            if type(command.action).__name__ == "AddNetns":
                made.add(command.action.name)
        for check in step.checks:
            if check.source not in made:
                wrong.append(f"{step.ref}: {check.kind} {check.source} -> {check.target}")
    assert not wrong


@needs_lessons
def test_course_copied_elsewhere_loads_the_same(real_course: Course, tmp_path: Path) -> None:
    for path in real_lesson_files():
        shutil.copy(path, tmp_path / path.name)
    copy = Course.load(tmp_path)
    assert [s.ref for s in copy.steps] == [s.ref for s in real_course.steps]
    assert [s.actions for s in copy.steps] == [s.actions for s in real_course.steps]


EXERCISE = f"""\
# Lesson 5: With an exercise

Introduction.

## A step

{FENCE}console
host# ip netns add netns0
{FENCE}

## Your turn: a namespace of your own

Make netns9.

{FENCE}hint
First hint,
on two lines.

Second hint.
{FENCE}

{FENCE}solution
host# ip netns add netns9
{FENCE}

{FENCE}check
ping netns9 -> 127.0.0.1 unreachable
{FENCE}
"""


def test_a_your_turn_section_is_an_exercise_not_a_step(tmp_path: Path) -> None:
    lesson = parse_lesson(write_lesson(tmp_path, "05-ex.md", EXERCISE))
    assert [step.title for step in lesson.steps] == ["A step"]
    exercise = lesson.exercise
    assert exercise is not None and exercise.ref == "exercise5"
    assert exercise.title == "Your turn: a namespace of your own" and exercise.prose == "Make netns9."
    assert exercise.hints == ["First hint, on two lines.", "Second hint."]
    assert [c.text for c in exercise.solution] == ["ip netns add netns9"]
    assert [c.target for c in exercise.checks] == ["127.0.0.1"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("```solution", "```console"), "not console: its commands are the student's to type"),
    (lambda t: t + "\n## Another step\n", "the 'Your turn' section comes last"),
    (lambda t: t.replace("```solution\nhost# ip netns add netns9\n```", ""), "needs a solution block"),
    (lambda t: t.replace("## A step\n", "## A step\n\n```hint\nToo early.\n```\n"), "belongs in a '## Your turn"),
    (lambda t: t.replace("host# ip netns add netns9", "host# rm -rf /"), "05-ex.md:"),
])
def test_a_bad_exercise_names_its_line(tmp_path: Path, change, message: str) -> None:
    with pytest.raises(LessonError, match=re.escape(message)):
        parse_lesson(write_lesson(tmp_path, "05-ex.md", change(EXERCISE)))


def test_every_lesson_has_an_exercise_of_its_own() -> None:
    course = Course.load()
    exercises = [lesson.exercise for lesson in course.lessons]
    assert all(e is not None and e.hints and e.solution and e.checks for e in exercises)
    assert len({tuple(c.text for c in e.solution) for e in exercises}) == len(exercises)


# -- prose for one mode's students --------------------------------------------------------------

MODED = """\
# Lesson 5: Modes

Both.
<!-- host mode only -->
Your VM's own namespace.
<!-- end -->

## Step

<!-- sandbox only -->
The lab host starts that way.
<!-- end -->
<!-- host mode only -->
Your VM may not.

```text
host# shown to host-mode students only
```
<!-- end -->

```console
host# ip netns add netns0
```

After.
"""


def test_prose_for_one_mode_reaches_only_its_students(tmp_path: Path) -> None:
    path = write_lesson(tmp_path, "05-modes.md", MODED)
    sandbox, host = parse_lesson(path), parse_lesson(path, "host")
    assert (sandbox.intro, host.intro) == ("Both.", "Both.\nYour VM's own namespace.")
    assert sandbox.steps[0].before == "The lab host starts that way."
    assert host.steps[0].before == "Your VM may not.\n\n```text\nhost# shown to host-mode students only\n```"
    assert sandbox.steps[0].after == host.steps[0].after == "After."
    assert sandbox.steps[0].commands == host.steps[0].commands


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.replace("After.", "After.\n<!-- sandbox only -->"), "is never closed"),
    (lambda t: t.replace("After.", "After.\n<!-- end -->"), "closes nothing"),
    (lambda t: t.replace("Your VM may not.", "<!-- sandbox only -->"), "cannot start inside another"),
])
def test_a_bad_mode_section_names_its_line(tmp_path: Path, change, message: str) -> None:
    """(A section may hold whole steps and their blocks: lesson 6's knock from outside is a
    sandbox step, tested below.)"""
    path = write_lesson(tmp_path, "05-modes.md", change(MODED))
    with pytest.raises(LessonError, match=message):
        parse_lesson(path)


def test_a_mode_section_may_hold_a_whole_step_and_its_blocks(tmp_path: Path) -> None:
    text = MODED.replace("## Step", "<!-- sandbox only -->\n## Sandbox step\n\nOnly here.\n\n```console\n"
                                    "host# ip netns add netns7\n```\n\n<!-- end -->\n## Step", 1)
    path = write_lesson(tmp_path, "05-modes.md", text)
    sandbox, host = parse_lesson(path), parse_lesson(path, "host")
    assert [s.title for s in sandbox.steps][-2:] == ["Sandbox step", "Step"]
    assert "Sandbox step" not in [s.title for s in host.steps] and len(host.steps) == len(sandbox.steps) - 1
    assert [c.text for c in sandbox.steps[-2].commands] == ["ip netns add netns7"]


def test_a_sandbox_only_lesson_is_left_out_of_the_host_mode_course(tmp_path: Path) -> None:
    write_lesson(tmp_path, "01-both.md", "# Lesson 1: Both\n\n## Step\n\n```console\nhost# ip netns add netns0\n```\n")
    write_lesson(tmp_path, "02-sandbox.md", "# Lesson 2: Sandbox\n\n<!-- lesson: sandbox only -->\nIntro.\n\n"
                                            "## Step\n\n```console\nhost# ip netns add netns1\n```\n")
    sandbox, host = Course.load(tmp_path), Course.load(tmp_path, mode="host")
    assert [le.number for le in sandbox.lessons] == [1, 2] and [le.number for le in host.lessons] == [1]
    assert sandbox.lessons[1].intro == "Intro."  # the marker is no prose
    late = ("# Lesson 3: Late\n\n## Step\n\n<!-- lesson: sandbox only -->\n\n"
            "```console\nhost# ip netns add netns2\n```\n")
    with pytest.raises(LessonError, match="belongs in the lesson's introduction"):
        parse_lesson(write_lesson(tmp_path, "03-late.md", late))
    assert "dns" not in [le.slug for le in Course.load(mode="host").lessons]  # the course's lesson 13


def test_sandbox_students_never_read_host_mode_paragraphs() -> None:
    """The course's own host-mode paragraphs (the stand-in client, the VM's settings) are in
    the host-mode course only, and no marker is left in either; the notebooks are the
    sandbox's."""
    sandbox, host = Course.load(), Course.load(mode="host")

    def prose(course: Course) -> str:
        return "\n".join([lesson.intro for lesson in course.lessons]
                         + [step.prose for step in course.steps]
                         + [lesson.exercise.prose for lesson in course.lessons if lesson.exercise])

    for words in ("nsclient0", "Your VM may have it on", "your VM's own namespace", "reads your VM's"):
        assert words in prose(host) and words not in prose(sandbox), words
    assert "<!--" not in prose(sandbox) and "<!--" not in prose(host)
    notebooks = "".join(p.read_text() for p in (ROOT / "notebooks").glob("*.ipynb"))
    assert "nsclient0" not in notebooks and "<!--" not in notebooks
