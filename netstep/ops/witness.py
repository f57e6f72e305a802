"""A witness for a step's checks: it proves a lost probe lost, from the kernel's own records.

Before the probes go, each expected failure's path is walked (netstep.state.paths): where
would the kernel drop it, there or on the way back? That is a prediction. While the
probes are in flight the witness re-reads every namespace's SNMP counters (about 30 µs
each), the ARP table where a next hop has no owner on its link, and, where the path
crosses filter rules that drop (routed or bridged), their counters; a prediction
confirmed by the namespace that should have recorded the drop concludes the check at
once, with that evidence. What nothing records is left to the probe's timeout. Rule
counters are read before the probes in every namespace that has rules, so that any
failing check, expected to fail or not, names the rule that stopped it as `trace` does.

Several checks run at once and share namespaces, so a counter proves a check's drop only
when it moved at least once for every check that predicts it.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import Counter as Tally
from dataclasses import dataclass, replace

from netstep.course.checks import Check, CheckResult
from netstep.state import evidence
from netstep.state.evidence import ArpTables, Counters, Flow, RuleCount
from netstep.state.explain import DROPPING, PROTOCOLS, Finding, Observation, crossings, explain, fits, on_path
from netstep.state.paths import Path, Wiring, walk
from netstep.state.snapshot import Snapshot

STEADY = 0.001  # seconds a reply-not-sent reading must last (the reply is sent in the same softirq)


@dataclass(frozen=True)
class Watch:
    """The counter that proves one predicted drop: `key` in `ns` (minus `less`) moves."""

    ns: str
    key: str
    less: str = ""  # a counter whose moves cancel `key`'s (an echo received, its reply sent)

    def count(self, moved: dict[str, dict[str, int]]) -> int:
        seen = moved.get(self.ns, {})
        return seen.get(self.key, 0) - (seen.get(self.less, 0) if self.less else 0)


class Witness:
    """Watches the probes of `checks` in `lab`, whose configuration `snapshot` holds."""

    def __init__(self, lab, checks: list[Check], snapshot: Snapshot, lookups) -> None:
        self.lab = lab
        self.checks = checks
        self.wiring = Wiring(snapshot)
        self.snapshot = snapshot
        self.lookups = lookups
        # Planned now: the expected failures, which the witness may conclude. Any other check's
        # path is walked only if it fails (30 containers make 870 checks that succeed).
        # (A bind check sends nothing, and a dns check's target is a name: no path to plan.)
        self._paths = {i: self._plan(c) for i, c in enumerate(checks)
                       if c.expect == "unreachable" and c.kind not in ("bind", "dns")}
        self.watches = {i: self._watch(checks[i], *p) for i, p in self._paths.items()}
        self.needed = Tally(w for w in self.watches.values() if w is not None)
        # Where a next hop's ARP cannot be answered (nobody on the link has the address):
        # (namespace, address, device), proven by the ARP table once the request is out.
        self.asked = {i: (hop.ns, hop.lookup.gateway or hop.lookup.dst, hop.lookup.dev or "")
                      for i, (fwd, _) in self._paths.items()
                      if (hop := fwd.broken) and hop.kernel_reason == "NEIGH_FAILED"}
        self.arp = ArpTables({ns: lab.path_of(ns) for ns, _, _ in self.asked.values()})
        planned = [fwd for fwd, _ in self._paths.values()]
        names = [ns for ns in lab.namespace_names() if ns in snapshot.namespaces]
        # Rule counters cost a process per namespace: read where rules are, before the probes, so
        # that any failing check (expected to or not) can name the rule that stopped it.
        self.ruled = [ns for ns in names if snapshot.namespaces[ns].rules]
        # (namespace, chain) -> how many checks' packets pass it, where a rule there can drop them
        self.crossed = Tally((c.ns, c.chain) for fwd in planned for c in crossings(fwd)
                             if c.chain != "OUTPUT" and _drops(snapshot, c.ns))
        self.counters = Counters({ns: lab.path_of(ns) for ns in names})
        self.rules_before = self._rules()
        self.before = self.counters.read()
        self._lock = threading.Lock()
        self._moved: dict[str, dict[str, int]] = {}
        self._read_at = 0.0
        self._steady: dict[Watch, float] = {}
        self._rules_after: dict[str, list[RuleCount]] | None = None
        self._rules_at = 0.0

    def _plan(self, check: Check) -> tuple[Path, Path | None]:
        dst = self.lab.internet if check.target == "internet" else check.target
        src = self.lookups(check.source, dst, None, None).prefsrc or ""
        forward = walk(self.wiring, self.lookups, check.source, src, dst)
        if not forward.delivered or not src:
            return forward, None
        return forward, walk(self.wiring, self.lookups, forward.end.ns, dst, src)

    def path(self, index: int) -> tuple[Path, Path | None]:
        """Check `index`'s path there and back, as the kernel routes it."""
        if index not in self._paths:
            self._paths[index] = self._plan(self.checks[index])
        return self._paths[index]

    @staticmethod
    def _watch(check: Check, forward: Path, reply: Path | None) -> Watch | None:
        broken = forward.broken
        if broken is not None:
            if broken.arrived_on is None:
                return None  # the source itself cannot send: the probe fails at once
            key = {"IP_INADDRERRORS": "Ip.InAddrErrors", "IP_INNOROUTES": "Ip.InNoRoutes"}.get(broken.kernel_reason)
            return Watch(broken.ns, key) if key else None
        if reply is None or reply.broken is None:
            return None
        back = reply.broken
        if back.arrived_on is None:  # the destination cannot answer: did the request arrive?
            if check.kind == "ping":
                less = "" if back.kernel_reason == "NEIGH_FAILED" else "Icmp.OutEchoReps"
                return Watch(back.ns, "Icmp.InEchos", less)
            return Watch(back.ns, "Tcp.InSegs")  # its SYN arrived; no answer (SYN-ACK or RST) can leave
        key = {"IP_INADDRERRORS": "Ip.InAddrErrors", "IP_INNOROUTES": "Ip.InNoRoutes"}.get(back.kernel_reason)
        return Watch(back.ns, key) if key else None

    def _rules(self) -> dict[str, list[RuleCount]]:
        return {ns: evidence.read_rule_counts(lambda argv, ns=ns: self.lab.exec(ns, argv)) for ns in self.ruled}

    def _read(self) -> dict[str, dict[str, int]]:
        now = time.monotonic()
        if now - self._read_at > 0.0005:
            self._moved = evidence.delta(self.before, self.counters.read())
            self._read_at = now
        return self._moved

    def conclude(self, index: int) -> Finding | None:
        """A proof that check `index`'s probe was dropped, or None (not yet, or nothing to show it)."""
        with self._lock:
            moved = self._read()
            asked = self.asked.get(index)
            if asked is not None and self.arp.unanswered(*asked):
                found = self._finding(index, moved)
                ns, address, dev = asked
                asking = f"{ns}: {address} dev {dev} INCOMPLETE (ARP asked; nobody there has it)"
                return replace(found, seen="host-unreachable", evidence={**found.evidence, "neighbour": asking})
            watch = self.watches.get(index)
            if watch is not None and watch.count(moved) >= self.needed[watch]:
                if not watch.less:
                    return self._finding(index, moved)
                first = self._steady.setdefault(watch, time.monotonic())
                if time.monotonic() - first >= STEADY:
                    return self._finding(index, moved)
            elif watch is not None:
                self._steady.pop(watch, None)
            # the chains this probe passes where a rule can drop it, once the packet got there
            # (a bridged frame is no IP packet received: only the rules' counters tell)
            mine = [c for c in crossings(self.path(index)[0]) if (c.ns, c.chain) in self.crossed
                    and (c.bridge or moved.get(c.ns, {}).get("Ip.InReceives"))]
            if mine:
                counted = self._counted()
                proto = PROTOCOLS.get(self.checks[index].kind, "icmp")
                for c in mine:
                    drops = sum(rule.packets for rule in counted.get(c.ns, [])
                                if rule.target in DROPPING and fits(rule, c, proto))
                    if drops >= self.crossed[c.ns, c.chain]:
                        return self._finding(index, moved)
            return None

    def _counted(self, *, every: float = 0.005) -> dict[str, list[RuleCount]]:
        """The rules that counted since the probes went (read again at most every `every` s)."""
        if self._rules_after is None or time.monotonic() - self._rules_at >= every:
            self._rules_after = self._rules()
            self._rules_at = time.monotonic()
        return {ns: c for ns in self.ruled if (c := evidence.counted(self.rules_before[ns], self._rules_after[ns]))}

    def _finding(self, index: int, moved: dict[str, dict[str, int]], result: CheckResult | None = None) -> Finding:
        check = self.checks[index]
        forward, reply = self.path(index)
        flows: list[Flow] = []
        counted = self._counted(every=0.0 if result else 0.005) if self.ruled else {}
        if result is not None and self.ruled:  # finished: NAT, which conntrack recorded, reroutes the reply
            flows = flows_of(self.lab, self.ruled, check, forward.src, forward.dst) if forward.src else []
            sent = counted_dnat(counted, check.source, forward.dst, check.port)
            if flows or sent:
                forward, reply = nat_paths(self.wiring, self.lookups, check.source, forward.dst, flows, sent)
        crossed = on_path(forward, reply)
        seen = Observation(forward, reply, moved={ns: c for ns, c in moved.items() if ns in crossed},
                           rules={ns: c for ns, c in counted.items() if ns in crossed},
                           all_rules=self._rules_after or {}, port=check.port, flows=flows)
        reason, detail = (result.reason, result.detail) if result else ("no-answer", "")
        return explain(check.kind, reason, detail, seen, self.wiring, size=check.size)

    def explain(self, index: int, result: CheckResult) -> Finding:
        """Where and why a finished probe failed (or was answered), from the evidence now."""
        with self._lock:
            self._read_at = 0.0
            return self._finding(index, self._read(), result)

    def close(self) -> None:
        self.counters.close()
        self.arp.close()


def counted_dnat(counted: dict[str, list[RuleCount]], source: str, dst: str, port: int | None) -> dict[str, str]:
    """{namespace: new destination} for each DNAT rule that counted a packet to `dst` (and
    `port`): in `source`'s nat OUTPUT, or another namespace's nat PREROUTING. What conntrack
    does not keep of a packet dropped before it left (an entry never confirmed)."""
    out: dict[str, str] = {}
    for ns, rules in counted.items():
        for rule in rules:
            words = rule.rule.split()
            chain = "OUTPUT" if ns == source else "PREROUTING"
            if (rule.table, rule.chain, rule.target) != ("nat", chain, "DNAT") or "--to-destination" not in words \
                    or ns in out:
                continue
            if "-d" in words:
                i = words.index("-d")
                inside = ipaddress.IPv4Address(dst) in ipaddress.IPv4Network(words[i + 1], strict=False)
                if inside == (i > 0 and words[i - 1] == "!"):
                    continue
            if "--dport" in words and port is not None and words[words.index("--dport") + 1] != str(port):
                continue
            to = words[words.index("--to-destination") + 1]
            out[ns] = to.rsplit(":", 1)[0] if to.count(":") == 1 else to
    return out


def nat_paths(wiring: Wiring, lookup, source: str, dst: str, flows: list[Flow],
              sent: dict[str, str] | None = None) -> tuple[Path, Path | None]:
    """The probe's path from `source` to `dst` and its reply's, NAT rewrites from `flows`
    (and `sent`, counted_dnat's, where no flow says) applied."""
    src = lookup(source, dst, None, None).prefsrc or ""
    dnat = {**(sent or {}), **{f.ns: f.dnat for f in flows if f.dnat}}
    forward = walk(wiring, lookup, source, src, dst, dnat=dnat)
    if not forward.delivered:
        return forward, None
    snat = next((f.snat for f in flows if f.snat), None)
    end = forward.end
    answering = end.lookup.dst  # the address that answers (after DNAT)
    reply = walk(wiring, lookup, end.ns, answering, snat or src)
    if snat and reply.delivered and reply.end.ns != source:  # back at the namespace that rewrote it
        rest = walk(wiring, lookup, reply.end.ns, answering, src, arrived_on=reply.end.arrived_on)
        reply = Path(reply.start, reply.src, src, reply.hops[:-1] + rest.hops)
    return forward, reply


def flows_of(lab, names: list[str], check: Check, src: str, dst: str) -> list[Flow]:
    """The conntrack entries of `check`'s probe from `src` to `dst`, in the namespaces `names`."""
    proto = PROTOCOLS.get(check.kind, "tcp")
    found = []
    for ns in names:
        text = lab.exec(ns, ["conntrack", "-L"]).stdout
        found += [f for f in evidence.parse_conntrack(ns, text) if f.proto == proto and f.original == (src, dst)
                  and (check.port is None or (f.ports and f.ports[1] == check.port))]
    return found


def _drops(snapshot: Snapshot, ns: str) -> bool:
    """True when `ns` has a filter rule or policy that can drop a packet."""
    state = snapshot.namespaces.get(ns)
    return bool(state) and any(rule.startswith("filter ") and any(f" {t}" in rule for t in DROPPING)
                               for rule in state.rules)
