"""The lab's diagram drawn: Graphviz DOT, SVG through `dot`, or text where `dot` is missing.

The placement is Graphviz's, got from the graph's own structure and never from
coordinates: the upstream on the first rank, the lab host on the second, the containers
on the third in the order of their names (invisible edges between them keep it), so a
container stays where it was when a neighbour is added. A namespace is one node, an
HTML-like table whose top cells are the devices whose cables go up and whose bottom
cells those whose cables go down (a bridge over its ports): cables meet a box at its
edge. Few colours, and each mark is also a sign (+ - ~ ✘ ✔), so a picture without
colour still says what changed. The SVG keeps its text as text (selectable, searchable)
and opens with a <title> and a <desc> (the diagram as text) for screen readers.
"""

from __future__ import annotations

import html
import re
import textwrap
from itertools import pairwise

from rich.console import Group, RenderableType
from rich.text import Text

from netstep import i18n
from netstep.errors import NetstepError
from netstep.i18n import N_
from netstep.ops.trace import Trace
from netstep.present import views
from netstep.state.diagram import Box, Device, Diagram, Item, lab_diagram, stop_of, traced
from netstep.state.snapshot import Snapshot

FONT = "Helvetica,Arial,sans-serif"
INK, LINE, FAINT, PANEL = "#24292f", "#57606a", "#8c959f", "#f6f8fa"
MARKS = {"+": "#1a7f37", "~": "#9a6700", "-": FAINT}  # added, changed, removed
PATH, STOPPED, ANSWERED = "#0969da", "#cf222e", "#1a7f37"
NO_DOT = N_("No picture: Graphviz's `dot` is not installed here (`apt install graphviz` draws the lab); "
            "as text:")  # (translated where shown)


class DrawingUnavailable(NetstepError):
    """Graphviz's `dot` is missing or failed."""


def trace_diagram(trace: Trace, internet: str = "") -> Diagram:
    """The lab the trace was walked on, with its path there and back and where it stopped."""
    check = trace.check
    if trace.asked is not None:  # a name looked up: the query went to the nameserver
        title = f"trace {check.source} → {trace.result.to} (dns, nameserver {trace.asked.server or '-'})"
    else:
        title = f"trace {check.source} → {trace.result.to}" + (f":{check.port}" if check.port else "") + \
            f" ({check.kind})"
    base = lab_diagram(trace.lab or Snapshot(), title=title, internet=internet)
    stop = stop_of(trace.forward, trace.reply, trace.reachable, trace.finding.where, trace.finding.why)
    return traced(base, trace.forward, trace.reply, stop)


# -- DOT ------------------------------------------------------------------------------------------


def dot(diagram: Diagram) -> str:
    """The diagram as Graphviz DOT: the same diagram always gives the same text."""
    ports = {(box.ns, d.name): f"p{i}" for box in diagram.boxes for i, d in enumerate(box.devices)}
    out = [f"digraph {_q(diagram.title or 'the lab')} {{",
           f'  graph [rankdir=TB, newrank=true, nodesep=0.35, ranksep=0.5, pad=0.15, bgcolor="white", '
           f'fontname="{FONT}", fontsize=13, fontcolor="{INK}", labelloc=t, labeljust=l, label={_q(diagram.title)}];',
           f'  node [shape=plain, fontname="{FONT}", fontsize=11, fontcolor="{INK}"];',
           f'  edge [dir=none, color="{LINE}", penwidth=1.4, fontname="{FONT}", fontsize=11];']
    for box in diagram.boxes:
        out.append(f"  {_q(box.ns)} [label=<{_table(box, ports)}>];")
    ranks: dict[int, list[str]] = {}
    for box in diagram.boxes:
        ranks.setdefault(box.rank, []).append(box.ns)
    for rank in sorted(ranks):
        names = ranks[rank]
        out.append("  { rank=same; " + " ".join(f"{_q(n)};" for n in names) + " }")
        out += [f"  {_q(a)} -> {_q(b)} [style=invis];" for a, b in pairwise(names)]  # keep their order
    levels = [ranks[r] for r in sorted(ranks)]
    for upper, lower in pairwise(levels):  # every box below the one above, wired or not
        out += [f"  {_q(upper[0])} -> {_q(name)} [style=invis];" for name in lower]
    for cable in diagram.cables:
        style = {"+": f', color="{MARKS["+"]}", penwidth=2.2', "-": f', color="{FAINT}", style=dashed'}
        out.append(f"  {_end(cable.a, cable.b, diagram, ports)} -> {_end(cable.b, cable.a, diagram, ports)}"
                   f" [{('id=' + _q(_cable_id(cable.a, cable.b)))}{style.get(cable.mark, '')}];")
    for leg in diagram.legs:  # drawn from the cable's upper end, as the cable is, so it runs beside it
        cable = next((c for c in diagram.cables if {c.a, c.b} == {leg.start, leg.end}), None)
        upper, lower, way = (leg.start, leg.end, "forward") if cable is None or cable.a == leg.start \
            else (leg.end, leg.start, "back")
        dashed = ", style=dashed" if leg.reply else ""
        out.append(f"  {_end(upper, lower, diagram, ports)} -> {_end(lower, upper, diagram, ports)}"
                   f' [id="leg{leg.number}", dir={way}, arrowsize=0.7, color="{PATH}", '
                   f'fontcolor="{PATH}", penwidth=2, label=" {leg.number} "{dashed}];')
    if diagram.stop is not None:
        stop = diagram.stop
        colour = ANSWERED if stop.ok else STOPPED
        text = "\\n".join(_escape_dot(line) for line in textwrap.wrap(stop.text, 44))
        out.append(f'  stop [id="stop", shape=box, style="rounded", color="{colour}", fontcolor="{colour}", '
                   f'penwidth=1.6, margin="0.12,0.06", label="{text}"];')
        out.append(f'  {_q(stop.ns)} -> stop [color="{colour}", style=dashed, constraint=false];')
        out.append(f"  {{ rank=same; {_q(stop.ns)}; stop; }}")
    out.append("}")
    return "\n".join(out) + "\n"


def _q(text: str) -> str:
    return '"' + _escape_dot(text) + '"'


def _escape_dot(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _cable_id(a: tuple[str, str], b: tuple[str, str]) -> str:
    return f"cable {a[0]}:{a[1]} {b[0]}:{b[1]}"


def _end(end: tuple[str, str], other: tuple[str, str], diagram: Diagram, ports: dict) -> str:
    """A cable's end in DOT: the box, the device's cell and the side it faces."""
    box, far = diagram.box(end[0]), diagram.box(other[0])
    side = ""
    if box and far and box.rank != far.rank:
        side = ":s" if box.rank < far.rank else ":n"
    elif end[0] == other[0]:  # both ends in one namespace: a loop on the box's right side
        side = ":e"
    return f"{_q(end[0])}:{ports[end]}{side}"


def _table(box: Box, ports: dict) -> str:
    """A namespace as an HTML-like table: devices going up, the name, its lines, devices going down."""
    border = f'COLOR="{FAINT if box.mark == "-" else MARKS["+"] if box.mark == "+" else LINE}"'
    style = ' STYLE="rounded,dashed"' if box.mark == "-" else ' STYLE="rounded"'
    rows = []
    up = [d for d in box.devices if d.facing == "up" and not _bridged(box, d)]
    if up:
        rows.append(_cells(box, up, ports))
    sign = f'<FONT COLOR="{MARKS[box.mark]}">{box.mark} </FONT>' if box.mark else ""
    rows.append(f'<TR><TD COLSPAN="2" ALIGN="LEFT" BGCOLOR="{PANEL}">{sign}<B>{_h(box.ns)}</B>'
                f'<FONT POINT-SIZE="10" COLOR="{LINE}">  {_h(i18n._(ROLES[box.role]))}</FONT></TD></TR>')
    bottom = [d for d in box.devices if (d.facing == "down" or d.link.kind == "bridge") and not _bridged(box, d)]
    inside = [d for d in box.devices if d not in up and d not in bottom and not _bridged(box, d)]
    rows += [_line(i18n._("device") if i == 0 else "", _device_text(d), ports[(box.ns, d.name)])
             for i, d in enumerate(inside)]
    for label, items in ((N_("route"), box.routes), ("sysctl", box.sysctls), ("iptables", box.rules)):
        rows += [_line(i18n._(label) if i == 0 else "", [(item, item.text)]) for i, item in enumerate(items)]
    rows += [_line(i18n._("server") if i == 0 else "", [(Item("servers", s, s), s)]) for i, s in enumerate(box.servers)]
    if bottom:
        rows.append(_cells(box, bottom, ports))
    return (f'<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="3" {border}{style}>'
            + "".join(rows) + "</TABLE>")


ROLES = {"upstream": N_("router · the internet"), "host": N_("lab host"), "container": N_("container")}


def _bridged(box: Box, device: Device) -> bool:
    master = box.device(device.link.master) if device.link.master else None
    return master is not None and master.link.kind == "bridge"


def _cells(box: Box, devices: list[Device], ports: dict) -> str:
    """A row of device cells, a bridge as a cell over its ports' cells."""
    cells = []
    for device in devices:
        if device.link.kind == "bridge":
            members = [box.device(p) for p in device.ports]
            inner = "".join(_cell(box, m, ports) for m in members if m) or '<TD BORDER="0"> </TD>'
            span = max(len(members), 1)
            cells.append(f'<TD><TABLE BORDER="1" CELLBORDER="0" CELLSPACING="3" CELLPADDING="2" COLOR="{LINE}">'
                         f'<TR><TD COLSPAN="{span}" PORT="{ports[(box.ns, device.name)]}">'
                         f"{_segments(_device_text(device))}</TD></TR><TR>{inner}</TR></TABLE></TD>")
        else:
            cells.append(_cell(box, device, ports))
    return (f'<TR><TD COLSPAN="2"><TABLE BORDER="0" CELLSPACING="4" CELLPADDING="0"><TR>{"".join(cells)}</TR>'
            f"</TABLE></TD></TR>")


def _cell(box: Box, device: Device, ports: dict) -> str:
    colour = MARKS.get(device.item.mark, LINE)
    dashed = ' STYLE="dashed"' if device.item.mark == "-" else ""
    return (f'<TD PORT="{ports[(box.ns, device.name)]}" BORDER="1" CELLPADDING="3" COLOR="{colour}"{dashed}>'
            f"{_segments(_device_text(device), '<BR/>')}</TD>")


def _device_text(device: Device) -> list[tuple[Item, str]]:
    """(item, text) pieces: the device (with DOWN, and its kind for a bridge, a TAP or TUN
    device, whose other end is a program, not a cable), then its addresses."""
    link = device.link
    words = [link.name]
    if link.kind == "bridge":
        words.append(i18n._("bridge"))
    elif link.kind in ("tap", "tun"):
        words.append(i18n._("{kind} ⇄ a program").format(kind=link.kind.upper()))
    if not link.up:
        words.append("DOWN")
    return [(device.item, " ".join(w for w in words if w)), *((a, a.text) for a in device.addresses)]


def _line(label: str, pieces: list[tuple[Item, str]], port: str = "") -> str:
    """A line of a box: a faint label, then the text (a device's cell keeps its port: a cable
    between two devices of one namespace, or of two containers, ends there)."""
    title = f'<FONT POINT-SIZE="9" COLOR="{FAINT}">{_h(label)}</FONT>' if label else ""
    named = f' PORT="{port}"' if port else ""
    return (f'<TR><TD ALIGN="LEFT" VALIGN="TOP">{title}</TD>'
            f'<TD ALIGN="LEFT" BALIGN="LEFT"{named}>{_segments(pieces)}</TD></TR>')


def _segments(pieces: list[tuple[Item, str]], sep: str = "  ") -> str:
    return sep.join(_marked(item, text) for item, text in pieces)


def _marked(item: Item, text: str) -> str:
    if not item.mark:
        return _h(text)
    body = f"<S>{_h(text)}</S>" if item.mark == "-" else _h(text)
    return f'<FONT COLOR="{MARKS[item.mark]}">{item.mark} {body}</FONT>'


def _h(text: str) -> str:
    return html.escape(text, quote=True)


# -- SVG ------------------------------------------------------------------------------------------


def svg(diagram: Diagram) -> str:
    """The diagram as an SVG document, by Graphviz's `dot` (DrawingUnavailable without it)."""
    try:
        import graphviz  # PyPI's: finds and runs `dot`, and says plainly when it is not there
    except ImportError:
        raise DrawingUnavailable("Drawing the lab needs the Python package graphviz: `pip install graphviz`.") from None
    try:
        drawn = graphviz.pipe("dot", "svg", dot(diagram).encode("utf-8"), quiet=True).decode("utf-8")
    except graphviz.ExecutableNotFound:
        raise DrawingUnavailable("Drawing the lab needs Graphviz's `dot`, which is not installed: "
                                 "`apt install graphviz` (or ./quickstart.sh) brings it.") from None
    except graphviz.CalledProcessError as exc:
        said = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise DrawingUnavailable(f"Graphviz's dot could not draw the lab: {said[0] if said else exc}") from None
    return _accessible(drawn, diagram)


def _accessible(drawn: str, diagram: Diagram) -> str:
    """The SVG as an element to put in a page: no XML prolog, a class, a size that fits a
    notebook's cell, and first a <title> and a <desc> (the diagram as text)."""
    body = drawn[drawn.index("<svg"):]
    title = diagram.title or i18n._("The lab")
    desc = "\n".join(text_lines(diagram))
    opening = body[:body.index(">") + 1]
    tag = opening.replace("<svg", '<svg class="netstep-diagram" role="img"'
                          ' style="max-width:100%;height:auto"', 1)
    tag = re.sub(r"\s+", " ", tag)
    return (f"{tag}\n<title>{_h(title)}</title>\n<desc>{_h(desc)}</desc>" + body[len(opening):]).strip() + "\n"


# -- text -----------------------------------------------------------------------------------------


def text_lines(diagram: Diagram) -> list[str]:
    """The diagram as plain lines: a box's name, its lines indented (marked), its cables."""
    return [line for _, line in _text_rows(diagram)]


def _text_rows(diagram: Diagram) -> list[tuple[str, str]]:
    """(mark, line) for every line of the text form."""
    def signed(item: Item, text: str) -> str:
        return f"{item.mark} {text}" if item.mark else text

    out = [("", diagram.title)] if diagram.title else []
    for box in diagram.boxes:
        out.append((box.mark, f"{box.mark + ' ' if box.mark else ''}{box.ns} ({i18n._(ROLES[box.role])})"))
        for device in box.devices:
            pieces = _device_text(device)
            wire = [f"{c.b[0]}:{c.b[1]}" if c.a == (box.ns, device.name) else f"{c.a[0]}:{c.a[1]}"
                    for c in diagram.cables if (box.ns, device.name) in (c.a, c.b)]
            ports = " " + i18n._("ports {names}").format(names=" ".join(device.ports)) if device.ports else ""
            text = "  ".join(signed(item, piece) for item, piece in pieces)
            mark = next((item.mark for item, _ in pieces if item.mark), "")
            out.append((mark, f"    {text}{ports}{'  ⇄ ' + ', '.join(wire) if wire else ''}"))
        for label, items in ((N_("route"), box.routes), ("sysctl", box.sysctls), ("iptables", box.rules)):
            out += [(item.mark, f"    {i18n._(label)} {signed(item, item.text)}") for item in items]
        out += [("", f"    {i18n._('server')} {server}") for server in box.servers]
    for leg in diagram.legs:
        out.append(("", f"{leg.number}. {leg.start[0]}:{leg.start[1]} → {leg.end[0]}:{leg.end[1]}"
                        f"{' ' + i18n._('(reply)') if leg.reply else ''}"))
    if diagram.stop is not None:
        out.append(("", diagram.stop.text))
    return out


@views.renderable.register
def _(diagram: Diagram) -> RenderableType:
    styles = {"+": "green", "~": "yellow", "-": "dim"}
    return Group(*(Text(line, style=styles.get(mark, "")) for mark, line in _text_rows(diagram)))


class Picture:
    """A diagram shown: SVG in a notebook (text where `dot` is missing, with a line saying
    how to get pictures), text in a terminal."""

    def __init__(self, diagram: Diagram) -> None:
        self.diagram = diagram

    def html(self) -> str:
        try:
            drawn = svg(self.diagram)
        except DrawingUnavailable:
            text = html.escape("\n".join(text_lines(self.diagram)))
            return f'<p class="netstep-nodot">{html.escape(i18n._(NO_DOT))}</p><pre>{text}</pre>'
        return f'<div class="netstep-picture">{drawn}</div>'

    def _repr_mimebundle_(self, include=(), exclude=(), **kwargs) -> dict:
        return {"text/html": self.html(), "text/plain": "\n".join(text_lines(self.diagram))}

    def __rich__(self) -> RenderableType:
        return views.renderable(self.diagram)
