"""Where a packet died and why, from the kernel's evidence alone.

A Finding names the namespace, says why in a sentence, and keeps the evidence that
decided: the counters that moved, the route lookup, the rule that counted the packet,
the kernel's drop reason. It is built from what the kernel reported around one probe
(never from what a lesson expected), in this order of proof: an error the kernel
answered with, a rule that counted a drop, a namespace whose routing cannot pass the
packet on (forward path, then the reply's path) confirmed by its counters, and the
kernel's own drop reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netstep.state.evidence import Flow, RuleCount
from netstep.state.paths import Hop, Path, Wiring

DROPPING = ("DROP", "REJECT")


@dataclass(frozen=True)
class Finding:
    """The namespace where a probe's packet stopped, why, and the evidence that says so."""

    where: str | None
    why: str
    evidence: dict = field(default_factory=dict)
    seen: str = "no-answer"  # what the probe's source sees of it: its reason code

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


def counted_drop(rules: dict[str, list[RuleCount]]) -> tuple[str, RuleCount] | None:
    """A filter rule or policy that dropped the probe, by its counter."""
    for ns, counted in rules.items():
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


def explain(kind: str, reason: str, detail: str, seen: Observation, wiring: Wiring) -> Finding:
    """Why a probe of `kind` came out as it did (`reason`, `detail`: what the source saw)."""
    forward, reply = seen.forward, seen.reply
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
    end = forward.end
    if reason in ("reply", "connected") or reason.startswith("HTTP"):
        if end is not None and end.action == "left":
            return Finding(end.ns, f"answered from beyond {end.ns}'s {end.lookup.dev}", evidence)
        where = end.ns if end else None
        return Finding(where, f"answered by {where}", evidence)
    if reason == "no-route" and forward.hops:
        first = forward.hops[0]
        why = f"{first.ns} has no route to {forward.dst}"
        return Finding(first.ns, why, {**evidence, "route": first.lookup.as_json()})
    if reason == "refused":
        return _refused(forward, seen, evidence)
    if reason in ("host-unreachable", "net-unreachable", "filtered") and "from " in detail:
        sender = detail.rsplit("from ", 1)[1].strip()
        owners = wiring.owner(sender)
        broken = forward.broken
        if broken is not None and broken.ns in owners:
            return Finding(broken.ns, broken.problem, {**evidence, "route": broken.lookup.as_json()})
        where = owners[0] if owners else None
        return Finding(where, f"{where or sender} answered: {detail.split(',')[0]}", evidence)
    dropped = counted_drop(seen.rules)
    if dropped is not None:
        ns, rule = dropped
        what = f"policy {rule.target}" if rule.rule.startswith("policy") else f"the rule `{rule.rule}`"
        why = f"dropped by {rule.table} {rule.chain} {what} in {ns}"
        return Finding(ns, why, {**evidence, "rule": rule.describe()})
    broken = forward.broken
    if broken is not None and confirms(broken, seen.moved):
        return Finding(broken.ns, broken.problem, {**evidence, "route": broken.lookup.as_json()})
    if forward.delivered and reply is not None and reply.broken is not None:
        back = reply.broken
        if confirms(reply.hops[0], seen.moved, reply_of=kind):
            arrived = f"reached {end.ns}" if end else "arrived"
            return Finding(back.ns, f"{arrived}; {_no_way_back(back, reply)}",
                           {**evidence, "route": back.lookup.as_json()})
    if seen.drops:
        return Finding(None, f"the kernel dropped it: {seen.drops[0]}", evidence)
    return Finding(None, "no counter, route or rule shows where it went", evidence)


def _no_way_back(hop: Hop, reply: Path) -> str:
    if hop.arrived_on is None and hop.lookup.error:
        return f"{hop.ns} has no route back to {reply.dst}"
    return hop.problem


def _refused(forward: Path, seen: Observation, evidence: dict) -> Finding:
    end = forward.end
    where = end.ns if end and end.action == "delivered" else None
    target = f"{forward.dst}:{seen.port}" if seen.port else forward.dst
    why = f"nothing listens on {target} in {where}" if where else "the connection was refused"
    dnat = [rule for rule in seen.rules.get(where or "", []) if rule.target == "DNAT"]
    note = _skipped_dnat(forward, seen, where)
    if note:
        why += f"; {note}"
    elif dnat:
        why += f"; {dnat[0].describe()} counted it"
    return Finding(where, why, evidence)


def _skipped_dnat(forward: Path, seen: Observation, where: str | None) -> str:
    """A DNAT in PREROUTING for a packet the namespace itself sent: it never applies there."""
    if where is None or forward.start != where:
        return ""
    rules = seen.all_rules.get(where, [])
    prerouting = [r for r in rules if r.table == "nat" and r.chain == "PREROUTING" and r.target == "DNAT"]
    output = [r for r in rules if r.table == "nat" and r.chain == "OUTPUT" and r.target == "DNAT"]
    if prerouting and not output:
        return (f"DNAT did not apply: {where}'s own packets skip PREROUTING's nat rules "
                f"(`{prerouting[0].rule}` counted nothing; nat OUTPUT has no DNAT)")
    return ""
