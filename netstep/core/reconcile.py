"""Reconciling a lab to a position: observe, plan, act, confirm.

A move must land exactly whatever the student typed in between, so it never replays a
remembered script against a lab that may have changed (a rule inserted "at index 2" is
wrong once a student's own rule sits above it). Instead it reads the lab, compares it
with the state it must reach, and plans the actions that separate the two, one
comparator per kind of object (namespaces, devices, addresses, routes, rules, sysctls),
as Alembic's autogenerate does for a schema. Objects are found by their name or their
content, never by a position recorded earlier. The plan runs through the same
undo-aware executor as the course's own steps, in phases that read the lab again between
them, because the kernel derives things by itself (`lo up` brings 127.0.0.1, an address
brings its connected route), and a last read confirms the lab is at its target.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    BridgeFilter,
    DeleteLink,
    DeleteNetns,
    Hairpin,
    Iptables,
    MoveLink,
    Restore,
    Route,
    SetLinkUp,
    SetMaster,
    SetMtu,
    Sysctl,
)
from netstep.errors import NetstepError
from netstep.i18n import _
from netstep.render import RenderMixin
from netstep.state.snapshot import NamespaceState, Snapshot, default_mtu

FRAME = ("host", "upstream")  # the lab's own namespaces: never created or deleted here


@dataclass(frozen=True)
class Change:
    """One change of a reconciliation, and whether it takes away or puts back. Several
    changes may be one action (routes to one destination): the first carries it."""

    action: Action | None
    removes: bool  # True: took away something the target lacks; False: put back or set
    text: str = ""  # what it did in a student's words, when the action's own command would not say

    def describe(self) -> str:
        if self.text or self.action is None:
            return self.text
        return f"{self.action.ns}# {self.action.command()}"


@dataclass
class Reconciliation(RenderMixin):
    """What a move did to bring the lab back to a position before it went on."""

    changes: list[Change] = field(default_factory=list)
    # Host mode: what changed in this machine's own network (or an upstream namespace the
    # user lent) that netstep did not make, named and left as it is ("host: + entry").
    kept: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changes or self.kept)

    @property
    def removed(self) -> list[Change]:
        return [c for c in self.changes if c.removes]

    @property
    def restored(self) -> list[Change]:
        return [c for c in self.changes if not c.removes]

    def as_json(self) -> dict:
        return {"event": "reconciled", "removed": [c.describe() for c in self.removed],
                "restored": [c.describe() for c in self.restored], "kept": list(self.kept)}


# -- reading the snapshot's strings back into parts ---------------------------------------


def route_fields(text: str) -> dict[str, str]:
    """A route as the snapshot writes it ("172.18.0.10 dev veth0 scope link") as fields."""
    words = text.removesuffix(" linkdown").split()
    out = {"dst": words[0]}
    i = 1
    while i < len(words):
        if words[i] in ("via", "dev", "proto", "scope", "src", "metric") and i + 1 < len(words):
            out[words[i]] = words[i + 1]
            i += 2
        else:
            i += 1
    return out


def route_action(ns: str, text: str, *, add: bool) -> Route:
    f = route_fields(text)
    return Route(ns, dst=f["dst"], via=f.get("via", ""), dev=f.get("dev", ""), proto=f.get("proto", ""),
                 scope=f.get("scope", ""), src=f.get("src", ""), add=add)


def rule_parts(text: str) -> tuple[str, str, str, list[str]]:
    """"filter -A FORWARD -s 172.18.0.20/32 -j DROP" -> (table, op, chain, rest)."""
    words = shlex.split(text)
    return words[0], words[1], words[2], words[3:]


# -- the comparators ---------------------------------------------------------------------


def _containers(snapshot: Snapshot) -> set[str]:
    return {ns for ns in snapshot.namespaces if ns not in FRAME}


def plan_removals(actual: Snapshot, target: Snapshot) -> list[Change]:
    """What the target lacks, taken away: rules, routes, addresses, devices, namespaces."""
    out: list[Change] = []
    for ns, have in actual.namespaces.items():
        want = target.namespaces.get(ns)
        if want is None:
            continue
        out += _rule_removals(ns, have, want)
        gone_devices = {link.name for link in have.links if _link_differs(link, want.link(link.name))}
        for entry in _extra(have.addresses, want.addresses):
            dev, _, cidr = entry.partition(" ")
            if dev not in gone_devices:
                out.append(Change(Address(ns, dev=dev, cidr=cidr, add=False), True))
    deleted: set[tuple[str, str]] = set()
    for ns, have in actual.namespaces.items():
        want = target.namespaces.get(ns)
        if want is None:
            continue
        for link in have.links:
            if (ns, link.name) in deleted or link.kind == "loopback":
                continue
            if _link_differs(link, want.link(link.name)):
                out.append(Change(DeleteLink(ns, name=link.name), True))
                if link.peer:  # deleting one end of a veth deletes the other, wherever it is
                    peer, _, peer_ns = link.peer.partition("@")
                    deleted.add((peer_ns or ns, peer))
    for ns in sorted(_containers(actual) - _containers(target)):
        out.append(Change(DeleteNetns("host", name=ns), True))
    return out


def _link_differs(link, wanted) -> bool:
    """A device the target lacks, or one of another kind or pairing: it must go (and maybe come back)."""
    return wanted is None or wanted.kind != link.kind or (wanted.peer or None) != (link.peer or None)


def plan_namespaces(actual: Snapshot, target: Snapshot) -> list[Change]:
    """Missing namespaces made first: a device may have to move back into one."""
    return [Change(AddNetns("host", name=ns), False) for ns in sorted(_containers(target) - _containers(actual))]


def plan_moves(actual: Snapshot, target: Snapshot) -> list[Change]:
    """A veth end that sits in another namespace than the target's goes back there, rather
    than being deleted and made again (its pairing and the other end stay)."""
    out: list[Change] = []
    for ns, have in actual.namespaces.items():
        for link in have.links:
            if link.kind != "veth" or (target.namespaces.get(ns) and target[ns].link(link.name)):
                continue
            home = next((other for other, want in target.namespaces.items() if other != ns
                         and want.link(link.name) is not None and want.link(link.name).kind == "veth"
                         and other in actual.namespaces and actual[other].link(link.name) is None), None)
            if home is not None:
                out.append(Change(MoveLink(ns, name=link.name, to=home), False))
    return out


def plan_devices(actual: Snapshot, target: Snapshot) -> list[Change]:
    """Missing devices made."""
    out: list[Change] = []
    made: set[tuple[str, str]] = set()
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        for link in want.links:
            if (ns, link.name) in made or link.kind == "loopback":
                continue
            if have is not None and have.link(link.name) is not None:
                continue
            if link.kind == "veth" and link.peer:
                peer, _, peer_ns = link.peer.partition("@")
                out.append(Change(AddLink(ns, name=link.name, kind="veth", peer=peer,
                                          peer_ns=peer_ns if peer_ns and peer_ns != ns else ""), False))
                made.add((peer_ns or ns, peer))
            else:
                out.append(Change(AddLink(ns, name=link.name, kind=link.kind), False))
    return out


def plan_link_state(actual: Snapshot, target: Snapshot) -> list[Change]:
    out: list[Change] = []
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        for link in want.links:
            current = have.link(link.name) if have is not None else None
            if current is None:
                continue
            if (current.master or "") != (link.master or ""):
                out.append(Change(SetMaster(ns, name=link.name, master=link.master or ""), not link.master))
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        for link in want.links:
            current = have.link(link.name) if have is not None else None
            if current is not None and current.up != link.up:
                out.append(Change(SetLinkUp(ns, name=link.name, up=link.up), not link.up))
            if current is not None and current.mtu != link.mtu:
                out.append(Change(SetMtu(ns, name=link.name, mtu=link.mtu or default_mtu(link.kind)), False))
            if current is not None and current.hairpin != link.hairpin:
                out.append(Change(Hairpin(ns, name=link.name, on=link.hairpin), not link.hairpin))
            if current is not None and current.nf_call_iptables != link.nf_call_iptables:
                on = link.nf_call_iptables
                out.append(Change(BridgeFilter(ns, name=link.name, on=on), not on))
    return out


def plan_addresses(actual: Snapshot, target: Snapshot) -> list[Change]:
    out: list[Change] = []
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        for entry in _extra(want.addresses, have.addresses if have else ()):
            dev, _, cidr = entry.partition(" ")
            out.append(Change(Address(ns, dev=dev, cidr=cidr, add=True), False))
    return out


PROTOS = {"kernel": 2, "boot": 3, "static": 4}  # (a snapshot leaves out boot and global: iproute2's defaults)
SCOPES = {"global": 0, "link": 253, "host": 254}


def route_spec(text: str) -> dict:
    """A route of the snapshot as the route executor's spec (kernel numbers)."""
    f = route_fields(text)
    return {"dst": f["dst"], "via": f.get("via", ""), "dev": f.get("dev", ""),
            "proto": PROTOS.get(f.get("proto", "boot"), f.get("proto")), "scope": SCOPES.get(f.get("scope", "global"),
                                                                                             f.get("scope")),
            "src": f.get("src", ""), "metric": int(f.get("metric", 0))}


def plan_routes(actual: Snapshot, target: Snapshot) -> list[Change]:
    """The routes to each destination set to the target's, in its order (the first one
    wins): one change a destination, which removes, adds and reorders together (a second
    route to a destination can only be appended, never added)."""
    out: list[Change] = []
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        if have is None:
            continue
        mine = [r.removesuffix(" linkdown") for r in have.routes if not r.startswith("unreachable ")]
        theirs = [r.removesuffix(" linkdown") for r in want.routes if not r.startswith("unreachable ")]
        for dst in dict.fromkeys(route_fields(r)["dst"] for r in [*mine, *theirs]):
            old = [r for r in mine if route_fields(r)["dst"] == dst]
            new = [r for r in theirs if route_fields(r)["dst"] == dst]
            if old == new:
                continue
            action = Restore(ns, image={"routes": {ns: {dst: [route_spec(r) for r in new]}}})
            shown = [Change(route_action(ns, r, add=False), True) for r in old if r not in new]
            shown += [Change(route_action(ns, r, add=True), False) for r in new if r not in old]
            if not shown:  # the same routes in another order
                said = _("{ns}# (routes to {dst} put back in order)").format(ns=ns, dst=dst)
                shown = [Change(route_action(ns, r, add=True), False, said)
                         for r in new[:1]]
            out.append(Change(action, shown[0].removes, shown[0].describe()))
            out += [Change(None, c.removes, c.describe()) for c in shown[1:]]
    return out


def _rule_removals(ns: str, have: NamespaceState, want: NamespaceState) -> list[Change]:
    out: list[Change] = []
    wanted = Counter(want.rules)
    for text in have.rules:
        table, op, chain, rest = rule_parts(text)
        if op != "-A":
            continue
        if wanted[text] > 0:
            wanted[text] -= 1
            continue
        out.append(Change(Iptables(ns, table=table, args=("-D", chain, *rest)), True))
    return out


def plan_rules(actual: Snapshot, target: Snapshot) -> list[Change]:
    """Chains, rules in each chain's order, policies; chains the target lacks removed last."""
    out: list[Change] = []
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        if have is None:
            continue
        have_rules, want_rules = list(have.rules), list(want.rules)
        for text in want_rules:
            if text not in have_rules and rule_parts(text)[1] == "-N":
                table, _op, chain, _rest = rule_parts(text)
                out.append(Change(Iptables(ns, table=table, args=("-N", chain)), False))
        chains = dict.fromkeys((rule_parts(t)[0], rule_parts(t)[2]) for t in have_rules + want_rules
                               if rule_parts(t)[1] == "-A")
        for table, chain in chains:
            mine = [t for t in have_rules if rule_parts(t)[:3:2] == (table, chain) and rule_parts(t)[1] == "-A"]
            theirs = [t for t in want_rules if rule_parts(t)[:3:2] == (table, chain) and rule_parts(t)[1] == "-A"]
            if mine == theirs:
                continue
            if not _subsequence(mine, theirs):
                out += [Change(Iptables(ns, table=table, args=("-D", chain, *rule_parts(t)[3])), True)
                        for t in mine]
                mine = []
            current = list(mine)
            for i, text in enumerate(theirs):
                if i < len(current) and current[i] == text:
                    continue
                # Placed by its neighbours: in host mode the chain also holds rules that are
                # not the lab's, so an index counted among the lab's own would be wrong there.
                around = (tuple(rule_parts(current[i - 1])[3]) if i else (),
                          tuple(rule_parts(current[i])[3]) if i < len(current) else ())
                current.insert(i, text)
                out.append(Change(Iptables(ns, table=table, args=("-I", chain, str(i + 1), *rule_parts(text)[3]),
                                           between=around), False))
        policies_have = {(rule_parts(t)[0], rule_parts(t)[2]): rule_parts(t)[3][0] for t in have_rules
                         if rule_parts(t)[1] == "-P"}
        policies_want = {(rule_parts(t)[0], rule_parts(t)[2]): rule_parts(t)[3][0] for t in want_rules
                         if rule_parts(t)[1] == "-P"}
        for table, chain in dict.fromkeys([*policies_have, *policies_want]):
            old, new = policies_have.get((table, chain), "ACCEPT"), policies_want.get((table, chain), "ACCEPT")
            if old != new:
                out.append(Change(Iptables(ns, table=table, args=("-P", chain, new)), new == "ACCEPT"))
        for text in have_rules:
            if text not in want_rules and rule_parts(text)[1] == "-N":
                table, _op, chain, _rest = rule_parts(text)
                out.append(Change(Iptables(ns, table=table, args=("-X", chain)), True))
    return out


def plan_sysctls(actual: Snapshot, target: Snapshot) -> list[Change]:
    out: list[Change] = []
    for ns, want in target.namespaces.items():
        have = actual.namespaces.get(ns)
        values = dict(have.sysctls) if have else {}
        for key, value in want.sysctls:
            if key in values and values[key] != value:
                out.append(Change(Sysctl(ns, key=key, value=value), False))
    return out


def _extra(have, want) -> list[str]:
    """The entries of `have` that `want` lacks, counted (a duplicate is extra once)."""
    left = Counter(want)
    out = []
    for entry in have:
        if left[entry] > 0:
            left[entry] -= 1
        else:
            out.append(entry)
    return out


def _subsequence(small: list[str], big: list[str]) -> bool:
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


PHASES: tuple[Callable[[Snapshot, Snapshot], list[Change]], ...] = (
    plan_namespaces, plan_moves, plan_removals, plan_devices, plan_link_state, plan_addresses, plan_routes,
    plan_rules, plan_sysctls,
)


def reconcile(read: Callable[[], Snapshot], apply: Callable[[Action], None], target: Snapshot,
              *, actual: Snapshot | None = None,
              adjust: Callable[[Action], Action] | None = None) -> Reconciliation:
    """Bring the lab that `read` reads to `target`, through `apply`, and confirm it.

    Each phase plans from a fresh reading (a phase that planned nothing reads nothing new);
    `adjust` may amend each planned action (host mode places a rule it puts back among
    rules that `read` leaves out). Raises NetstepError when the lab still differs at the end.
    """
    done = Reconciliation()
    actual = actual if actual is not None else read()
    for phase in PHASES:
        changes = phase(actual, target)
        if adjust is not None:
            changes = [replace(c, action=adjust(c.action)) if c.action is not None else c for c in changes]
        for change in changes:
            if change.action is not None:
                apply(change.action)
            done.changes.append(change)
        if changes:
            actual = read()
    if not same(actual, target):
        left = [ns for ns in target.namespaces if actual.namespaces.get(ns) is None
                or actual[ns].config() != target[ns].config()]
        raise NetstepError(f"{', '.join(left) or 'a namespace'} still differed after every change.")
    return done


def same(actual: Snapshot, target: Snapshot) -> bool:
    """The two labs hold the same configuration (caches and MACs aside)."""
    return set(actual.namespaces) == set(target.namespaces) and all(
        actual[ns].config() == target[ns].config() for ns in target.namespaces)
