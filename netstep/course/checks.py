"""Checks: what a lesson expects about reachability, and what came out.

A check names a kind (ping, tcp, http), a source namespace, a target and the expected
outcome, with the kernel's reason where it matters ("unreachable (host-unreachable)").
netstep.ops.probes runs them for real; a CheckResult says what was expected, what
happened and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from netstep.render import RenderMixin

KINDS = ("ping", "tcp", "http")
EXPECTS = ("reachable", "unreachable")
REASONS = ("no-route", "host-unreachable", "net-unreachable", "refused", "no-answer", "filtered")
REASON_TEXT = {
    "no-route": "Network is unreachable (no route)",
    "host-unreachable": "Destination Host Unreachable (ARP got no answer)",
    "net-unreachable": "Destination Net Unreachable",
    "refused": "Connection refused",
    "no-answer": "no answer (silence)",
    "filtered": "blocked by a firewall rule",
}


@dataclass(frozen=True)
class Check(RenderMixin):
    """What a lesson expects: `ping netns0 -> 172.18.0.11 reachable`."""

    kind: str
    source: str
    target: str  # an address, or "internet"
    port: int | None
    expect: str
    reason: str | None = None
    line: int = 0

    def describe(self, internet: str | None = None) -> str:
        return f"{self.kind} {self.source} -> {self.destination(internet)}"

    def destination(self, internet: str | None = None) -> str:
        addr = internet if (self.target == "internet" and internet) else self.target
        return f"{addr}:{self.port}" if self.port else addr


@dataclass(frozen=True)
class CheckResult(RenderMixin):
    check: Check
    to: str
    actual: str  # reachable | unreachable
    reason: str  # one of REASONS, or "reply" / "connected" / "HTTP 200"
    detail: str
    elapsed: float

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
            "ms": round(self.elapsed * 1000, 1),
        }
