"""Notebooks generated from the lessons, so the course has one source.

`python -m netstep notebooks` writes notebooks/00-start-here.ipynb and one notebook a
lesson, and the same in every other language into notebooks/LANG/ (a lesson not translated
yet has none there): the lessons from lessons/LANG/, the cells' own words from the catalog,
and a Tutor speaking the language. A lesson notebook is the lesson's prose with, for each
step, the questions its checks ask and a cell to predict them, a `%%netstep` cell to type
it yourself and a `t.verify` cell, then its commands folded away ("show me the commands")
above a cell that applies it; then the lesson's "Your turn" exercise and a clean-up cell.
Nothing before a step's run cell says what its checks will show.
Generation is deterministic, so a test can tell when the committed
notebooks have fallen behind the lessons.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from netstep.course.challenges import Challenge, Challenges
from netstep.course.course import Course
from netstep.course.lessons import Lesson, Step
from netstep.course.predictions import question
from netstep.i18n import LANGUAGES, N_, _, speaking

KERNEL = {"display_name": "Python 3 (netstep)", "language": "python", "name": "python3"}

OPENING = N_("""# netstep: container networking, step by step

These notebooks take you through the lessons of the course on a real Linux kernel.
Each lesson notebook follows its lesson file in `lessons/`: read a step, run the cell
under it, and look at what the step did.

- **The lab.** Everything happens in a sandbox of network namespaces that netstep creates
  and owns: a lab host (the article's "root namespace", with `eth0` 10.0.2.15), an upstream
  router with an "internet host" at 203.0.113.8, and the containers the lessons make
  (`netns0`, `netns1`). The machine's own network is never touched.
- **A step** is applied with `t.step()`. Its output shows the commands, what changed in
  every namespace (`+` added, `-` removed, `~` changed), and its checks: real pings and
  HTTP requests with the outcome expected, the outcome seen, and the reason the kernel gave.
- **Predict first.** Before a step's checks run, `t.predict("r", "u", ...)` records what
  you expect each to show (r: reachable, u: unreachable); the step's output marks each
  prediction right or wrong, and `t.score()` counts them.
- **Type it yourself, or be shown.** Each step offers a `%%netstep` cell to type its
  commands yourself, then `t.verify("2.4")` compares your lab with the course's, in plain
  words, and runs the checks; `t.hint()` names the next command you are missing. Or open
  "Show me the commands" and run `t.step("2.4")`: the step is applied for you. Each
  lesson ends with a "Your turn" exercise of its own, graded the same way.
- **Going back.** `t.back()` rolls the last step back exactly; `t.rollback()` undoes the
  current lesson.
- **By hand.** In a `%%netstep` cell, type the article's commands with a prompt saying
  where they run (`host# ...`, `netns0# ...`); `t.diff()` shows what changed since the last
  step, `t.check("veth")` tests your work against a lesson's checks, and `t.undo_mine()`
  takes your commands back.
- **Looking around.** `t.inspect("netns0")` shows a namespace's devices, addresses,
  routes, neighbours, iptables rules and sysctls.
- **Pictures.** After each step a diagram of the lab shows its namespaces, the veth
  pairs between them, the bridge and the addresses, with what the step added in green
  (`+`) and what it removed struck through; `t.picture()` draws the lab now, and
  `t.trace("netns0", "internet")` draws a probe's path on it, hop by hop.

Each lesson notebook starts by bringing the lab to the state its lesson starts from, so
you can open any of them first. Its last cell removes the lab.

The kernel of these notebooks runs as you: without root, each lab lives in a user
namespace of your own (where the machine allows them: `python -m netstep doctor` says
whether it does), and as root, in the machine's own.
""")


def _tutor(lang: str) -> str:
    """The cell's Tutor: in English, the language of the environment (as the command line);
    in another language, that one, as the notebook's prose is."""
    return "t = Tutor()" if lang == "en" else f't = Tutor(lang="{lang}")'


def _setup(lesson_ref: str, lang: str) -> str:
    return "\n".join([
        "%load_ext netstep",
        "from netstep.tutor import Tutor",
        "",
        _tutor(lang),
        f't.start("{lesson_ref}")',
    ])


def lesson_notebook(lesson: Lesson, lang: str = "en") -> nbformat.NotebookNode:
    """A lesson's notebook, its cells' words in the language being spoken (see `render_all`)."""
    cells = [new_markdown_cell(f"# {lesson.title}\n\n{lesson.intro}".strip())]
    cells.append(new_markdown_cell(
        _("Run the next cell first: it opens the lab and brings it to the state this lesson "
          "starts from (applying the earlier lessons' steps silently if needed).")))
    cells.append(new_code_cell(_setup(lesson.slug, lang)))
    for step in lesson.steps:
        # Before the run cell: the scene and the questions (never their answers); after it:
        # what explains the result.
        text = f"## {step.title}\n\n{step.before}".strip()
        if step.checks:
            asks = "\n".join(f"- {question(c)}" for c in step.checks)
            text += "\n\n" + _("The checks ask:") + f"\n\n{asks}"
        cells.append(new_markdown_cell(text))
        cells += practice_cells(step)
        if step.after:
            cells.append(new_markdown_cell(step.after))
    cells += exercise_cells(lesson)
    cells += challenge_cells(lesson, Challenges.load([lesson]).items)
    cells.append(new_markdown_cell(
        _("The same kind of change in Python: `t.ipr(\"host\")` is [pyroute2](https://pyroute2.org)'s "
          "`IPRoute` in the lab host, the library netstep itself speaks netlink with. The engine does not "
          "journal what you do with it; the clean-up below removes it with the lab.")))
    cells.append(new_code_cell(
        'ipr = t.ipr("host")\nipr.link("add", ifname="scratch1", kind="bridge")\n'
        'ipr.link("set", index=ipr.link_lookup(ifname="scratch1")[0], state="up")\nt.diff()'))
    cells.append(new_markdown_cell(
        _("## Clean up\n\nThis removes the lab: its namespaces, servers and files. The next notebook "
          "builds a fresh one.")))
    cells.append(new_code_cell("t.reset()"))
    return _notebook(cells)


def practice_cells(step: Step) -> list:
    """A step's cells: predict its checks, then type it yourself and verify, and only then,
    folded away, its commands ("show me the commands") above the cell that applies it."""
    cells = []
    if step.checks:
        cells.append(new_markdown_cell(
            _("**Predict.** Before step {ref} runs, answer the questions above in the cell below, in "
              "order, as `\"r\"` (reachable: yes) or `\"u\"` (unreachable: no). The step's output then marks "
              "each one.").format(ref=step.ref)))
        example = ", ".join(['"r"'] * len(step.checks))
        cells.append(new_code_cell("t.predict()  # " + _("for example {call}").format(call=f"t.predict({example})")))
    if step.commands:
        sketch = "\n".join(f"# {c.where}# {' '.join(c.text.split()[:2])} ..." for c in step.commands)
        cells.append(new_markdown_cell(
            _("**Type it yourself**: write step {ref}'s command(s) in the `%%netstep` cell below (the "
              "comments show where each runs and how it starts), run it, then `t.verify` compares your lab "
              "with the course's and runs the checks. `t.hint()` names the next command you are missing.")
            .format(ref=step.ref)))
        cells.append(new_code_cell(f"%%netstep\n{sketch}"))
        cells.append(new_code_cell(f't.verify("{step.ref}")'))
        commands = "\n".join(f"{c.where}# {c.text}" for c in step.commands)
        cells.append(new_markdown_cell(
            "<details>\n<summary>" + _("Show me the commands") + "</summary>\n\n"
            f"```console\n{commands}\n```\n\n</details>\n\n"
            + _("**Or be shown**: the cell below applies step {ref} (only what you have not typed yourself).")
            .format(ref=step.ref)))
    else:
        cells.append(new_markdown_cell(
            _("Step {ref} runs no command: the cell below runs its checks.").format(ref=step.ref)))
    cells.append(new_code_cell(f't.step("{step.ref}")'))
    return cells


def exercise_cells(lesson: Lesson) -> list:
    """The lesson's "Your turn": its task, a cell to work in, grading, hints and the solution."""
    exercise = lesson.exercise
    if exercise is None:
        return []
    ref = exercise.ref
    work = _("Work in the `%%netstep` cell below (as many times as you like), then `{call}` grades your lab: "
             "every difference from a correct answer, and the exercise's checks.").format(call=f't.verify("{ref}")')
    return [
        new_markdown_cell(f"## {exercise.title}\n\n{exercise.prose}\n\n{work}"),
        new_code_cell("%%netstep\n# " + _("your commands, one a line: host# ..., netns0# ...")),
        new_code_cell(f't.verify("{ref}")'),
        new_markdown_cell(_("Stuck? Each run of the next cell gives one more hint. The cell after it runs "
                            "whatever is still missing and grades the result.")),
        new_code_cell(f't.hint("{ref}")'),
        new_code_cell(f't.solution("{ref}")'),
        new_markdown_cell(_("## Your predictions\n\nHow many of this lesson's checks did you call right?")),
        new_code_cell("t.score()"),
    ]


def challenge_cells(lesson: Lesson, found: list[Challenge]) -> list:
    """"Break it": the lesson's first challenge worked in the notebook (a working lab at the
    lesson's end, one thing broken), the others named for the student to try."""
    if not found:
        return []
    first, others = found[0], found[1:]
    more = ""
    if others:
        names = ", ".join(f'`t.challenge("{c.name}")`' for c in others)
        more = "\n\n" + _("More for this lesson, the same way: {names}.").format(names=names)
    how = _("The cell below builds the lab at the end of lesson {number} and breaks one thing in it, without "
            "saying what. Find it (`t.trace(\"netns0\", \"internet\")`, `t.inspect(\"host\")`), fix it in the "
            "`%%netstep` cell, then `t.verify()` grades by what works: any repair that brings the checks back "
            "passes, one that breaks something else fails.").format(number=lesson.number)
    heading = _("Break it: {name}").format(name=first.name)
    text = f"## {heading}\n\n**{first.story}**\n\n{first.prose}\n\n{how}{more}"
    return [
        new_markdown_cell(text),
        new_code_cell(f't.challenge("{first.name}")'),
        new_code_cell("%%netstep\n# " + _("your commands, the repair, one a line: host# ..., netns0# ...")),
        new_code_cell("t.verify()"),
        new_markdown_cell(_("Stuck? Each run of the next cell gives one more hint. The cell after it repairs the "
                            "lab and says what was broken. The next move of the course (`t.step()`, `t.start()`, "
                            "`t.back()`) takes the break back.")),
        new_code_cell("t.hint()"),
        new_code_cell("t.solution()"),
    ]


def opening_notebook(course: Course, lang: str = "en") -> nbformat.NotebookNode:
    listing = "\n".join(f"{le.number}. `{Path(le.path).stem}.ipynb`: {_short_title(le.title)}"
                        for le in course.lessons)
    cells = [
        new_markdown_cell(_(OPENING)),
        new_markdown_cell(_("## The lessons") + f"\n\n{listing}"),
        new_markdown_cell(_("Check that this kernel can run the course: the cell below opens a lab, lists "
                            "the course, and removes the lab again.")),
        new_code_cell(f"from netstep.tutor import Tutor\n\n{_tutor(lang)}\nt.engine.course"),
        new_code_cell("t.reset()"),
    ]
    return _notebook(cells)


def _notebook(cells: list) -> nbformat.NotebookNode:
    for i, cell in enumerate(cells):
        cell["id"] = f"cell-{i:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def _short_title(title: str) -> str:
    """A lesson's title without its "Lesson N:" (in Chinese, "第 N 课：")."""
    for colon in (":", "："):
        if colon in title:
            return title.split(colon, 1)[1].strip()
    return title


def translated(lang: str) -> tuple[Course, list[Lesson]]:
    """The course as read in `lang`: its lessons translated into it, and the lessons that
    are not yet (which have no notebook in that language). English has every lesson."""
    with speaking(lang):
        course = Course.load()
    if lang == "en":
        return course, []
    done = [le for le in course.lessons if Path(le.path).parent.name == lang]
    return Course(done, mode=course.mode), [le for le in course.lessons if le not in done]


def render_all(course: Course, lang: str = "en") -> dict[str, str]:
    """File name -> notebook JSON, for the whole course (as read in `lang`: see `translated`),
    the cells' own words in `lang` too."""
    with speaking(lang):
        books = {"00-start-here.ipynb": opening_notebook(course, lang)}
        for lesson in course.lessons:
            books[f"{Path(lesson.path).stem}.ipynb"] = lesson_notebook(lesson, lang)
    return {name: nbformat.writes(nb) + "\n" for name, nb in books.items()}


def folder_of(folder: Path, lang: str) -> Path:
    """Where `lang`'s notebooks go: `folder` itself for English, `folder`/LANG for another."""
    return folder if lang == "en" else folder / lang


def write_all(folder: Path) -> tuple[list[Path], list[tuple[str, Lesson]]]:
    """Every language's notebooks written under `folder`: the files written, and the
    (language, lesson) pairs left out because the lesson is not translated yet."""
    written: list[Path] = []
    missing: list[tuple[str, Lesson]] = []
    for lang in LANGUAGES:
        course, untranslated = translated(lang)
        missing += [(lang, lesson) for lesson in untranslated]
        place = folder_of(folder, lang)
        place.mkdir(parents=True, exist_ok=True)
        for name, text in render_all(course, lang).items():
            path = place / name
            path.write_text(text, encoding="utf-8")
            written.append(path)
    return written, missing
