"""Host mode's client on the network: a namespace and a veth of the lab's own.

On a VM of one's own there is no lab router to play lesson 7's "client on the network",
so the lab makes one: the namespace `upstream` in its folder, wired to the host by the
veth STANDIN_LINK on a documentation range (RFC 5737) that no lesson uses. Its packets
reach the host from an interface, as a real client's would, so they pass PREROUTING.
"""

from __future__ import annotations

import errno
import os
import socket
from contextlib import suppress

from netstep.errors import NameConflict
from netstep.kernel import namespaces, netlink
from netstep.kernel.handles import Handles
from netstep.kernel.registry import Namespaces

STANDIN_LINK = "nsclient0"
STANDIN_HOST, STANDIN_CLIENT = "198.51.100.1/30", "198.51.100.2/30"


class StandIn:
    """The stand-in client of a host-mode lab whose checks were given no --upstream file."""

    def __init__(self, registry: Namespaces, handles: Handles) -> None:
        self.registry = registry
        self.handles = handles
        self.path = os.path.join(registry.dir, "upstream")

    @property
    def wanted(self) -> bool:
        return self.registry.host_mode and not self.registry.upstream_path

    def exists(self) -> bool:
        return self.wanted and self.registry.has("upstream")

    def build(self) -> None:
        """The namespace with eth0 198.51.100.2/30, wired to the host's nsclient0
        198.51.100.1/30, with a route to each of the host's addresses through it."""
        if os.path.exists(self.path):
            namespaces.remove(self.path)
        namespaces.create(self.path)
        self.registry.forget()
        host, client = self.handles.ipr("host"), self.handles.ipr("upstream")
        try:
            host.link("add", ifname=STANDIN_LINK, kind="veth", peer=STANDIN_LINK + "c")
        except netlink.NetlinkError as exc:
            if exc.code == errno.EEXIST:
                raise NameConflict(
                    f"Host mode needs a device named {STANDIN_LINK} for its stand-in client, and one exists "
                    f"already that netstep did not make. Rename or remove it, or give checks an upstream "
                    f"namespace of your own with --upstream NETNS_FILE."
                ) from None
            raise
        fd = os.open(self.path, os.O_RDONLY)
        try:
            host.link("set", index=self.handles.link_index("host", STANDIN_LINK + "c"), net_ns_fd=fd)
        finally:
            os.close(fd)
        client.link("set", index=self.handles.link_index("upstream", STANDIN_LINK + "c"), ifname="eth0")
        client.link("set", index=self.handles.link_index("upstream", "lo"), state="up")
        for ipr, ns, ifname, addr in ((host, "host", STANDIN_LINK, STANDIN_HOST),
                                      (client, "upstream", "eth0", STANDIN_CLIENT)):
            index = self.handles.link_index(ns, ifname)
            ip, prefix = addr.split("/")
            ipr.addr("add", index=index, address=ip, prefixlen=int(prefix))
            ipr.link("set", index=index, state="up")
            self.handles.tune_link(ns, ifname)
        # Like a machine on the VM's own network, the client reaches the host's addresses and
        # nothing behind it: no default route, so 172.18.0.0/16 stays private to the host.
        gateway = STANDIN_HOST.split("/")[0]
        for address in self._host_addresses(host):
            client.route("add", dst=f"{address}/32", gateway=gateway, proto=3)

    @staticmethod
    def _host_addresses(host) -> list[str]:
        """The host's own IPv4 addresses but loopback's and the stand-in link's."""
        out = []
        for msg in host.addr("dump", family=socket.AF_INET):
            address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
            if address and not address.startswith("127.") and address != STANDIN_HOST.split("/")[0]:
                out.append(address)
        return sorted(set(out))

    def delete_link(self) -> None:
        """Delete the veth from the stand-in's end. The kernel frees a namespace (and its
        devices) some time after its last user goes: deleting the pair now means that
        nsclient0 is gone from the host when netstep returns."""
        if not self.exists():
            return
        index = self.handles.link_index("upstream", "eth0")
        if index is not None:
            with suppress(netlink.NetlinkError):
                self.handles.ipr("upstream").link("del", index=index)

    def remove(self) -> None:
        if not self.wanted or not os.path.exists(self.path):
            return
        self.delete_link()
        self.handles.close_namespace("upstream")
        namespaces.remove(self.path)
        self.registry.forget()
