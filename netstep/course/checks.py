"""Checks: what a lesson expects about reachability, and what came out.

A check names a kind (ping, tcp, http, bind: can a new socket there take that address
and port, or dns: does a name resolve as the namespace's programs resolve it), a source
namespace, a target and the expected outcome, with the kernel's reason where it matters
("unreachable (host-unreachable)"). netstep.ops.probes runs them for real; a CheckResult
says what was expected, what happened and why.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from netstep.i18n import N_, _
from netstep.render import RenderMixin

KINDS = ("ping", "tcp", "http", "bind", "dns")
PROBES = KINDS[:3]  # the kinds that send a packet, which trace can follow
EXPECTS = (N_("reachable"), N_("unreachable"))  # (translated where shown)
REASONS = ("no-route", "host-unreachable", "net-unreachable", "refused", "no-answer", "filtered", "too-big", "in-use",
           "not-found", "server-failure", "not-sent")
REASON_TEXT = {  # (translated where shown)
    "no-route": N_("Network is unreachable (no route)"),
    "host-unreachable": N_("Destination Host Unreachable (ARP got no answer)"),
    "net-unreachable": N_("Destination Net Unreachable"),
    "refused": N_("Connection refused"),
    "no-answer": N_("no answer (silence)"),
    "filtered": N_("blocked by a firewall rule"),
    "too-big": N_("Message too long (larger than the path's MTU)"),
    "in-use": N_("Address already in use (another socket of the namespace holds it)"),
    "not-found": N_("no such name (the DNS server answered NXDOMAIN)"),
    "server-failure": N_("the DNS server answered, without an address (SERVFAIL or REFUSED)"),
    "not-sent": N_("the kernel would not send it (Invalid argument)"),
}


@dataclass(frozen=True)
class Condition:
    """`if host net.bridge.bridge-nf-call-iptables=1`: what a check's outcome depends on when
    the kernel decides it, not the lesson (a module such as br_netfilter loaded or not).
    Read from the lab as the check runs; a sysctl that does not exist does not hold."""

    ns: str
    key: str
    value: str

    def describe(self, seen: str | None) -> str:
        if seen is None:
            return _("{ns} has no {key}").format(ns=self.ns, key=self.key)
        return _("{key} is {value} in {ns}").format(key=self.key, value=seen, ns=self.ns)


@dataclass(frozen=True)
class Check(RenderMixin):
    """What a lesson expects: `ping netns0 -> 172.18.0.11 reachable`, or, where the kernel
    decides, `... unreachable if host KEY=VALUE else reachable` (`when` and `otherwise`)."""

    kind: str
    source: str
    target: str  # an address, or "internet" (a dns check's: the name)
    port: int | None
    expect: str
    reason: str | None = None
    line: int = 0
    # (Not compared: a check settled as its condition held is still the lesson's check.)
    when: Condition | None = field(default=None, compare=False)
    otherwise: tuple[str, str | None] | None = field(default=None, compare=False)  # where `when` does not hold
    because: str = field(default="", compare=False)  # once settled: the condition as read
    # `ping -M do -s 1472 ...`: the echo's payload in bytes, sent with Don't Fragment (None: a small echo)
    size: int | None = None
    path: str = ""  # an http check's `ADDR:PORT/PATH`: what it asks for, and reads to the last byte

    def expectation(self) -> str:
        """`unreachable (no-answer)`, with the other outcome of a check that has a condition."""
        text = _(self.expect) + (f" ({self.reason})" if self.reason else "")
        if self.when and self.otherwise:
            other, reason = self.otherwise
            text = _("{expect} if {ns} {key}={value}, else {other}").format(
                expect=text, ns=self.when.ns, key=self.when.key, value=self.when.value,
                other=_(other) + (f" ({reason})" if reason else ""))
        return text

    def settled(self, seen: str | None) -> Check:
        """This check with the expectation that `seen`, the condition's sysctl as read in
        the lab (None: no such sysctl), selects; a check without a condition is itself."""
        if self.when is None or self.otherwise is None:
            return self
        expect, reason = (self.expect, self.reason) if seen == self.when.value else self.otherwise
        return replace(self, expect=expect, reason=reason, otherwise=None, because=self.when.describe(seen))

    def describe(self, internet: str | None = None) -> str:
        if self.kind == "dns":
            return f"dns {self.source} {self.target}"
        kind = f"{self.kind} -M do -s {self.size}" if self.size is not None else self.kind
        return f"{kind} {self.source} -> {self.destination(internet)}"

    def destination(self, internet: str | None = None) -> str:
        addr = internet if (self.target == "internet" and internet) else self.target
        return (f"{addr}:{self.port}" if self.port else addr) + self.path


@dataclass(frozen=True)
class CheckResult(RenderMixin):
    check: Check
    to: str
    actual: str  # reachable | unreachable
    reason: str  # one of REASONS, or "reply" / "connected" / "HTTP 200"
    detail: str
    elapsed: float
    concluded: str = ""  # "answer", "error" (the kernel refused at once), "evidence" or "timeout"
    where: str | None = None  # the namespace where the packet stopped (or that answered)
    why: str = ""
    evidence: dict | None = None  # the counters, route lookup, rule that decided

    @property
    def ok(self) -> bool:
        if self.actual != self.check.expect:
            return False
        return self.check.reason is None or self.check.reason == self.reason

    def as_json(self, lesson: str = "", step: str = "") -> dict:
        return {
            "lesson": lesson, "step": step, "from": self.check.source, "to": self.to,
            "kind": self.check.kind, "expect": self.check.expect, "actual": self.actual,
            "reason": self.reason, "detail": self.detail, "ok": self.ok,
            "ms": round(self.elapsed * 1000, 1), "concluded": self.concluded, "where": self.where, "why": self.why,
            "evidence": self.evidence, **({"because": self.check.because} if self.check.because else {}),
        }
