"""What a lab owns in a namespace it did not make: host mode's lab host (this machine's
own network), or an upstream namespace the user lent.

A move brings the lab's own namespaces back to their position whatever the student typed.
In a namespace netstep did not make it may change only what it made there: the links,
addresses, routes, iptables rules (those carrying the lab's mark), chains, policies and
sysctls that the journal's actions set. `Owned.split` cuts a namespace's state into that
part, which is reconciled, and the rest, whose changes are named and left alone.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from netstep.core.reconcile import route_fields, route_spec
from netstep.course.actions import Action, AddLink, Address, Iptables, MoveLink, Restore, Route, Sysctl
from netstep.state.snapshot import CONFIG_PARTS, NamespaceState, Snapshot


@dataclass
class Owned:
    """The parts of one namespace that the lab's actions made or set."""

    mark: str | None  # the comment on every iptables rule the lab adds there
    links: set[str] = field(default_factory=set)
    addresses: set[tuple[str, str]] = field(default_factory=set)  # (device, cidr)
    routes: set[tuple[str, str, str]] = field(default_factory=set)  # (destination, via, dev); "" when not given
    chains: set[tuple[str, str]] = field(default_factory=set)  # (table, chain) the lab created
    policies: set[tuple[str, str]] = field(default_factory=set)  # (table, chain) whose policy it set
    sysctls: set[str] = field(default_factory=set)

    def add(self, action: Action) -> None:
        if isinstance(action, AddLink):
            self.links.add(action.name)
            if action.peer and not action.peer_ns:
                self.links.add(action.peer)
        elif isinstance(action, MoveLink):
            self.links.add(action.name)
        elif isinstance(action, Address):
            self.addresses.add((action.dev, action.cidr))
        elif isinstance(action, Route):
            self.routes.add((_destination(action.dst), action.via, action.dev))
        elif isinstance(action, Iptables) and action.args[:1] in (("-N",), ("-P",)):
            (self.chains if action.args[0] == "-N" else self.policies).add((action.table, action.args[1]))
        elif isinstance(action, Sysctl):
            self.sysctls.add(action.key)

    def _rule(self, text: str) -> bool:
        words = shlex.split(text)
        table, op, chain = words[0], words[1], words[2]
        if op == "-A":
            return self.mark is not None and self.mark in words
        return (table, chain) in (self.chains if op == "-N" else self.policies)

    def _address(self, text: str) -> bool:
        words = text.split()
        return words[0] in self.links or (words[0], words[-1]) in self.addresses

    def _route(self, text: str) -> bool:
        """A route out of one of the lab's links, or one the lab added (the same destination,
        and the gateway and device it named): a route of the machine's own to the same
        destination is not the lab's."""
        fields = route_fields(text)
        dev, via = fields.get("dev", ""), fields.get("via", "")
        return dev in self.links or any(dst == fields["dst"] and (not to or to == via) and (not out or out == dev)
                                        for dst, to, out in self.routes)

    def split(self, state: NamespaceState) -> tuple[NamespaceState, NamespaceState]:
        """(what of `state` the lab owns, everything else), as two states of the namespace."""
        mine = replace(
            state,
            links=tuple(link for link in state.links if link.name in self.links),
            addresses=tuple(a for a in state.addresses if self._address(a)),
            routes=tuple(r for r in state.routes if self._route(r)),
            rules=tuple(r for r in state.rules if self._rule(r)),
            sysctls=tuple(kv for kv in state.sysctls if kv[0] in self.sysctls),
        )
        rest = replace(
            state,
            links=tuple(link for link in state.links if link.name not in self.links),
            addresses=tuple(a for a in state.addresses if a not in mine.addresses),
            routes=tuple(r for r in state.routes if r not in mine.routes),
            rules=tuple(r for r in state.rules if r not in mine.rules),
            sysctls=tuple(kv for kv in state.sysctls if kv not in mine.sysctls),
        )
        return mine, rest


def _destination(dst: str) -> str:
    """A route's destination as the snapshot writes it: a host route without its /32."""
    return dst.removesuffix("/32")


def owned(actions: Iterable[Action], foreign: Iterable[str], mark: str | None) -> dict[str, Owned]:
    """What `actions` (the journal's, steps and the student's own through netstep) made in
    each of the `foreign` namespaces."""
    out = {ns: Owned(mark) for ns in foreign}
    for action in actions:
        if action.ns in out:
            out[action.ns].add(action)
        if isinstance(action, MoveLink) and action.to in out:
            out[action.to].links.add(action.name)
        if isinstance(action, AddLink) and action.peer_ns in out:
            out[action.peer_ns].links.add(action.peer)
    return out


def restrict(snapshot: Snapshot, owners: dict[str, Owned]) -> Snapshot:
    """`snapshot` with each foreign namespace cut down to what the lab owns there."""
    return Snapshot({ns: owners[ns].split(state)[0] if ns in owners else state
                     for ns, state in snapshot.namespaces.items()})


def others(actual: Snapshot, target: Snapshot, owners: dict[str, Owned]) -> list[str]:
    """What differs in the foreign namespaces outside what the lab owns there: changes
    netstep did not make and leaves alone, each as "ns: + entry" or "ns: - entry"."""
    out: list[str] = []
    for ns, owner in owners.items():
        if ns not in actual.namespaces or ns not in target.namespaces:
            continue
        now, was = owner.split(actual[ns])[1], owner.split(target[ns])[1]
        for part in CONFIG_PARTS:
            have, want = Counter(now.part(part)), Counter(was.part(part))
            out += [f"{ns}: + {entry}" for entry in (have - want).elements()]
            out += [f"{ns}: - {entry}" for entry in (want - have).elements()]
    return out


def placed(action: Action, target: Snapshot, actual: Snapshot, owners: dict[str, Owned]) -> Action:
    """`action`, planned from the lab's part of a namespace it did not make, fitted to the
    whole namespace: a rule it puts back placed among all the rules of its chain in
    `target` (a lone rule of the lab's has no neighbours among the lab's own), and routes it
    sets to a destination keeping the others' routes there (`actual`, read now), which
    setting the lab's routes alone would delete."""
    if isinstance(action, Restore) and set(action.image) == {"routes"}:
        return _with_others_routes(action, actual, owners)
    if not isinstance(action, Iptables) or action.ns not in owners or action.args[:1] != ("-I",) \
            or action.ns not in target.namespaces:
        return action
    chain, rest = action.args[1], list(action.args[3:])
    rules = [shlex.split(text)[3:] for text in target[action.ns].rules
             if shlex.split(text)[:3] == [action.table, "-A", chain]]
    if rest not in rules:
        return action
    at = rules.index(rest)
    around = (tuple(rules[at - 1]) if at else (), tuple(rules[at + 1]) if at + 1 < len(rules) else ())
    return replace(action, args=(*action.args[:2], str(at + 1), *action.args[3:]), between=around)


def _with_others_routes(action: Restore, actual: Snapshot, owners: dict[str, Owned]) -> Restore:
    routes = {}
    for ns, by_dst in action.image["routes"].items():
        owner, state = owners.get(ns), actual.namespaces.get(ns)
        if owner is None or state is None:
            routes[ns] = by_dst
            continue
        others = owner.split(state)[1].routes
        routes[ns] = {dst: [*wanted, *(route_spec(r) for r in others if route_fields(r)["dst"] == dst)]
                      for dst, wanted in by_dst.items()}
    return replace(action, image={**action.image, "routes": routes})
