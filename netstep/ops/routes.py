"""Routes: add and delete one, and set the routes to a destination exactly, in order.

A route is added as `ip route add` adds it (iproute2's ip/iproute.c, iproute_modify):
table main, type unicast, `proto boot`, and `scope link` when it has no gateway (a
device alone: the destination is on the link), else `scope global`; and never over a
route to the same destination and metric (NLM_F_EXCL: "File exists"). The kernel keeps
routes to one destination in order and the first one wins, so an undo that puts routes
back puts them back in the order they were found. Undos find a route by what it is, never
by a position recorded earlier.
"""

from __future__ import annotations

import errno
import os

from netstep.course.actions import Action, Restore, Route
from netstep.errors import KernelError
from netstep.i18n import _
from netstep.kernel import netlink
from netstep.ops import lookup
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change
from netstep.state.read import RTN_UNICAST, RouteEntry, read_routes

PROTO = {"kernel": 2, "boot": 3, "static": 4}
SCOPE = {"global": 0, "link": 253, "host": 254}


def route_args(lab: LabAccess, ns: str, spec: dict) -> dict:
    args: dict = {"dst": "0.0.0.0/0" if spec["dst"] == "default" else spec["dst"]}
    if spec.get("via"):
        args["gateway"] = spec["via"]
    if spec.get("dev"):
        args["oif"] = lookup.index_of(lab, ns, spec["dev"])
    if spec.get("proto"):
        args["proto"] = PROTO.get(spec["proto"], spec["proto"])
    if spec.get("scope") not in (None, ""):
        args["scope"] = SCOPE.get(spec["scope"], spec["scope"])
    if spec.get("src"):
        args["prefsrc"] = spec["src"]
    if spec.get("metric"):
        args["priority"] = spec["metric"]
    return args


def read(lab: LabAccess, ns: str) -> list[dict]:
    """The main table's unicast IPv4 routes, as the journal keeps them, in the kernel's order."""
    found: dict[int, str] = {}

    def name_of(index: int) -> str:
        if index not in found:
            found[index] = lookup.name_of(lab, ns, index)
        return found[index]

    return [route.spec() for route in read_routes(lab.ipr(ns), name_of) if route.type == RTN_UNICAST]


def by_dst(lab: LabAccess, ns: str, dsts: set[str] | None = None) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in read(lab, ns):
        if dsts is None or r["dst"] in dsts:
            out.setdefault(r["dst"], []).append(r)
    for dst in dsts or ():
        out.setdefault(dst, [])
    return out


def routes_on(lab: LabAccess, ns: str, dev: str) -> dict[str, list[dict]]:
    """The routes that use `dev`, with every route to the same destinations, in order."""
    dsts = {r["dst"] for r in read(lab, ns) if r["dev"] == dev}
    return by_dst(lab, ns, dsts) if dsts else {}


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


def added_scope(action: Route) -> str:
    """The scope `ip route add` gives a route it is not told one for: link without a gateway."""
    return action.scope or ("global" if action.via else "link")


def apply_route(action: Route, lab: LabAccess) -> Action:
    ns = action.ns
    if action.add:
        scope = added_scope(action)
        spec = {"dst": action.dst, "via": action.via, "dev": action.dev, "proto": "boot", "scope": scope}
        args = route_args(lab, ns, spec)
        _refuse_existing(lab, action)
        undo = about_to_change(Route(ns, dst=action.dst, via=action.via, dev=action.dev, proto="boot", scope=scope,
                                     add=False))
        try:
            lab.ipr(ns).route("add", **args)
        except netlink.NetlinkError as exc:
            if exc.code == errno.EEXIST:  # a route of another type (unreachable, ...): not read above
                raise _exists(action, "") from None
            raise
        return undo
    before = by_dst(lab, ns, {action.dst})
    match = next((r for r in before[action.dst] if _matches(r, action)), None)
    if match is None:
        raise KernelError(_("`{command}` on {ns}: there is no such route.").format(command=action.command(), ns=ns))
    args = route_args(lab, ns, match)
    undo = about_to_change(Restore(ns, image={"routes": {ns: before}}))
    lab.ipr(ns).route("del", **args)
    return undo


def _refuse_existing(lab: LabAccess, action: Route) -> None:
    """Fail as `ip route add` does on a route to the same destination and metric (0, the
    only one the grammar adds), whatever its device or gateway, before anything is told
    or changed: the kernel keeps one route per table, destination and metric unless asked
    to append."""
    there = next((r for r in by_dst(lab, action.ns, {action.dst})[action.dst] if not r["metric"]), None)
    if there is not None:
        raise _exists(action, RouteEntry(**there, type=RTN_UNICAST, linkdown=False).text())


def _exists(action: Route, there: str) -> KernelError:
    fields = {"command": action.command(), "ns": action.ns, "dst": action.dst, "route": there,
              "error": os.strerror(errno.EEXIST)}
    if there:
        return KernelError(_("`{command}` on {ns} failed: {error}. {ns} already has a route to {dst} ({route}), and "
                             "`ip route add` never replaces one: delete that one first (`ip route delete {dst}` ...), "
                             "then add yours.").format(**fields))
    return KernelError(_("`{command}` on {ns} failed: {error}. {ns} already has a route to {dst}, and `ip route add` "
                         "never replaces one: delete that one first (`ip route delete {dst}` ...), then add yours.")
                       .format(**fields))


def set_routes(lab: LabAccess, ns: str, dst: str, wanted: list[dict]) -> None:
    """Make the routes to `dst` exactly `wanted`, in that order (the first one wins)."""
    current = by_dst(lab, ns, {dst})[dst]
    if current == wanted:
        return
    ipr = lab.ipr(ns)
    for r in current:
        ipr.route("del", **route_args(lab, ns, r))
    for r in wanted:
        ipr.route("append", **route_args(lab, ns, r))
