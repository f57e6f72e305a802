"""How a trace looks: the packet's path, hop by hop, there and back, and the verdict.

One table per direction (namespace, the device it came in by, what the kernel did, and
the route lookup or link that decided), then where it stopped and why, and the evidence
(counters that moved, rules that counted, the kernel's drop reasons). Registered with
the views' dispatcher, so a Trace draws itself in a terminal, a notebook and the demo.
Marks (✔ ✘ →) carry the meaning as well as the colours do.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from netstep import i18n
from netstep.course.checks import said
from netstep.i18n import N_, fill
from netstep.ops.trace import Trace
from netstep.present.views import renderable
from netstep.state.paths import Hop, Path

ACTIONS = {"sent": (N_("sent"), "cyan"), "forwarded": (N_("forwarded"), "cyan"),  # (translated where drawn)
           "delivered": (N_("✔ delivered"), "green"), "dropped": (N_("✘ dropped"), "bold red"),
           "left": (N_("→ out of the lab"), "cyan")}


def path_table(title: str, path: Path | None) -> RenderableType:
    if path is None or not path.hops:
        return Text.assemble((i18n._("{title}:").format(title=title) + " ", "bold"),
                             (i18n._("none (the packet never arrived)"), "dim"))
    table = Table(title=Text(title, style="bold"), title_justify="left", box=None, padding=(0, 1), expand=False)
    table.add_column(i18n._("namespace"), style="bold", no_wrap=True)
    table.add_column(i18n._("in"), no_wrap=True)
    table.add_column(i18n._("what"), no_wrap=True)
    table.add_column(i18n._("the kernel's decision"))
    for hop in path.hops:
        label, style = ACTIONS.get(hop.action, (hop.action, ""))
        table.add_row(hop.ns, hop.arrived_on or "-", Text(i18n._(label), style=style), _decision(hop))
    return table


def _decision(hop: Hop) -> Text:
    out = Text.assemble((hop.lookup.command(), "dim"), ": ", hop.lookup.describe())
    if hop.link:
        out.append("\n" + " → ".join(hop.link), style="dim")
    if hop.problem:
        out.append("\n" + hop.problem, style="red")
    return out


def evidence_lines(evidence: dict) -> list[Text]:
    lines = []
    for ns, moved in (evidence.get("counters") or {}).items():
        shown = ", ".join(f"{key} +{value}" for key, value in moved.items())
        lines.append(Text.assemble(*fill(i18n._("counters {ns}: {shown}"), "dim", ns=(ns, "bold"), shown=shown)))
    for rule in evidence.get("rules") or ():
        lines.append(Text.assemble(*fill(i18n._("rule {rule}"), "dim", rule=rule)))
    for flow in evidence.get("conntrack") or ():
        lines.append(Text.assemble(*fill(i18n._("conntrack {flow}"), "dim", flow=flow)))
    for drop in dict.fromkeys(evidence.get("kernel") or ()):
        lines.append(Text.assemble(*fill(i18n._("kernel drop {reason}"), "dim", reason=drop)))
    for held in evidence.get("sockets") or ():  # a bind check's: the socket in the way, and its process
        lines.append(Text.assemble((i18n._("socket") + " ", "dim"), held))
    for line in evidence.get("resolv.conf") or ():  # a dns check's: the file and the nameserver it read
        lines.append(Text.assemble(("resolv.conf ", "dim"), line))
    return lines


@renderable.register
def _(trace: Trace) -> RenderableType:
    result, finding = trace.result, trace.finding
    mark, style = ("✔", "green") if trace.reachable else ("✘", "red")
    head = Text.assemble((f"{mark} {i18n._(result.actual)}", f"bold {style}"), f": {said(result.detail)}")
    verdict = Text.assemble(*fill(i18n._("where: {where}"), "bold", where=finding.where or i18n._("unknown")), "\n",
                            *fill(i18n._("why: {why}"), "bold", why=finding.why))
    parts: list[RenderableType] = [head, *_asked(trace), Text(""), path_table(i18n._("there"), trace.forward)]
    if trace.reachable or trace.reply is not None:
        parts.append(path_table(i18n._("and back"), trace.reply))
    parts += [Text(""), verdict]
    lines = evidence_lines(finding.evidence)
    if lines:
        parts += [Text(""), Text(i18n._("evidence"), style="bold"), *lines]
    parts += [Text(note, style="dim italic") for note in trace.notes]
    title = Text.assemble(*fill(i18n._("{trace} {kind} {source} → {to}"), "", trace=(i18n._("trace"), "bold"),
                                kind=trace.check.kind, source=trace.check.source, to=result.to))
    return Panel(Group(*parts), title=title, title_align="left", expand=False)


def _asked(trace: Trace) -> list[Text]:
    """A dns trace's line: the resolv.conf the source's programs read, and whom it names."""
    asked = trace.asked
    if asked is None:
        return []
    if asked.server is None:
        return [Text.assemble(*fill(i18n._("{ns}'s programs read {path}, which names no nameserver"), "",
                                    ns=(asked.ns, "bold"), path=asked.resolv))]
    return [Text.assemble(*fill(i18n._("{ns}'s programs read {path}: nameserver {server}"), "",
                                ns=(asked.ns, "bold"), path=asked.resolv, server=(asked.server, "bold")))]
