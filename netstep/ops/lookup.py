"""Looking up a lab's devices for the operations: an index, a record, a name, an address;
and adding an address as `ip addr add` does, for every path that adds one.

Each lookup is one ioctl or one netlink request; a missing device is None, or the error
a person reads ("There is no device 'veth9' in netns0.").
"""

from __future__ import annotations

import errno
import os
import socket
import time

from netstep.errors import KernelError, NameConflict
from netstep.i18n import _
from netstep.kernel import netlink
from netstep.ops.access import LabAccess


def get(lab: LabAccess, ns: str, name: str):
    """The kernel's record of link `name` in `ns`, or None: one lookup, not a dump."""
    try:
        return lab.ipr(ns).link("get", ifname=name)[0]
    except netlink.NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise


def index_of(lab: LabAccess, ns: str, name: str) -> int:
    index = lab.link_index(ns, name)
    if index is None:
        raise KernelError(_("There is no device '{name}' in {ns}.").format(name=name, ns=ns))
    return index


def exists(lab: LabAccess, ns: str, name: str) -> bool:
    return lab.link_index(ns, name) is not None


def refuse_existing(lab: LabAccess, ns: str, name: str) -> None:
    if exists(lab, ns, name):
        raise NameConflict(
            _("A device named '{name}' already exists in {ns}, and netstep did not create it, so it "
              "will not touch it. If you made it by hand (in `netstep shell`), delete it there; or "
              "start the lab over with `python -m netstep reset`.").format(name=name, ns=ns)
        )


def link_msg(lab: LabAccess, ns: str, name: str):
    msg = get(lab, ns, name)
    if msg is None:
        raise KernelError(_("There is no device '{name}' in {ns}.").format(name=name, ns=ns))
    return msg


def names(lab: LabAccess, ns: str) -> dict[int, str]:
    return {m["index"]: m.get("ifname") for m in lab.ipr(ns).link("dump")}


def name_of(lab: LabAccess, ns: str, index: int) -> str:
    return lab.ipr(ns).link("get", index=index)[0].get("ifname")


def with_fd(lab: LabAccess, ns: str, fn):
    fd = os.open(lab.fd_path(ns), os.O_RDONLY)
    try:
        return fn(fd)
    finally:
        os.close(fd)


def addresses(lab: LabAccess, ns: str, index: int) -> list[str]:
    return [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
            for a in lab.ipr(ns).addr("dump", family=socket.AF_INET) if a["index"] == index]


def add_address(lab: LabAccess, ns: str, index: int, cidr: str) -> None:
    """Add `cidr` to link `index` as `ip addr add CIDR dev DEV` does (iproute2's
    ip/ipaddress.c, ipaddr_modify): local and address both the address, no broadcast
    (`ip` sets one only when told `brd`), and the scope of default_scope: host for
    127.0.0.0/8, else global."""
    ip, prefix = cidr.split("/")
    scope = 254 if ip.split(".", 1)[0] == "127" else 0
    lab.ipr(ns).addr("add", index=index, address=ip, prefixlen=int(prefix), scope=scope)


def settle(lab: LabAccess, ends: list[dict]) -> None:
    """Wait until links brought up have carrier, so their connected routes exist."""
    deadline = time.monotonic() + 1.0
    for end in ends:
        if not end["up"]:
            continue
        while time.monotonic() < deadline:
            msg = link_msg(lab, end["ns"], end["name"])
            if msg.get("IFLA_OPERSTATE") in ("UP", "UNKNOWN") or msg.get("IFLA_CARRIER") == 1:
                break
            time.sleep(0.005)
