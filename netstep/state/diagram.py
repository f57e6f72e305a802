"""The lab as a diagram: what a picture of it holds, read from a snapshot, never a lesson.

Every namespace is a box (the upstream on top, the lab host below it, the containers
below that, by name), with its devices, addresses, routes, the sysctls that matter and
its iptables rules in a few words; each veth pair is a cable between its two ends; a
bridge carries its ports. What changed since an earlier snapshot is marked on the very
line that changed (`+` added, `-` removed and still drawn, `~` changed), so the marks
are the step's diff, seen. A probe's path (netstep.state.paths) is laid over the
cables, hop by hop, with where it stopped and why.

This is plain data: netstep.present.diagram writes it as Graphviz DOT, or as text.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise

from netstep.i18n import _
from netstep.kernel.registry import natural
from netstep.render import RenderMixin
from netstep.state.diff import Diff, diff
from netstep.state.paths import Path
from netstep.state.snapshot import Link, NamespaceState, Snapshot

RANKS = {"upstream": 0, "host": 1}  # every other namespace (a container) is drawn below the host
CONTAINER_RANK = 2
FORWARD = "net.ipv4.ip_forward"


@dataclass(frozen=True)
class Item:
    """One line of a namespace's configuration, as the snapshot has it and as it is drawn."""

    part: str  # links, addresses, routes, rules or sysctls
    entry: str  # the snapshot's own text: "eth0 10.0.2.15/24"
    text: str  # as drawn: "10.0.2.15/24"
    mark: str = ""  # "+" added, "-" removed, "~" changed, "" as it was
    brief: str = ""  # fewer words, where a small picture has no room for `text` (a rule's)

    @property
    def short(self) -> str:
        return self.brief or self.text


@dataclass(frozen=True)
class Device:
    """A link of a namespace, with its addresses and where it faces (towards the box above or below)."""

    item: Item
    link: Link
    addresses: tuple[Item, ...] = ()
    facing: str = ""  # "up", "down" (its cable goes to a higher or lower box), or "" (none, or beside)
    ports: tuple[str, ...] = ()  # a bridge's ports, by name

    @property
    def name(self) -> str:
        return self.link.name


@dataclass(frozen=True)
class Box:
    """One namespace."""

    ns: str
    rank: int
    mark: str
    devices: tuple[Device, ...]
    routes: tuple[Item, ...]
    sysctls: tuple[Item, ...]
    rules: tuple[Item, ...]
    servers: tuple[str, ...] = ()  # the lab's servers in it, "http 172.18.0.10:5000" (lessons 12 and 13)

    @property
    def role(self) -> str:
        return {"upstream": "upstream", "host": "host"}.get(self.ns, "container")

    def device(self, name: str) -> Device | None:
        return next((d for d in self.devices if d.name == name), None)

    @property
    def forwarding(self) -> bool:
        """Whether it forwards packets (ip_forward = 1), as it is now."""
        return any(item.entry == f"{FORWARD} = 1" and item.mark != "-" for item in self.sysctls)

    @property
    def gateway(self) -> str:
        """Where its default route leads ("10.0.2.2"), or "" without one (or one through no gateway)."""
        for item in self.routes:
            words = item.entry.split()
            if words[:1] == ["default"] and "via" in words[:-1] and item.mark != "-":
                return words[words.index("via") + 1]
        return ""


@dataclass(frozen=True)
class Cable:
    """A veth pair: its two ends, (namespace, device), the upper one first."""

    a: tuple[str, str]
    b: tuple[str, str]
    mark: str = ""


@dataclass(frozen=True)
class Leg:
    """One stretch of a probe's path along a cable: numbered, from an end to the other."""

    number: int
    start: tuple[str, str]
    end: tuple[str, str]
    reply: bool = False


@dataclass(frozen=True)
class Stop:
    """Where a probe ended: answered (`ok`), or stopped, and why."""

    ns: str
    text: str
    ok: bool


@dataclass(frozen=True)
class Diagram(RenderMixin):
    """A lab drawn: its boxes in order (upstream, host, containers by name), its cables,
    and, for a trace, the probe's legs and where it stopped."""

    title: str
    boxes: tuple[Box, ...]
    cables: tuple[Cable, ...]
    internet: str = ""
    legs: tuple[Leg, ...] = ()
    stop: Stop | None = None
    marked: bool = False  # drawn against an earlier state: its marks say what changed

    def box(self, ns: str) -> Box | None:
        return next((b for b in self.boxes if b.ns == ns), None)

    def items(self, box: Box) -> list[Item]:
        """Every line of a box: devices, their addresses, routes, sysctls and rules."""
        out: list[Item] = []
        for device in box.devices:
            out += [device.item, *device.addresses]
        return [*out, *box.routes, *box.sysctls, *box.rules]

    def marks(self) -> set[tuple[str, str, str, str]]:
        """(namespace, part, sign, entry) for every line marked, and ("namespace", sign, name)
        for a box added or removed: a step's diff, as the picture shows it."""
        out = set()
        for box in self.boxes:
            if box.mark:
                out.add((box.ns, "namespace", box.mark, box.ns))
            out |= {(box.ns, item.part, item.mark, item.entry) for item in self.items(box) if item.mark}
        return out


def lab_diagram(after: Snapshot, before: Snapshot | None = None, *, title: str = "", internet: str = "",
                change: Diff | None = None, servers: dict[str, list[str]] | None = None) -> Diagram:
    """The diagram of `after`. With `before` (the state a step started from), what the step
    changed is marked, and what it removed is drawn too, marked `-`; `change` is that
    step's own diff, when known (it covers only the namespaces the step could touch).
    `servers`: the lab's servers by namespace (Engine.servers), drawn in their boxes:
    two in one box are processes sharing a namespace, as a pod's containers do."""
    marked = before is not None or change is not None
    if change is None:
        change = diff(before, after) if before is not None else Diff()
    before = before or Snapshot()
    signs = _signs(change)
    names = list(dict.fromkeys([*after.namespaces, *before.namespaces]))
    names.sort(key=lambda n: (RANKS.get(n, CONTAINER_RANK), natural(n)))
    rank = {n: RANKS.get(n, CONTAINER_RANK) for n in names}
    boxes, cables = [], []
    for ns in names:
        now, was = after.namespaces.get(ns), before.namespaces.get(ns)
        mark = "+" if was is None and marked else "-" if now is None else ""
        box = _box(ns, now or was or NamespaceState(ns), was, rank, signs.get(ns, {}), mark, internet)
        boxes.append(replace(box, servers=tuple((servers or {}).get(ns, ()))) if now is not None else box)
    for box in boxes:
        for device in box.devices:
            peer = _peer(box.ns, device.link)
            if peer is None or peer[0] not in rank:
                continue
            ends = sorted([(box.ns, device.name), peer], key=lambda e: (rank[e[0]], natural(e[0]), natural(e[1])))
            if (box.ns, device.name) != ends[0]:
                continue  # each pair once, from its upper (or first) end
            other = next((b for b in boxes if b.ns == peer[0]), None)
            far = other.device(peer[1]) if other else None
            if far is None:
                continue
            signs = {device.item.mark, far.item.mark}
            cables.append(Cable(ends[0], ends[1], "-" if "-" in signs else "+" if "+" in signs else ""))
    return Diagram(title, tuple(boxes), tuple(cables), internet, marked=marked)


def traced(diagram: Diagram, forward: Path, reply: Path | None, stop: Stop | None) -> Diagram:
    """`diagram` with a probe's path laid on its cables, numbered, there then back."""
    legs = _legs(diagram, forward.hops, 1, reply=False)
    if reply is not None:
        legs += _legs(diagram, reply.hops, len(legs) + 1, reply=True)
    return Diagram(diagram.title, diagram.boxes, diagram.cables, diagram.internet, tuple(legs), stop, diagram.marked)


def stop_of(forward: Path, reply: Path | None, reachable: bool, where: str | None, why: str) -> Stop | None:
    """Where a probe ended, in a line: "✘ host: ip_forward = 0" or "✔ answered by upstream"."""
    if reachable:
        end = forward.end
        return Stop(end.ns, f"✔ answered by {end.ns} ({end.lookup.dst})", True) if end else None
    last = (reply or forward).end
    ns = where or (last.ns if last else "")
    said = why if why.startswith(f"{ns} ") else f"{ns}: {why}" if why else ns
    return Stop(ns, f"✘ {said}", False) if ns else None


# -- building ---------------------------------------------------------------------------------


def _signs(change: Diff) -> dict[str, dict[tuple[str, str], str]]:
    """namespace -> {(part, entry): sign} from a diff; a changed entry is keyed by its new text."""
    out: dict[str, dict[tuple[str, str], str]] = {}
    for ns in change.namespaces:
        signs = out.setdefault(ns.name, {})
        for part in ns.parts:
            signs.update({(part.part, e): "+" for e in part.added})
            signs.update({(part.part, e): "-" for e in part.removed})
            signs.update({(part.part, new): "~" for _, new in part.changed})
    return out


def _peer(ns: str, link: Link) -> tuple[str, str] | None:
    if link.kind != "veth" or not link.peer:
        return None
    name, _, where = link.peer.partition("@")
    return (where or ns, name)


def _box(ns: str, state: NamespaceState, was: NamespaceState | None, rank: dict[str, int],
         signs: dict[tuple[str, str], str], mark: str, internet: str) -> Box:
    def item(part: str, entry: str, text: str) -> Item:
        return Item(part, entry, text, mark or signs.get((part, entry), ""))

    removed = {part: [entry for (p, entry), sign in signs.items() if p == part and sign == "-"]
               for part in ("links", "addresses", "routes", "rules", "sysctls")} if not mark else {}
    old_links = {link.name: link for link in (was.links if was else ())}
    links = list(state.links) + [old_links[e.split(": ", 1)[0]] for e in removed.get("links", ())
                                 if e.split(": ", 1)[0] in old_links]
    addresses = list(state.addresses) + removed.get("addresses", [])
    devices = []
    for link in links:
        entry = f"{link.name}: {link.describe()}"
        own = [a for a in addresses if a.split(" ", 1)[0] == link.name]
        shown = tuple(item("addresses", a, _address_text(a, internet)) for a in own)
        peer = _peer(ns, link)
        facing = ""
        if peer and peer[0] in rank and peer[0] != ns:
            facing = "up" if rank[peer[0]] < rank[ns] else "down" if rank[peer[0]] > rank[ns] else ""
        ports = tuple(p.name for p in links if p.master == link.name) if link.kind == "bridge" else ()
        devices.append(Device(item("links", entry, entry), link, shown, facing, ports))
    routes = tuple(item("routes", r, _route_text(r)) for r in (*state.routes, *removed.get("routes", ())))
    rules = tuple(replace(item("rules", r, rule_text(r)), brief=rule_brief(r))
                  for r in (*state.rules, *removed.get("rules", ())))
    sysctls = tuple(item("sysctls", e, e.removeprefix("net.ipv4."))
                    for e in (*state.part("sysctls"), *removed.get("sysctls", ()))
                    if _sysctl_shown(ns, e, mark or signs.get(("sysctls", e), "")))
    return Box(ns, rank[ns], mark, tuple(devices), routes, sysctls, rules)


def _sysctl_shown(ns: str, entry: str, sign: str) -> bool:
    """ip_forward on the host always, elsewhere when on; any other only when it changed."""
    key, _, value = entry.partition(" = ")
    if key == FORWARD:
        return ns == "host" or value == "1" or bool(sign)
    return bool(sign)


def _address_text(entry: str, internet: str) -> str:
    address = entry.split(" ", 1)[1]
    if internet and address.split("/")[0] == internet:
        return _("{address} (the internet host)").format(address=address)
    return address


def _route_text(route: str) -> str:
    """A route in a few words: "10.0.2.0/24 dev eth0" (the kernel's proto, scope and src left out)."""
    words, out, skip = route.split(), [], 0
    for i, word in enumerate(words):
        if skip:
            skip -= 1
        elif word in ("proto", "scope", "src", "metric"):
            skip = 1
        elif word == "linkdown":
            out.append("(linkdown)")
        else:
            out.append(words[i])
    return " ".join(out)


def rule_text(rule: str) -> str:
    """An iptables rule in a few words: "DNAT 10.0.2.15:5005 → 172.18.0.10:5000 (arriving)",
    "MASQUERADE 172.18.0.0/16 out, not by br0", "FORWARD policy DROP"."""
    table, *tokens = rule.split()
    if tokens[:1] == ["-N"]:
        return f"chain {tokens[1]} ({table})"
    if tokens[:1] == ["-P"]:
        return f"{tokens[1]} policy {tokens[2]}"
    if tokens[:1] != ["-A"] or "-j" not in tokens:
        return rule
    chain, target = tokens[1], tokens[tokens.index("-j") + 1]

    def value(flag: str) -> str | None:
        return tokens[tokens.index(flag) + 1] if flag in tokens else None

    if target == "DNAT" and value("--to-destination"):
        where = (value("-d") or "any").removesuffix("/32")
        port = value("--dport")
        when = {"PREROUTING": "arriving", "OUTPUT": "the host's own"}.get(chain, chain)
        return f"DNAT {where}{':' + port if port else ''} → {value('--to-destination')} ({when})"
    if target == "MASQUERADE":
        source = value("-s") or "any"
        out = value("-o")
        negated = out is not None and tokens[tokens.index("-o") - 1] == "!"
        how = f", not by {out}" if negated else f" by {out}" if out else ""
        return f"MASQUERADE {source} out{how}"
    middle = tokens[2:tokens.index("-j")]
    return f"{chain} {' '.join(middle)} → {target}".replace("  ", " ")


def rule_brief(rule: str) -> str:
    """An iptables rule in the fewest words: "DNAT :5005→172.18.0.10:5000", "MASQUERADE",
    "chain ROOT_NS", "FORWARD policy DROP", "FORWARD ACCEPT"."""
    tokens = rule.split()[1:]  # after the table's name
    if tokens[:1] == ["-N"] and len(tokens) > 1:
        return f"chain {tokens[1]}"
    if tokens[:1] == ["-P"] and len(tokens) > 2:
        return f"{tokens[1]} policy {tokens[2]}"
    if "-j" not in tokens[:-1]:
        return rule
    target = tokens[tokens.index("-j") + 1]
    if target == "DNAT" and "--to-destination" in tokens[:-1]:
        port = tokens[tokens.index("--dport") + 1] if "--dport" in tokens[:-1] else ""
        return f"DNAT {':' + port if port else ''}→{tokens[tokens.index('--to-destination') + 1]}"
    if target in ("MASQUERADE", "SNAT"):
        return target
    return f"{tokens[1] if len(tokens) > 1 else '?'} {target}"


def _legs(diagram: Diagram, hops, first: int, *, reply: bool) -> list[Leg]:
    """The cables between consecutive hops: from the device a hop left by (a bridge's port,
    for a bridge) to the one the next arrived on (or a port of the bridge it arrived on)."""
    legs = []
    for hop, after in pairwise(hops):
        leaving = _ends(diagram, hop.ns, hop.lookup.dev)
        arriving = _ends(diagram, after.ns, after.arrived_on)
        for cable in diagram.cables:
            for start, end in ((cable.a, cable.b), (cable.b, cable.a)):
                if start in leaving and end in arriving:
                    legs.append(Leg(first + len(legs), start, end, reply))
                    break
            else:
                continue
            break
    return legs


def _ends(diagram: Diagram, ns: str, dev: str | None) -> set[tuple[str, str]]:
    """(ns, dev), and for a bridge each of its ports."""
    box = diagram.box(ns)
    device = box.device(dev) if box and dev else None
    if device is None:
        return set()
    return {(ns, device.name), *((ns, port) for port in device.ports)}

