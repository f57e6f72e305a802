"""rtnetlink, the kernel's interface to links, addresses and routes: a small synchronous client.

netstep first spoke rtnetlink through pyroute2's IPRoute. Profiling `run bridge
--containers 30` put 480 ms of its 880 ms inside pyroute2: its synchronous calls go
through an asyncio event loop (about 300 µs before the kernel sees a request), and a dump
decodes every attribute of every message (about 130 µs per link) where a snapshot reads
seven. The same requests on a plain socket cost the kernel's time and a few µs more.

So this module speaks exactly the messages netstep needs, with the call shapes of
pyroute2's IPRoute (`link("set", index=3, state="up")`, `addr("dump")`), and answers with
`Message`s that read like pyroute2's (`msg["index"]`, `msg.get("IFLA_MASTER")`). Only the
attributes netstep uses are decoded. tests/test_rtnl.py compares its readings with
pyroute2's on the same kernel state.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator

# Message types, flags and the header (linux/netlink.h, linux/rtnetlink.h).
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
RTM_GETNEIGH = 30
RTM_SETNEIGHTBL = 67
RTM_GETNSID = 90
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP_INTR = 0x1, 0x4, 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL, NLM_F_CREATE, NLM_F_APPEND = 0x200, 0x400, 0x800
NETLINK_CAP_ACK = 10  # socket option: an error reply leaves out the request it answers
SOL_NETLINK = 270
AF_BRIDGE = 7
IFF_UP = 1
RT_SCOPE_NOWHERE = 255  # in a delete: any scope
RTM_F_CLONED = 0x200
RTN_UNICAST = 1
MAIN_TABLE = 254

_HEADER = struct.Struct("=IHHII")  # length, type, flags, sequence, port
_NLA = struct.Struct("=HH")  # length, type
NLA_F_NESTED = 0x8000


class NetlinkError(OSError):
    """The kernel refused a request; `code` is the errno (pyroute2's name for it)."""

    def __init__(self, code: int) -> None:
        super().__init__(code, os.strerror(code))
        self.code = code


class Message(dict):
    """One message from the kernel: its fixed header fields as items, its attributes by
    their kernel names through `get` ("IFLA_MASTER"), or by the short name ("ifname")."""

    __slots__ = ("attrs", "prefix")

    def __init__(self, fields: dict, attrs: dict, prefix: str) -> None:
        super().__init__(fields)
        self.attrs = attrs
        self.prefix = prefix

    def get(self, key: str, default=None):
        if dict.__contains__(self, key):
            return self[key]
        if key.islower():
            key = self.prefix + key.upper()
        return self.attrs.get(key, default)


# -- decoding -------------------------------------------------------------------------


def _u32(data: bytes) -> int:
    return struct.unpack_from("=I", data)[0]


def _s32(data: bytes) -> int:
    return struct.unpack_from("=i", data)[0]


def _text(data: bytes) -> str:
    return data.split(b"\0", 1)[0].decode(errors="replace")  # a name made by hand may not be UTF-8


_OPERSTATES = ("UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP")


def _operstate(data: bytes) -> str:
    return _OPERSTATES[data[0]] if data and data[0] < len(_OPERSTATES) else str(data[0] if data else "")


def _u8(data: bytes) -> int:
    return data[0]


def _mac(data: bytes) -> str:
    return ":".join(f"{b:02x}" for b in data)


def _ip(data: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(data) == 4 else socket.AF_INET6, data)


def _attrs(data: bytes, offset: int, end: int, known: dict) -> dict:
    """The attributes in data[offset:end] whose types `known` maps to (name, decoder)."""
    out = {}
    while offset + 4 <= end:
        length, kind = _NLA.unpack_from(data, offset)
        if length < 4:
            break
        entry = known.get(kind & ~NLA_F_NESTED)
        if entry is not None:
            name, decode = entry
            out[name] = decode(data[offset + 4:offset + length])
        offset += (length + 3) & ~3
    return out


def _linkinfo(data: bytes) -> dict:
    return _attrs(data, 0, len(data), {1: ("IFLA_INFO_KIND", _text)})


# Per message type: the fixed header (struct, field names), the attributes read, and the prefix.
_LINK = (struct.Struct("=BxHiII"), ("family", "ifi_type", "index", "flags", "change"),
         {1: ("IFLA_ADDRESS", _mac), 3: ("IFLA_IFNAME", _text), 5: ("IFLA_LINK", _u32),
          10: ("IFLA_MASTER", _u32), 16: ("IFLA_OPERSTATE", _operstate), 18: ("IFLA_LINKINFO", _linkinfo),
          33: ("IFLA_CARRIER", _u8), 37: ("IFLA_LINK_NETNSID", _s32)},
         "IFLA_")
_ADDR = (struct.Struct("=BBBBI"), ("family", "prefixlen", "flags", "scope", "index"),
         {1: ("IFA_ADDRESS", _ip), 2: ("IFA_LOCAL", _ip), 3: ("IFA_LABEL", _text)}, "IFA_")
_ROUTE = (struct.Struct("=BBBBBBBBI"),
          ("family", "dst_len", "src_len", "tos", "table", "proto", "scope", "type", "flags"),
          {1: ("RTA_DST", _ip), 4: ("RTA_OIF", _u32), 5: ("RTA_GATEWAY", _ip), 6: ("RTA_PRIORITY", _u32),
           7: ("RTA_PREFSRC", _ip), 15: ("RTA_TABLE", _u32)}, "RTA_")
_NEIGH = (struct.Struct("=BxxxiHBB"), ("family", "ifindex", "state", "flags", "ndm_type"),
          {1: ("NDA_DST", _ip), 2: ("NDA_LLADDR", _mac), 9: ("NDA_MASTER", _u32)}, "NDA_")
_NSID = (struct.Struct("=Bxxx"), ("family",), {1: ("NETNSA_NSID", _u32)}, "NETNSA_")
_FORMATS = {RTM_NEWLINK: _LINK, RTM_NEWADDR: _ADDR, RTM_NEWROUTE: _ROUTE, 28: _NEIGH, 88: _NSID}


def _decode(kind: int, data: bytes, offset: int, end: int) -> Message | None:
    fmt = _FORMATS.get(kind)
    if fmt is None:
        return None
    header, names, known, prefix = fmt
    fields = dict(zip(names, header.unpack_from(data, offset), strict=True))
    return Message(fields, _attrs(data, offset + ((header.size + 3) & ~3), end, known), prefix)


# -- encoding -------------------------------------------------------------------------


def _nla(kind: int, payload: bytes) -> bytes:
    return _NLA.pack(4 + len(payload), kind) + payload + b"\0" * (-len(payload) % 4)


def _nla_u32(kind: int, value: int) -> bytes:
    return _nla(kind, struct.pack("=I", value))


def _nla_text(kind: int, value: str) -> bytes:
    return _nla(kind, value.encode() + b"\0")


def _nla_ip(kind: int, value: str) -> bytes:
    return _nla(kind, socket.inet_pton(socket.AF_INET6 if ":" in value else socket.AF_INET, value))


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return _LINK[0].pack(0, 0, index, flags, change)


# -- the client -------------------------------------------------------------------------


class Rtnl:
    """An rtnetlink socket in one namespace. Not for two threads at once (netstep keeps
    one per thread and namespace, see Lab.ipr)."""

    def __init__(self, sock: socket.socket | None = None) -> None:
        self.sock = sock or socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    # -- requests ----------------------------------------------------------------------

    def request(self, kind: int, flags: int, body: bytes) -> list[Message]:
        """Send one request and return what the kernel answered (a dump's messages, a
        get's one message, or nothing for a change), or raise NetlinkError."""
        for _ in range(5):
            try:
                return list(self._exchange(kind, flags, body))
            except _Interrupted:  # the kernel's tables changed during a dump: read it again
                continue
            except NetlinkError as exc:
                # A dump cut short (a Ctrl-C between request and answer) still holds the
                # socket, and the kernel refuses a new one until it has been read out.
                if exc.code != errno.EBUSY or flags & NLM_F_DUMP != NLM_F_DUMP:
                    raise
                self._drain()
        raise NetlinkError(errno.EAGAIN)

    def _receive(self, flags: int = 0) -> bytes:
        """One datagram from the kernel (a dump's part is at most 32 KiB; more would be cut)."""
        data, _, msg_flags, _ = self.sock.recvmsg(1 << 16, 0, flags)
        if msg_flags & socket.MSG_TRUNC:
            raise NetlinkError(errno.EMSGSIZE)
        return data

    def _drain(self) -> None:
        """Read and drop whatever earlier exchanges left, up to the end of their dumps."""
        while True:
            try:
                data = self._receive(socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, _, _, _ = _HEADER.unpack_from(data, offset)
                if mtype == NLMSG_DONE:
                    return
                offset += max((length + 3) & ~3, _HEADER.size)

    def _exchange(self, kind: int, flags: int, body: bytes) -> Iterator[Message]:
        self.seq = (self.seq + 1) & 0xFFFFFFFF
        seq = self.seq
        dump = flags & NLM_F_DUMP == NLM_F_DUMP
        flags |= NLM_F_REQUEST | (0 if dump else NLM_F_ACK)
        self.sock.send(_HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body)
        interrupted = False
        while True:
            data = self._receive()
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, mtype, mflags, mseq, _ = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EBADMSG)
                end = offset + length
                start, offset = offset + _HEADER.size, offset + ((length + 3) & ~3)
                if mseq != seq:
                    continue  # a late answer to an exchange that was cut short
                interrupted = interrupted or bool(mflags & NLM_F_DUMP_INTR)
                if mtype in (NLMSG_ERROR, NLMSG_DONE):
                    code = _s32(data[start:start + 4]) if end - start >= 4 else 0
                    if code < 0:
                        raise NetlinkError(-code)
                    if interrupted:
                        raise _Interrupted
                    return
                msg = _decode(mtype, data, start, end)
                if msg is not None:
                    yield msg

    # -- the calls netstep makes, shaped as pyroute2's ---------------------------------------

    def link(self, command: str, *, index: int = 0, ifname: str | None = None, kind: str | None = None,
             peer: str | dict | None = None, state: str | None = None, master: int | None = None,
             net_ns_fd: int | None = None) -> list[Message]:
        attrs = b""
        if ifname is not None:
            attrs += _nla_text(3, ifname)  # IFLA_IFNAME
        if command == "dump":
            return self.request(RTM_GETLINK, NLM_F_DUMP, _ifinfo())
        if command == "get":
            return self.request(RTM_GETLINK, 0, _ifinfo(index) + attrs)
        if command == "del":
            return self.request(RTM_DELLINK, 0, _ifinfo(index))
        if command == "add":
            return self.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, _ifinfo() + attrs + _nla(
                18 | NLA_F_NESTED, _nla_text(1, kind or "") + _kind_data(kind, peer)))  # IFLA_LINKINFO
        if command == "set":
            up = {"up": IFF_UP, "down": 0}.get(state or "")
            if master is not None:
                attrs += _nla_u32(10, master)  # IFLA_MASTER; 0: no master
            if net_ns_fd is not None:
                attrs += _nla_u32(28, net_ns_fd)  # IFLA_NET_NS_FD
            body = _ifinfo(index, up or 0, IFF_UP if up is not None else 0) + attrs
            return self.request(RTM_NEWLINK, 0, body)
        raise ValueError(f"link({command!r})")

    def link_lookup(self, *, ifname: str) -> list[int]:
        try:
            return [msg["index"] for msg in self.link("get", ifname=ifname)]
        except NetlinkError as exc:
            if exc.code == errno.ENODEV:
                return []
            raise

    def addr(self, command: str, *, index: int = 0, address: str = "", prefixlen: int = 0,
             family: int = socket.AF_UNSPEC) -> list[Message]:
        if command == "dump":
            return self.request(RTM_GETADDR, NLM_F_DUMP, _ADDR[0].pack(family, 0, 0, 0, 0))
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        body = _ADDR[0].pack(family, prefixlen, 0, 0, index) + _nla_ip(2, address) + _nla_ip(1, address)
        if command == "add":
            return self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        if command == "del":
            return self.request(RTM_DELADDR, 0, body)
        raise ValueError(f"addr({command!r})")

    def route(self, command: str, *, family: int = socket.AF_INET, table: int = MAIN_TABLE,
              dst: str = "0.0.0.0/0", gateway: str | None = None, oif: int | None = None,
              proto: int = 0, scope: int | None = None, prefsrc: str | None = None,
              priority: int | None = None) -> list[Message]:
        """Routes of `table`. A dump leaves out the kernel's cached exceptions (redirects,
        path MTUs: RTM_F_CLONED), which the kernel lists among routes but are not configuration."""
        if command == "dump":
            msgs = self.request(RTM_GETROUTE, NLM_F_DUMP, _ROUTE[0].pack(family, 0, 0, 0, 0, 0, 0, 0, 0))
            return [m for m in msgs if m.get("RTA_TABLE", m["table"]) == table and not m["flags"] & RTM_F_CLONED]
        flags = {"add": NLM_F_CREATE | NLM_F_EXCL, "append": NLM_F_CREATE | NLM_F_APPEND, "del": 0}.get(command)
        if flags is None:
            raise ValueError(f"route({command!r})")
        net, _, length = dst.partition("/")
        prefix = int(length or 32)
        if scope is None:
            scope = RT_SCOPE_NOWHERE if command == "del" else 0
        rtype = 0 if command == "del" else RTN_UNICAST
        body = _ROUTE[0].pack(socket.AF_INET, prefix, 0, 0, table, proto, scope, rtype, 0)
        if prefix:
            body += _nla_ip(1, net)  # RTA_DST
        if gateway:
            body += _nla_ip(5, gateway)
        if oif:
            body += _nla_u32(4, oif)
        if priority:
            body += _nla_u32(6, priority)
        if prefsrc:
            body += _nla_ip(7, prefsrc)
        kind = RTM_DELROUTE if command == "del" else RTM_NEWROUTE
        return self.request(kind, flags, body)

    def neigh(self, command: str, *, family: int = socket.AF_INET) -> list[Message]:
        if command != "dump":
            raise ValueError(f"neigh({command!r})")
        return self.request(RTM_GETNEIGH, NLM_F_DUMP, _NEIGH[0].pack(family, 0, 0, 0, 0))

    def fdb(self, command: str) -> list[Message]:
        """The bridges' forwarding entries (a neighbour dump of the bridge family)."""
        return self.neigh(command, family=AF_BRIDGE)

    def arp_retrans(self, index: int, ms: int) -> None:
        """Set ARP's retransmit time on one link: what writing
        /proc/sys/net/ipv4/neigh/DEV/retrans_time_ms does, without entering the namespace."""
        parms = _nla_u32(1, index) + _nla(5, struct.pack("=Q", ms))  # NDTPA_IFINDEX, NDTPA_RETRANS_TIME
        body = struct.pack("=Bxxx", socket.AF_INET) + _nla_text(1, "arp_cache") + _nla(6 | NLA_F_NESTED, parms)
        self.request(RTM_SETNEIGHTBL, 0, body)  # NDTA_NAME, NDTA_PARMS

    def get_netnsid(self, *, fd: int) -> dict:
        """The id this namespace gives the namespace open at `fd` ({"nsid": 0xFFFFFFFF}: none yet)."""
        reply = self.request(RTM_GETNSID, 0, _NSID[0].pack(0) + _nla_u32(3, fd))  # NETNSA_FD
        return {"nsid": reply[0].get("NETNSA_NSID") if reply else None}


class _Interrupted(Exception):
    """A dump crossed a change of the tables it read (NLM_F_DUMP_INTR)."""


def _kind_data(kind: str | None, peer: str | dict | None) -> bytes:
    """IFLA_INFO_DATA for a veth: its peer's name, and the namespace to make it in."""
    if kind != "veth" or peer is None:
        return b""
    spec = peer if isinstance(peer, dict) else {"ifname": peer}
    peer_attrs = _nla_text(3, spec["ifname"])
    if spec.get("net_ns_fd") is not None:
        peer_attrs += _nla_u32(28, spec["net_ns_fd"])
    return _nla(2 | NLA_F_NESTED, _nla(1, _ifinfo() + peer_attrs))  # IFLA_INFO_DATA { VETH_INFO_PEER }

