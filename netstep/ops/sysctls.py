"""Sysctls: write one, keeping the old value (and what a forwarding switch also sets) for the undo."""

from __future__ import annotations

from netstep.course.actions import Action, Sysctl
from netstep.errors import KernelError
from netstep.i18n import _
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change

# The global forwarding switches: writing one also sets other settings (see Sysctl.also).
FORWARDING_SWITCHES = {"net.ipv4.ip_forward": "ipv4", "net.ipv4.conf.all.forwarding": "ipv4",
                       "net.ipv6.conf.all.forwarding": "ipv6"}


def apply_sysctl(action: Sysctl, lab: LabAccess) -> Action:
    old = lab.read_sysctl(action.ns, action.key)
    if old is None:
        if action.key.startswith("net.bridge."):
            raise KernelError(_("There is no sysctl {key} in {ns} (the br_netfilter module is not loaded: "
                                "`sudo modprobe br_netfilter` loads it).").format(key=action.key, ns=action.ns))
        raise KernelError(_("There is no sysctl {key} in {ns}.").format(key=action.key, ns=action.ns))
    family = FORWARDING_SWITCHES.get(action.key)
    also = lab.read_forwarding_settings(action.ns, family) if family and old != action.value else ()
    undo = about_to_change(Sysctl(action.ns, key=action.key, value=old, also=also))
    lab.write_sysctl(action.ns, action.key, action.value)
    if action.also:
        lab.write_net_settings(action.ns, action.also)
    return undo
