"""Evidence: what the kernel itself says happened to a packet, read per namespace.

- Counters: each namespace's `/proc/net/snmp` (Ip InReceives, ForwDatagrams, InAddrErrors,
  OutNoRoutes, Icmp InEchos, OutEchoReps, ...). The file is opened once from a thread
  inside the namespace and re-read from any thread (about 30 µs), so a probe can be
  watched while it is in flight.
- Route lookups: the kernel's decision for one packet (`ip route get`), through a
  netlink handle with pyroute2's call shape: the route used, or the errno of none.
- Rule counters: `iptables-save -c`, read before and after a probe, name the rules and
  chain policies that counted it.
- Conntrack entries: the NAT rewrites the kernel made for a flow.

Everything here reads; nothing changes the kernel.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from netstep.i18n import _
from netstep.kernel import namespaces, netlink

ROUTE_TYPES = {1: "unicast", 2: "local", 3: "broadcast", 6: "blackhole", 7: "unreachable", 8: "prohibit"}


# -- counters ----------------------------------------------------------------------------


def parse_snmp(text: str) -> dict[str, int]:
    """`/proc/net/snmp` as {"Ip.InReceives": 3, "Icmp.InEchos": 1, ...}."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        group, _, keys = names.partition(":")
        for key, value in zip(keys.split(), values.partition(":")[2].split(), strict=False):
            out[f"{group}.{key}"] = int(value)
    return out


class Counters:
    """The SNMP counters of several namespaces, opened once and re-read on demand."""

    def __init__(self, paths: dict[str, str | None]) -> None:
        """`paths`: namespace name -> its file (None: the namespace netstep runs in)."""
        self._files = _open_in_each(paths, "snmp")

    def read(self) -> dict[str, dict[str, int]]:
        out = {}
        for ns, f in self._files.items():
            f.seek(0)
            out[ns] = parse_snmp(f.read().decode())
        return out

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()

    def __enter__(self) -> Counters:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ArpTables:
    """The ARP tables (`/proc/net/arp`) of several namespaces, opened once, re-read on demand."""

    def __init__(self, paths: dict[str, str | None]) -> None:
        self._files = _open_in_each(paths, "arp")

    def unanswered(self, ns: str, address: str, dev: str) -> bool:
        """True when `ns` asked ARP for `address` on `dev` and has no answer (flags 0x0)."""
        f = self._files[ns]
        f.seek(0)
        for line in f.read().decode().splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 6 and fields[0] == address and fields[5] == dev:
                return not int(fields[2], 16) & 0x2  # ATF_COM: the answer came
        return False

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


def _open_in_each(paths: dict[str, str | None], name: str) -> dict:
    """Each namespace's /proc/net/NAME, opened by one short-lived thread that enters them in
    turn (a thread per namespace would cost a millisecond each: 32 namespaces, 30 ms)."""
    here = {ns: _open_net(name) for ns, path in paths.items() if path is None}

    elsewhere = {ns: path for ns, path in paths.items() if path is not None}

    def visit() -> dict:
        opened = {}
        for ns, path in elsewhere.items():
            namespaces.enter(path)
            opened[ns] = _open_net(name)
        return opened

    away = namespaces.run_in(next(iter(elsewhere.values())), visit) if elsewhere else {}
    return {ns: here[ns] if ns in here else away[ns] for ns in paths}


def _open_net(name: str):
    # thread-self: the calling thread's namespace (it may have switched), not the process's
    return open(f"/proc/thread-self/net/{name}", "rb", buffering=0)


def delta(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The counters that moved, per namespace: {"upstream": {"Icmp.InEchos": 1}}."""
    out = {}
    for ns, now in after.items():
        then = before.get(ns, {})
        moved = {key: value - then.get(key, 0) for key, value in now.items()
                 if value != then.get(key, 0) and key in INTERESTING}
        if moved:
            out[ns] = moved
    return out


INTERESTING = frozenset({
    "Ip.InReceives", "Ip.InAddrErrors", "Ip.InNoRoutes", "Ip.ForwDatagrams", "Ip.InDiscards", "Ip.InDelivers",
    "Ip.OutRequests", "Ip.OutDiscards", "Ip.OutNoRoutes", "Ip.OutTransmits", "Ip.FragFails", "Icmp.InEchos",
    "Icmp.InEchoReps",
    "Icmp.OutEchos", "Icmp.OutEchoReps", "Icmp.InDestUnreachs", "Icmp.OutDestUnreachs", "Icmp.InTimeExcds",
    "Tcp.ActiveOpens", "Tcp.PassiveOpens", "Tcp.AttemptFails", "Tcp.OutRsts", "Tcp.InSegs", "Tcp.OutSegs",
})


# -- route lookups ----------------------------------------------------------------------


@dataclass(frozen=True)
class RouteLookup:
    """The kernel's answer to `ip route get DST [from SRC iif DEV]` in one namespace."""

    ns: str
    dst: str
    src: str | None = None
    iif: str | None = None  # the device a forwarded packet arrived on
    kind: str = "unicast"  # unicast | local | unreachable | ... | error; "bridged": a bridge's, not routing's
    dev: str | None = None  # the output device
    gateway: str | None = None
    prefsrc: str | None = None
    error: int = 0  # errno: ENETUNREACH (no route), EHOSTUNREACH (with iif: forwarding off), ...

    @property
    def ok(self) -> bool:
        return self.error == 0 and self.kind in ("unicast", "local")

    def command(self) -> str:
        if self.kind == "bridged":  # no route lookup: a bridge passed the frame from port to port
            return f"bridge {self.dev}" + (f" (in by {self.iif})" if self.iif else "")
        text = f"ip route get {self.dst}"
        if self.src:
            text += f" from {self.src}"
        if self.iif:
            text += f" iif {self.iif}"
        return text

    def describe(self) -> str:
        if self.error:
            return f"{os.strerror(self.error)} ({errno.errorcode.get(self.error, self.error)})"
        if self.kind == "local":
            return f"local {self.dst} dev {self.dev}"
        if self.kind == "bridged":
            return f"frame for {self.dst} bridged, handed to iptables FORWARD"
        text = f"{self.dst}"
        if self.gateway:
            text += f" via {self.gateway}"
        return text + f" dev {self.dev}" + (f" src {self.prefsrc}" if self.prefsrc else "")

    def as_json(self) -> dict:
        return {"ns": self.ns, "lookup": self.command(), "result": self.describe()}


def lookup_route(ipr, ns: str, names: dict[int, str], dst: str, *, src: str | None = None,
                 iif: str | None = None) -> RouteLookup:
    """Ask `ns`'s kernel (through `ipr`) how it routes one packet; `names` maps ifindex -> name."""
    index = {name: i for i, name in names.items()}
    try:
        msg = ipr.route("get", dst=dst, src=src, iif=index.get(iif) if iif else None)[0]
    except (OSError, netlink.NetlinkError) as exc:  # pyroute2's error is not an OSError
        code = getattr(exc, "code", None) or getattr(exc, "errno", None) or errno.EINVAL
        return RouteLookup(ns, dst, src, iif, kind="error", error=code)
    kind = ROUTE_TYPES.get(msg["type"], str(msg["type"]))
    oif = msg.get("RTA_OIF")
    return RouteLookup(ns, dst, src, iif, kind=kind, dev=names.get(oif, str(oif)) if oif else None,
                       gateway=msg.get("RTA_GATEWAY"), prefsrc=msg.get("RTA_PREFSRC"))


class RouteLookups:
    """Route lookups in several namespaces, `ipr(ns)` giving each one's netlink handle; device
    names are read once per namespace."""

    def __init__(self, ipr: Callable[[str], object]) -> None:
        self.ipr = ipr
        self._names: dict[str, dict[int, str]] = {}

    def names(self, ns: str) -> dict[int, str]:
        if ns not in self._names:
            self._names[ns] = {m["index"]: m.get("ifname") for m in self.ipr(ns).link("dump")}  # type: ignore[attr-defined]
        return self._names[ns]

    def __call__(self, ns: str, dst: str, src: str | None, iif: str | None) -> RouteLookup:
        return lookup_route(self.ipr(ns), ns, self.names(ns), dst, src=src, iif=iif)


# -- iptables rule counters -------------------------------------------------------------------


@dataclass(frozen=True)
class RuleCount:
    """A rule (or a chain's policy) and how many packets it counted."""

    table: str
    chain: str
    rule: str  # "-A FORWARD -i br0 -j ACCEPT", or "policy DROP"
    packets: int
    number: int = 0  # its place in the chain, from 1, as `iptables -L --line-numbers` counts (0: the policy)

    @property
    def target(self) -> str:
        if self.rule.startswith("policy "):
            return self.rule.split()[1]
        match = re.search(r"-j (\S+)", self.rule)
        return match[1] if match else ""

    def describe(self) -> str:
        if self.rule.startswith("policy"):
            return f"{self.table} {self.chain} {self.rule}"
        return f"{self.table} {self.rule}"

    def named(self, ns: str) -> str:
        """The rule as a verdict names it: `host filter FORWARD rule 1 `-s 172.18.0.20 -j REJECT``."""
        if self.rule.startswith("policy"):
            return _("{ns} {table} {chain} policy {target}").format(ns=ns, table=self.table, chain=self.chain,
                                                                    target=self.target)
        return _("{ns} {table} {chain} rule {number} `{spec}`").format(ns=ns, table=self.table, chain=self.chain,
                                                                       number=self.number, spec=self.spec)

    @property
    def spec(self) -> str:
        """The rule's match and target as a student types them: no `-A CHAIN`, no /32, no
        default `--reject-with icmp-port-unreachable`."""
        text = self.rule.removeprefix(f"-A {self.chain} ")
        text = re.sub(r"(\d+\.\d+\.\d+\.\d+)/32\b", r"\1", text)
        return text.replace(" --reject-with icmp-port-unreachable", "")


def parse_rule_counts(text: str) -> list[RuleCount]:
    """`iptables-save -c` as rule counters, policies included (`:FORWARD DROP [3:252]`)."""
    out, table = [], ""
    places: dict[tuple[str, str], int] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":"):
            match = re.match(r":(\S+) (\S+) \[(\d+):\d+\]", line)
            if match and match[2] != "-":
                out.append(RuleCount(table, match[1], f"policy {match[2]}", int(match[3])))
        elif line.startswith("["):
            match = re.match(r"\[(\d+):\d+\] (-A (\S+).*)", line)
            if match:
                number = places[table, match[3]] = places.get((table, match[3]), 0) + 1
                out.append(RuleCount(table, match[3], match[2], int(match[1]), number))
    return out


def counted(before: list[RuleCount], after: list[RuleCount]) -> list[RuleCount]:
    """The rules whose counters moved between two readings, with the difference."""
    then = {(r.table, r.chain, r.rule): r.packets for r in before}
    return [replace(r, packets=r.packets - then.get((r.table, r.chain, r.rule), 0))
            for r in after if r.packets > then.get((r.table, r.chain, r.rule), 0)]


def moved_since(before: list[RuleCount], after: list[RuleCount]) -> tuple[str, ...]:
    """Every rule, and every policy worth reading (DROP, or one that counted), with the
    packets it counted between two readings, +0 included: a rule that did not count is as
    telling as one that did."""
    then = {(r.table, r.chain, r.rule): r.packets for r in before}
    lines = []
    for r in after:
        moved = max(r.packets - then.get((r.table, r.chain, r.rule), 0), 0)
        if r.rule.startswith("policy ") and r.target == "ACCEPT" and not moved:
            continue
        lines.append(f"{r.table} {r.chain} {r.rule.removeprefix(f'-A {r.chain} ')}: "
                     f"+{moved} {'packet' if moved == 1 else 'packets'}")
    return tuple(lines)


def read_rule_counts(run: Callable[[list[str]], object]) -> list[RuleCount]:
    """Read the counters through `run(argv)` (a namespace's exec), which returns a CompletedProcess."""
    return parse_rule_counts(run(["iptables-save", "-c"]).stdout)  # type: ignore[attr-defined]


# -- conntrack ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """A conntrack entry: the original direction and the reply the kernel expects (NAT shows
    as a reply that is not the original reversed)."""

    ns: str
    proto: str
    original: tuple[str, str]  # (src, dst)
    reply: tuple[str, str]
    ports: tuple[int, int] | None = None  # original (sport, dport)
    reply_ports: tuple[int, int] | None = None
    ident: int | None = None  # an ICMP echo's id
    text: str = field(default="", compare=False)

    @property
    def snat(self) -> str | None:
        """The address the source was rewritten to (MASQUERADE, SNAT), or None."""
        return self.reply[1] if self.reply[1] != self.original[0] else None

    @property
    def dnat(self) -> str | None:
        """The address the destination was rewritten to (DNAT), or None."""
        return self.reply[0] if self.reply[0] != self.original[1] else None


def parse_conntrack(ns: str, text: str) -> list[Flow]:
    flows = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0] not in ("icmp", "tcp", "udp"):
            continue
        values: dict[str, list[str]] = {}
        for word in words:
            key, eq, value = word.partition("=")
            if eq:
                values.setdefault(key, []).append(value)
        if len(values.get("src", ())) < 2 or len(values.get("dst", ())) < 2:
            continue
        ports = rports = None
        if "sport" in values and len(values["sport"]) >= 2:
            ports = (int(values["sport"][0]), int(values["dport"][0]))
            rports = (int(values["sport"][1]), int(values["dport"][1]))
        ident = int(values["id"][0]) if values.get("id") else None
        flows.append(Flow(ns, words[0], (values["src"][0], values["dst"][0]), (values["src"][1], values["dst"][1]),
                          ports, rports, ident, line.strip()))
    return flows
