"""The lab as a picture: namespaces as boxes, veth pairs as lines, the bridge and its ports.

Drawn from a Snapshot only, in plain box-drawing characters, to whatever width the
terminal gives (three boxes across fit in 40 columns):

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

Lines that are new since the previous picture are highlighted (bold, underlined), so the
room sees at once what a step changed. Words carry the meaning (DOWN, forwarding), so
the picture reads the same with NO_COLOR.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from netstep.state.snapshot import Link, NamespaceState, Snapshot

BOX_MIN = 18  # "│ 172.18.0.10/16 │"
MAX_WIDTH = 72
MAX_RULE_LINES = 5
NEW = "bold underline yellow"
BORDERS = {"upstream": "blue", "host": "cyan"}
CONTAINER_BORDER = "magenta"


@dataclass(frozen=True)
class Line:
    text: str
    style: str = ""


def _peer(link) -> tuple[str, str | None]:
    """(name, namespace) of a veth's other end; namespace None when it is in the same one."""
    name, _, where = (link.peer or "").partition("@")
    return name, (where or None)


def _addresses(state: NamespaceState, link: str) -> list[str]:
    return [a.split(" ", 1)[1] for a in state.addresses if a.split(" ", 1)[0] == link]


def _gateway(state: NamespaceState) -> str | None:
    for route in state.routes:
        match = re.match(r"default via (\S+)", route)
        if match:
            return match.group(1)
    return None


def rules_summary(rules: tuple[str, ...]) -> str:
    """iptables rules in a few words: `chain ROOT_NS, DNAT :5005→172.18.0.10:5000 ×2, MASQUERADE`."""
    words: list[str] = []
    for rule in rules:
        tokens = rule.split()[1:]  # after the table's name
        if tokens[:1] == ["-N"]:
            words.append(f"chain {tokens[1]}")
        elif tokens[:1] == ["-P"]:
            words.append(f"{tokens[1]} policy {tokens[2]}")
        elif "-j" in tokens:
            target = tokens[tokens.index("-j") + 1]
            if target == "DNAT" and "--to-destination" in tokens:
                port = tokens[tokens.index("--dport") + 1] if "--dport" in tokens else ""
                words.append(f"DNAT {':' + port if port else ''}→{tokens[tokens.index('--to-destination') + 1]}")
            elif target in ("MASQUERADE", "SNAT"):
                words.append(target)
            else:
                chain = tokens[1] if len(tokens) > 1 else "?"
                words.append(f"{chain} {target}")
    counted = {word: words.count(word) for word in words}
    return ", ".join(word if n == 1 else f"{word} ×{n}" for word, n in counted.items())


def box_lines(state: NamespaceState, internet: str = "", connected: frozenset[str] = frozenset()) -> list[Line]:
    """What a namespace's box says: its devices and addresses, bridge ports, gateway and rules."""
    lines: list[Line] = []
    ports: dict[str, list[str]] = {}
    for link in state.links:
        if link.master:
            ports.setdefault(link.master, []).append(link.name)
    shown_pairs: set[str] = set()
    for link in state.links:
        addresses = [a for a in _addresses(state, link.name) if not a.startswith("127.")]
        down = "" if link.up else " DOWN"
        style = "" if link.up else "red"
        if link.name == "lo":
            if not link.up:
                lines.append(Line("lo DOWN (no 127.0.0.1)", style))
            for address in addresses:
                label = "internet" if internet and address.split("/")[0] == internet else "lo"
                lines.append(Line(f"{label} {address.split('/')[0] if label == 'internet' else address}"))
            continue
        if link.name in shown_pairs:
            continue
        peer, where = _peer(link)
        if link.kind == "bridge":
            lines.append(Line(" ".join([link.name, "bridge", *addresses]) + down, style))
            members = ports.get(link.name, [])
            lines.append(Line("  ports " + (" ".join(members) if members else "(none)")))
        elif not addresses and (link.master or (link.kind == "veth" and where in connected)):
            continue  # listed among its bridge's ports, or drawn as the line to its namespace
        elif link.kind == "veth" and peer and where is None:
            shown_pairs.add(peer)
            lines.append(Line(f"{link.name} ⇄ {peer}{down}", style))
            lines.extend(Line(f"  {a}") for a in addresses)
        else:
            text = " ".join([link.name, *addresses[:1]]) + down
            if link.kind == "veth" and where and where not in connected:
                text += f" ⇄ {peer}@{where}"
            lines.append(Line(text, style))
            lines.extend(Line(f"  {a}") for a in addresses[1:])
    gateway = _gateway(state)
    if gateway:
        lines.append(Line(f"gw {gateway}"))
    if state.rules:
        words = rules_summary(state.rules).split(", ")
        if len(words) > MAX_RULE_LINES:  # a real host (host mode) may hold many, Docker's say
            words = [*words[: MAX_RULE_LINES - 1], f"… {len(words) - MAX_RULE_LINES + 1} more"]
        lines.append(Line(f"iptables {words[0]}"))
        lines.extend(Line(f"  {word}") for word in words[1:])
    return lines


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


def _title(name: str, state: NamespaceState) -> str:
    forwarding = dict(state.sysctls).get("net.ipv4.ip_forward") == "1"
    if name == "upstream":
        return "upstream · router"
    return f"{name} · forwarding" if forwarding else name


def _wrap(text: str, width: int) -> list[str]:
    """Wrap at spaces, indenting continuations when that does not split an address."""
    for indent in ("  ", ""):
        pieces = textwrap.wrap(text, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
        if all(len(piece) <= width for piece in pieces):
            return pieces or [""]
    return textwrap.wrap(text, width, break_on_hyphens=False) or [""]


def _box(canvas: _Canvas, x: int, y: int, width: int, title: str, lines: list[Line], border: str,
         title_style: str, old: set[str] | None) -> int:
    """Draw a box; return the row of its bottom border."""
    inner = width - 4
    head = f"─ {title} "[: width - 3]
    canvas.put(x, y, "┌", border)
    canvas.put(x + 1, y, "─", border)
    canvas.put(x + 2, y, head[1:], title_style)
    canvas.put(x + 1 + len(head), y, "─" * (width - 2 - len(head)) + "┐", border)
    row = y + 1
    for line in lines or [Line("(nothing yet)", "dim")]:
        style = NEW if old is not None and line.text not in old else line.style
        for piece in _wrap(line.text, inner):
            canvas.put(x, row, "│", border)
            canvas.put(x + 2, row, piece[:inner].rstrip(), style)
            canvas.put(x + width - 1, row, "│", border)
            row += 1
    canvas.put(x, row, "└" + "─" * (width - 2) + "┘", border)
    return row


def _link(canvas: _Canvas, x: int, y_top: int, label: str, up: bool, new: bool, right: int, left: int = 0) -> None:
    """A vertical veth line from the border at y_top to the border two rows below, its label
    to the right of it (`right` columns free there), or to the left if only that fits."""
    style = NEW if new else ("green" if up else "red")
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
    """A rich renderable: the picture of a Snapshot, new parts highlighted against `previous`."""

    def __init__(self, snapshot: Snapshot | None, previous: Snapshot | None = None, internet: str = "") -> None:
        self.snapshot = snapshot
        self.previous = previous
        self.internet = internet

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.render(min(options.max_width, MAX_WIDTH))

    def _old_lines(self, name: str, connected: frozenset[str]) -> set[str] | None:
        if self.previous is None:
            return None
        state = self.previous.namespaces.get(name)
        if state is None:
            return set()
        return {line.text for line in box_lines(state, self.internet, connected)}

    def render(self, width: int) -> Text:
        snap = self.snapshot
        if snap is None or "host" not in snap.namespaces:
            return Text("(no lab)", style="dim")
        width = max(width, BOX_MIN)
        states = snap.namespaces
        host = states["host"]
        containers = [n for n in states if n not in ("host", "upstream")]
        to_host = {where: link for link in host.links
                   if link.kind == "veth" and (where := _peer(link)[1]) is not None}
        connected = frozenset(to_host)
        old_links = self._old_links()
        canvas = _Canvas(width)
        y = 0
        link_y = None
        if "upstream" in states:
            up, drawn = states["upstream"], frozenset({"host"})
            y = _box(canvas, 0, 0, width, _title("upstream", up), box_lines(up, self.internet, drawn),
                     BORDERS["upstream"], self._title_style("upstream"), self._old_lines("upstream", drawn))
            link_y, y = y, y + 2
        host_title = _title("host", host)
        old = self._old_lines("host", connected)
        bottom = _box(canvas, 0, y, width, host_title, box_lines(host, self.internet, connected), BORDERS["host"],
                      self._title_style("host"), old)
        if link_y is not None and "upstream" in to_host:
            link = to_host["upstream"]
            x = _link_x(canvas, 0, width, len(host_title) + 3, y)
            label = f"{_peer(link)[0]} ⇄ {link.name}"
            _link(canvas, x, link_y, label, link.up, self._is_new_link("upstream", label, old_links), width - x - 2,
                  x - 1)
        per_row = max(1, min(len(containers), (width + 1) // (BOX_MIN + 1))) if containers else 1
        box_width = (width - (per_row - 1)) // per_row
        y = bottom + 2
        for start in range(0, len(containers), per_row):
            row = containers[start:start + per_row]
            lowest = y
            veths: list[tuple[int, str, Link]] = []  # where each veth line meets its box
            for i, name in enumerate(row):
                x = i * (box_width + 1)
                state = states[name]
                drawn = frozenset({"host"}) if start == 0 else frozenset()  # later rows get no line
                lowest = max(lowest, _box(canvas, x, y, box_width, _title(name, state),
                                          box_lines(state, self.internet, drawn),
                                          CONTAINER_BORDER, self._title_style(name), self._old_lines(name, drawn)))
                if name in to_host and start == 0:
                    veths.append((_link_x(canvas, x, box_width, x + len(_title(name, state)) + 3, y), name,
                                  to_host[name]))
            for n, (lx, name, link) in enumerate(veths):
                right = (veths[n + 1][0] if n + 1 < len(veths) else width + 1) - lx - 3  # up to the next line
                left = lx - (veths[n - 1][0] + 2 + len(veths[n - 1][2].name) if n else 0) - 2
                _link(canvas, lx, bottom, link.name, link.up, self._is_new_link(name, link.name, old_links),
                      right, left)
            y = lowest + 2
        return canvas.text()

    def _is_new_link(self, where: str, label: str, old_links: set[tuple[str, str]]) -> bool:
        return self.previous is not None and (where, label) not in old_links

    def _title_style(self, name: str) -> str:
        return NEW if self.previous is not None and name not in self.previous.namespaces else "bold"

    def _old_links(self) -> set[tuple[str, str]]:
        if self.previous is None or "host" not in self.previous.namespaces:
            return set()
        out = set()
        for link in self.previous["host"].links:
            name, where = _peer(link)
            if link.kind == "veth" and where:
                out.add((where, f"{name} ⇄ {link.name}" if where == "upstream" else link.name))
        return out
