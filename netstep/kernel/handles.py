"""Handles on a lab's namespaces: pyroute2 clients, one per thread and namespace, kept while
the lab is locked, and the interface ioctls (an index, the flags, a carrier settled) on a
socket per namespace.

A pyroute2 IPRoute belongs to the thread that made it (its event loop and socket are the
thread's), so each thread that uses the lab gets its own client in each namespace; in
practice one thread does (the CLI's, a Tutor's worker, the demo's worker). The clients of
a thread share one event loop, made once. The ioctl sockets are shared by threads.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import socket
import struct
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import TYPE_CHECKING

from netstep.kernel import namespaces, netlink

if TYPE_CHECKING:
    import asyncio

    from pyroute2 import IPRoute

IFNAMSIZ, SIOCGIFINDEX, SIOCGIFFLAGS, SIOCETHTOOL, ETHTOOL_GLINK = 16, 0x8933, 0x8913, 0x8946, 0xA

# ARP gives up after mcast_solicit probes retrans_time_ms apart. A lab's link gets
# 3 x 30 ms instead of 3 x 1 s, so a check that expects "Destination Host Unreachable"
# is decided quickly. (Namespaces other than the first have no neigh/default to tune.)
ARP_RETRANS_MS = 30


class Handles:
    """Netlink clients and ioctl sockets for the namespaces `require(ns)` gives the files of."""

    def __init__(self, require: Callable[[str], str | None]) -> None:
        self._require = require
        self._netlink: dict[tuple[int, str], IPRoute] = {}  # by (thread, namespace)
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}  # by thread, for its clients
        self._ioctl_sockets: dict[str, socket.socket] = {}

    def ipr(self, ns: str) -> IPRoute:
        """The calling thread's pyroute2 client in `ns`, made on first use and kept until
        the lab is closed (making one costs a socket made in the namespace and a few
        hundred µs of pyroute2's setting up)."""
        me = threading.get_ident()
        handle = self._netlink.get((me, ns))
        if handle is None:
            loop = self._loops.get(me)
            if loop is None:
                loop = self._loops[me] = netlink.event_loop()
            handle = self._netlink[(me, ns)] = namespaces.iproute(self._require(ns), loop)
        return handle

    def socket(self, ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        return namespaces.socket_in(self._require(ns), family, kind, proto)

    def close(self, *, all_threads: bool = True) -> None:
        """Close netlink clients (every thread's, or only the calling thread's) and the
        ioctl sockets, so that a worker that drops its handles after each call (the demo's)
        starts fresh each time."""
        me = threading.get_ident()
        for key in [k for k in self._netlink if all_threads or k[0] == me]:
            with suppress(Exception):
                netlink.close(self._netlink.pop(key))
        for thread in [t for t in self._loops if all_threads or t == me]:
            self._loops.pop(thread).close()
        for ns in list(self._ioctl_sockets):
            self._ioctl_sockets.pop(ns).close()

    def close_namespace(self, ns: str) -> None:
        """Close every handle on `ns` (it is about to go)."""
        for key in [k for k in self._netlink if k[1] == ns]:
            with suppress(Exception):
                netlink.close(self._netlink.pop(key))
        if ns in self._ioctl_sockets:
            self._ioctl_sockets.pop(ns).close()

    def tune_link(self, ns: str, ifname: str) -> None:
        """Make ARP on a lab link give up in 0.1 s (see ARP_RETRANS_MS). A link with no
        ARP (or gone already) is left alone.

        What writing /proc/sys/net/ipv4/neigh/DEV/retrans_time_ms does, as one netlink
        request on the namespace's client (RTM_SETNEIGHTBL) instead of a thread switched
        into the namespace per link.
        """
        index = self.link_index(ns, ifname)
        if index is None:
            return
        try:
            netlink.set_arp_retrans(self.ipr(ns), index, ARP_RETRANS_MS)
        except netlink.NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise

    def link_index(self, ns: str, name: str) -> int | None:
        """The index of device `name` in `ns`, or None if there is none.

        One ioctl (SIOCGIFINDEX, what if_nametoindex does) on a socket made in `ns`: about
        ten times cheaper than a netlink request, and building 30 containers asks this
        hundreds of times.
        """
        result = self._ifreq(ns, name, SIOCGIFINDEX)
        return None if result is None else struct.unpack_from("i", result, IFNAMSIZ)[0]

    def link_flags(self, ns: str, name: str) -> int | None:
        """The IFF_* flags of device `name` in `ns` (SIOCGIFFLAGS), or None if there is none."""
        result = self._ifreq(ns, name, SIOCGIFFLAGS)
        return None if result is None else struct.unpack_from("H", result, IFNAMSIZ)[0]

    def settle_carrier(self, ns: str, name: str) -> None:
        """Have the kernel finish its pending carrier work on link `name` now.

        A veth going down takes its peer's carrier, and the kernel reacts (the peer's
        routes turn `linkdown`) from a work queue of its own, up to a second later. Asking
        a link's state with ETHTOOL_GLINK makes the kernel do that work for the link first,
        so a snapshot taken next shows the whole effect of a step.
        """
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0))
        try:
            self._ifreq(ns, name, SIOCETHTOOL, struct.pack("P16x", ctypes.addressof(value)))
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise

    def _ifreq(self, ns: str, name: str, request: int, data: bytes = bytes(24)) -> bytes | None:
        """An interface ioctl on device `name` in `ns` (the ifreq's name, then `data`);
        None if there is no such device."""
        if not 0 < len(name.encode()) < IFNAMSIZ:
            return None  # no device can have that name
        sock = self._ioctl_sockets.get(ns)
        if sock is None:
            sock = self._ioctl_sockets[ns] = self.socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            return fcntl.ioctl(sock.fileno(), request, struct.pack(f"{IFNAMSIZ}s", name.encode()) + data)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise
