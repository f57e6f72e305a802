"""What the room reads: the parts of the stage, as rich renderables.

A step on stage is its title, a few lines of narration, its commands (revealed as if
typed, see typewriter.py), then the result: the diff of the namespaces it changed and its
checks, expected against actual. Kept short and plain so that it reads from the back of
a room; the full prose stays in the lesson files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.markdown import Markdown
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netstep.core.results import StepResult
from netstep.course.checks import PROBES, Check, CheckResult
from netstep.course.lessons import Lesson, Step
from netstep.course.predictions import question
from netstep.i18n import N_, _
from netstep.state.diff import Diff

NARRATION_CHARS = 320


def first_paragraph(markdown: str, limit: int = NARRATION_CHARS) -> str:
    """The opening paragraph of some prose, cut at a sentence end if it runs long."""
    paragraph = ""
    for block in re.split(r"\n\s*\n", markdown.strip()):
        if block.strip() and not block.lstrip().startswith(("```", "~~~", "|", "-", "*", "#")):
            paragraph = " ".join(block.split())
            break
    if len(paragraph) <= limit:
        return paragraph
    sentences = re.split(r"(?<=[.!?:])\s+", paragraph)
    out = ""
    for sentence in sentences:
        if out and len(out) + len(sentence) + 1 > limit:
            break
        out = f"{out} {sentence}".strip()
    return out if len(out) <= limit else out[: limit - 1].rstrip() + "…"


def narration(text: str) -> RenderableType:
    return Markdown(first_paragraph(text)) if text.strip() else Text("")


def step_title(step: Step, verb: str = "") -> Text:
    title = Text()
    if verb:
        title.append(f"{verb} ", "bold")
    title.append(_("Step {ref}").format(ref=step.ref) + "  ", "bold cyan")
    title.append(step.title, "bold")
    return title


def command_lines(step: Step) -> list[tuple[str, str]]:
    """The step's commands as (prompt, command) pairs, as a student would type them."""
    return [(f"{command.where}# ", command.text) for command in step.commands]


def typed(lines: Sequence[tuple[str, str]], shown: int | None = None, *, undone: bool = False) -> Text:
    """The commands with the first `shown` characters of their text revealed (None: all)."""
    total = sum(len(text) for _, text in lines)
    left = total if shown is None else min(shown, total)
    out = Text()
    for n, (prompt, text) in enumerate(lines):
        if n and left <= 0:
            break
        part = text[:left]
        left -= len(part)
        if n:
            out.append("\n")
        out.append(prompt, "dim strike" if undone else "bold green")
        out.append(part, "dim strike" if undone else "bold")
    if shown is not None and shown < total:
        out.append("▌")
    return out


SINGULAR = {"links": N_("device"), "addresses": N_("address"), "routes": N_("route"), "rules": N_("rule"),
            "sysctls": "sysctl"}


def diff_view(d: Diff) -> RenderableType:
    """A diff for the room: one line per change, namespaces that came or went in a line or two.

    A new namespace's default sysctls and loopback address, and everything inside a removed
    namespace, are left out: the picture beside it shows the rest.
    """
    if not d:
        return Text(_("No change to devices, addresses, routes, rules or sysctls."), style="dim")
    table = Table(show_header=False, box=None, padding=(0, 1), pad_edge=False)
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, style="bold")
    table.add_column()
    for ns in d.namespaces:
        if ns.status != "changed":
            sign, style = ("+", "green") if ns.status == "added" else ("-", "red")
            table.add_row(Text(sign, style), ns.name, Text(_("namespace added") if ns.status == "added" else
                                                           _("namespace removed"), style))
            if ns.status == "removed":
                continue
        for part in ns.parts:
            if ns.status == "added" and part.part == "sysctls":
                continue
            label = _(SINGULAR.get(part.part, part.part))
            for line in part.removed:
                table.add_row(Text("-", "red"), ns.name, Text(f"{label} {line}", "red"))
            for old, new in part.changed:
                table.add_row(Text("~", "yellow"), ns.name, Text(f"{label} {old} → {new}", "yellow"))
            for line in part.added:
                if ns.status == "added" and line.startswith("lo 127."):
                    continue
                table.add_row(Text("+", "green"), ns.name, Text(f"{label} {line}", "green"))
            if part.reordered:
                table.add_row(Text("~", "yellow"), ns.name,
                              Text(_("{part}: same entries, new order").format(part=part.part), "yellow"))
    return table


def diff_panel(result: StepResult) -> RenderableType:
    title = _("What changed") if result.direction == "apply" else _("What the rollback changed")
    return Panel(diff_view(result.diff), title=title, title_align="left", expand=True)


def checks_view(results: Sequence[CheckResult], heading: str = "") -> RenderableType:
    """A table: each check, what the lesson expects and what the kernel did, marked ✔ or ✘."""
    if not results:
        return Text("")
    passed = sum(r.ok for r in results)
    summary = Text.assemble((f"{heading or _('Checks')}  ", "bold"),
                            (_("{passed}/{total} as expected").format(passed=passed, total=len(results)),
                                                       "green" if passed == len(results) else "bold red"))
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="dim", pad_edge=False)
    table.add_column("", no_wrap=True)
    table.add_column(_("check"))
    table.add_column(_("expected"), min_width=11)
    table.add_column(_("got"), min_width=18)
    for result in results:
        check = result.check
        mark = Text("✔", "green") if result.ok else Text("✘", "bold red")
        expected = _(check.expect) + (f" ({check.reason})" if check.reason else "")
        got = _(result.actual) + (f" ({result.reason})" if result.actual == "unreachable" else "")
        style = "" if result.ok else "bold red"
        got_style = style or ("green" if result.actual == "reachable" else "yellow")
        table.add_row(mark, Text(f"{check.kind} {check.source} → {result.to}", style),
                      Text(expected, style), Text(got, got_style))
    return Group(summary, table)


def check_to_trace(step: Step, result: StepResult | None, traced: Sequence[Check]) -> Check | None:
    """The check `t` traces next: those that came out unreachable first, then the others,
    one after the other on each press; None where no check sends a packet to follow (a
    bind or dns check's)."""
    sent = [check for check in step.checks if check.kind in PROBES]
    failed = [r.check for r in result.checks if r.actual == "unreachable" and r.check in sent] \
        if result and result.step is step else []
    order = failed + [check for check in sent if check not in failed]
    if not order:
        return None
    pressed = sum(check in step.checks for check in traced)
    return order[pressed % len(order)]


def result_view(result: StepResult, checks: Sequence[CheckResult] | None = None, heading: str = "") -> Group:
    """The outcome of a move: its diff, then its checks (or checks run again)."""
    parts: list[RenderableType] = [diff_panel(result)]
    results = result.checks if checks is None else checks
    if results:
        parts.append(checks_view(results, heading))
    return Group(*parts)


def lesson_card(lesson: Lesson, next_step: Step | None, note: str = "") -> Group:
    """The start of a lesson (its title goes above): the gist of its introduction, and what comes next."""
    parts: list[RenderableType] = []
    if lesson.intro:
        parts.append(narration(lesson.intro))
    if note:
        parts += [Text(""), Text(note, style="dim")]
    if next_step is not None:
        parts += [Text(""), Text.assemble((_("Next: "), "bold"), (_("step {ref}").format(ref=next_step.ref) + "  ",
                                                                   "cyan"), next_step.title),
                  Text(_("Press → or space to apply it."), style="dim")]
    return Group(*parts)


def end_card(last: Step | None, note: str = "") -> Group:
    parts: list[RenderableType] = [Text(_("The end of the demo."), style="bold")]
    if last is not None:
        parts.append(Text(_("The lab stands after step {ref}: {title}.").format(ref=last.ref, title=last.title)))
    if note:
        parts.append(Text(note, style="dim"))
    parts.append(Text(_("← rolls steps back, a number jumps to a lesson, q quits."), style="dim"))
    return Group(*parts)


def notes_view(step: Step | None, upcoming: Step | None) -> Group:
    """Presenter notes for the step on stage, and the title of the one after it."""
    if step is None:
        return Group(Text(_("No step on stage yet."), style="dim"))
    parts: list[RenderableType] = [step_title(step), Text("")]
    if step.notes:
        for paragraph in note_paragraphs(step.notes):
            parts += [note_text(paragraph), Text("")]
        parts.pop()
    else:
        parts.append(Text(_("This step has no presenter notes."), style="dim"))
    if upcoming is not None:
        parts += [Text(""), Text.assemble((_("Next up: "), "bold"),
                                          _("step {ref}").format(ref=upcoming.ref) + f"  {upcoming.title}")]
    return Group(*parts)


def note_paragraphs(notes: str) -> list[str]:
    """Notes as paragraphs: a line starting with `Say:` or `Q:` (`要说的：`, `问：`) starts one,
    other lines continue it."""
    paragraphs: list[str] = []
    for line in notes.splitlines():
        line = line.strip()
        if not line:
            continue
        if paragraphs and not re.match(r"^(Say:|Q:|要说的：|问：)", line):
            paragraphs[-1] += " " + line
        else:
            paragraphs.append(line)
    return paragraphs


def note_text(paragraph: str) -> Text:
    """One paragraph of notes: `Say:`, `Q:` and `A:` stand out, `code` is bold."""
    out = Text()
    for n, piece in enumerate(paragraph.split("`")):
        if n % 2:
            out.append(piece, "bold cyan")
            continue
        for m, bit in enumerate(re.split(r"(\bSay:|\bQ:|\bA:|要说的：|问：|答：)", piece)):
            out.append(bit, ("bold" if bit in ("Say:", "要说的：") else "bold yellow") if m % 2 else None)
    return out


def questions_view(step: Step, internet: str) -> Group:
    """A step's checks as questions for a show of hands, the answers held back."""
    rows = [Text(_("Ask the room: hands up for yes, or not?"), style="bold yellow")]
    for n, check in enumerate(step.checks, 1):
        rows.append(Text.assemble((f" {n}. ", "bold"), (question(check, internet), "bold")))
    rows.append(Text(_("→, space or a reveals the answers: the step runs and its checks show what the kernel "
                       "did."), style="dim italic"))
    return Group(*rows)
