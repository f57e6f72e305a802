"""The sandbox: the article's VM and its router, made of two namespaces.

    host       the lab host (the article's root namespace): eth0 10.0.2.15/24, a default
               route by the router, forwarding off
    upstream   the router and "the internet": eth0 10.0.2.2/24, the internet host
               203.0.113.8 on lo, forwarding on, no reverse-path filter

Both send every ICMP error they owe (no rate limit), so a check gives the same answer
however often it runs.

Built once, when a sandbox lab is made (netstep.core.lab.Lab.lock).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from netstep.kernel import namespaces
from netstep.ops.access import LabAccess


@dataclass(frozen=True)
class Topology:
    """Addresses of the sandbox: the article's VM, its router and the internet."""

    host_address: str = "10.0.2.15/24"
    router_address: str = "10.0.2.2/24"
    internet: str = "203.0.113.8"


def build(lab: LabAccess, topo: Topology) -> None:
    """Make the lab host and the upstream, wired as the article's VM and its router."""
    for ns in ("host", "upstream"):
        namespaces.create(lab.path_of(ns))
    host, up = lab.ipr("host"), lab.ipr("upstream")
    index = lab.link_index  # an ioctl: pyroute2's link_lookup would dump every link
    host.link("add", ifname="eth0", kind="veth", peer="uplink")
    fd = os.open(lab.path_of("upstream"), os.O_RDONLY)
    try:
        host.link("set", index=index("host", "uplink"), net_ns_fd=fd)
    finally:
        os.close(fd)
    up.link("set", index=index("upstream", "uplink"), ifname="eth0")
    for ns, ipr, addr in (("host", host, topo.host_address), ("upstream", up, topo.router_address)):
        ipr.link("set", index=index(ns, "lo"), state="up")
        ip, prefix = addr.split("/")
        ipr.addr("add", index=index(ns, "eth0"), address=ip, prefixlen=int(prefix))
        ipr.link("set", index=index(ns, "eth0"), state="up")
        lab.tune_link(ns, "eth0")
    up.addr("add", index=index("upstream", "lo"), address=topo.internet, prefixlen=32)
    host.route("add", dst="0.0.0.0/0", gateway=topo.router_address.split("/")[0], proto=3)
    lab.write_sysctl("upstream", "net.ipv4.ip_forward", "1")
    # A new namespace copies these from the machine's own (init_net), so a machine that
    # forwards or filters by reverse path would change what lesson 6 shows. The lab host
    # starts as a plain host, not a router; the upstream accepts packets from any source.
    lab.write_sysctl("host", "net.ipv4.ip_forward", "0")
    for conf in ("all", "default", "eth0"):
        lab.write_sysctl("upstream", f"net.ipv4.conf.{conf}.rp_filter", "0")
    # A router tells every sender why its packet cannot pass, each time: the kernel's
    # default (icmp_ratelimit 1000 ms a destination) answers a check run again within a
    # second (a student's second `verify`) with silence instead of "net unreachable".
    for ns in ("host", "upstream"):
        lab.write_sysctl(ns, "net.ipv4.icmp_ratelimit", "0")
