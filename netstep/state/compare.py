"""Comparing a lab with the state the course expects, in plain words.

A snapshot is flattened into facts (a namespace exists, a device is UP, a route is
there, a sysctl has a value), keyed so that two labs built the same way give the same
keys. What the kernel picks for itself is left out: MAC addresses and ifindexes (links
are known by name), a route's `linkdown` (it follows the carrier in the kernel's own
time), and the caches (neighbours, the bridge's forwarding table, conntrack). So two
labs compare equal exactly when a student would call them the same.
"""

from __future__ import annotations

from netstep.state.snapshot import Snapshot

Fact = tuple[str, ...]  # ("link", "host", "veth0", "up"), ("route", "host", "172.18.0.0/16 dev br0 ...")

LINK_FIELDS = ("kind", "up", "master", "peer", "mtu", "hairpin")


def facts(snapshot: Snapshot) -> dict[Fact, object]:
    """Every fact of `snapshot`'s configuration, each with its value."""
    out: dict[Fact, object] = {}
    for ns, state in snapshot.namespaces.items():
        out[("namespace", ns)] = True
        for link in state.links:
            out[("device", ns, link.name)] = True
            for name in LINK_FIELDS:
                out[("device", ns, link.name, name)] = getattr(link, name)
        for entry in state.addresses:
            out[("address", ns, entry)] = True
        for entry in state.routes:
            out[("route", ns, entry.removesuffix(" linkdown"))] = True
        for entry in state.rules:
            out[("rule", ns, entry)] = True
        for key, value in state.sysctls:
            out[("sysctl", ns, key)] = value
    return out


def changed(before: dict[Fact, object], after: dict[Fact, object]) -> dict[Fact, object]:
    """The facts whose value differs from `before` to `after`, with their value after."""
    return {key: after.get(key) for key in before.keys() | after.keys() if before.get(key) != after.get(key)}


def differences(actual: Snapshot, expected: Snapshot) -> list[str]:
    """How `actual` differs from `expected`, one sentence a difference, in a stable order.

    A missing or extra namespace or device is one sentence, not one per thing inside it.
    """
    have, want = facts(actual), facts(expected)
    gone = {key[1:] for key in (*have, *want) if key[0] in ("namespace", "device") and len(key) <= 3
            and have.get(key) != want.get(key)}
    out = []
    for key in sorted(have.keys() | want.keys(), key=_order):
        if have.get(key) == want.get(key) or _inside(key, gone):
            continue
        out.append(sentence(key, have.get(key), want.get(key)))
    for ns in expected.namespaces:
        if ns in actual.namespaces:
            mine = [r.removesuffix(" linkdown") for r in actual[ns].routes]
            theirs = [r.removesuffix(" linkdown") for r in expected[ns].routes]
            if sorted(mine) == sorted(theirs) and mine != theirs:
                out.append(f"the routes in {ns} are in another order (the first that matches wins): "
                           f"expected {'; '.join(theirs)}")
    return out


def _order(key: Fact) -> tuple:
    kinds = ("namespace", "device", "address", "route", "rule", "sysctl")
    return (key[1] if len(key) > 1 else "", kinds.index(key[0]), key[2:])


def _inside(key: Fact, gone: set[tuple[str, ...]]) -> bool:
    """True for a fact inside a namespace or device that is itself missing or extra."""
    if key[0] == "namespace":
        return False
    if (key[1],) in gone:
        return True
    if key[0] == "device" and len(key) == 4:
        return (key[1], key[2]) in gone
    if key[0] == "address":
        return (key[1], key[2].split(" ", 1)[0]) in gone
    return False


def sentence(key: Fact, have: object, want: object) -> str:
    """One difference in plain words: "veth0 in host is DOWN, expected UP"."""
    kind, ns = key[0], key[1]
    if kind == "namespace":
        return f"missing namespace {ns}" if want else f"extra namespace {ns}"
    if kind == "device" and len(key) == 3:
        return f"missing device {key[2]} in {ns}" if want else f"extra device {key[2]} in {ns}"
    if kind == "device":
        name, field = key[2], key[3]
        if field == "up":
            return f"{name} in {ns} is {'UP' if have else 'DOWN'}, expected {'UP' if want else 'DOWN'}"
        if field == "master":
            return (f"{name} in {ns} has {f'master {have}' if have else 'no master'}, "
                    f"expected {f'master {want}' if want else 'no master'}")
        if field == "mtu":
            return f"{name} in {ns} has mtu {have or 'at its default'}, expected {want or 'its default'}"
        if field == "hairpin":
            return f"{name} in {ns} has hairpin {'on' if have else 'off'}, expected {'on' if want else 'off'}"
        if field == "peer":
            return f"{name} in {ns} is paired with {have or 'nothing'}, expected {want or 'nothing'}"
        return f"{name} in {ns} is a {have}, expected a {want}"
    if kind == "address":
        device, _, address = key[2].partition(" ")
        return f"{'missing' if want else 'extra'} address {address} on {device} in {ns}"
    if kind in ("route", "rule"):
        return f"{'missing' if want else 'extra'} {kind} {key[2]} in {ns}"
    if have is None:
        return f"{key[2]} is not set in {ns}, expected {want}"
    return f"{key[2]} is {have} in {ns}, expected {want}"
