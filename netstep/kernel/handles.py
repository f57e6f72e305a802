"""Handles on a lab's namespaces: netlink clients, one per thread and namespace, and the
interface ioctls (an index, the flags, a carrier settled) on a socket per namespace.

Two threads on one netlink socket would read each other's answers, so each thread that
uses the lab gets its own client. The ioctl sockets are shared by threads.
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

from netstep.kernel import namespaces
from netstep.kernel.rtnl import NetlinkError, Rtnl

IFNAMSIZ, SIOCGIFINDEX, SIOCGIFFLAGS, SIOCETHTOOL, ETHTOOL_GLINK = 16, 0x8933, 0x8913, 0x8946, 0xA

# ARP gives up after mcast_solicit probes retrans_time_ms apart. A lab's link gets
# 3 x 30 ms instead of 3 x 1 s, so a check that expects "Destination Host Unreachable"
# is decided quickly. (Namespaces other than the first have no neigh/default to tune.)
ARP_RETRANS_MS = 30


class Handles:
    """Netlink clients and ioctl sockets for the namespaces `require(ns)` gives the files of."""

    def __init__(self, require: Callable[[str], str | None]) -> None:
        self._require = require
        self._netlink: dict[tuple[int, str], Rtnl] = {}  # by (thread, namespace)
        self._ioctl_sockets: dict[str, socket.socket] = {}

    def ipr(self, ns: str) -> Rtnl:
        """The calling thread's netlink client in `ns`."""
        key = (threading.get_ident(), ns)
        handle = self._netlink.get(key)
        if handle is None:
            handle = namespaces.iproute(self._require(ns))
            self._netlink[key] = handle
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
                self._netlink.pop(key).close()
        for ns in list(self._ioctl_sockets):
            self._ioctl_sockets.pop(ns).close()

    def close_namespace(self, ns: str) -> None:
        """Close every handle on `ns` (it is about to go)."""
        for key in [k for k in self._netlink if k[1] == ns]:
            with suppress(Exception):
                self._netlink.pop(key).close()
        if ns in self._ioctl_sockets:
            self._ioctl_sockets.pop(ns).close()

    def tune_link(self, ns: str, ifname: str) -> None:
        """Make ARP on a lab link give up in 0.1 s (see ARP_RETRANS_MS). A link with no
        ARP (or gone already) is left alone."""
        index = self.link_index(ns, ifname)
        if index is None:
            return
        try:
            self.ipr(ns).arp_retrans(index, ARP_RETRANS_MS)
        except NetlinkError as exc:
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
