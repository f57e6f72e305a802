"""A link's MTU, a bridge port's hairpin and a bridge's own nf_call_iptables: settings of
one link that keep its identity.

Each function applies one action and returns its undo, the value it found, announced
just before the kernel change (netstep.ops.announce).
"""

from __future__ import annotations

from netstep.course.actions import Action, BridgeFilter, Hairpin, SetMtu
from netstep.errors import NetstepError
from netstep.i18n import _
from netstep.ops import lookup
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change

BRPORT_MODE = "IFLA_BRPORT_MODE"  # the bridge port's hairpin flag, as the kernel names it


def apply_set_mtu(action: SetMtu, lab: LabAccess) -> Action:
    msg = lookup.link_msg(lab, action.ns, action.name)
    undo = about_to_change(SetMtu(action.ns, name=action.name, mtu=msg.get("IFLA_MTU")))
    lab.ipr(action.ns).link("set", index=msg["index"], mtu=action.mtu)
    return undo


def hairpin_of(msg) -> bool | None:
    """A link's hairpin flag, or None for a link that is no bridge's port."""
    info = msg.get("IFLA_LINKINFO")
    if not info or info.get("IFLA_INFO_SLAVE_KIND") != "bridge":
        return None
    data = info.get("IFLA_INFO_SLAVE_DATA")
    return bool(data.get(BRPORT_MODE)) if data else False


def apply_hairpin(action: Hairpin, lab: LabAccess) -> Action:
    msg = lookup.link_msg(lab, action.ns, action.name)
    was = hairpin_of(msg)
    if was is None:
        raise NetstepError(_("{name} in {ns} is not a bridge's port: hairpin is a port's setting "
                             "(`ip link set {name} master BRIDGE` first).").format(name=action.name, ns=action.ns))
    undo = about_to_change(Hairpin(action.ns, name=action.name, on=was))
    set_hairpin(lab, action.ns, msg["index"], action.on)
    return undo


def set_hairpin(lab: LabAccess, ns: str, index: int, on: bool) -> None:
    """Turn a bridge port's hairpin flag on or off (the link must be a bridge's port)."""
    lab.ipr(ns).link("set", index=index, kind="bridge_slave", mode=int(on))


def bridge_filter_of(msg) -> bool | None:
    """A bridge's own nf_call_iptables switch (IFLA_BR_NF_CALL_IPTABLES), or None for a
    link that is no bridge."""
    info = msg.get("IFLA_LINKINFO")
    if not info or info.get("IFLA_INFO_KIND") != "bridge":
        return None
    data = info.get("IFLA_INFO_DATA")
    return bool(data.get("IFLA_BR_NF_CALL_IPTABLES")) if data else False


def apply_bridge_filter(action: BridgeFilter, lab: LabAccess) -> Action:
    msg = lookup.link_msg(lab, action.ns, action.name)
    was = bridge_filter_of(msg)
    if was is None:
        raise NetstepError(_("{name} in {ns} is not a bridge: nf_call_iptables is a bridge's setting.")
                           .format(name=action.name, ns=action.ns))
    undo = about_to_change(BridgeFilter(action.ns, name=action.name, on=was))
    set_bridge_filter(lab, action.ns, msg["index"], action.on)
    return undo


def set_bridge_filter(lab: LabAccess, ns: str, index: int, on: bool) -> None:
    lab.ipr(ns).link("set", index=index, kind="bridge", br_nf_call_iptables=int(on))
