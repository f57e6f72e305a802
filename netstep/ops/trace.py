"""`netstep trace`: one real probe, and what every namespace's kernel did with it.

The probe is a check's (an ICMP echo from a raw socket in the source namespace, or a TCP
connection, or an HTTP GET, or a dns check's query: a name looked up through the first
nameserver of the resolv.conf the namespace's programs read, its UDP packet traced to
that nameserver). Around it netstep reads, in every namespace of the lab, the
SNMP counters and the iptables rule counters, and after it the conntrack entries and
the kernel's own drop reasons (skb:kfree_skb in a private tracefs instance). The path,
hop by hop, comes from each namespace's own route lookups (netstep.state.paths); the
verdict (where the packet stopped, and why) from netstep.state.explain. Nothing here
reads a lesson: the explanation is the kernel's.
"""

from __future__ import annotations

import ipaddress
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass, field, replace

from netstep.course.checks import PROBES, Check, CheckResult
from netstep.errors import NetstepError
from netstep.i18n import _
from netstep.kernel import namespaces
from netstep.kernel.tracefs import DropWatch
from netstep.ops import files, probes
from netstep.ops.witness import Witness, counted_dnat, flows_of, nat_paths
from netstep.render import RenderMixin
from netstep.state import evidence
from netstep.state.evidence import RouteLookup, RouteLookups, RuleCount
from netstep.state.explain import Asked, Crossing, Finding, Observation, explain, explain_dns
from netstep.state.paths import Hop, Path, Wiring
from netstep.state.snapshot import Snapshot

QUIET = ("ping_rcv",)  # an echo reply no ping socket asked for: the probe's raw socket took it


@dataclass
class Trace(RenderMixin):
    """A probe's path there and back, hop by hop, and the kernel's verdict."""

    check: Check
    result: CheckResult
    forward: Path
    reply: Path | None
    finding: Finding
    notes: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    lab: Snapshot | None = None  # the lab's configuration the path was walked on (for its diagram)
    asked: Asked | None = None  # a dns trace's: the resolv.conf read, its nameserver, the answer

    @property
    def reachable(self) -> bool:
        return self.result.actual == "reachable"

    def as_json(self) -> dict:
        return {
            "from": self.check.source, "to": self.result.to, "kind": self.check.kind, "actual": self.result.actual,
            "reason": self.result.reason, "detail": self.result.detail, "concluded": self.result.concluded,
            **self.finding.as_json(),
            "path": self.forward.as_json(), "reply_path": self.reply.as_json() if self.reply else [],
            "notes": self.notes, "ms": round(self.elapsed * 1000, 1),
            **({"resolv.conf": self.asked.resolv, "nameserver": self.asked.server, "answer": list(self.asked.answer)}
               if self.asked else {}),
        }


def parse_target(text: str, kind: str | None) -> tuple[str, int | None, str]:
    """`TO[:PORT]` and the probe asked for: (address or "internet", port, kind); for a dns
    trace, `TO` is the name to look up."""
    if kind == "dns":
        if ":" in text:
            raise NetstepError(_("A dns trace takes a name without a port: it asks port 53 of the nameserver in "
                                 "the namespace's resolv.conf. Trace {name} with --dns, as in `trace netns0 "
                                 "example.com --dns`.").format(name=text.partition(":")[0]))
        check_name(text)
        return text, None, kind
    address, colon, port_text = text.partition(":")
    port = None
    if colon:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NetstepError(_("'{text}' is not a target: use ADDRESS or ADDRESS:PORT, with a port from 1 to "
                                 "65535.").format(text=text))
        port = int(port_text)
    if address != "internet" and not _is_ipv4(address):
        raise NetstepError(_("'{address}' is not an IPv4 address (or `internet`): trace FROM TO[:PORT], as in "
                             "`trace netns0 172.18.0.1` or `trace host 10.0.2.15:5005 --http`; to look a name up "
                             "as a program does, add --dns, as in `trace netns0 example.com --dns`.").format(
            address=address))
    kind = kind or ("tcp" if port else "ping")
    if kind == "ping" and port:
        raise NetstepError(_("A ping has no port: trace {address} with --icmp, or {text} with --tcp or "
                             "--http.").format(address=address, text=text))
    if kind != "ping" and port is None:
        raise NetstepError(_("{kind} traces need a port: {target}:PORT.").format(kind=kind.upper(), target=address))
    return address, port, kind


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


def _rule_counts(lab, names: list[str]) -> dict[str, list[RuleCount]]:
    return {ns: evidence.read_rule_counts(lambda argv, ns=ns: lab.exec(ns, argv)) for ns in names}


def _watch_drops(stack: ExitStack, notes: list[str]) -> DropWatch | None:
    """A DropWatch closed with `stack`, or None (and a note) where tracefs cannot be used."""
    try:
        return stack.enter_context(DropWatch())
    except (OSError, NetstepError) as exc:
        notes.append(_("the kernel's drop reasons are not available: {error}").format(error=exc))
        return None


def trace(lab, source: str, target: str, *, port: int | None = None, kind: str | None = None,
          size: int | None = None, drops: bool = True) -> Trace:
    """Send one probe from `source` to `target` ("internet" names the lab's internet host)
    and read what the kernel did with it. `size`: a ping of that payload that may not be
    fragmented (`ping -M do -s SIZE`). `drops`: also watch the kernel's drop reasons.
    `kind` "dns": look the name `target` up as a program in `source` does (trace_dns)."""
    kind = kind or ("tcp" if port else "ping")
    if kind == "dns":
        if port is not None or size is not None:
            raise NetstepError(_("A dns trace asks port 53 of the nameserver in {ns}'s resolv.conf, with a query of "
                                 "its own: it takes no port and no size. Trace the name alone, as in `trace {ns} "
                                 "example.com --dns`.").format(ns=source))
        return trace_dns(lab, source, target, drops=drops)
    if kind not in PROBES:
        raise NetstepError(_("A trace sends a ping, a tcp connection or an http request, not '{kind}'.").format(
            kind=kind))
    if kind != "ping" and not port:
        raise NetstepError(_("{kind} traces need a port: {target}:PORT.").format(kind=kind.upper(), target=target))
    started = time.monotonic()
    lab.require(source)
    if size is not None and kind != "ping":
        raise NetstepError(_("Only a ping trace takes a size (ping -M do -s SIZE): this one is {kind}.").format(
            kind=kind.upper()))
    check = Check(kind, source, target, port if kind != "ping" else None, "unreachable", size=size)
    dst = lab.internet if target == "internet" else target
    seen = _observe(lab, check, dst, drops)
    finding = explain(kind, seen.result.reason, seen.result.detail, seen.observation, seen.wiring, size=size)
    return _traced(seen, finding, started)


def trace_dns(lab, source: str, name: str, *, drops: bool = True) -> Trace:
    """Look `name` up from `source` as a dns check does (the resolv.conf a program started
    there by `ip netns exec` reads, its first nameserver, over UDP) and read what the kernel
    did with the query: its path to the nameserver, and the answer or why there was none."""
    started = time.monotonic()
    lab.require(source)
    check_name(name)
    path, text = files.resolv_conf(lab.dir, source)
    servers = files.nameservers(text)
    server = servers[0] if servers else None
    if server is not None and not _is_ipv4(server):
        raise NetstepError(_("{path} in {ns} names the nameserver {server}, which is not an IPv4 address: netstep "
                             "traces IPv4 only.").format(path=path, ns=source, server=server))
    check = Check("dns", source, name, 53, "unreachable")
    seen = _observe(lab, check, server or "", drops, resolv=(path, text))
    result = seen.result
    answer = tuple((result.evidence or {}).get("answer", ()))
    listening = _listening(lab, server) if server and result.reason == "refused" else {}
    asked = Asked(source, name, path, server, answer, listening)
    finding = explain_dns(asked, result.reason, result.detail, seen.observation, seen.wiring)
    return replace(_traced(seen, finding, started), asked=asked)


def check_name(name: str) -> None:
    """Refuse what a program would not look up in DNS: an address, or no host name at all."""
    if _is_ipv4(name):
        raise NetstepError(_("'{name}' is an address already: a program does not ask DNS for it (getaddrinfo hands "
                             "it back as it is). Trace a name with --dns, as in `trace netns0 example.com --dns`, "
                             "or this address without --dns.").format(name=name))
    labels = name.rstrip(".").split(".")
    if len(name) > 253 or not all(label and len(label) <= 63 and label.replace("-", "").replace("_", "").isalnum()
                                  and label.isascii() for label in labels):
        raise NetstepError(_("'{name}' is not a host name: --dns looks up a name of letters, digits and hyphens "
                             "in dot-separated parts, as in `trace netns0 example.com --dns`.").format(name=name))


def _listening(lab, server: str) -> dict[str, list[str]]:
    """The UDP sockets bound to `server`:53 (or to every address's port 53) in each of the
    lab's namespaces, read from each one's /proc/net/udp, with the processes holding them."""
    out = {}
    for ns in lab.namespace_names():
        held = namespaces.run_in(lab.path_of(ns), lambda: probes.listeners(53, "udp"))
        out[ns] = [line for line in held if line.split()[1] in (f"{server}:53", "0.0.0.0:53")]
    return out


@dataclass
class _Seen:
    """What was read around one probe."""

    check: Check
    result: CheckResult
    observation: Observation
    wiring: Wiring
    notes: list[str]
    snapshot: Snapshot


def _observe(lab, check: Check, dst: str, drops: bool, resolv: tuple[str, str] | None = None) -> _Seen:
    """Send `check`'s probe to `dst` (a dns check's: its query to the nameserver `dst`; ""
    for none) and read the lab around it: counters, rule counters, conntrack, drop reasons."""
    source, port = check.source, check.port
    names = lab.namespace_names()
    snapshot = lab.snapshot(names, caches=False)
    ruled = [ns for ns in names if snapshot[ns].rules]
    notes: list[str] = []
    lookups = RouteLookups(lab.ipr)
    src = (lookups(source, dst, None, None).prefsrc or "") if dst else ""
    # A dns query's conntrack entry lives 30 s, and each lookup asks from a port of its own:
    # an entry there before the query is an earlier lookup's, not this one's.
    older = flows_of(lab, ruled, check, src, dst) if src and check.kind == "dns" else []
    with ExitStack() as stack:
        # The witness of the checks: a probe lost where a counter records the loss is
        # concluded then, not after the 0.2 s a silent loss is otherwise given. Its readings
        # before the probe (every namespace's SNMP counters, the rule counters where a rule
        # decides) are the trace's too; the trace reads the other rule counters itself.
        witness = stack.enter_context(closing(Witness(lab, [check], snapshot, lookups)))
        rules_before = {**witness.rules_before,
                        **_rule_counts(lab, [ns for ns in ruled if ns not in witness.rules_before])}
        watch = _watch_drops(stack, notes) if drops else None
        result = probes.run([check], lab.path_of, lab.internet, witness,
                            resolv=(lambda ns: resolv) if resolv else None)[0]
        time.sleep(0.002)  # let the last softirq work finish counting
        moved = evidence.delta(witness.before, witness.counters.read())
        dropped = [d.describe() for d in watch.drops() if d.location not in QUIET] if watch else []
    rules_after = _rule_counts(lab, ruled)
    flows = [flow for flow in flows_of(lab, ruled, check, src, dst) if flow not in older] if src else []
    counted = {ns: c for ns in ruled if (c := evidence.counted(rules_before[ns], rules_after[ns]))}
    if dst:
        forward, reply = nat_paths(Wiring(snapshot), lookups, source, dst, flows,
                                   counted_dnat(counted, source, dst, port))
    else:  # (a dns lookup with no nameserver to ask: nothing was sent)
        forward, reply = Path(source, "", ""), None
    seen = Observation(forward, reply, moved=moved, rules=counted, all_rules=rules_after, port=port, flows=flows,
                       drops=dropped)
    return _Seen(check, result, seen, Wiring(snapshot), notes, snapshot)


def _traced(seen: _Seen, finding: Finding, started: float) -> Trace:
    """The trace of a probe `seen`, its path cut where `finding` says it stopped."""
    result, forward, reply, source = seen.result, seen.observation.forward, seen.observation.reply, seen.check.source
    if result.actual != "reachable":
        result = probes.judged(result, finding)
    if result.reason == "too-big" and finding.where:  # too large for a link, which the walk does not see
        forward, reply = _stopped_by_mtu(forward, finding.where, source, finding.why), None
    elif finding.stop is not None:  # netfilter, which the walk does not see, stopped it
        if finding.stop.back:
            reply = cut(reply, finding.stop, finding.why) if reply else None
        else:
            forward, reply = cut(forward, finding.stop, finding.why), None
    elif "rule" in finding.evidence and finding.where:
        forward, reply = cut_at(forward, finding.where, finding.why), None
    return Trace(seen.check, result, forward, reply, finding, seen.notes, time.monotonic() - started,
                 lab=seen.snapshot)


def cut(path: Path, stop: Crossing, why: str) -> Path:
    """`path` stopped where a rule dropped the packet: at that hop, or on the bridge after it."""
    hops = list(path.hops[:stop.index + 1])
    hop = hops[-1]
    if stop.bridge is None:
        hops[-1] = replace(hop, action="dropped", link=(), problem=why, kernel_reason="NETFILTER_DROP", bridged=None)
    else:  # it left the hop, and the bridge in `stop.ns` dropped the frame between two ports
        into = hop.link[:next((i for i, step in enumerate(hop.link) if step.startswith(f"{stop.bridge} ")),
                             len(hop.link))]
        port = into[-1].split(" -> ")[1].split("@")[0] if into and " -> " in into[-1] else None
        bridged = RouteLookup(stop.ns, stop.dst, stop.src, port, kind="bridged", dev=stop.bridge)
        hops[-1] = replace(hop, link=(*into, f"{stop.bridge} (bridge in {stop.ns})"), bridged=None)
        hops.append(Hop(stop.ns, port, bridged, "dropped", problem=why, kernel_reason="NETFILTER_DROP"))
    return replace(path, hops=tuple(hops))


def _stopped_by_mtu(path: Path, ns: str, source: str, why: str) -> Path:
    """`path` stopped where the packet did not fit: at the source itself, or at a router."""
    if ns != source:
        return cut_at(path, ns, why)
    first = path.hops[0]
    return replace(path, hops=(replace(first, action="dropped", link=(), problem=why, kernel_reason="PKT_TOO_BIG"),))


def cut_at(path: Path, ns: str, why: str) -> Path:
    """`path` stopped at its first hop through `ns` (a rule there counted, though none fits the packet)."""
    hops = []
    for hop in path.hops:
        if hop.ns == ns and hop.arrived_on is not None:
            hops.append(replace(hop, action="dropped", link=(), problem=why, kernel_reason="NETFILTER_DROP"))
            break
        hops.append(hop)
    return replace(path, hops=tuple(hops))
