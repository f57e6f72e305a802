"""Checks: what a lesson expects about reachability, and what came out.

A check names a kind (ping, tcp, http, bind: can a new socket there take that address
and port, or dns: does a name resolve as the namespace's programs resolve it), a source
namespace, a target and the expected outcome, with the kernel's reason where it matters
("unreachable (host-unreachable)"). netstep.ops.probes runs them for real; a CheckResult
says what was expected, what happened and why.
"""

from __future__ import annotations

import re
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

# What a probe says it saw (CheckResult.detail), kept in English as data (--json, the cache)
# and translated where shown by `said`; anything else (the kernel's own words, an HTTP
# status line) is shown as the kernel and the tools give it.
DETAILS = (
    N_("echo reply from {sender}"), N_("Time to live exceeded, from {sender}"), N_("{reason}, from {sender}"),
    N_("no reply within {seconds} s"), N_("no answer within {seconds} s"), N_("connected to {address}"),
    N_("no reply: the kernel's counters show it was lost"),
    N_("no ARP answer can come: nobody on the link has the address"), N_("the kernel's evidence shows it was lost"),
    N_("connected, but no HTTP answer"), N_("connected, but the answer stopped after {count} bytes"),
    N_("connected, but the answer was not HTTP"), N_("the answer ended after {got} of {length} bytes"),
    N_("{status}, {count} bytes"), N_("{detail} (the answer of a REJECT rule)"), N_("bound {address}"),
    N_("no nameserver in {path}"), N_("no answer from {server} within {seconds} s"),
    N_("{server} says {name} does not exist (NXDOMAIN)"), N_("{server} answered {rcode} with no address"),
    N_("{name} is {addresses} (answered by {server})"),
)
_NUMBERS = ("seconds", "count", "got", "length")


def _pattern(template: str) -> re.Pattern:
    parts, last = [], 0
    for match in re.finditer(r"\{(\w+)\}", template):
        parts.append(re.escape(template[last:match.start()]))
        name = match.group(1)
        parts.append(f"(?P<{name}>[0-9.]+)" if name in _NUMBERS else f"(?P<{name}>.+?)")
        last = match.end()
    return re.compile("".join(parts) + re.escape(template[last:]) + r"\Z", re.S)


_PATTERNS = [(template, _pattern(template)) for template in DETAILS]


def said(detail: str) -> str:
    """A probe's `detail` in the chosen language: its sentence translated, its fields (an
    address, a count, the kernel's words) as they are."""
    for template, pattern in _PATTERNS:
        match = pattern.match(detail)
        if match:
            fields = match.groupdict()
            if "detail" in fields:
                fields["detail"] = said(fields["detail"])
            return _(template).format(**fields)
    return detail


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
