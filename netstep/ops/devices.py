"""Devices: namespaces, links (veth pairs, bridges), their state, masters and addresses.

Each function applies one kind of action and returns its undo, worked out from the state
it found; the undo is announced just before the kernel change (netstep.ops.announce).
"""

from __future__ import annotations

from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    DeleteLink,
    DeleteNetns,
    MoveLink,
    Restore,
    SetLinkUp,
    SetMaster,
)
from netstep.ops import images, lookup, ports, routes
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change

# -- namespaces ------------------------------------------------------------------------


def apply_add_netns(action: AddNetns, lab: LabAccess) -> Action:
    undo = about_to_change(DeleteNetns("host", name=action.name))
    lab.add_container(action.name)
    return undo


def apply_delete_netns(action: DeleteNetns, lab: LabAccess) -> Action:
    ns = action.name
    lab.require(ns)
    links = [m.get("ifname") for m in lab.ipr(ns).link("dump") if m.get("ifname") != "lo"]
    image = images.capture(lab, {ns: links})
    image["netns"] = ns
    image["lo_up"] = bool(lookup.link_msg(lab, ns, "lo")["flags"] & 1)
    undo = about_to_change(Restore("host", image=image))
    # Deleting a veth end removes its peer at once; a dying namespace would take its veths
    # with it only later, in the kernel's own time. Delete them first, then the namespace.
    for name in links:
        if lookup.exists(lab, ns, name):
            lab.ipr(ns).link("del", index=lookup.index_of(lab, ns, name))
    lab.remove_container(ns)
    return undo


# -- links -------------------------------------------------------------------------------


def apply_add_link(action: AddLink, lab: LabAccess) -> Action:
    ns = action.ns
    lookup.refuse_existing(lab, ns, action.name)
    ipr = lab.ipr(ns)
    if action.kind == "veth":
        lookup.refuse_existing(lab, action.peer_ns or ns, action.peer)
    undo = about_to_change(DeleteLink(ns, name=action.name))
    if action.kind == "veth" and action.peer_ns:
        lookup.with_fd(lab, action.peer_ns, lambda fd: ipr.link(
            "add", ifname=action.name, kind="veth", peer={"ifname": action.peer, "net_ns_fd": fd}))
        lab.tune_link(action.peer_ns, action.peer)
    elif action.kind == "veth":
        ipr.link("add", ifname=action.name, kind="veth", peer=action.peer)
        lab.tune_link(ns, action.peer)
    elif action.kind in ("tap", "tun"):
        images.add_tuntap(lab, ns, action.name, action.kind)
    else:
        ipr.link("add", ifname=action.name, kind=action.kind)
    lab.tune_link(ns, action.name)
    return undo



def apply_delete_link(action: DeleteLink, lab: LabAccess) -> Action:
    image = images.capture(lab, {action.ns: [action.name]})
    index = lookup.index_of(lab, action.ns, action.name)
    undo = about_to_change(Restore(action.ns, image=image))
    lab.ipr(action.ns).link("del", index=index)
    return undo


def apply_set_link_up(action: SetLinkUp, lab: LabAccess) -> Action:
    index, flags = lookup.index_of(lab, action.ns, action.name), lab.link_flags(action.ns, action.name) or 0
    was_up = bool(flags & 1)
    loopback = bool(flags & 8)  # IFF_LOOPBACK: the one link that gains an address by going up
    before = lookup.addresses(lab, action.ns, index) if loopback else []
    # Taking a link down removes every route through it; its undo must put them back.
    through = routes.routes_on(lab, action.ns, action.name) if was_up and not action.up else {}
    ipr = lab.ipr(action.ns)
    about_to_change(SetLinkUp(action.ns, name=action.name, up=was_up, routes=through))  # (lo's address: below)
    ipr.link("set", index=index, state="up" if action.up else "down")
    for cidr in action.drop:
        ip, prefix = cidr.split("/")
        ipr.addr("del", index=index, address=ip, prefixlen=int(prefix))
    if action.routes:
        lookup.settle(lab, [{"ns": action.ns, "name": action.name, "up": True}])
        for dst, wanted in action.routes.items():
            routes.set_routes(lab, action.ns, dst, wanted)
    # Bringing lo up gives it 127.0.0.1/8, and bringing it down keeps the address.
    added = tuple(a for a in lookup.addresses(lab, action.ns, index) if a not in before) if loopback else ()
    return SetLinkUp(action.ns, name=action.name, up=was_up, drop=added, routes=through)


def apply_move_link(action: MoveLink, lab: LabAccess) -> Action:
    lab.require(action.to)
    index = lookup.index_of(lab, action.ns, action.name)
    lookup.refuse_existing(lab, action.to, action.name)
    # A move takes the link's addresses, up state, master and routes away: keep them for the undo.
    state = images.end_image(lab, action.ns, action.name)
    state["routes"] = routes.routes_on(lab, action.ns, action.name) if state["up"] else {}  # a down link has none
    undo = about_to_change(MoveLink(action.to, name=action.name, to=action.ns, restore=state))
    lookup.with_fd(lab, action.to, lambda fd: lab.ipr(action.ns).link("set", index=index, net_ns_fd=fd))
    lab.tune_link(action.to, action.name)
    if action.restore:
        give_state(lab, action.to, action.name, action.restore)
    return undo


def give_state(lab: LabAccess, ns: str, name: str, state: dict) -> None:
    ipr, index = lab.ipr(ns), lookup.index_of(lab, ns, name)
    if state.get("master"):
        ipr.link("set", index=index, master=lookup.index_of(lab, ns, state["master"]))
        if state.get("hairpin"):  # a port's flag goes with its master
            ports.set_hairpin(lab, ns, index, True)
    for cidr in state.get("addresses", ()):
        lookup.add_address(lab, ns, index, cidr)
    if state.get("up"):
        ipr.link("set", index=index, state="up")
        lookup.settle(lab, [{"ns": ns, "name": name, "up": True}])
    for dst, wanted in state.get("routes", {}).items():
        routes.set_routes(lab, ns, dst, wanted)


def apply_set_master(action: SetMaster, lab: LabAccess) -> Action:
    msg = lookup.link_msg(lab, action.ns, action.name)
    old = lookup.names(lab, action.ns).get(msg.get("IFLA_MASTER"), "") if msg.get("IFLA_MASTER") else ""
    master = lookup.index_of(lab, action.ns, action.master) if action.master else 0
    undo = about_to_change(SetMaster(action.ns, name=action.name, master=old))
    lab.ipr(action.ns).link("set", index=msg["index"], master=master)
    return undo


def apply_address(action: Address, lab: LabAccess) -> Action:
    ns = action.ns
    ip, prefix = action.cidr.split("/")
    index = lookup.index_of(lab, ns, action.dev)
    if action.add:
        undo = about_to_change(Address(ns, dev=action.dev, cidr=action.cidr, add=False))
        lookup.add_address(lab, ns, index, action.cidr)
        return undo
    image = {"addresses": [{"ns": ns, "dev": action.dev, "cidr": action.cidr}],
             "routes": {ns: routes.by_dst(lab, ns)}}
    undo = about_to_change(Restore(ns, image=image))
    lab.ipr(ns).addr("del", index=index, address=ip, prefixlen=int(prefix))
    return undo
