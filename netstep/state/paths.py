"""A packet's path through a lab, hop by hop, as the kernel would route it.

Each namespace on the way is asked for its own routing decision (`ip route get`, with
the device the packet arrived on when it is being forwarded); the lab's wiring (veth
peers, bridge ports, addresses) says which namespace is at the other end of the output
device and whether anyone there has the next hop's address (who would answer ARP).
The walk stops where the packet is delivered, or where the kernel would drop it, and
says why: no route, forwarding off, a source it may not send from or receive (a loopback
or martian source), nobody on the link with the next hop's address.

Netfilter is not simulated here: rule counters read around a real probe say what the
rules did (netstep.ops.trace).
"""

from __future__ import annotations

import errno
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from netstep.i18n import _
from netstep.state.evidence import RouteLookup
from netstep.state.snapshot import Snapshot, default_mtu

Lookup = Callable[[str, str, str | None, str | None], RouteLookup]  # (ns, dst, src, iif)
MAX_HOPS = 8


@dataclass(frozen=True)
class Hop:
    """What one namespace did with the packet."""

    ns: str
    arrived_on: str | None  # the device it came in by (None: the namespace that sent it)
    lookup: RouteLookup
    action: str  # "sent", "forwarded", "delivered", "dropped" or "left" (for a network outside the lab)
    link: tuple[str, ...] = ()  # how it left: "veth0 -> ceth0@netns0", "br0 port veth1"
    problem: str = ""  # why the packet stops here (action "dropped")
    kernel_reason: str = ""  # the reason the kernel gives such a drop (skb:kfree_skb)
    bridged: tuple[str, str] | None = None  # (namespace, bridge) it then crosses port to port, where
    # br_netfilter (bridge-nf-call-iptables = 1) hands the frame to that namespace's iptables FORWARD

    def as_json(self) -> dict:
        out = {"ns": self.ns, "in": self.arrived_on, "action": self.action, "route": self.lookup.as_json()}
        if self.link:
            out["link"] = list(self.link)
        if self.problem:
            out["problem"] = self.problem
        return out


@dataclass(frozen=True)
class Path:
    """The hops from `src` to `dst`, starting in namespace `start`."""

    start: str
    src: str
    dst: str
    hops: tuple[Hop, ...] = field(default_factory=tuple)

    @property
    def delivered(self) -> bool:
        return bool(self.hops) and self.hops[-1].action == "delivered"

    @property
    def end(self) -> Hop | None:
        return self.hops[-1] if self.hops else None

    @property
    def broken(self) -> Hop | None:
        """The hop where the packet would be dropped, if any."""
        return next((hop for hop in self.hops if hop.action == "dropped"), None)

    def as_json(self) -> list[dict]:
        return [hop.as_json() for hop in self.hops]


class Wiring:
    """Which namespace is at the other end of each device, and who owns each address."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.local = {ns: {a.split()[1].split("/")[0] for a in state.addresses}
                      for ns, state in snapshot.namespaces.items()}

    def owner(self, address: str) -> list[str]:
        return [ns for ns, addresses in self.local.items() if address in addresses]

    def forwarding(self, ns: str) -> bool:
        state = self.snapshot.namespaces.get(ns)
        values = dict(state.sysctls) if state else {}
        return values.get("net.ipv4.ip_forward") == "1"

    def mtu(self, ns: str, dev: str) -> int | None:
        """Device `dev`'s MTU in `ns`, or None for a device the snapshot does not hold."""
        state = self.snapshot.namespaces.get(ns)
        link = state.link(dev) if state else None
        return (link.mtu or default_mtu(link.kind)) if link else None

    def hairpin(self, ns: str, port: str) -> bool:
        state = self.snapshot.namespaces.get(ns)
        link = state.link(port) if state else None
        return bool(link and link.hairpin)

    def sysctl(self, ns: str, key: str) -> str | None:
        state = self.snapshot.namespaces.get(ns)
        return dict(state.sysctls).get(key) if state else None

    def bridge_filtered(self, ns: str, bridge: str) -> bool:
        """Whether br_netfilter hands `bridge`'s frames to iptables: the namespace's
        bridge-nf-call-iptables OR the bridge's own nf_call_iptables, as the kernel reads them."""
        state = self.snapshot.namespaces.get(ns)
        link = state.link(bridge) if state else None
        return self.sysctl(ns, "net.bridge.bridge-nf-call-iptables") == "1" or bool(link and link.nf_call_iptables)

    def leaves_lab(self, ns: str, dev: str) -> bool:
        """True for a device whose other end no namespace of the lab holds (a real NIC)."""
        state = self.snapshot.namespaces.get(ns)
        link = state.link(dev) if state else None
        if link is None or link.kind in ("bridge", "loopback"):
            return False
        peer = self._peer(ns, dev)
        return peer is None or peer[0] not in self.snapshot.namespaces

    def _peer(self, ns: str, dev: str) -> tuple[str, str] | None:
        state = self.snapshot.namespaces.get(ns)
        link = state.link(dev) if state else None
        if link is None or link.kind != "veth" or not link.peer:
            return None
        name, _, where = link.peer.partition("@")
        return (where or ns, name)

    def _down(self, ns: str, *devs: str) -> str:
        """The first of `devs` in `ns` that is down, as "veth1 in host", or ""."""
        state = self.snapshot.namespaces.get(ns)
        for dev in devs:
            link = state.link(dev) if state else None
            if link is not None and not link.up:
                return f"{dev} in {ns}"
        return ""

    def ends(self, ns: str, dev: str) -> list[End]:
        """The (namespace, device) that receive what leaves `dev`, each with how it gets there,
        the bridge it crosses port to port (if any) and the device on the way that is down (if any)."""
        state = self.snapshot.namespaces.get(ns)
        link = state.link(dev) if state else None
        if link is None:
            return []
        if link.kind == "bridge":
            return [End(pns, pdev, (f"{dev} port {port.name}", f"{port.name} -> {pdev}@{pns}"), None,
                        self._down(ns, dev, port.name) or self._down(pns, pdev), port.name)
                    for port in state.links if port.master == dev
                    for pns, pdev in [self._peer(ns, port.name) or (None, None)] if pns]
        peer = self._peer(ns, dev)
        if peer is None:
            return []
        pns, pdev = peer
        first = f"{dev} -> {pdev}@{pns}"
        down = self._down(ns, dev) or self._down(pns, pdev)
        plink = self.snapshot.namespaces[pns].link(pdev) if pns in self.snapshot.namespaces else None
        if plink is not None and plink.master:
            bridge = plink.master
            down = down or self._down(pns, bridge)
            out = [End(pns, bridge, (first, f"{bridge} (bridge in {pns})"), None, down, pdev)]
            for port in self.snapshot.namespaces[pns].links:
                if port.master == bridge and port.name != pdev:
                    far = self._peer(pns, port.name)
                    if far:
                        out.append(End(far[0], far[1], (first, f"{bridge} port {port.name}",
                                                        f"{port.name} -> {far[1]}@{far[0]}"), (pns, bridge),
                                       down or self._down(pns, port.name) or self._down(*far)))
            return out
        return [End(pns, pdev, (first,), None, down)]


class End(NamedTuple):
    """Where a frame that leaves a device arrives."""

    ns: str
    dev: str
    how: tuple[str, ...]
    bridge: tuple[str, str] | None  # (namespace, bridge) it crosses from port to port
    down: str  # a device on the way that is down ("veth1 in host"), or ""
    port: str = ""  # the bridge's port it goes through, into the bridge or out of it


def walk(wiring: Wiring, lookup: Lookup, start: str, src: str, dst: str, *, arrived_on: str | None = None,
         dnat: dict[str, str] | None = None) -> Path:
    """Follow a packet from `src` to `dst` that is in namespace `start` (having arrived on
    `arrived_on`, or sent from there), asking each namespace's kernel for its decision.
    `dnat`: the namespaces that rewrite the destination (conntrack says), and to what."""
    hops: list[Hop] = []
    ns, dev_in, original, port_in = start, arrived_on, dst, ""
    for _hop in range(MAX_HOPS):
        asked, dst = dst, (dnat or {}).get(ns, dst)  # before routing: nat PREROUTING, or OUTPUT where it was sent
        sending = dev_in is None
        # A sender's source counts in its lookup where OUTPUT's DNAT kept a loopback source
        # (127.0.0.1 may leave only by a device with route_localnet = 1).
        kept = sending and dst != original and _loopback(src)
        result = lookup(ns, dst, src if dev_in or kept else None, dev_in)
        if result.kind == "local":
            hops.append(Hop(ns, dev_in, result, "delivered"))
            break
        if not result.ok:
            if kept and result.error == errno.EINVAL:
                hops.append(_loopback_source(wiring, lookup, ns, result, dst, src))
            else:
                hops.append(_refused(wiring, ns, dev_in, result, dst, sending))
            break
        hop_to = result.gateway or dst
        ends = wiring.ends(ns, result.dev or "")
        owning = [end for end in ends if hop_to in wiring.local.get(end.ns, ())]
        found = [end for end in owning if not end.down]
        if not ends and wiring.leaves_lab(ns, result.dev or ""):  # a real network beyond (host mode)
            hops.append(Hop(ns, dev_in, result, "left", link=(f"{result.dev} -> the network outside the lab",)))
            break
        if not found:
            if owning:
                problem = _("{ns} sends it out of {dev} to {hop}, but {down} is down, on the way to {far}: ARP "
                            "gets no answer").format(ns=ns, dev=result.dev, hop=hop_to, down=owning[0].down,
                                                     far=owning[0].ns)
            else:
                others = ", ".join(sorted({end.ns for end in ends if not end.down})) or _("nobody")
                problem = _("{ns} sends it out of {dev} to {hop}, but nobody on that link has {hop} "
                            "(there: {others}): ARP gets no answer").format(ns=ns, dev=result.dev, hop=hop_to,
                                                                           others=others)
            hops.append(Hop(ns, dev_in, result, "dropped", problem=problem, kernel_reason="NEIGH_FAILED"))
            break
        end = found[0]
        if dst != asked and port_in and port_in == end.port and result.dev == dev_in \
                and wiring.bridge_filtered(ns, dev_in) and not wiring.hairpin(ns, port_in):
            problem = _("{ns}'s bridge {bridge} must send the frame back out of {port}, the port it came in by, "
                        "and {port} has hairpin off: the DNAT happened as the frame crossed {bridge} "
                        "(bridge-nf-call-iptables = 1), so the bridge delivers it, not routing").format(
                ns=ns, bridge=dev_in, port=port_in)
            hops.append(Hop(ns, dev_in, result, "dropped", problem=problem, kernel_reason="BRIDGE_HAIRPIN"))
            break
        hops.append(Hop(ns, dev_in, result, "sent" if sending else "forwarded", link=end.how, bridged=end.bridge))
        ns, dev_in, port_in = end.ns, end.dev, end.port if end.dev != end.port else ""
    return Path(start, src, original, tuple(hops))


def _loopback(address: str) -> bool:
    try:
        return ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        return False


def _loopback_source(wiring: Wiring, lookup: Lookup, ns: str, result: RouteLookup, dst: str, src: str) -> Hop:
    """A packet whose DNAT kept its loopback source: the route lookup with that source fails
    (Invalid argument) unless the way out has route_localnet = 1."""
    dev = lookup(ns, dst, None, None).dev or "?"
    setting = f"net.ipv4.conf.{dev}.route_localnet"
    problem = _("{ns} will not send a packet from {src} out of {dev}: {setting} = {value}, and the route "
                "lookup `{lookup}` fails").format(ns=ns, src=src, dev=dev, setting=setting,
                                                  value=wiring.sysctl(ns, setting) or "0", lookup=result.command())
    return Hop(ns, None, result, "dropped", problem=problem, kernel_reason="IP_OUTNOROUTES")


def _refused(wiring: Wiring, ns: str, dev_in: str | None, result: RouteLookup, dst: str, sending: bool) -> Hop:
    if sending:
        problem = _("{ns} has no route to {dst}").format(ns=ns, dst=dst)
        reason = "IP_OUTNOROUTES"
    elif result.error == errno.EHOSTUNREACH and not wiring.forwarding(ns):
        problem = _("{ns} does not forward packets: net.ipv4.ip_forward = 0").format(ns=ns)
        reason = "IP_INADDRERRORS"
    elif result.error == errno.EXDEV:
        problem = _("{ns} drops it: reverse path filter (rp_filter) on {dev}").format(ns=ns, dev=dev_in)
        reason = "IP_RPFILTER"
    elif result.error == errno.EINVAL and result.src:
        problem = _("{ns} drops it as a martian: a packet from {src} cannot arrive on {dev} (the route lookup "
                    "`{lookup}` fails)").format(ns=ns, src=result.src, dev=dev_in, lookup=result.command())
        reason = "IP_INVALID_SOURCE"
    else:
        problem = _("{ns} has no route to {dst} (for a packet arriving on {dev})").format(ns=ns, dst=dst, dev=dev_in)
        reason = "IP_INNOROUTES"
    return Hop(ns, dev_in, result, "dropped", problem=problem, kernel_reason=reason)
