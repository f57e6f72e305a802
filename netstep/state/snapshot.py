"""Snapshots: the state of one or more namespaces as plain, comparable data.

A Snapshot holds, per namespace, its links, addresses, routes and iptables rules (its
configuration) and its neighbours, bridge forwarding entries and conntrack entries (its
caches). Inspect renders one; `diff` compares two; netstep.state.reader fills one from the
kernel. Configuration is what rollback must restore exactly; caches change with traffic
and are shown, never compared for exactness.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netstep.render import RenderMixin

CONFIG_PARTS = ("links", "addresses", "routes", "rules", "sysctls")
CACHE_PARTS = ("neighbours", "fdb", "conntrack")
# What a step's checks made the rules count (`show counters`): read around the checks, never
# part of a plain snapshot.
COUNT_PARTS = ("counters",)
PARTS = CONFIG_PARTS + CACHE_PARTS + COUNT_PARTS


@dataclass(frozen=True)
class Link:
    name: str
    kind: str  # veth, bridge, loopback, ...
    up: bool
    master: str | None = None
    peer: str | None = None  # "ceth0@netns0" for a veth whose other end is elsewhere
    mac: str = ""
    mtu: int | None = None  # None: the kernel's default for its kind (DEFAULT_MTU)
    hairpin: bool = False  # a bridge port that may send a frame back out where it came in
    nf_call_iptables: bool = False  # a bridge's own switch, OR-ed with bridge-nf-call-iptables

    def describe(self) -> str:
        bits = [self.kind, "UP" if self.up else "DOWN"]
        if self.master:
            bits.append(f"master {self.master}")
        if self.peer:
            bits.append(f"peer {self.peer}")
        if self.mtu:
            bits.append(f"mtu {self.mtu}")
        if self.hairpin:
            bits.append("hairpin on")
        if self.nf_call_iptables:
            bits.append("nf_call_iptables 1")
        return " ".join(bits)


DEFAULT_MTU = {"loopback": 65536}  # every other kind of link the lab makes starts at 1500


def default_mtu(kind: str) -> int:
    return DEFAULT_MTU.get(kind, 1500)


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
    counters: tuple[str, ...] = ()  # "filter INPUT policy DROP: +0 packets", during a step's checks

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
        raw["counters"] = tuple(raw.get("counters", ()))
        states[name] = NamespaceState(**raw)
    return Snapshot(states)
