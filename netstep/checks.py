"""Checks: an expectation about reachability, tested for real from inside a namespace.

A ping is an ICMP echo sent from a raw socket that lives in the source namespace (no
`ping` process); a tcp check connects; an http check also sends a GET and reads the status
line. Each result says what was expected, what happened, and the reason the kernel gave:
no route (sendto fails at once), ARP failure (the local stack's Destination Host
Unreachable), an ICMP error from a router, a refused connection, or silence. The checks of
a step run at the same time, each in a thread of its own inside its namespace.
"""

from __future__ import annotations

import errno
import os
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from netstep import namespaces
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
TIMEOUT = 1.0


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


def run(checks: list[Check], path_of, internet: str, timeout: float = TIMEOUT) -> list[CheckResult]:
    """Run `checks` at once; `path_of(ns)` gives a namespace's file."""
    results: list[CheckResult | None] = [None] * len(checks)
    errors: list[BaseException] = []

    def one(i: int, check: Check, path: str) -> None:
        try:
            if path is not None:
                namespaces.enter(path)
            results[i] = _probe(check, internet, timeout)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i, c, path_of(c.source))) for i, c in enumerate(checks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _probe(check: Check, internet: str, timeout: float) -> CheckResult:
    addr = internet if check.target == "internet" else check.target
    start = time.monotonic()
    if check.kind == "ping":
        actual, reason, detail = ping(addr, timeout)
    else:
        actual, reason, detail = connect(addr, check.port or 80, timeout, http=check.kind == "http")
    return CheckResult(check, check.destination(internet), actual, reason, detail, time.monotonic() - start)


_ERRNO_REASON = {
    errno.ENETUNREACH: "no-route",
    errno.EHOSTUNREACH: "host-unreachable",
    errno.ECONNREFUSED: "refused",
    errno.EPERM: "filtered",
    errno.EACCES: "filtered",
}
_ICMP_REASON = {0: "net-unreachable", 1: "host-unreachable", 3: "refused", 9: "filtered", 10: "filtered",
                13: "filtered"}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(addr: str, timeout: float = TIMEOUT, interval: float = 0.2) -> tuple[str, str, str]:
    """One ICMP echo exchange (resent every `interval`) from this thread's namespace."""
    ident = random.randrange(1, 0xFFFF)
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    try:
        deadline = time.monotonic() + timeout
        seq = 0
        next_send = 0.0
        while True:
            now = time.monotonic()
            if now >= deadline:
                return "unreachable", "no-answer", f"no reply within {timeout:g} s"
            if now >= next_send:
                seq += 1
                payload = b"netstep" + struct.pack("!d", now)
                header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
                packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload
                try:
                    sock.sendto(packet, (addr, 0))
                except OSError as exc:
                    reason = _ERRNO_REASON.get(exc.errno or 0, "no-answer")
                    return "unreachable", reason, os.strerror(exc.errno or 0)
                next_send = now + interval
            ready, _, _ = select.select([sock], [], [], max(0.0, min(deadline, next_send) - time.monotonic()))
            if not ready:
                continue
            data, (sender, _) = sock.recvfrom(2048)
            verdict = _read_icmp(data, ident, sender)
            if verdict:
                return verdict
    finally:
        sock.close()


def _read_icmp(data: bytes, ident: int, sender: str) -> tuple[str, str, str] | None:
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    kind, code = icmp[0], icmp[1]
    if kind == 0 and struct.unpack("!H", icmp[4:6])[0] == ident:
        return "reachable", "reply", f"echo reply from {sender}"
    if kind in (3, 11) and len(icmp) >= 8 + 20 + 8:
        inner = icmp[8:]
        inner_ihl = (inner[0] & 0x0F) * 4
        echo = inner[inner_ihl:]
        if len(echo) >= 8 and echo[0] == 8 and struct.unpack("!H", echo[4:6])[0] == ident:
            if kind == 11:
                return "unreachable", "no-answer", f"Time to live exceeded, from {sender}"
            reason = _ICMP_REASON.get(code, "host-unreachable")
            return "unreachable", reason, f"{REASON_TEXT[reason].split(' (')[0]}, from {sender}"
    return None


def connect(addr: str, port: int, timeout: float = TIMEOUT, *, http: bool = False) -> tuple[str, str, str]:
    """Open a TCP connection (and, for http, GET /) from this thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect((addr, port))
        except TimeoutError:
            return "unreachable", "no-answer", f"no answer within {timeout:g} s"
        except OSError as exc:
            reason = _ERRNO_REASON.get(exc.errno or 0, "no-answer")
            return "unreachable", reason, os.strerror(exc.errno or 0)
        if not http:
            return "reachable", "connected", f"connected to {addr}:{port}"
        try:
            sock.sendall(f"GET / HTTP/1.0\r\nHost: {addr}:{port}\r\n\r\n".encode())
            reply = b""
            while b"\r\n" not in reply and len(reply) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            return "unreachable", "no-answer", "connected, but no HTTP answer"
        except OSError as exc:
            return "unreachable", _ERRNO_REASON.get(exc.errno or 0, "no-answer"), os.strerror(exc.errno or 0)
        status = reply.split(b"\r\n", 1)[0].decode(errors="replace")
        if not status.startswith("HTTP/"):
            return "unreachable", "no-answer", "connected, but the answer was not HTTP"
        return "reachable", f"HTTP {status.split()[1]}", status
    finally:
        sock.close()
