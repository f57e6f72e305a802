"""Reading the kernel into a snapshot's parts: one function per kind of entry.

Each reader takes a netlink client of one namespace (or a program's output) and gives
plain entries, devices by name. Which namespaces are read, and when, is
netstep.state.reader's business.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from netstep.state.snapshot import Link, default_mtu

BUILTIN_CHAINS = {
    "filter": {"INPUT", "FORWARD", "OUTPUT"},
    "nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
    "mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
    "raw": {"PREROUTING", "OUTPUT"},
    "security": {"INPUT", "FORWARD", "OUTPUT"},
}


# IFLA_TUN_TYPE (linux/if_tun.h IFF_TUN, IFF_TAP): a TAP carries Ethernet frames to the
# program that holds it (slirp4netns, a VM's emulator), a TUN bare IP packets.
TUN_TYPES = {1: "tun", 2: "tap"}


def read_links(ipr, nsid_name) -> tuple[list[Link], dict[int, str]]:
    """Links of one namespace, and its ifindex -> name map; `nsid_name(id)` names a peer's namespace."""
    raw = ipr.link("dump")
    names = {msg["index"]: msg.get("ifname") for msg in raw}
    links = []
    for msg in raw:
        info = msg.get("IFLA_LINKINFO")
        kind = info.get("IFLA_INFO_KIND") if info else None
        if kind is None:
            kind = "loopback" if msg.get("ifname") == "lo" else "ether"
        elif kind == "tun":  # one kind in the kernel: `ip tuntap` tells the two apart by their type
            kind = TUN_TYPES.get((info.get("IFLA_INFO_DATA") or {}).get("IFLA_TUN_TYPE"), "tun")
        master = names.get(msg.get("IFLA_MASTER")) if msg.get("IFLA_MASTER") else None
        peer = None
        if kind == "veth" and msg.get("IFLA_LINK"):
            nsid = msg.get("IFLA_LINK_NETNSID")
            if nsid is None:
                peer = names.get(msg.get("IFLA_LINK"), "?")
            else:
                peer = f"#{msg.get('IFLA_LINK')}@{nsid_name(nsid)}"
        links.append(
            Link(
                name=msg.get("ifname"),
                kind=kind,
                up=bool(msg["flags"] & 1),
                master=master,
                peer=peer,
                mac=msg.get("IFLA_ADDRESS") or "",
                mtu=msg.get("IFLA_MTU") if msg.get("IFLA_MTU") not in (None, default_mtu(kind)) else None,
                hairpin=_hairpin(info),
                nf_call_iptables=kind == "bridge" and bool(((info or {}).get("IFLA_INFO_DATA") or {})
                                                           .get("IFLA_BR_NF_CALL_IPTABLES")),
            )
        )
    return links, names


def _hairpin(info) -> bool:
    """A bridge port's hairpin flag (IFLA_BRPORT_MODE), from its link info."""
    if not info or info.get("IFLA_INFO_SLAVE_KIND") != "bridge":
        return False
    data = info.get("IFLA_INFO_SLAVE_DATA")
    return bool(data and data.get("IFLA_BRPORT_MODE"))


def read_addresses(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.addr("dump", family=socket.AF_INET):
        out.append(f"{names.get(msg['index'], msg['index'])} {msg.get('IFA_ADDRESS')}/{msg['prefixlen']}")
    return out


_PROTOS = {2: "kernel", 3: "boot", 4: "static"}
_SCOPES = {0: "global", 200: "site", 253: "link", 254: "host"}
RTN_UNICAST, RTN_UNREACHABLE, RTNH_F_LINKDOWN, RTM_F_CLONED = 1, 7, 16, 0x200


@dataclass(frozen=True)
class RouteEntry:
    """One route of the main table, devices by name: the one reading of a route, for the
    snapshot's text (`text`) and for the journal's images (`spec`)."""

    dst: str  # "default" or "10.0.2.0/24"
    via: str
    dev: str  # "" for a route without a device
    proto: int
    scope: int
    src: str
    metric: int
    type: int  # RTN_*: unicast, unreachable, ...
    linkdown: bool  # the device has no carrier: state, not configuration

    def spec(self) -> dict:
        """The route as the journal keeps it (a unicast route's fields, kernel numbers)."""
        return {"dst": self.dst, "via": self.via, "dev": self.dev, "proto": self.proto, "scope": self.scope,
                "src": self.src, "metric": self.metric}

    def text(self) -> str:
        """The route in `ip route`'s words, as a snapshot shows it."""
        text = self.dst
        if self.via:
            text += f" via {self.via}"
        if self.dev:
            text += f" dev {self.dev}"
        if self.proto != 3:
            text += f" proto {_PROTOS.get(self.proto, self.proto)}"
        if self.scope != 0:
            text += f" scope {_SCOPES.get(self.scope, self.scope)}"
        if self.src:
            text += f" src {self.src}"
        if self.type == RTN_UNREACHABLE:
            text = "unreachable " + text
        if self.metric:
            text += f" metric {self.metric}"
        if self.linkdown:
            text += " linkdown"
        return text


def read_routes(ipr, name_of: Callable[[int], object]) -> list[RouteEntry]:
    """The main table's IPv4 routes, in the kernel's order (the first match wins);
    `name_of(index)` names a route's device. The kernel's cached exceptions (redirects,
    path MTUs: RTM_F_CLONED), which a dump may list among routes, are not configuration."""
    out = []
    for m in ipr.route("dump", family=socket.AF_INET, table=254):
        if m["flags"] & RTM_F_CLONED or m.get("RTA_TABLE", m["table"]) != 254:
            continue
        dst, oif = m.get("RTA_DST"), m.get("RTA_OIF")
        out.append(RouteEntry(
            dst="default" if dst is None else f"{dst}/{m['dst_len']}",
            via=m.get("RTA_GATEWAY") or "",
            dev=str(name_of(oif)) if oif else "",
            proto=m["proto"],
            scope=m["scope"],
            src=m.get("RTA_PREFSRC") or "",
            metric=m.get("RTA_PRIORITY") or 0,
            type=m["type"],
            linkdown=bool(m.get("flags", 0) & RTNH_F_LINKDOWN),
        ))
    return out


_NUD = {1: "INCOMPLETE", 2: "REACHABLE", 4: "STALE", 8: "DELAY", 16: "PROBE", 32: "FAILED", 64: "NOARP",
        128: "PERMANENT"}


def read_neighbours(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.neigh("dump", family=socket.AF_INET):
        state = _NUD.get(msg["state"], str(msg["state"]))
        if state == "NOARP":
            continue
        mac = msg.get("NDA_LLADDR") or "(none)"
        out.append(f"{msg.get('NDA_DST')} dev {names.get(msg['ifindex'], msg['ifindex'])} lladdr {mac} {state}")
    return sorted(out)


def read_fdb(ipr, names: dict[int, str]) -> list[str]:
    out = []
    for msg in ipr.fdb("dump"):
        if msg.get("NDA_MASTER") is None:
            continue
        mac = msg.get("NDA_LLADDR")
        if mac and (mac.startswith("33:33") or mac.startswith("01:00:5e")):
            continue
        dev = names.get(msg["ifindex"], msg["ifindex"])
        kind = "permanent" if msg["state"] & 128 else "learned"
        out.append(f"{mac} dev {dev} master {names.get(msg.get('NDA_MASTER'))} {kind}")
    return sorted(out)


def parse_iptables_save(text: str) -> list[str]:
    """Rules as "TABLE -A CHAIN ..." lines; a table in its default state is left out.

    A table that holds only built-in chains with ACCEPT policies and no rules behaves as
    if it were absent, and iptables-nft keeps it once touched: count it as absent so that
    a lab that added and removed a rule compares equal to a fresh one.
    """
    out: list[str] = []
    table = ""
    lines: list[str] = []

    def flush() -> None:
        if table and lines:
            out.extend(f"{table} {line}" for line in lines)

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            flush()
            table, lines = line[1:], []
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if chain in BUILTIN_CHAINS.get(table, set()):
                if policy != "ACCEPT":
                    lines.append(f"-P {chain} {policy}")
            else:
                lines.append(f"-N {chain}")
        elif line == "COMMIT":
            continue
        else:
            lines.append(line)
    flush()
    return out


def read_conntrack(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith(("tcp", "udp", "icmp")):
            out.append(" ".join(tok for tok in line.split() if not tok.startswith(("mark=", "use="))))
    return out
