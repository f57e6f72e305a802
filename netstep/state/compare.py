"""Comparing a lab with the state the course expects, in plain words.

A snapshot is flattened into facts (a namespace exists, a device is UP, a route is
there, a sysctl has a value), keyed so that two labs built the same way give the same
keys. What the kernel picks for itself is left out: MAC addresses and ifindexes (links
are known by name), a route's `linkdown` (it follows the carrier in the kernel's own
time), and the caches (neighbours, the bridge's forwarding table, conntrack). So two
labs compare equal exactly when a student would call them the same.
"""

from __future__ import annotations

from netstep.i18n import _
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
    return [text for _key, text in described_differences(actual, expected)]


def described_differences(actual: Snapshot, expected: Snapshot) -> list[tuple[Fact | None, str]]:
    """`differences`, each with the fact it is about (None for routes merely reordered)."""
    have, want = facts(actual), facts(expected)
    gone = {key[1:] for key in (*have, *want) if key[0] in ("namespace", "device") and len(key) <= 3
            and have.get(key) != want.get(key)}
    out: list[tuple[Fact | None, str]] = []
    for key in sorted(have.keys() | want.keys(), key=_order):
        if have.get(key) == want.get(key) or _inside(key, gone):
            continue
        out.append((key, sentence(key, have.get(key), want.get(key))))
    for ns in expected.namespaces:
        if ns in actual.namespaces:
            mine = [r.removesuffix(" linkdown") for r in actual[ns].routes]
            theirs = [r.removesuffix(" linkdown") for r in expected[ns].routes]
            if sorted(mine) == sorted(theirs) and mine != theirs:
                out.append((None, _("the routes in {ns} are in another order (the first that matches wins): "
                                    "expected {routes}").format(ns=ns, routes="; ".join(theirs))))
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
        return (_("missing namespace {ns}") if want else _("extra namespace {ns}")).format(ns=ns)
    if kind == "device" and len(key) == 3:
        return (_("missing device {name} in {ns}") if want else _("extra device {name} in {ns}")).format(
            name=key[2], ns=ns)
    if kind == "device":
        name, field = key[2], key[3]
        if field == "up":
            return _("{name} in {ns} is {have}, expected {want}").format(
                name=name, ns=ns, have="UP" if have else "DOWN", want="UP" if want else "DOWN")
        if field == "master":
            return _("{name} in {ns} has {have}, expected {want}").format(
                name=name, ns=ns, have=f"master {have}" if have else _("no master"),
                want=f"master {want}" if want else _("no master"))
        if field == "mtu":
            return _("{name} in {ns} has {have}, expected {want}").format(
                name=name, ns=ns, have=f"mtu {have}" if have else _("mtu at its default"),
                want=f"mtu {want}" if want else _("mtu at its default"))
        if field == "hairpin":
            return _("{name} in {ns} has {have}, expected {want}").format(
                name=name, ns=ns, have=f"hairpin {'on' if have else 'off'}", want=f"hairpin {'on' if want else 'off'}")
        if field == "peer":
            return _("{name} in {ns} is paired with {have}, expected {want}").format(
                name=name, ns=ns, have=have or _("nothing"), want=want or _("nothing"))
        return _("{name} in {ns} is a {have}, expected a {want}").format(name=name, ns=ns, have=have, want=want)
    if kind == "address":
        device, _sep, address = key[2].partition(" ")
        return (_("missing address {address} on {device} in {ns}") if want else
                _("extra address {address} on {device} in {ns}")).format(address=address, device=device, ns=ns)
    if kind in ("route", "rule"):
        if kind == "route":
            return (_("missing route {route} in {ns}") if want else _("extra route {route} in {ns}")).format(
                route=key[2], ns=ns)
        return (_("missing rule {rule} in {ns}") if want else _("extra rule {rule} in {ns}")).format(rule=key[2], ns=ns)
    if have is None:
        return _("{key} is not set in {ns}, expected {want}").format(key=key[2], ns=ns, want=want)
    return _("{key} is {have} in {ns}, expected {want}").format(key=key[2], have=have, ns=ns, want=want)
