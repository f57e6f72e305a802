"""Where a packet died and why, from the kernel's evidence alone.

A Finding names the namespace, says why in a sentence, and keeps the evidence that
decided: the counters that moved, the route lookup, the rule that counted the packet,
the kernel's drop reason. It is built from what the kernel reported around one probe
(never from what a lesson expected), in this order of proof: an error the kernel
answered with, a rule that counted a drop, a namespace whose routing cannot pass the
packet on (forward path, then the reply's path) confirmed by its counters, and the
kernel's own drop reasons.

A rule is blamed only where the packet meets it: each hop of the path there and back
says which filter chain it passes (OUTPUT where it is sent, FORWARD where it is routed on
or bridged across a bridge whose frames br_netfilter hands to iptables, INPUT where it is
delivered), with which addresses and devices; a DROP or REJECT rule (or a chain's DROP
policy) whose counter moved and whose matches fit that packet is the cause. Checks and
`trace` both come here, so they cannot disagree.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace

from netstep.i18n import _
from netstep.state.evidence import Flow, RuleCount
from netstep.state.paths import Hop, Path, Wiring

DROPPING = ("DROP", "REJECT")
BUILTIN = ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING")
PROTOCOLS = {"ping": "icmp", "tcp": "tcp", "http": "tcp", "dns": "udp"}  # (a dns query: UDP to port 53)
# what a source makes of a REJECT's answer, where it is not plainly "filtered" (the prohibited kinds)
REJECT_READS = {"icmp-port-unreachable": "Connection refused", "tcp-reset": "Connection refused",
                "icmp-net-unreachable": "Destination Net Unreachable",
                "icmp-host-unreachable": "Destination Host Unreachable",
                "icmp-proto-unreachable": "Protocol Unreachable"}


@dataclass(frozen=True)
class Crossing:
    """A filter chain a packet passes: in `ns`, at hop `index` of the path there (or back)."""

    back: bool
    index: int
    ns: str
    chain: str
    src: str
    dst: str
    iif: str | None = None
    oif: str | None = None
    bridge: str | None = None  # the bridge whose frames br_netfilter handed to FORWARD


def crossings(path: Path | None, *, back: bool = False) -> list[Crossing]:
    """The filter chains a packet on `path` passes, in order."""
    out: list[Crossing] = []
    for i, hop in enumerate(path.hops if path else ()):
        dst = hop.lookup.dst
        waiting = hop.action == "dropped" and hop.kernel_reason == "NEIGH_FAILED"  # routed, then lost to ARP
        if hop.arrived_on is None:
            if hop.action in ("sent", "left", "delivered") or waiting:
                out.append(Crossing(back, i, hop.ns, "OUTPUT", path.src, dst, oif=hop.lookup.dev))
            if hop.action == "delivered":
                out.append(Crossing(back, i, hop.ns, "INPUT", path.src, dst, iif="lo"))
        elif hop.action in ("forwarded", "left") or waiting:
            out.append(Crossing(back, i, hop.ns, "FORWARD", path.src, dst, hop.arrived_on, hop.lookup.dev))
        elif hop.action == "delivered":
            out.append(Crossing(back, i, hop.ns, "INPUT", path.src, dst, iif=hop.arrived_on))
        if hop.bridged:
            ns, bridge = hop.bridged
            out.append(Crossing(back, i, ns, "FORWARD", path.src, dst, bridge, bridge, bridge=bridge))
    return out


def fits(rule: RuleCount, crossing: Crossing, proto: str) -> bool:
    """False when one of `rule`'s matches cannot fit the packet at `crossing` (matches it does not
    know, such as conntrack states, are taken to fit: the counter decides)."""
    if rule.table != "filter" or (rule.chain != crossing.chain and rule.chain in BUILTIN):
        return False
    words = rule.rule.split()
    values = {"-s": crossing.src, "-d": crossing.dst, "-i": crossing.iif, "-o": crossing.oif, "-p": proto}
    for i, word in enumerate(words[:-1]):
        if word not in values:
            continue
        negated = i > 0 and words[i - 1] == "!"
        if _match(word, words[i + 1], values[word]) == negated:
            return False
    return True


def _match(option: str, wanted: str, value: str | None) -> bool:
    if value is None:
        return option in ("-i", "-o")  # a chain with no such device (INPUT has no -o): iptables refuses it
    if option in ("-s", "-d"):
        try:
            return ipaddress.IPv4Address(value) in ipaddress.IPv4Network(wanted, strict=False)
        except ValueError:
            return True
    if option in ("-i", "-o") and wanted.endswith("+"):
        return value.startswith(wanted[:-1])
    if option == "-p":
        return wanted in (value, "all")
    return wanted == value


def blamed(rules: dict[str, list[RuleCount]], forward: Path, reply: Path | None,
           kind: str) -> tuple[Crossing, RuleCount] | None:
    """The first chain on the way there, then back, where a dropping rule that fits the packet counted."""
    for crossing in [*crossings(forward), *crossings(reply, back=True)]:
        for rule in rules.get(crossing.ns, ()):
            if rule.target in DROPPING and rule.packets > 0 and fits(rule, crossing, PROTOCOLS.get(kind, "icmp")):
                return crossing, rule
    return None


@dataclass(frozen=True)
class Finding:
    """The namespace where a probe's packet stopped, why, and the evidence that says so."""

    where: str | None
    why: str
    evidence: dict = field(default_factory=dict)
    seen: str = "no-answer"  # what the probe's source sees of it: its reason code
    reason: str = ""  # the check's reason as the evidence corrects it: "filtered" for a REJECT's "refused"
    stop: Crossing | None = None  # where a rule stopped it, for drawing the path cut there

    def as_json(self) -> dict:
        return {"where": self.where, "why": self.why, "evidence": self.evidence}


@dataclass
class Observation:
    """Everything read around one probe."""

    forward: Path
    reply: Path | None = None
    moved: dict[str, dict[str, int]] = field(default_factory=dict)  # counters delta, per namespace
    rules: dict[str, list[RuleCount]] = field(default_factory=dict)  # rules that counted, per namespace
    all_rules: dict[str, list[RuleCount]] = field(default_factory=dict)  # every rule, after the probe
    port: int | None = None
    flows: list[Flow] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)  # "IP_INADDRERRORS in ip_error"


def on_path(forward: Path, reply: Path | None) -> set[str]:
    """The namespaces a packet and its reply pass through, bridges crossed included."""
    hops = [*forward.hops, *(reply.hops if reply else ())]
    return {hop.ns for hop in hops} | {hop.bridged[0] for hop in hops if hop.bridged}


def counted_drop(rules: dict[str, list[RuleCount]], where: set[str]) -> tuple[str, RuleCount] | None:
    """A filter rule or policy in one of the namespaces `where` that dropped the probe, by its counter."""
    for ns, counted in rules.items():
        if ns not in where:
            continue
        for rule in counted:
            if rule.target in DROPPING:
                return ns, rule
    return None


def confirms(hop: Hop, moved: dict[str, dict[str, int]], *, reply_of: str | None = None) -> bool:
    """True when `hop`'s namespace counted the drop the walk predicts there."""
    seen = moved.get(hop.ns, {})
    if hop.kernel_reason == "IP_INADDRERRORS":
        return seen.get("Ip.InAddrErrors", 0) > 0
    if hop.kernel_reason == "IP_INNOROUTES":
        return seen.get("Ip.InNoRoutes", 0) > 0
    if hop.arrived_on is None and reply_of is not None:  # the reply's sender: did the request arrive?
        if hop.kernel_reason == "NEIGH_FAILED":  # the reply leaves, towards a link where nobody has its address
            return seen.get("Icmp.InEchos" if reply_of == "ping" else "Ip.InDelivers", 0) > 0
        if reply_of == "ping":
            return seen.get("Icmp.InEchos", 0) > seen.get("Icmp.OutEchoReps", 0)
        return seen.get("Ip.InDelivers", 0) > 0 and (seen.get("Ip.OutNoRoutes", 0) > 0 or hop.action != "dropped"
                                                       or hop.kernel_reason == "NEIGH_FAILED")
    return seen.get("Ip.InReceives", 0) > 0 or hop.arrived_on is None


def explain(kind: str, reason: str, detail: str, seen: Observation, wiring: Wiring, size: int | None = None) -> Finding:
    """Why a probe of `kind` came out as it did (`reason`, `detail`: what the source saw;
    `size`: a ping's payload, sent with "don't fragment")."""
    forward, reply = seen.forward, seen.reply
    evidence = _evidence_of(seen)
    end = forward.end
    if reason in ("reply", "connected") or reason.startswith("HTTP"):
        if end is not None and end.action == "left":
            return Finding(end.ns, _("answered from beyond {ns}'s {dev}").format(ns=end.ns, dev=end.lookup.dev),
                           evidence)
        where = end.ns if end else None
        return Finding(where, _("answered by {ns}").format(ns=where), evidence)
    if reason == "no-route" and forward.hops:
        first = forward.hops[0]
        why = _("{ns} has no route to {dst}").format(ns=first.ns, dst=forward.dst)
        return Finding(first.ns, why, {**evidence, "route": first.lookup.as_json()})
    if reason == "too-big" and forward.hops:
        narrow = _too_big(seen, wiring)  # a router on the way could not forward it, and told the source
        if narrow is not None:
            return narrow
        first = forward.hops[0]
        dev = first.lookup.dev or "?"
        mtu = wiring.mtu(first.ns, dev)
        if size is not None and mtu is not None and size + 28 <= mtu:  # (20 bytes of IP, 8 of ICMP)
            why = _("{ns} refuses to send it: its {dev} takes {mtu} bytes, but an earlier “fragmentation needed” "
                    "taught it a smaller MTU for the path to {dst}, which the kernel keeps for a while (`ip route "
                    "get {dst}` in {ns} shows it)").format(ns=first.ns, dev=dev, mtu=mtu, dst=forward.dst)
        else:
            why = _("{ns} refuses to send it: it is larger than the MTU of {dev} ({mtu}) and may not be "
                    "fragmented").format(ns=first.ns, dev=dev, mtu=mtu or "?")
        return Finding(first.ns, why, {**evidence, "route": first.lookup.as_json()})
    if reason == "no-answer":
        narrow = _too_big(seen, wiring)
        if narrow is not None:
            return narrow
    rule = blamed(seen.rules, forward, reply, kind)
    if rule is not None:
        return _rule_finding(*rule, reason, evidence, wiring)
    if reason == "refused":
        return _refused(forward, seen, evidence, wiring)
    if reason in ("host-unreachable", "net-unreachable", "filtered") and "from " in detail:
        sender = detail.rsplit("from ", 1)[1].strip()
        owners = wiring.owner(sender)
        broken = forward.broken
        if broken is not None and broken.ns in owners:
            return Finding(broken.ns, broken.problem, {**evidence, "route": broken.lookup.as_json()})
        where = owners[0] if owners else None
        return Finding(where, _("{ns} answered: {answer}").format(ns=where or sender, answer=detail.split(",")[0]),
                       evidence)
    dropped = counted_drop(seen.rules, on_path(forward, reply))
    if dropped is not None:
        ns, rule = dropped
        why = (_("dropped by {table} {chain} policy {target} in {ns}") if rule.rule.startswith("policy") else
               _("dropped by {table} {chain} the rule `{rule}` in {ns}")).format(
            table=rule.table, chain=rule.chain, target=rule.target, rule=rule.rule, ns=ns)
        return Finding(ns, why, {**evidence, "rule": rule.describe()})
    broken = forward.broken
    if broken is not None and broken.kernel_reason == "BRIDGE_HAIRPIN" and any(
            rule.table == "nat" and rule.target == "DNAT" for rule in seen.rules.get(broken.ns, ())):
        # a bridged frame counts in no IP counter: the DNAT that counted it is the proof it got there
        return Finding(broken.ns, broken.problem, {**evidence, "route": broken.lookup.as_json()})
    if broken is not None and confirms(broken, seen.moved):
        return Finding(broken.ns, broken.problem, {**evidence, "route": broken.lookup.as_json()})
    if forward.delivered and reply is not None and reply.broken is not None:
        back = reply.broken
        if confirms(reply.hops[0], seen.moved, reply_of=kind):
            arrived = _("reached {ns}").format(ns=end.ns) if end else _("arrived")
            return Finding(back.ns, _("{arrived}; {no_way_back}{unmasked}").format(
                arrived=arrived, no_way_back=_no_way_back(back, reply), unmasked=_unmasked(forward, reply, seen)),
                           {**evidence, "route": back.lookup.as_json()})
    if seen.drops:
        return Finding(None, _("the kernel dropped it: {reason}").format(reason=seen.drops[0]), evidence)
    return Finding(None, _("no counter, route or rule shows where it went"), evidence)


ANSWERED = ("answer", "not-found", "server-failure")  # a dns check's reasons that are the server's own answer


@dataclass(frozen=True)
class Asked:
    """A name looked up from `ns` as its programs look it up: the resolv.conf they read (its
    path as they see it), its first nameserver, the addresses that came back, and, after a
    refusal, the UDP sockets bound to that nameserver's port 53 in each namespace."""

    ns: str
    name: str
    resolv: str
    server: str | None
    answer: tuple[str, ...] = ()
    listening: dict[str, list[str]] = field(default_factory=dict)

    def read(self) -> dict:
        line = f"{self.resolv}: nameserver {self.server}" if self.server else f"{self.resolv}: no nameserver"
        return {"resolv.conf": [line]}


def explain_dns(asked: Asked, reason: str, detail: str, seen: Observation, wiring: Wiring) -> Finding:
    """Why a name lookup came out as it did: the nameserver's answer (and which namespace
    answered), or why the query had none (explain's verdict on its UDP packet, and for a
    refusal, where a server does listen on that address)."""
    if asked.server is None:
        return Finding(asked.ns, _("{path} in {ns} names no nameserver, so a program there has nobody to ask").format(
            path=asked.resolv, ns=asked.ns), asked.read())
    end = seen.forward.end
    if reason in ANSWERED:
        if end is not None and end.action == "left":
            at = _("{server}, beyond {ns}'s {dev},").format(server=asked.server, ns=end.ns, dev=end.lookup.dev)
        else:
            at = _("{server} in {ns}").format(server=asked.server, ns=end.ns if end else "?")
        found = {**_evidence_of(seen), **asked.read()}
        if reason == "answer":
            why = _("{at} answered: {name} is {addresses}").format(at=at, name=asked.name,
                                                                   addresses=", ".join(asked.answer))
            found["answer"] = list(asked.answer)
        elif reason == "not-found":
            why = _("{at} answered that {name} does not exist (NXDOMAIN)").format(at=at, name=asked.name)
        else:
            why = _("{at} answered, but with no address for {name}: the server could not find one").format(
                at=at, name=asked.name)
        return Finding(end.ns if end else None, why, found)
    finding = explain("dns", reason, detail, seen, wiring)
    found = {**finding.evidence, **asked.read()}
    if reason != "refused" or finding.stop is not None or "rule" in finding.evidence:
        return replace(finding, evidence=found)
    where, why, server = finding.where, finding.why, asked.server
    loopback = server.startswith("127.")
    if loopback and where == asked.ns:
        why += _("; {server} is {ns}'s own loopback, so the query never left {ns}").format(server=server, ns=where)
    elsewhere = sorted(ns for ns, held in asked.listening.items() if held and ns != where)
    if loopback and elsewhere:
        why += _("; a server listens on {server}:53 in {others}, another namespace, which has a loopback of its "
                 "own").format(server=server, others=", ".join(elsewhere))
    sockets = []
    for ns, held in sorted(asked.listening.items()):
        if ns == where and not held:
            sockets.append(_("{ns}: no UDP socket on port 53 for {server}").format(ns=ns, server=server))
        elif held and (ns == where or loopback):
            sockets += [f"{ns}: {line}" for line in held]
    found["sockets"] = sockets
    return replace(finding, why=why, evidence=found)


def _too_big(seen: Observation, wiring: Wiring) -> Finding | None:
    """A router on the way that could not forward a packet larger than its next link's MTU
    with "don't fragment" set (Ip.FragFails): the packet dies there, and the "fragmentation
    needed" the router owes its sender is either sent or dropped by a rule in its own OUTPUT
    (where the router makes it). The rule dropped that message, never the probe."""
    routed = [(path, hop) for path in (seen.forward, seen.reply) for hop in (path.hops if path else ())
              if hop.action == "forwarded" and seen.moved.get(hop.ns, {}).get("Ip.FragFails")]
    if not routed:
        return None
    # the narrowest way out is where it did not fit (a request's way may be wide, its answer's not)
    path, hop = min(routed, key=lambda pair: wiring.mtu(pair[1].ns, pair[1].lookup.dev or "") or 65536)
    dev = hop.lookup.dev or "?"
    why = _("{ns} could not forward it: larger than the MTU of {dev} ({mtu}), with “don't fragment” set "
            "(Ip.FragFails)").format(ns=hop.ns, dev=dev, mtu=wiring.mtu(hop.ns, dev) or "?")
    found = {**_evidence_of(seen), "route": hop.lookup.as_json()}
    icmp = next((rule for rule in seen.rules.get(hop.ns, ()) if rule.table == "filter"
                 and rule.chain == "OUTPUT" and rule.target in DROPPING and "-p icmp" in rule.rule), None)
    if icmp is not None:
        why += _("; the “fragmentation needed” it owed {src} was dropped by {rule}, so {src} never "
                 "learns").format(src=path.src, rule=icmp.named(hop.ns))
        found["icmp"] = icmp.describe()
    elif seen.moved[hop.ns].get("Icmp.OutDestUnreachs"):
        why += _("; it sent {src} a “fragmentation needed”").format(src=path.src)
    return Finding(hop.ns, why, found)


def _evidence_of(seen: Observation) -> dict:
    """The evidence every finding carries: counters, kernel drops, conntrack, rules that counted."""
    evidence: dict = {}
    if seen.moved:
        evidence["counters"] = seen.moved
    if seen.drops:
        evidence["kernel"] = seen.drops
    if seen.flows:
        evidence["conntrack"] = [flow.text for flow in seen.flows]
    counted = [f"{ns}: {rule.describe()} (+{rule.packets})" for ns, rules in seen.rules.items() for rule in rules]
    if counted:
        evidence["rules"] = counted
    return evidence


def _rule_finding(crossing: Crossing, rule: RuleCount, reason: str, evidence: dict, wiring: Wiring) -> Finding:
    why = (_("rejected by {rule}") if rule.target == "REJECT" else _("dropped by {rule}")).format(
        rule=rule.named(crossing.ns))
    own = wiring.snapshot.namespaces[crossing.ns].link(crossing.bridge) if crossing.bridge and \
        crossing.ns in wiring.snapshot.namespaces else None
    if crossing.bridge and wiring.sysctl(crossing.ns, "net.bridge.bridge-nf-call-iptables") != "1" and \
            own is not None and own.nf_call_iptables:
        why += _(", as it crossed the bridge {bridge} (br_netfilter hands its frames to iptables: "
                 "bridge-nf-call-iptables is 0, but {bridge}'s own nf_call_iptables is 1)").format(
            bridge=crossing.bridge)
    elif crossing.bridge:
        why += _(", as it crossed the bridge {bridge} (br_netfilter hands bridged frames to iptables: "
                 "bridge-nf-call-iptables = 1)").format(bridge=crossing.bridge)
    elif crossing.back:
        why += _(" on the way back ({chain}, {src} -> {dst})").format(chain=crossing.chain, src=crossing.src,
                                                                      dst=crossing.dst)
    answer = rule.rule.split("--reject-with ")[1].split()[0] if "--reject-with" in rule.rule else ""
    if rule.target == "REJECT" and answer in REJECT_READS and reason != "no-answer":
        why += _("; the REJECT answers {answer}, which the source reads as “{reads}”").format(
            answer=answer, reads=REJECT_READS[answer])
    corrected = "filtered" if rule.target == "REJECT" and reason not in ("filtered", "no-answer") else ""
    found = {**evidence, "rule": rule.describe()}
    return Finding(crossing.ns, why, found, seen="filtered" if corrected else "no-answer", reason=corrected,
                   stop=crossing)


def _unmasked(forward: Path, reply: Path, seen: Observation) -> str:
    """Why the reply goes to an address only the first network knows: nothing rewrote the
    request's source on its way out (no SNAT or MASQUERADE counted, no flow rewritten)."""
    routers = [hop.ns for hop in forward.hops if hop.action == "forwarded"]
    nat = any(rule.table == "nat" and rule.target in ("MASQUERADE", "SNAT")
              for rules in seen.rules.values() for rule in rules)
    if not routers or reply.dst != forward.src or nat or any(flow.snat for flow in seen.flows):
        return ""
    return _(": {router} forwarded it with its source {src} unchanged (no MASQUERADE or SNAT rule rewrote it)"
             ).format(router=routers[-1], src=forward.src)


def _no_way_back(hop: Hop, reply: Path) -> str:
    if hop.arrived_on is None and hop.lookup.error:
        return _("{ns} has no route back to {dst}").format(ns=hop.ns, dst=reply.dst)
    return hop.problem


def _refused(forward: Path, seen: Observation, evidence: dict, wiring: Wiring) -> Finding:
    end = forward.end
    where = end.ns if end and end.action == "delivered" else None
    if where is None and (forward.start in wiring.owner(forward.dst) or forward.dst.startswith("127.")):
        where = forward.start  # refused by its own stack (a NAT seen in an older flow did not apply)
    target = f"{forward.dst}:{seen.port}" if seen.port else forward.dst
    why = (_("nothing listens on {target} in {ns}").format(target=target, ns=where) if where
           else _("the connection was refused"))
    dnat = [rule for rule in seen.rules.get(where or "", []) if rule.target == "DNAT"]
    note = _skipped_dnat(forward, seen, where)
    if note:
        why += f"; {note}"
    elif dnat:
        why += _("; {rule} counted it").format(rule=dnat[0].describe())
    return Finding(where, why, evidence)


def _skipped_dnat(forward: Path, seen: Observation, where: str | None) -> str:
    """A DNAT in PREROUTING for a packet the namespace itself sent: it never applies there."""
    if where is None or forward.start != where:
        return ""
    rules = seen.all_rules.get(where, [])
    prerouting = [r for r in rules if r.table == "nat" and r.chain == "PREROUTING" and r.target == "DNAT"]
    output = [r for r in rules if r.table == "nat" and r.chain == "OUTPUT" and r.target == "DNAT"]
    if prerouting and not output:
        return _("DNAT did not apply: {ns}'s own packets skip PREROUTING's nat rules "
                 "(`{rule}` counted nothing; nat OUTPUT has no DNAT)").format(ns=where, rule=prerouting[0].rule)
    return ""
