"""Apply an action to a lab's kernel and return its undo: the dispatcher.

`apply(lab, action)` performs the action natively and returns the action that undoes it,
worked out from the state it found. Each kind of action has its module: devices
(namespaces, links, addresses), routes, iptables (the binary inside the namespace),
sysctls (/proc/sys from a thread switched into the namespace), servers; deletions read
what they remove first (images), so their undo rebuilds it, routes in the kernel's
order included. Every change a lesson or a student makes goes through here; only the
lab's fixed frame (its host and upstream, netstep.core.lab) is built elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    Address,
    BridgeFilter,
    DeleteLink,
    DeleteNetns,
    DnsServer,
    EtcFile,
    Hairpin,
    HttpServer,
    Iptables,
    MoveLink,
    Restore,
    Route,
    SetLinkUp,
    SetMaster,
    SetMtu,
    StopServers,
    Sysctl,
)
from netstep.errors import KernelError, NetstepError
from netstep.i18n import _
from netstep.kernel import netlink
from netstep.ops import devices, files, images, iptables, ports, routes, servers, sysctls
from netstep.ops.access import LabAccess
from netstep.ops.announce import listening

HANDLERS: dict[type[Action], Callable[[Action, LabAccess], Action]] = {
    AddNetns: devices.apply_add_netns,
    DeleteNetns: devices.apply_delete_netns,
    AddLink: devices.apply_add_link,
    DeleteLink: devices.apply_delete_link,
    SetLinkUp: devices.apply_set_link_up,
    MoveLink: devices.apply_move_link,
    SetMaster: devices.apply_set_master,
    Address: devices.apply_address,
    Route: routes.apply_route,
    Iptables: iptables.apply_iptables,
    Sysctl: sysctls.apply_sysctl,
    HttpServer: servers.apply_http_server,
    StopServers: servers.apply_stop_servers,
    DnsServer: servers.apply_dns_server,
    EtcFile: files.apply_etc_file,
    Restore: images.apply_restore,
    SetMtu: ports.apply_set_mtu,
    Hairpin: ports.apply_hairpin,
    BridgeFilter: ports.apply_bridge_filter,
}


def apply(lab: LabAccess, action: Action, ready: Callable[[Action], None] | None = None) -> Action:
    """Apply `action` in `lab`; return the action that undoes it.

    `ready`, when given, hears the undo just before the kernel change, for the actions
    whose undo is known by then: the engine journals it, so that a kill between the change
    and the return still leaves a journal that can take the change back. (If the change
    then never happened, that undo finds nothing to undo.)
    """
    handler = HANDLERS.get(type(action))
    if handler is None:
        raise NetstepError(f"netstep cannot apply {type(action).__name__}")
    with listening(ready):  # actions applied inside this one do not report
        try:
            return handler(action, lab)
        except netlink.NetlinkError as exc:
            raise KernelError(_("`{command}` on {ns} failed: {error}.").format(
                command=action.command(), ns=action.ns, error=os.strerror(exc.code))) from None


def tells_undo_first(action: Action) -> bool:
    """True if applying `action` tells its undo before any kernel change, always: then a
    journal entry without an undo (and not failed) means the kill came before the change."""
    if isinstance(action, Iptables):
        return action.args[:1] != ("-D",)  # which rule a -D removes is known only after
    return not isinstance(action, Restore)
