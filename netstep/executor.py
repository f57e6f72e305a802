"""The one place that changes the kernel: apply an action, return its undo.

`apply(lab, action)` performs the action natively (rtnetlink requests through
netstep.rtnl for namespaces, links, addresses and routes; the iptables binary inside the
namespace for rules; /proc/sys from a thread switched into the namespace for sysctls) and
returns the action that undoes it, worked out from the state it found. Deletions read
what they remove first (an image), so their undo rebuilds it, routes in the kernel's
order included.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import singledispatch

from netstep.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    DeleteLink,
    DeleteNetns,
    HttpServer,
    Iptables,
    MoveLink,
    Restore,
    Route,
    SetLinkUp,
    SetMaster,
    Sysctl,
)
from netstep.errors import KernelError, NameConflict, NetstepError
from netstep.rtnl import NetlinkError

PROTO = {"kernel": 2, "boot": 3, "static": 4}
SCOPE = {"global": 0, "link": 253, "host": 254}


_ready = threading.local()


def apply(lab, action: Action, ready: Callable[[Action], None] | None = None) -> Action:
    """Apply `action` in `lab`; return the action that undoes it.

    `ready`, when given, hears the undo just before the kernel change, for the actions
    whose undo is known by then: the engine journals it, so that a kill between the change
    and the return still leaves a journal that can take the change back. (If the change
    then never happened, that undo finds nothing to undo.)
    """
    outer = getattr(_ready, "fn", None)
    _ready.fn = ready  # actions applied inside this one do not report
    try:
        return _apply(action, lab)
    except NetlinkError as exc:
        raise KernelError(f"`{action.command()}` on {action.ns} failed: {os.strerror(exc.code)}.") from None
    finally:
        _ready.fn = outer


def tells_undo_first(action: Action) -> bool:
    """True if applying `action` tells its undo before any kernel change, always: then a
    journal entry without an undo (and not failed) means the kill came before the change."""
    if isinstance(action, Iptables):
        return action.args[:1] != ("-D",)  # which rule a -D removes is known only after
    return not isinstance(action, Restore)


def _about_to_change(undo: Action) -> Action:
    """Tell `apply`'s caller the undo, right before the kernel change; returns `undo`."""
    fn = getattr(_ready, "fn", None)
    if fn is not None:
        _ready.fn = None  # once per action
        fn(undo)
    return undo


@singledispatch
def _apply(action: Action, lab) -> Action:
    raise NetstepError(f"netstep cannot apply {type(action).__name__}")


# -- helpers ---------------------------------------------------------------------------


def _get(lab, ns: str, name: str):
    """The kernel's record of link `name` in `ns`, or None: one lookup, not a dump."""
    try:
        return lab.ipr(ns).link("get", ifname=name)[0]
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def _index(lab, ns: str, name: str) -> int:
    index = lab.link_index(ns, name)
    if index is None:
        raise KernelError(f"There is no device '{name}' in {ns}.")
    return index


def _exists(lab, ns: str, name: str) -> bool:
    return lab.link_index(ns, name) is not None


def _refuse_existing(lab, ns: str, name: str) -> None:
    if _exists(lab, ns, name):
        raise NameConflict(
            f"A device named '{name}' already exists in {ns}, and netstep did not create it, so it "
            f"will not touch it. If you made it by hand (in `netstep shell`), delete it there; or "
            f"start the lab over with `python -m netstep reset`."
        )


def _link_msg(lab, ns: str, name: str):
    msg = _get(lab, ns, name)
    if msg is None:
        raise KernelError(f"There is no device '{name}' in {ns}.")
    return msg


def _names(lab, ns: str) -> dict[int, str]:
    return {m["index"]: m.get("ifname") for m in lab.ipr(ns).link("dump")}


def _name_of(lab, ns: str, index: int) -> str:
    return lab.ipr(ns).link("get", index=index)[0].get("ifname")


def _with_fd(lab, ns: str, fn):
    fd = os.open(lab.fd_path(ns), os.O_RDONLY)
    try:
        return fn(fd)
    finally:
        os.close(fd)


# -- namespaces ------------------------------------------------------------------------


@_apply.register
def _(action: AddNetns, lab) -> Action:
    undo = _about_to_change(DeleteNetns("host", name=action.name))
    lab.add_container(action.name)
    return undo


@_apply.register
def _(action: DeleteNetns, lab) -> Action:
    ns = action.name
    lab.require(ns)
    links = [m.get("ifname") for m in lab.ipr(ns).link("dump") if m.get("ifname") != "lo"]
    image = capture(lab, {ns: links})
    image["netns"] = ns
    image["lo_up"] = bool(_link_msg(lab, ns, "lo")["flags"] & 1)
    undo = _about_to_change(Restore("host", image=image))
    # Deleting a veth end removes its peer at once; a dying namespace would take its veths
    # with it only later, in the kernel's own time. Delete them first, then the namespace.
    for name in links:
        if _exists(lab, ns, name):
            lab.ipr(ns).link("del", index=_index(lab, ns, name))
    lab.remove_container(ns)
    return undo


# -- links -------------------------------------------------------------------------------


@_apply.register
def _(action: AddLink, lab) -> Action:
    ns = action.ns
    _refuse_existing(lab, ns, action.name)
    ipr = lab.ipr(ns)
    if action.kind == "veth":
        _refuse_existing(lab, action.peer_ns or ns, action.peer)
    undo = _about_to_change(DeleteLink(ns, name=action.name))
    if action.kind == "veth" and action.peer_ns:
        _with_fd(lab, action.peer_ns, lambda fd: ipr.link(
            "add", ifname=action.name, kind="veth", peer={"ifname": action.peer, "net_ns_fd": fd}))
        lab.tune_link(action.peer_ns, action.peer)
    elif action.kind == "veth":
        ipr.link("add", ifname=action.name, kind="veth", peer=action.peer)
        lab.tune_link(ns, action.peer)
    else:
        ipr.link("add", ifname=action.name, kind=action.kind)
    lab.tune_link(ns, action.name)
    return undo


@_apply.register
def _(action: DeleteLink, lab) -> Action:
    image = capture(lab, {action.ns: [action.name]})
    index = _index(lab, action.ns, action.name)
    undo = _about_to_change(Restore(action.ns, image=image))
    lab.ipr(action.ns).link("del", index=index)
    return undo


def _addresses(lab, ns: str, index: int) -> list[str]:
    return [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in lab.ipr(ns).addr("dump", family=socket.AF_INET) if a["index"] == index]


def _routes_on(lab, ns: str, dev: str) -> dict[str, list[dict]]:
    """The routes that use `dev`, with every route to the same destinations, in order."""
    dsts = {r["dst"] for r in read_routes(lab, ns) if r["dev"] == dev}
    return _routes_by_dst(lab, ns, dsts) if dsts else {}


@_apply.register
def _(action: SetLinkUp, lab) -> Action:
    index, flags = _index(lab, action.ns, action.name), lab.link_flags(action.ns, action.name) or 0
    was_up = bool(flags & 1)
    loopback = bool(flags & 8)  # IFF_LOOPBACK: the one link that gains an address by going up
    before = _addresses(lab, action.ns, index) if loopback else []
    # Taking a link down removes every route through it; its undo must put them back.
    routes = _routes_on(lab, action.ns, action.name) if was_up and not action.up else {}
    ipr = lab.ipr(action.ns)
    _about_to_change(SetLinkUp(action.ns, name=action.name, up=was_up, routes=routes))  # (lo's address: below)
    ipr.link("set", index=index, state="up" if action.up else "down")
    for cidr in action.drop:
        ip, prefix = cidr.split("/")
        ipr.addr("del", index=index, address=ip, prefixlen=int(prefix))
    if action.routes:
        _settle(lab, [{"ns": action.ns, "name": action.name, "up": True}])
        for dst, wanted in action.routes.items():
            set_routes(lab, action.ns, dst, wanted)
    # Bringing lo up gives it 127.0.0.1/8, and bringing it down keeps the address.
    added = tuple(a for a in _addresses(lab, action.ns, index) if a not in before) if loopback else ()
    return SetLinkUp(action.ns, name=action.name, up=was_up, drop=added, routes=routes)


@_apply.register
def _(action: MoveLink, lab) -> Action:
    lab.require(action.to)
    index = _index(lab, action.ns, action.name)
    _refuse_existing(lab, action.to, action.name)
    # A move takes the link's addresses, up state, master and routes away: keep them for the undo.
    state = _end_image(lab, action.ns, action.name)
    state["routes"] = _routes_on(lab, action.ns, action.name) if state["up"] else {}  # a down link has none
    undo = _about_to_change(MoveLink(action.to, name=action.name, to=action.ns, restore=state))
    _with_fd(lab, action.to, lambda fd: lab.ipr(action.ns).link("set", index=index, net_ns_fd=fd))
    lab.tune_link(action.to, action.name)
    if action.restore:
        _give_state(lab, action.to, action.name, action.restore)
    return undo


def _give_state(lab, ns: str, name: str, state: dict) -> None:
    ipr, index = lab.ipr(ns), _index(lab, ns, name)
    if state.get("master"):
        ipr.link("set", index=index, master=_index(lab, ns, state["master"]))
    for cidr in state.get("addresses", ()):
        ip, prefix = cidr.split("/")
        ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
    if state.get("up"):
        ipr.link("set", index=index, state="up")
        _settle(lab, [{"ns": ns, "name": name, "up": True}])
    for dst, wanted in state.get("routes", {}).items():
        set_routes(lab, ns, dst, wanted)


@_apply.register
def _(action: SetMaster, lab) -> Action:
    msg = _link_msg(lab, action.ns, action.name)
    old = _names(lab, action.ns).get(msg.get("IFLA_MASTER"), "") if msg.get("IFLA_MASTER") else ""
    master = _index(lab, action.ns, action.master) if action.master else 0
    undo = _about_to_change(SetMaster(action.ns, name=action.name, master=old))
    lab.ipr(action.ns).link("set", index=msg["index"], master=master)
    return undo


# -- addresses and routes ----------------------------------------------------------------


@_apply.register
def _(action: Address, lab) -> Action:
    ns = action.ns
    ip, prefix = action.cidr.split("/")
    index = _index(lab, ns, action.dev)
    if action.add:
        undo = _about_to_change(Address(ns, dev=action.dev, cidr=action.cidr, add=False))
        lab.ipr(ns).addr("add", index=index, address=ip, prefixlen=int(prefix))
        return undo
    image = {"addresses": [{"ns": ns, "dev": action.dev, "cidr": action.cidr}],
             "routes": {ns: _routes_by_dst(lab, ns)}}
    undo = _about_to_change(Restore(ns, image=image))
    lab.ipr(ns).addr("del", index=index, address=ip, prefixlen=int(prefix))
    return undo


def _route_args(lab, ns: str, spec: dict) -> dict:
    args: dict = {"dst": "0.0.0.0/0" if spec["dst"] == "default" else spec["dst"]}
    if spec.get("via"):
        args["gateway"] = spec["via"]
    if spec.get("dev"):
        args["oif"] = _index(lab, ns, spec["dev"])
    if spec.get("proto"):
        args["proto"] = PROTO.get(spec["proto"], spec["proto"])
    if spec.get("scope") not in (None, ""):
        args["scope"] = SCOPE.get(spec["scope"], spec["scope"])
    if spec.get("src"):
        args["prefsrc"] = spec["src"]
    if spec.get("metric"):
        args["priority"] = spec["metric"]
    return args


def read_routes(lab, ns: str) -> list[dict]:
    """The main table's IPv4 routes as dicts, in the kernel's order."""
    names: dict[int, str] = {}
    out = []
    for m in lab.ipr(ns).route("dump", family=socket.AF_INET, table=254):
        if m["type"] != 1:  # unicast only
            continue
        oif = m.get("RTA_OIF")
        if oif and oif not in names:
            names[oif] = _name_of(lab, ns, oif)
        dst = m.get("RTA_DST")
        out.append({
            "dst": "default" if dst is None else f"{dst}/{m['dst_len']}",
            "via": m.get("RTA_GATEWAY") or "",
            "dev": names.get(m.get("RTA_OIF"), "") if m.get("RTA_OIF") else "",
            "proto": m["proto"],
            "scope": m["scope"],
            "src": m.get("RTA_PREFSRC") or "",
            "metric": m.get("RTA_PRIORITY") or 0,
        })
    return out


def _routes_by_dst(lab, ns: str, dsts: set[str] | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in read_routes(lab, ns):
        if dsts is None or r["dst"] in dsts:
            out.setdefault(r["dst"], []).append(r)
    for dst in dsts or ():
        out.setdefault(dst, [])
    return out


def _matches(route: dict, action: Route) -> bool:
    if route["dst"] != action.dst:
        return False
    if action.via and route["via"] != action.via:
        return False
    if action.dev and route["dev"] != action.dev:
        return False
    if action.proto and route["proto"] != PROTO[action.proto]:
        return False
    if action.scope and route["scope"] != SCOPE[action.scope]:
        return False
    return not (action.src and route["src"] != action.src)


@_apply.register
def _(action: Route, lab) -> Action:
    ns = action.ns
    if action.add:
        spec = {"dst": action.dst, "via": action.via, "dev": action.dev, "proto": "boot"}
        args = _route_args(lab, ns, spec)
        undo = _about_to_change(Route(ns, dst=action.dst, via=action.via, dev=action.dev, proto="boot", add=False))
        lab.ipr(ns).route("add", **args)
        return undo
    before = _routes_by_dst(lab, ns, {action.dst})
    match = next((r for r in before[action.dst] if _matches(r, action)), None)
    if match is None:
        raise KernelError(f"`{action.command()}` on {ns}: there is no such route.")
    args = _route_args(lab, ns, match)
    undo = _about_to_change(Restore(ns, image={"routes": {ns: before}}))
    lab.ipr(ns).route("del", **args)
    return undo


def set_routes(lab, ns: str, dst: str, wanted: list[dict]) -> None:
    """Make the routes to `dst` exactly `wanted`, in that order (the first one wins)."""
    current = _routes_by_dst(lab, ns, {dst})[dst]
    if current == wanted:
        return
    ipr = lab.ipr(ns)
    for r in current:
        ipr.route("del", **_route_args(lab, ns, r))
    for r in wanted:
        ipr.route("append", **_route_args(lab, ns, r))


# -- iptables ------------------------------------------------------------------------------


def iptables(lab, ns: str, table: str, args: list[str]) -> str:
    result = lab.exec(ns, ["iptables", "-w", "-t", table, *args])
    if result.returncode != 0:
        msg = (result.stderr.strip().splitlines() or ["failed"])[-1]
        shown = " ".join(shlex.quote(a) for a in args)
        raise KernelError(f"`iptables -t {table} {shown}` on {ns} failed: {msg}")
    return result.stdout


def _chain_rules(lab, ns: str, table: str, chain: str) -> list[str]:
    return [line for line in iptables(lab, ns, table, ["-S", chain]).splitlines() if line.startswith("-A ")]


@_apply.register
def _(action: Iptables, lab) -> Action:
    ns, table, args = action.ns, action.table, list(action.args)
    op, chain = args[0], args[1]
    if lab.rule_mark and op in ("-A", "-I", "-D") and lab.rule_mark not in args:
        args += ["-m", "comment", "--comment", lab.rule_mark]
    if op == "-N":
        # Checked before the undo is told: a kill just after must not leave a -X for another's chain.
        if lab.exec(ns, ["iptables", "-w", "-t", table, "-S", chain]).returncode == 0:
            raise NameConflict(
                f"A chain named '{chain}' already exists in the {table} table of {ns}, and netstep did not "
                f"create it, so it will not touch it. Remove it where it came from, or use another lab.")
        undo = _about_to_change(Iptables(ns, table=table, args=("-X", chain)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-X":
        undo = _about_to_change(Iptables(ns, table=table, args=("-N", chain)))
        iptables(lab, ns, table, args)
        return undo
    if op in ("-A", "-I"):
        rule = args[3:] if op == "-I" and len(args) > 2 and args[2].isdigit() else args[2:]
        undo = _about_to_change(Iptables(ns, table=table, args=("-D", chain, *rule)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-P":
        old = next(line.split()[2] for line in iptables(lab, ns, table, ["-S", chain]).splitlines()
                   if line.startswith(f"-P {chain} "))
        undo = _about_to_change(Iptables(ns, table=table, args=("-P", chain, old)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-D":
        before = _chain_rules(lab, ns, table, chain)
        iptables(lab, ns, table, args)  # (which rule went is known only after: no undo told first)
        after = _chain_rules(lab, ns, table, chain)
        position = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), len(after))
        removed = shlex.split(before[position])[2:]
        return Iptables(ns, table=table, args=("-I", chain, str(position + 1), *removed))
    raise NetstepError(f"iptables {op} is not supported")


# -- sysctls -------------------------------------------------------------------------------


# The global forwarding switches: writing one also sets other settings (see Sysctl.also).
FORWARDING_SWITCHES = {"net.ipv4.ip_forward": "ipv4", "net.ipv4.conf.all.forwarding": "ipv4",
                       "net.ipv6.conf.all.forwarding": "ipv6"}


@_apply.register
def _(action: Sysctl, lab) -> Action:
    old = lab.read_sysctl(action.ns, action.key)
    if old is None:
        hint = " (the br_netfilter module is not loaded)" if action.key.startswith("net.bridge.") else ""
        raise KernelError(f"There is no sysctl {action.key} in {action.ns}{hint}.")
    family = FORWARDING_SWITCHES.get(action.key)
    also = lab.read_forwarding_settings(action.ns, family) if family and old != action.value else ()
    undo = _about_to_change(Sysctl(action.ns, key=action.key, value=old, also=also))
    lab.write_sysctl(action.ns, action.key, action.value)
    if action.also:
        lab.write_net_settings(action.ns, action.also)
    return undo


# -- servers ----------------------------------------------------------------------------------


@_apply.register
def _(action: HttpServer, lab) -> Action:
    if not action.start:
        undo = _about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=True))
        lab.stop_servers(action.ns, action.address, action.port)
        return undo
    undo = _about_to_change(HttpServer(action.ns, address=action.address, port=action.port, start=False))
    argv = [sys.executable, "-m", "netstep.httpd", "--netns", lab.fd_path(action.ns), "--name", action.ns,
            "--bind", action.address, "--port", str(action.port), "--lab", lab.dir]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, close_fds=True)
    line = proc.stdout.readline().decode().strip() if proc.stdout else ""
    if line != "ready":
        proc.wait(timeout=5)
        err = proc.stderr.read().decode().strip().splitlines() if proc.stderr else []
        raise KernelError(f"The HTTP server on {action.address}:{action.port} in {action.ns} did not start: "
                          f"{err[-1] if err else 'no reason given'}")
    proc.stdout.close()
    proc.stderr.close()
    return undo


# -- images: what a deletion removes, and how to put it back ------------------------------------


def capture(lab, wanted: dict[str, list[str]]) -> dict:
    """Read the links named in `wanted` (ns -> names) and everything that hangs off them."""
    image: dict = {"links": [], "routes": {}}
    devices: dict[str, set[str]] = {}
    prefixes: dict[str, set[str]] = {}  # connected prefixes: re-adding an address brings their route back
    for ns, names in wanted.items():
        for name in names:
            entry = _link_image(lab, ns, name)
            image["links"].append(entry)
            for end in (entry, entry.get("peer")):
                if end:
                    devices.setdefault(end["ns"], set()).add(end["name"])
                    prefixes.setdefault(end["ns"], set()).update(
                        str(ipaddress.IPv4Interface(a).network) for a in end["addresses"])
    for ns, devs in devices.items():
        routes = read_routes(lab, ns)
        dsts = {r["dst"] for r in routes if r["dev"] in devs} | prefixes.get(ns, set())
        image["routes"][ns] = _routes_by_dst(lab, ns, dsts)
    return image


def _end_image(lab, ns: str, name: str) -> dict:
    msg = _link_msg(lab, ns, name)
    master = msg.get("IFLA_MASTER")
    return {"ns": ns, "name": name, "up": bool(msg["flags"] & 1),
            "master": _name_of(lab, ns, master) if master else "",
            "addresses": _addresses(lab, ns, msg["index"])}


def _link_image(lab, ns: str, name: str) -> dict:
    msg = _link_msg(lab, ns, name)
    info = msg.get("IFLA_LINKINFO")
    kind = info.get("IFLA_INFO_KIND") if info else None
    if kind not in ("veth", "bridge"):
        raise NetstepError(f"netstep can only delete veth and bridge devices, and '{name}' is a {kind}.")
    entry = {"kind": kind, **_end_image(lab, ns, name)}
    if kind == "veth":
        peer = lab.peer_of(ns, name)
        if peer is not None:
            entry["peer"] = _end_image(lab, peer[0], peer[1])
    else:
        index = msg["index"]
        entry["ports"] = [m.get("ifname") for m in lab.ipr(ns).link("dump") if m.get("IFLA_MASTER") == index]
    return entry


@_apply.register
def _(action: Restore, lab) -> Action:
    image = action.image
    if image.get("netns"):
        lab.add_container(image["netns"])
        if image.get("lo_up"):
            lab.ipr(image["netns"]).link("set", index=_index(lab, image["netns"], "lo"), state="up")
    ends = []
    for link in image.get("links", ()):
        ns, ipr = link["ns"], lab.ipr(link["ns"])
        if link["kind"] == "veth" and link.get("peer"):
            peer = link["peer"]
            ipr.link("add", ifname=link["name"], kind="veth", peer=peer["name"])
            if peer["ns"] != ns:
                index = _index(lab, ns, peer["name"])
                _with_fd(lab, peer["ns"], lambda fd, i=index, p=ipr: p.link("set", index=i, net_ns_fd=fd))
            lab.tune_link(peer["ns"], peer["name"])
            ends.append(peer)
        else:
            ipr.link("add", ifname=link["name"], kind=link["kind"])
        lab.tune_link(ns, link["name"])
        ends.append(link)
    for end in ends:
        ipr, index = lab.ipr(end["ns"]), _index(lab, end["ns"], end["name"])
        if end.get("master"):
            ipr.link("set", index=index, master=_index(lab, end["ns"], end["master"]))
        for cidr in end["addresses"]:
            ip, prefix = cidr.split("/")
            ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
    for link in image.get("links", ()):
        for port in link.get("ports", ()):
            if _exists(lab, link["ns"], port):
                lab.ipr(link["ns"]).link("set", index=_index(lab, link["ns"], port),
                                         master=_index(lab, link["ns"], link["name"]))
    for end in ends:
        if end["up"]:
            lab.ipr(end["ns"]).link("set", index=_index(lab, end["ns"], end["name"]), state="up")
    for extra in image.get("addresses", ()):
        ip, prefix = extra["cidr"].split("/")
        lab.ipr(extra["ns"]).addr("add", index=_index(lab, extra["ns"], extra["dev"]), address=ip,
                                  prefixlen=int(prefix))
    _settle(lab, ends)
    for ns, by_dst in image.get("routes", {}).items():
        for dst, wanted in by_dst.items():
            set_routes(lab, ns, dst, wanted)
    return _undo_of_restore(image)


def _settle(lab, ends: list[dict]) -> None:
    """Wait until links brought up have carrier, so their connected routes exist."""
    deadline = time.monotonic() + 1.0
    for end in ends:
        if not end["up"]:
            continue
        while time.monotonic() < deadline:
            msg = _link_msg(lab, end["ns"], end["name"])
            if msg.get("IFLA_OPERSTATE") in ("UP", "UNKNOWN") or msg.get("IFLA_CARRIER") == 1:
                break
            time.sleep(0.005)


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


def remove_marked_rules(lab) -> list[str]:
    """Delete the rules in the lab host that carry the lab's mark (host mode, after a crash)."""
    problems = []
    mark = lab.rule_mark
    if not mark:
        return problems
    for table in ("filter", "nat", "mangle", "raw"):
        listing = lab.exec("host", ["iptables", "-w", "-t", table, "-S"])
        for line in listing.stdout.splitlines():
            if line.startswith("-A ") and mark in shlex.split(line):
                words = shlex.split(line)
                try:
                    iptables(lab, "host", table, ["-D", *words[1:]])
                except NetstepError as exc:
                    problems.append(str(exc))
    return problems
