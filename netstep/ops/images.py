"""Images: what a deletion removes, read first, and how to put it back (Restore).

An image holds links (both ends of a veth, a bridge's ports), their addresses, masters,
up states, MTUs and hairpin flags, and the routes that used them, per destination in the
kernel's order.
"""

from __future__ import annotations

import ipaddress

from netstep.course.actions import Action, Address, DeleteLink, DeleteNetns, Restore, Route
from netstep.errors import NetstepError
from netstep.i18n import _
from netstep.kernel import namespaces
from netstep.ops import lookup, routes
from netstep.ops.access import LabAccess
from netstep.ops.ports import bridge_filter_of, hairpin_of, set_bridge_filter, set_hairpin
from netstep.state.snapshot import default_mtu


def capture(lab: LabAccess, wanted: dict[str, list[str]]) -> dict:
    """Read the links named in `wanted` (ns -> names) and everything that hangs off them."""
    image: dict = {"links": [], "routes": {}}
    devices: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}  # connected prefixes: re-adding an address brings their route back
    for ns, names in wanted.items():
        for name in names:
            entry = link_image(lab, ns, name)
            image["links"].append(entry)
            for end in (entry, entry.get("peer")):
                if end:
                    devices.setdefault(end["ns"], set()).add(end["name"])
                    prefixes.setdefault(end["ns"], set()).update(
                        str(ipaddress.IPv4Interface(a).network) for a in end["addresses"])
    for ns, devs in devices.items():
        found = routes.read(lab, ns)
        dsts = {r["dst"] for r in found if r["dev"] in devs} | prefixes.get(ns, set())
        image["routes"][ns] = routes.by_dst(lab, ns, dsts)
    return image


def end_image(lab: LabAccess, ns: str, name: str, msg=None) -> dict:
    """Link `name`'s up state, master, addresses, MTU and hairpin flag (lesson 11 narrows
    links, lesson 9 turns hairpin on: a deleted link comes back with both); `msg`: its link
    message, if read already."""
    if msg is None:
        msg = lookup.link_msg(lab, ns, name)
    master = msg.get("IFLA_MASTER")
    return {"ns": ns, "name": name, "up": bool(msg["flags"] & 1),
            "master": lookup.name_of(lab, ns, master) if master else "",
            "addresses": lookup.addresses(lab, ns, msg["index"]),
            "mtu": msg.get("IFLA_MTU"), "hairpin": bool(hairpin_of(msg)),
            "nf_call_iptables": bool(bridge_filter_of(msg))}


def add_tuntap(lab: LabAccess, ns: str, name: str, mode: str) -> None:
    """A persistent TAP or TUN device in `ns` (a student's, put back): see namespaces.make_tuntap."""
    namespaces.make_tuntap(lab.path_of(ns), name, mode)


def give_mtu(lab: LabAccess, end: dict, kind: str) -> None:
    """Set a remade link's MTU where it was not its kind's default (an image without one
    was read by an older netstep)."""
    if end.get("mtu") and end["mtu"] != default_mtu(kind):
        lab.ipr(end["ns"]).link("set", index=lookup.index_of(lab, end["ns"], end["name"]), mtu=end["mtu"])


def link_image(lab: LabAccess, ns: str, name: str) -> dict:
    msg = lookup.link_msg(lab, ns, name)
    info = msg.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info else None
    if kind == "tun":  # a TAP or TUN device a student made (`ip tuntap add`): it comes back without its program
        kind = "tap" if (info.get("IFLA_INFO_DATA") or {}).get("IFLA_TUN_TYPE") == 2 else "tun"
    if kind not in ("veth", "bridge", "tap", "tun"):
        raise NetstepError(_("netstep can only delete veth, bridge, TAP and TUN devices, and '{name}' is a {kind}.")
                           .format(name=name, kind=kind))
    entry = {"kind": kind, **end_image(lab, ns, name, msg)}
    if kind == "veth":
        peer = lab.peer_of(ns, msg)
        if peer is not None:
            entry["peer"] = end_image(lab, peer[0], peer[1])
    else:
        index = msg["index"]
        ports = [m for m in lab.ipr(ns).link("dump") if m.get("IFLA_MASTER") == index]
        entry["ports"] = [m.get("ifname") for m in ports]
        entry["hairpins"] = [m.get("ifname") for m in ports if hairpin_of(m)]  # a port's flag goes with its bridge
    return entry


def apply_restore(action: Restore, lab: LabAccess) -> Action:
    image = action.image
    if image.get("netns"):
        lab.add_container(image["netns"])
        if image.get("lo_up"):
            lab.ipr(image["netns"]).link("set", index=lookup.index_of(lab, image["netns"], "lo"), state="up")
    ends = []
    for link in image.get("links", ()):
        ns, ipr = link["ns"], lab.ipr(link["ns"])
        if link["kind"] == "veth" and link.get("peer"):
            peer = link["peer"]
            if peer["ns"] != ns:  # made straight in its namespace: its name may be taken here (eth0)
                lookup.with_fd(lab, peer["ns"], lambda fd, p=ipr, link=link, peer=peer: p.link(
                    "add", ifname=link["name"], kind="veth", peer={"ifname": peer["name"], "net_ns_fd": fd}))
            else:
                ipr.link("add", ifname=link["name"], kind="veth", peer=peer["name"])
            lab.tune_link(peer["ns"], peer["name"])
            give_mtu(lab, peer, "veth")
            ends.append(peer)
        elif link["kind"] in ("tap", "tun"):
            add_tuntap(lab, ns, link["name"], link["kind"])
        else:
            ipr.link("add", ifname=link["name"], kind=link["kind"])
        lab.tune_link(ns, link["name"])
        give_mtu(lab, link, link["kind"])
        ends.append(link)
    for end in ends:
        ipr, index = lab.ipr(end["ns"]), lookup.index_of(lab, end["ns"], end["name"])
        if end.get("nf_call_iptables"):
            set_bridge_filter(lab, end["ns"], index, True)
        if end.get("master"):
            ipr.link("set", index=index, master=lookup.index_of(lab, end["ns"], end["master"]))
            if end.get("hairpin"):
                set_hairpin(lab, end["ns"], index, True)
        for cidr in end["addresses"]:
            lookup.add_address(lab, end["ns"], index, cidr)
    for link in image.get("links", ()):
        for port in link.get("ports", ()):
            if lookup.exists(lab, link["ns"], port):
                index = lookup.index_of(lab, link["ns"], port)
                lab.ipr(link["ns"]).link("set", index=index, master=lookup.index_of(lab, link["ns"], link["name"]))
                if port in link.get("hairpins", ()):
                    set_hairpin(lab, link["ns"], index, True)
    for end in ends:
        if end["up"]:
            lab.ipr(end["ns"]).link("set", index=lookup.index_of(lab, end["ns"], end["name"]), state="up")
    for extra in image.get("addresses", ()):
        lookup.add_address(lab, extra["ns"], lookup.index_of(lab, extra["ns"], extra["dev"]), extra["cidr"])
    lookup.settle(lab, ends)
    for ns, by_dst in image.get("routes", {}).items():
        for dst, wanted in by_dst.items():
            routes.set_routes(lab, ns, dst, wanted)
    return _undo_of_restore(image)


def _undo_of_restore(image: dict) -> Action:
    if image.get("netns"):
        return DeleteNetns("host", name=image["netns"])
    if image.get("links"):
        first = image["links"][0]
        return DeleteLink(first["ns"], name=first["name"])
    if image.get("addresses"):
        a = image["addresses"][0]
        return Address(a["ns"], dev=a["dev"], cidr=a["cidr"], add=False)
    ns, by_dst = next(iter(image["routes"].items()))
    dst = next(iter(by_dst))
    return Route(ns, dst=dst, add=False)
