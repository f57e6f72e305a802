"""Drawing netstep's objects with rich: the same renderables serve terminals and notebooks.

Importing this module hands `renderable` to netstep.render, through which every
RenderMixin object draws itself; a front end imports it before it draws, and registers
renderers of its own types here (netstep.tutor does). Front ends print these; the engine
never does. Marks and signs (✔ ✘ + - ~) carry the
meaning as well as the colours do, so output stays readable with NO_COLOR and in a pipe.
"""

from __future__ import annotations

import re
from functools import singledispatch

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netstep import i18n, render
from netstep.core.challenges import Begun
from netstep.core.grading import Hint, Solution, Verdict
from netstep.core.reconcile import Reconciliation
from netstep.core.results import OwnResult, StepResult
from netstep.course.checks import REASON_TEXT, Check, CheckResult, said
from netstep.course.course import Course
from netstep.course.lessons import Exercise, Lesson, Step
from netstep.course.predictions import Prediction, Score, question
from netstep.i18n import N_, fill
from netstep.kernel.registry import natural
from netstep.present import coaching, prose
from netstep.state.diff import Diff
from netstep.state.snapshot import CACHE_PARTS, CONFIG_PARTS, NamespaceState, Snapshot

TITLES = {  # translated where drawn (title())
    "links": N_("Devices"), "addresses": N_("Addresses"), "routes": N_("Routes"), "rules": N_("iptables rules"),
    "sysctls": N_("Sysctls"), "neighbours": N_("Neighbours (ARP)"), "fdb": N_("Bridge forwarding table"),
    "conntrack": N_("Connection tracking"), "counters": N_("Counted by the checks"),
}


def title(part: str) -> str:
    """A part's title in the chosen language."""
    return i18n._(TITLES[part])


@singledispatch
def renderable(obj) -> RenderableType:
    return Text(repr(obj))


def translated(entry: str) -> bool:
    """Whether a conntrack entry records a NAT rewrite: its reply is not its original
    direction turned around (`src=A dst=B ... src=B dst=A` is a connection NAT left alone)."""
    words = dict.fromkeys(("src", "dst", "sport", "dport"))
    sides: list[dict] = [{}, {}]
    for word in entry.split():
        key, _, value = word.partition("=")
        if key in words:
            side = sides[0] if key not in sides[0] else sides[1]
            side[key] = value
    original, reply = sides
    return (reply.get("src"), reply.get("dst"), reply.get("sport"), reply.get("dport")) != \
        (original.get("dst"), original.get("src"), original.get("dport"), original.get("sport"))


@renderable.register
def _(state: NamespaceState, parts: tuple[str, ...] = CONFIG_PARTS + CACHE_PARTS, *,
      nat_only: bool = False) -> RenderableType:
    """A namespace's state; with `nat_only` (a step that shows conntrack, to show NAT at work)
    only the entries that record a rewrite, and a count of the others."""
    rows: list[tuple[Text, Text]] = []
    shown = [part for part in parts if state.part(part) or part not in CACHE_PARTS]
    width = max((Text(title(part)).cell_len for part in shown), default=0)
    for part in shown:
        entries = state.part(part)
        if part == "conntrack" and nat_only:
            kept = [entry for entry in entries if translated(entry)]
            lines = [Text(entry) for entry in kept]
            if len(kept) < len(entries):
                lines.append(Text(i18n._("(and {count} more, which no NAT rule rewrote)").format(
                    count=len(entries) - len(kept)), style="dim"))
        elif part == "links":
            lines = [Text.assemble((link.name, "bold"), ": ", _link_text(link.describe())) for link in state.links]
        elif part == "rules":
            lines = [_rule_text(rule) for rule in entries]
        elif part == "counters":
            lines = [Text(_counted(entry)) for entry in entries]
        else:
            lines = [Text(entry) for entry in entries]
        for i, line in enumerate(lines or [Text(i18n._("(none)"), style="dim")]):
            label = Text(title(part) if i == 0 else "", style="bold cyan")
            rows.append((label.append(" " * (width - label.cell_len + 2)), line))
    return Panel(Hanging(rows), title=f"[bold]{state.name}[/]", title_align="left", expand=False)


MIN_ROOM = 12  # columns a text keeps beside its label, however narrow the terminal


def _counted(entry: str) -> str:
    """A counter line ("filter FORWARD policy DROP: +1 packet", kept in English as data)
    in the reader's language."""
    match = re.fullmatch(r"(.*): \+(\d+) packets?", entry)
    if match is None:
        return entry
    count = int(match[2])
    return i18n.ngettext("{rule}: +{count} packet", "{rule}: +{count} packets", count).format(
        rule=match[1], count=count)


class Hanging:
    """Lines of (label, text), a text too long for the width wrapped under itself, not
    under its label. Drawn as one Text: the rich Tables this replaces measured every cell
    of every row, and 30 containers make a diff of 300 rows."""

    def __init__(self, rows: list[tuple[Text, Text]]) -> None:
        self.rows = rows

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        out = Text(no_wrap=True, overflow="fold")
        for label, text in self.rows:
            room = max(options.max_width - label.cell_len, MIN_ROOM)
            lines = [text] if text.cell_len <= room else text.wrap(console, room)
            for i, line in enumerate(lines):
                if out:
                    out.append("\n")
                out.append_text(label if i == 0 else Text(" " * label.cell_len))
                out.append_text(line)
        yield out

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widest = max((label.cell_len + text.cell_len for label, text in self.rows), default=0)
        label = max((label.cell_len for label, _ in self.rows), default=0)
        return Measurement(min(widest, label + MIN_ROOM), widest).clamp(max_width=options.max_width)


def _link_text(text: str) -> Text:
    out = Text(text)
    out.highlight_words(["UP"], style="green")
    out.highlight_words(["DOWN"], style="red")
    return out


def _rule_text(rule: str) -> Text:
    table, _, rest = rule.partition(" ")
    return Text.assemble((f"{table:<7}", "magenta"), rest)


def render_state(state: NamespaceState, parts: tuple[str, ...], *, nat_only: bool = False) -> RenderableType:
    return renderable.dispatch(NamespaceState)(state, parts, nat_only=nat_only)


@renderable.register
def _(snapshot: Snapshot) -> RenderableType:
    return Group(*(renderable(state) for state in snapshot.namespaces.values()))


@renderable.register
def _(d: Diff) -> RenderableType:
    if not d:
        return Text(i18n._("No change to devices, addresses, routes, rules or sysctls."), style="dim")
    width = max(len(ns.name) for ns in d.namespaces)
    return Hanging([(Text.assemble((sign, f"bold {style}"), " ", (f"{name:<{width}}", "cyan"), " "),
                     Text(line, style=style)) for sign, name, line, style in _diff_lines(d)])


# A namespace made or removed is told in those words: its sysctls are the kernel's defaults
# (rp_filter, bridge-nf-call-iptables, ...), which no lesson has named yet. (The JSON diff
# still lists each one: it is exactly what changed in the kernel.)
WHOLE = {"added": ("+", "green", N_("namespace created, with the kernel's default settings")),
         "removed": ("-", "red", N_("namespace removed, with its settings"))}


def _diff_lines(d: Diff):
    """(sign, namespace, line, style) for each line of `d`."""
    for ns in d.namespaces:
        if ns.status != "changed":
            sign, style, line = WHOLE[ns.status]
            yield sign, ns.name, i18n._(line), style
        for part in ns.parts:
            if ns.status != "changed" and part.part == "sysctls":
                continue
            label = title(part.part).lower()
            for line in part.removed:
                yield "-", ns.name, f"{label}: {line}", "red"
            for old, new in part.changed:
                yield "~", ns.name, f"{label}: {old}  →  {new}", "yellow"
            for line in part.added:
                yield "+", ns.name, f"{label}: {line}", "green"
            if part.reordered:
                yield "~", ns.name, i18n._("{part}: same entries, new order").format(part=label), "yellow"


@renderable.register
def _(check: Check) -> RenderableType:
    return Text(i18n._("{check}: expect {expectation}").format(check=check.describe(),
                                                               expectation=check.expectation()))


@renderable.register
def _(result: CheckResult) -> RenderableType:
    mark, style = ("✔", "green") if result.ok else ("✘", "bold red")
    check = result.check
    seen = REASON_TEXT.get(result.reason, result.detail) if result.actual == "unreachable" else result.detail
    expect = outcome(check.expect) + (f" ({check.reason})" if check.reason else "")
    fields = dict(mark=(mark, style), kind=(f"{check.kind:<4}", "bold"), route=coaching.route(result),
                  expect=expect, actual=(outcome(result.actual), "green" if result.actual == "reachable" else "yellow"),
                  seen=i18n._(seen) if seen in REASON_TEXT.values() else said(seen), because=check.because)
    line = (i18n._("{mark} {kind} {route}  expected {expect}, as {because}, got {actual}: {seen}") if check.because
            else i18n._("{mark} {kind} {route}  expected {expect}, got {actual}: {seen}"))
    text = Text.assemble(*fill(line, "dim", **fields))
    if result.actual == "unreachable" and result.detail and result.detail not in seen:
        text.append(f" [{said(result.detail)}]", style="dim")
    if result.actual == "unreachable" and result.why:  # where and why, from the kernel's evidence
        text.append(f"\n     ↳ {result.where or '?'}: {result.why}", style="yellow" if result.ok else "red")
    return text


# A step with more checks than this (30 containers make 870) shows them in groups: no one
# reads 870 alike lines, and drawing them was most of such a run's time. Every check that
# did not come out as expected is still shown on its own; `--json` lists each one.
MANY = 12


def outcome(word: str) -> str:
    """reachable / unreachable (course.checks.EXPECTS) in the chosen language."""
    return i18n._(word)


def check_lines(results: list[CheckResult]) -> list[RenderableType]:
    """The results of a step's checks: each one, or, for many, those that got through as
    expected counted in a line per kind, and every other one on its own (an expected
    failure keeps its where and why)."""
    if len(results) <= MANY:
        return [renderable(r) for r in results]
    counted = [r for r in results if r.ok and r.actual == "reachable"]
    lines: list[RenderableType] = [renderable(r) for r in results if not (r.ok and r.actual == "reachable")]
    groups: dict[str, list[CheckResult]] = {}
    for r in counted:
        groups.setdefault(r.check.kind, []).append(r)
    for kind, group in groups.items():
        lines.append(Text.assemble(*fill(
            i18n._("{mark} {count} × {kind} {span}: {reachable}, as expected"), "dim", mark=("✔", "green"),
            count=(str(len(group)), "bold"), kind=(f"{kind:<4}", "bold"),
            span=_span([r.check.source for r in group], [r.to for r in group]),
            reachable=(outcome("reachable"), "green"))))
    return lines


def _questions_in_groups(checks: list[Check]) -> list[Text]:
    """Many checks asked in a line per kind, with no answer: which of them get through?"""
    groups: dict[str, list[Check]] = {}
    for c in checks:
        groups.setdefault(c.kind, []).append(c)
    return [Text.assemble(*fill(i18n._("  {count} × {kind} {span}: which get through?"), "dim",
                                count=(str(len(group)), "bold"), kind=(f"{kind:<4}", "bold"),
                                span=_span([c.source for c in group], [c.destination() for c in group])))
            for kind, group in groups.items()]


def _span(sources: list[str], targets: list[str]) -> str:
    """'from netns0 … netns29 to 30 addresses': where a group of checks goes."""
    def few(names: list[str], many: str) -> str:
        names = sorted(set(names), key=natural)
        if len(names) <= 2:
            return i18n._("{first} and {second}").format(first=names[0], second=names[1]) if len(names) == 2 \
                else names[0]
        return many.format(first=names[0], last=names[-1], count=len(names))
    return i18n._("from {sources} to {targets}").format(
        sources=few(sources, i18n._("{first} … {last} ({count} namespaces)")),
        targets=few(targets, i18n._("{first} … {last} ({count} addresses)")))


def commands_view(step: Step) -> RenderableType:
    code = "\n".join(f"{c.where}# {c.text}" for c in step.commands)
    return prose.commands(code)


def step_intro(step: Step, *, asking: bool = False, internet: str | None = None) -> RenderableType:
    """A step before it runs: its heading, the prose that sets the scene, the questions its
    checks ask (unless the student is about to be asked them one by one) and the commands.
    Never what the checks expect: that comes with the result, and step.after."""
    parts: list[RenderableType] = [Text(i18n._("Step {ref}: {title}").format(ref=step.ref, title=step.title),
                                         style="bold")]
    if step.before:
        parts.append(prose.markdown(step.before))
    if step.checks and not asking:
        parts.append(Text(i18n._("The checks ask:"), style="bold"))
        if len(step.checks) > MANY:
            parts.extend(_questions_in_groups(step.checks))
        else:
            parts.extend(Text(f"  {question(c, internet)}") for c in step.checks)
    if step.commands:
        parts.append(commands_view(step))
    return Group(*parts)


@renderable.register
def _(step: Step) -> RenderableType:
    return step_intro(step)


@renderable.register
def _(result: StepResult) -> RenderableType:
    step = result.step
    parts: list[RenderableType] = []
    if result.reconciled:
        parts.append(reconciled_view(result.reconciled))
    if result.reconciled and result.direction == "undo" and result.diff.title.startswith("your own"):
        return Group(*parts)  # the move was only that: the student's work taken back
    moved = i18n._("Applied step {ref}: {title}") if result.direction == "apply" else \
        i18n._("Rolled back step {ref}: {title}")
    parts.append(Text.assemble(*fill(moved, "bold", ref=(step.ref, "bold"), title=(step.title, "bold cyan"))))
    parts.append(Panel(renderable(result.diff), title=i18n._("What changed"), title_align="left", expand=False))
    if result.checks:
        parts.append(Text(i18n._("Checks"), style="bold"))
        parts.extend(check_lines(result.checks))
    if result.shown is not None:
        for show in step.shows:
            wanted = CONFIG_PARTS + CACHE_PARTS if show.what == "all" else (show.what,)
            for ns in show.namespaces:
                if ns in result.shown.namespaces:
                    parts.append(render_state(result.shown[ns], wanted, nat_only=show.what == "conntrack"))
    return Group(*parts)


@renderable.register
def reconciled_view(done: Reconciliation) -> RenderableType:
    """What a move took back of the student's own changes, and what it put back, by command."""
    parts: list[RenderableType] = []
    if done.changes:
        parts.append(Text(i18n._("The lab differed from where the course stands; first, netstep"), style="bold"))
    if done.removed:
        parts.append(Text(i18n._("removed what you added:")))
        parts += [Text(f"  - {change.describe()}", style="red") for change in done.removed]
    if done.restored:
        parts.append(Text(i18n._("put back or set again what the course had:")))
        parts += [Text(f"  + {change.describe()}", style="green") for change in done.restored]
    if done.kept:
        parts.append(Text(i18n._("Changed in this machine's own network since the last move, not by netstep, "
                                 "and left as it is (netstep changes only what it made there):")))
        parts += [Text(f"  {entry}", style="yellow") for entry in done.kept]
    return Group(*parts)


@renderable.register
def _(lesson: Lesson) -> RenderableType:
    parts: list[RenderableType] = [Text(lesson.title, style="bold underline")]
    if lesson.intro:
        parts.append(prose.markdown(lesson.intro))
    for step in lesson.steps:
        parts.append(Text(f"  {step.ref}  {step.title}"))
    return Group(*parts)


@renderable.register
def _(course: Course) -> RenderableType:
    table = Table(title=i18n._("netstep: the course"), title_justify="left")
    table.add_column("#", justify="right")
    table.add_column(i18n._("Lesson"), style="cyan", no_wrap=True)
    table.add_column(i18n._("Title"))
    table.add_column(i18n._("Steps"), justify="right")
    for lesson in course.lessons:
        heading = lesson.title.replace("：", ":").split(":", 1)[-1].strip()
        table.add_row(str(lesson.number), lesson.slug, heading, str(len(lesson.steps)))
    return table


@renderable.register
def _(result: OwnResult) -> RenderableType:
    code = "\n".join(f"{c.where}# {c.text}" for c in result.commands)
    return Group(
        prose.commands(code),
        Panel(renderable(result.diff), title=i18n._("What changed"), title_align="left", expand=False),
    )


renderable.register(Prediction, coaching.prediction_view)
renderable.register(Score, coaching.score_view)
renderable.register(Hint, coaching.hint_view)
renderable.register(Exercise, coaching.exercise_view)
renderable.register(Verdict, lambda verdict: coaching.verdict_view(verdict, renderable))
renderable.register(Solution, lambda solution: coaching.solution_view(solution, renderable))
renderable.register(Begun, coaching.begun_view)

render.use(renderable)  # every RenderMixin object now draws through this module
