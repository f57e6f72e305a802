"""The lab as a small text picture: namespaces as boxes, veth pairs as lines, bridges and ports.

Drawn from the lab's diagram (netstep.state.diagram), the model the SVG is drawn from
too, in plain box-drawing characters, to whatever width the terminal gives (three
boxes across fit in 40 columns):

    ┌─ upstream · router ─────────────────┐
    │ eth0 10.0.2.2/24                    │
    │ internet 203.0.113.8                │
    └──────────────────┬──────────────────┘
                       │ eth0 ⇄ eth0
    ┌─ host · forwarding ┴────────────────┐
    │ eth0 10.0.2.15/24                   │
    │ br0 bridge 172.18.0.1/16            │
    │   ports veth0 veth1                 │
    └──────────┬──────────────────┬───────┘
               │ veth0            │ veth1
    ┌─ netns0 ─┴───────┐ ┌─ netns1 ┴───────┐

The diagram's marks are drawn on the lines they mark: what a step added or changed is
highlighted (bold, underlined), what it removed is faded and struck through, so the room
sees at once what a step changed. Words carry the meaning (DOWN, forwarding), so the
picture reads the same with NO_COLOR. The demo draws it after every step; the command
line draws it where Graphviz's `dot` is missing.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from netstep.i18n import _
from netstep.state.diagram import Box, Cable, Device, Diagram

BOX_MIN = 18  # "│ 172.18.0.10/16 │"
MAX_WIDTH = 72
MAX_RULE_LINES = 5
NEW = "bold underline yellow"
GONE = "dim strike"
BORDERS = {"upstream": "blue", "host": "cyan"}
CONTAINER_BORDER = "magenta"


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""


def _style(mark: str, style: str = "") -> str:
    return NEW if mark in ("+", "~") else GONE if mark == "-" else style


def _end(cable: Cable, end: tuple[str, str]) -> tuple[str, str]:
    """The other end of `cable` from `end`."""
    return cable.b if cable.a == end else cable.a


def box_lines(diagram: Diagram, box: Box, drawn: frozenset[str] = frozenset()) -> list[Line]:
    """What a namespace's box says: its devices and addresses, bridges and their ports,
    gateway and rules. A device whose cable is drawn as a line to a namespace in `drawn`
    (and has no address) is left to that line, a bridge's port to its bridge's list."""
    cables = {end: cable for cable in diagram.cables for end in (cable.a, cable.b)}
    lines: list[Line] = []
    shown_pairs: set[str] = set()
    for device in box.devices:
        link, mark = device.link, device.item.mark
        addresses = [a for a in device.addresses if not a.text.startswith("127.")]
        down = "" if link.up else " DOWN"
        style = _style(mark, "" if link.up else "red")
        if link.kind == "loopback":
            if not link.up:
                lines.append(Line("lo DOWN (no 127.0.0.1)", style))
            for address in addresses:
                internet = diagram.internet and address.entry.split(" ", 1)[-1].startswith(diagram.internet + "/")
                text = f"internet {diagram.internet}" if internet else f"{device.name} {address.text}"
                lines.append(Line(text, _style(address.mark)))
            continue
        if device.name in shown_pairs:
            continue
        cable = cables.get((box.ns, device.name))
        far = _end(cable, (box.ns, device.name)) if cable else None
        master = box.device(link.master) if link.master else None
        if link.kind == "bridge":
            lines.append(Line(" ".join([device.name, "bridge", *(a.text for a in addresses[:1])]) + down, style))
            lines += [Line(f"  {a.text}", _style(a.mark)) for a in addresses[1:]]
            ports = [box.device(p) for p in device.ports]
            lines.append(Line("  ports " + (" ".join(p.name for p in ports if p) or "(none)"),
                              _style(next((p.item.mark for p in ports if p and p.item.mark), ""))))
        elif link.kind in ("tap", "tun"):  # its other end is the program that holds it: no cable to draw
            program = _("{kind} ⇄ a program").format(kind=link.kind.upper())
            lines.append(Line(" ".join([device.name, program, *(a.text for a in addresses[:1])]) + down, style))
            lines += [Line(f"  {a.text}", _style(a.mark)) for a in addresses[1:]]
        elif not addresses and ((master is not None and master.link.kind == "bridge") or (far and far[0] in drawn)):
            continue  # listed among its bridge's ports, or drawn as the line to its namespace
        elif far is not None and far[0] == box.ns:
            shown_pairs.add(far[1])
            lines.append(Line(f"{device.name} ⇄ {far[1]}{down}", style))
            lines += [Line(f"  {a.text}", _style(a.mark)) for a in addresses]
        else:
            text = " ".join([device.name, *(a.text for a in addresses[:1])]) + down
            if far is not None and far[0] not in drawn:
                text += f" ⇄ {far[1]}@{far[0]}"
            lines.append(Line(text, style if mark or not addresses else _style(addresses[0].mark, style)))
            lines += [Line(f"  {a.text}", _style(a.mark)) for a in addresses[1:]]
    if box.gateway:
        route = next((r for r in box.routes if r.entry.startswith("default ") and r.mark != "-"), None)
        lines.append(Line(f"gw {box.gateway}", _style(route.mark if route else "")))
    rules = _counted(box)
    if rules:
        if len(rules) > MAX_RULE_LINES:  # a real host (host mode) may hold many, Docker's say
            rules = [*rules[: MAX_RULE_LINES - 1], (f"… {len(rules) - MAX_RULE_LINES + 1} more", "")]
        lines.append(Line(f"iptables {rules[0][0]}", _style(rules[0][1])))
        lines += [Line(f"  {text}", _style(mark)) for text, mark in rules[1:]]
    return lines


def _counted(box: Box) -> list[tuple[str, str]]:
    """The box's rules in their fewest words, the same words counted: [(text, mark)]."""
    counts: dict[str, list[str]] = {}
    for rule in box.rules:
        counts.setdefault(rule.short, []).append(rule.mark)
    out = []
    for text, marks in counts.items():
        mark = next((m for m in marks if m in ("+", "~")), "-" if all(m == "-" for m in marks) else "")
        out.append((text if len(marks) == 1 else f"{text} ×{len(marks)}", mark))
    return out


class _Canvas:
    def __init__(self, width: int) -> None:
        self.width = width
        self.rows: list[list[tuple[str, str]]] = []

    def put(self, x: int, y: int, text: str, style: str = "") -> None:
        while len(self.rows) <= y:
            self.rows.append([(" ", "")] * self.width)
        row = self.rows[y]
        for i, char in enumerate(text):
            if 0 <= x + i < self.width:
                row[x + i] = (char, style)

    def char(self, x: int, y: int) -> str:
        return self.rows[y][x][0] if y < len(self.rows) and 0 <= x < self.width else " "

    def text(self) -> Text:
        out = Text(no_wrap=True, overflow="crop")
        for n, row in enumerate(self.rows):
            end = len(row)
            while end and row[end - 1][0] == " ":
                end -= 1
            for char, style in row[:end]:
                out.append(char, style or None)
            if n < len(self.rows) - 1:
                out.append("\n")
        return out


def _title(box: Box) -> str:
    if box.ns == "upstream":
        return "upstream · " + _("router")
    return f"{box.ns} · " + _("forwarding") if box.forwarding else box.ns


def _wrap(text: str, width: int) -> list[str]:
    """Wrap at spaces, indenting continuations when that does not split an address."""
    for indent in ("  ", ""):
        pieces = textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
        if all(len(piece) <= width for piece in pieces):
            return pieces or [""]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _box(canvas: _Canvas, x: int, y: int, width: int, box: Box, lines: list[Line], border: str) -> int:
    """Draw a box; return the row of its bottom border."""
    inner = width - 4
    head = f"─ {_title(box)} "[: width - 3]
    border = GONE if box.mark == "-" else border
    canvas.put(x, y, "┌", border)
    canvas.put(x + 1, y, "─", border)
    canvas.put(x + 2, y, head[1:], _style(box.mark, "bold"))
    canvas.put(x + 1 + len(head), y, "─" * (width - 2 - len(head)) + "┐", border)
    row = y + 1
    for line in lines or [Line("(nothing yet)", "dim")]:
        for piece in _wrap(line.text, inner):
            canvas.put(x, row, "│", border)
            canvas.put(x + 2, row, piece[:inner].rstrip(), GONE if box.mark == "-" else line.style)
            canvas.put(x + width - 1, row, "│", border)
            row += 1
    canvas.put(x, row, "└" + "─" * (width - 2) + "┘", border)
    return row


def _link(canvas: _Canvas, x: int, y_top: int, label: str, up: bool, mark: str, right: int, left: int = 0) -> None:
    """A vertical veth line from the border at y_top to the border two rows below, its label
    to the right of it (`right` columns free there), or to the left if only that fits."""
    style = _style(mark, "green" if up else "red")
    label += "" if up else " DOWN"
    canvas.put(x, y_top, "┬", style)
    canvas.put(x, y_top + 1, "│", style)
    if len(label) > right and len(label) <= left:
        canvas.put(x - 1 - len(label), y_top + 1, label, style)
    else:
        canvas.put(x + 2, y_top + 1, label[: max(right, 0)], style)
    canvas.put(x, y_top + 2, "┴", style)


def _link_x(canvas: _Canvas, left: int, width: int, title_end: int, y_below: int) -> int:
    """Where a line may meet a box's top border: past its title, on a plain border."""
    x = max(left + width // 2, title_end + 2)
    x = min(x, left + width - 2)
    while x > left + 1 and canvas.char(x, y_below) not in ("─", " "):
        x -= 1
    return x


class Topology:
    """A rich renderable: the picture of a lab's diagram, its marks drawn (what the step
    added highlighted, what it removed faded)."""

    def __init__(self, diagram: Diagram | None) -> None:
        self.diagram = diagram

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.render(min(options.max_width, MAX_WIDTH))

    def render(self, width: int) -> Text:
        diagram = self.diagram
        host = diagram.box("host") if diagram is not None else None
        if diagram is None or host is None:
            return Text("(no lab)", style="dim")
        width = max(width, BOX_MIN)
        upstream = diagram.box("upstream")
        containers = [b for b in diagram.boxes if b.ns not in ("host", "upstream")]
        to_host: dict[str, tuple[Device, Cable]] = {}  # namespace -> the host's end of its cable, and the cable
        for cable in diagram.cables:
            for near, far in ((cable.a, cable.b), (cable.b, cable.a)):
                device = host.device(near[1]) if near[0] == "host" and far[0] != "host" else None
                if device is not None:
                    to_host.setdefault(far[0], (device, cable))
        connected = frozenset(to_host)
        canvas = _Canvas(width)
        y = 0
        link_y = None
        if upstream is not None:
            y = _box(canvas, 0, 0, width, upstream, box_lines(diagram, upstream, frozenset({"host"})),
                     BORDERS["upstream"])
            link_y, y = y, y + 2
        bottom = _box(canvas, 0, y, width, host, box_lines(diagram, host, connected), BORDERS["host"])
        if link_y is not None and "upstream" in to_host:
            device, cable = to_host["upstream"]
            x = _link_x(canvas, 0, width, len(_title(host)) + 3, y)
            label = f"{_end(cable, ('host', device.name))[1]} ⇄ {device.name}"
            _link(canvas, x, link_y, label, device.link.up, cable.mark, width - x - 2, x - 1)
        per_row = max(1, min(len(containers), (width + 1) // (BOX_MIN + 1))) if containers else 1
        box_width = (width - (per_row - 1)) // per_row
        y = bottom + 2
        for start in range(0, len(containers), per_row):
            row = containers[start:start + per_row]
            lowest = y
            veths: list[tuple[int, Device, Cable]] = []  # where each veth line meets its box
            for i, box in enumerate(row):
                x = i * (box_width + 1)
                drawn = frozenset({"host"}) if start == 0 else frozenset()  # later rows get no line
                lowest = max(lowest, _box(canvas, x, y, box_width, box, box_lines(diagram, box, drawn),
                                          CONTAINER_BORDER))
                if box.ns in to_host and start == 0:
                    veths.append((_link_x(canvas, x, box_width, x + len(_title(box)) + 3, y), *to_host[box.ns]))
            for n, (lx, device, cable) in enumerate(veths):
                right = (veths[n + 1][0] if n + 1 < len(veths) else width + 1) - lx - 3  # up to the next line
                left = lx - (veths[n - 1][0] + 2 + len(veths[n - 1][1].name) if n else 0) - 2
                _link(canvas, lx, bottom, device.name, device.link.up, cable.mark, right, left)
            y = lowest + 2
        return canvas.text()
