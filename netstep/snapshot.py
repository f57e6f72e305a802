"""Snapshots: the state of one or more namespaces as plain, comparable data.

A Snapshot holds, per namespace, its links, addresses, routes and iptables rules (its
configuration) and its neighbours, bridge forwarding entries and conntrack entries (its
caches). Inspect renders one; `diff` compares two. Configuration is what rollback must
restore exactly; caches change with traffic and are shown, never compared for exactness.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from netstep.render import RenderMixin

CONFIG_PARTS = ("links", "addresses", "routes", "rules", "sysctls")
CACHE_PARTS = ("neighbours", "fdb", "conntrack")
PARTS = CONFIG_PARTS + CACHE_PARTS

BUILTIN_CHAINS = {
    "filter": {"INPUT", "FORWARD", "OUTPUT"},
    "nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
    "mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
    "raw": {"PREROUTING", "OUTPUT"},
    "security": {"INPUT", "FORWARD", "OUTPUT"},
}


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # veth, bridge, loopback, ...
    up: bool
    master: str | None = None
    peer: str | None = None  # "ceth0@netns0" for a veth whose other end is elsewhere
    mac: str = ""

    def describe(self) -> str:
        bits = [self.kind, "UP" if self.up else "DOWN"]
        if self.master:
            bits.append(f"master {self.master}")
        if self.peer:
            bits.append(f"peer {self.peer}")
        return " ".join(bits)


@dataclass(frozen=True)
class NamespaceState(RenderMixin):
    """Everything netstep shows about one namespace."""

    name: str
    links: tuple[Link, ...] = ()
    addresses: tuple[str, ...] = ()  # "eth0 10.0.2.15/24"
    routes: tuple[str, ...] = ()  # in the kernel's order: the first match wins
    rules: tuple[str, ...] = ()  # "filter -A FORWARD ..."; tables in their default state left out
    sysctls: tuple[tuple[str, str], ...] = ()
    neighbours: tuple[str, ...] = ()
    fdb: tuple[str, ...] = ()
    conntrack: tuple[str, ...] = ()

    def part(self, name: str) -> tuple:
        if name == "links":
            return tuple(f"{link.name}: {link.describe()}" for link in self.links)
        if name == "sysctls":
            return tuple(f"{k} = {v}" for k, v in self.sysctls)
        return getattr(self, name)

    def config(self) -> tuple:
        """The configuration, compared for exactness. Routes and rules keep their order
        (the first match wins); links and addresses do not (they are listed by ifindex,
        which a rebuilt link does not keep). A route's "linkdown" is state, not configuration."""
        parts = []
        for p in CONFIG_PARTS:
            entries = self.part(p)
            if p in ("links", "addresses"):
                entries = tuple(sorted(entries))
            elif p == "routes":  # "linkdown" follows the carrier, which the kernel updates in its own time
                entries = tuple(e.removesuffix(" linkdown") for e in entries)
            parts.append(entries)
        return tuple(parts)

    def link(self, name: str) -> Link | None:
        return next((link for link in self.links if link.name == name), None)


@dataclass(frozen=True)
class Snapshot(RenderMixin):
    """The state of several namespaces at one moment, by the article's names."""

    namespaces: dict[str, NamespaceState] = field(default_factory=dict)

    def __getitem__(self, name: str) -> NamespaceState:
        return self.namespaces[name]

    def config(self) -> dict[str, tuple]:
        return {name: ns.config() for name, ns in self.namespaces.items()}

    def same_config(self, other: Snapshot) -> bool:
        return self.config() == other.config()


# -- reading the kernel ---------------------------------------------------------------


def read_links(ipr, nsid_name) -> tuple[list[Link], dict[int, str]]:
    """Links of one namespace, and its ifindex -> name map; `nsid_name(id)` names a peer's namespace."""
    raw = ipr.link("dump")
    names = {msg["index"]: msg.get("ifname") for msg in raw}
    links = []
    for msg in raw:
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else None
        if kind is None:
            kind = "loopback" if msg.get("ifname") == "lo" else "ether"
        master = names.get(msg.get("IFLA_MASTER")) if msg.get("IFLA_MASTER") else None
        peer = None
        if kind == "veth" and msg.get("IFLA_LINK"):
            nsid = msg.get("IFLA_LINK_NETNSID")
            if nsid is None:
                peer = names.get(msg.get("IFLA_LINK"), "?")
            else:
                peer = f"#{msg.get('IFLA_LINK')}@{nsid_name(nsid)}"
        links.append(
            Link(
                name=msg.get("ifname"),
                kind=kind,
                up=bool(msg["flags"] & 1),
                master=master,
                peer=peer,
                mac=msg.get("IFLA_ADDRESS") or "",
            )
        )
    return links, names


def read_addresses(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.addr("dump", family=socket.AF_INET):
        out.append(f"{names.get(msg['index'], msg['index'])} {msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


_PROTOS = {2: "kernel", 3: "boot", 4: "static"}
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host"}


def format_route(msg, names: dict[int, str]) -> str:
    dst = msg.get("RTA_DST")
    text = "default" if dst is None else f"{dst}/{msg['dst_len']}"
    if msg.get("RTA_GATEWAY"):
        text += f" via {msg.get('RTA_GATEWAY')}"
    if msg.get("RTA_OIF"):
        text += f" dev {names.get(msg.get('RTA_OIF'), msg.get('RTA_OIF'))}"
    if msg["proto"] != 3:
        text += f" proto {_PROTOS.get(msg['proto'], msg['proto'])}"
    if msg["scope"] != 0:
        text += f" scope {_SCOPES.get(msg['scope'], msg['scope'])}"
    if msg.get("RTA_PREFSRC"):
        text += f" src {msg.get('RTA_PREFSRC')}"
    if msg["type"] == 7:  # unreachable
        text = "unreachable " + text
    if msg.get("RTA_PRIORITY"):
        text += f" metric {msg.get('RTA_PRIORITY')}"
    if "linkdown" in _route_flags(msg):
        text += " linkdown"
    return text


def _route_flags(msg) -> set[str]:
    flags = set()
    for hop in [msg]:
        if hop.get("flags", 0) & 16:  # RTNH_F_LINKDOWN
            flags.add("linkdown")
    return flags


def read_routes(ipr, names: dict[int, str]) -> list[str]:
    return [format_route(m, names) for m in ipr.route("dump", family=socket.AF_INET, table=254)]


_NUD = {1: "INCOMPLETE", 2: "REACHABLE", 4: "STALE", 8: "DELAY", 16: "PROBE", 32: "FAILED", 64: "NOARP",
        128: "PERMANENT"}


def read_neighbours(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.neigh("dump", family=socket.AF_INET):
        state = _NUD.get(msg["state"], str(msg["state"]))
        if state == "NOARP":
            continue
        mac = msg.get("NDA_LLADDR") or "(none)"
        out.append(f"{msg.get('NDA_DST')} dev {names.get(msg['ifindex'], msg['ifindex'])} lladdr {mac} {state}")
    return sorted(out)


def read_fdb(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.fdb("dump"):
        if msg.get("NDA_MASTER") is None:
            continue
        mac = msg.get("NDA_LLADDR")
        if mac and (mac.startswith("33:33") or mac.startswith("01:00:5e")):
            continue
        dev = names.get(msg["ifindex"], msg["ifindex"])
        kind = "permanent" if msg["state"] & 128 else "learned"
        out.append(f"{mac} dev {dev} master {names.get(msg.get('NDA_MASTER'))} {kind}")
    return sorted(out)


def parse_iptables_save(text: str) -> list[str]:
    """Rules as "TABLE -A CHAIN ..." lines; a table in its default state is left out.

    A table that holds only built-in chains with ACCEPT policies and no rules behaves as
    if it were absent, and iptables-nft keeps it once touched: count it as absent so that
    a lab that added and removed a rule compares equal to a fresh one.
    """
    out: list[str] = []
    table = ""
    lines: list[str] = []

    def flush() -> None:
        if table and lines:
            out.extend(f"{table} {line}" for line in lines)

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            flush()
            table, lines = line[1:], []
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if chain in BUILTIN_CHAINS.get(table, set()):
                if policy != "ACCEPT":
                    lines.append(f"-P {chain} {policy}")
            else:
                lines.append(f"-N {chain}")
        elif line == "COMMIT":
            continue
        else:
            lines.append(line)
    flush()
    return out


def read_conntrack(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith(("tcp", "udp", "icmp")):
            out.append(" ".join(tok for tok in line.split() if not tok.startswith(("mark=", "use="))))
    return out


def is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


def to_json(snapshot: Snapshot) -> dict:
    """The snapshot as JSON-ready data (dataclasses.asdict, without its deep copies: a
    31-namespace snapshot is written after every step)."""
    out = {}
    for name, state in snapshot.namespaces.items():
        data = dict(vars(state))
        data["links"] = [dict(vars(link)) for link in state.links]
        out[name] = data
    return out


def from_json(data: dict) -> Snapshot:
    states = {}
    for name, raw in data.items():
        raw = dict(raw)
        raw["links"] = tuple(Link(**link) for link in raw["links"])
        for key in ("addresses", "routes", "rules", "neighbours", "fdb", "conntrack"):
            raw[key] = tuple(raw[key])
        raw["sysctls"] = tuple(tuple(kv) for kv in raw["sysctls"])
        states[name] = NamespaceState(**raw)
    return Snapshot(states)
