"""Probes: checks tested for real from inside a namespace.

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

from netstep.course.checks import REASON_TEXT, Check, CheckResult
from netstep.kernel import namespaces

SILENCE = 0.2  # seconds without an answer that decide an expected failure
PATIENCE = 2.0  # seconds an expected success may take


def run(checks: list[Check], path_of, internet: str) -> list[CheckResult]:
    """Run `checks` at once; `path_of(ns)` gives a namespace's file.

    Pings from one namespace share one raw socket in one thread; each tcp or http check
    has a thread of its own. How long a probe waits for an answer depends on what it
    expects: an expected failure is decided after SILENCE seconds without one (a lab's
    round trip is well under a millisecond, and its ARP gives up after 0.1 s), while an
    expected success gets PATIENCE seconds, so a loaded machine is not taken for a
    broken network.
    """
    results: list[CheckResult | None] = [None] * len(checks)
    errors: list[BaseException] = []
    groups: dict[str, list[int]] = {}
    jobs = []
    for i, check in enumerate(checks):
        if check.kind == "ping":
            groups.setdefault(check.source, []).append(i)
        else:
            jobs.append((check.source, [i]))
    jobs += list(groups.items())

    def work(source: str, indexes: list[int]) -> None:
        try:
            path = path_of(source)
            if path is not None:
                namespaces.enter(path)
            if checks[indexes[0]].kind == "ping":
                for i, result in zip(indexes, ping_all([checks[i] for i in indexes], internet), strict=True):
                    results[i] = result
            else:
                results[indexes[0]] = _connect_check(checks[indexes[0]], internet)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job, name=f"check:{job[0]}") for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return [r for r in results if r is not None]


def _wait_for(check: Check) -> float:
    return SILENCE if check.expect == "unreachable" else PATIENCE


def _address(check: Check, internet: str) -> str:
    return internet if check.target == "internet" else check.target


def _connect_check(check: Check, internet: str) -> CheckResult:
    start = time.monotonic()
    actual, reason, detail = connect(_address(check, internet), check.port or 80, _wait_for(check),
                                     http=check.kind == "http")
    return CheckResult(check, check.destination(internet), actual, reason, detail, time.monotonic() - start)


def ping_all(checks: list[Check], internet: str, interval: float = 0.1) -> list[CheckResult]:
    """ICMP echo to every check's target at once, from this thread's namespace."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    start = time.monotonic()
    idents = random.sample(range(1, 0xFFFF), len(checks))
    by_ident = dict(zip(idents, range(len(checks)), strict=True))
    verdicts: list[tuple[str, str, str] | None] = [None] * len(checks)
    done_at = [0.0] * len(checks)
    deadline = [start + _wait_for(c) for c in checks]  # set again when the first echo leaves
    sent = [False] * len(checks)
    next_send = [start] * len(checks)
    seq = 0

    def take(timeout: float) -> None:
        ready, _, _ = select.select([sock], [], [], timeout)
        while ready:
            data, (sender, _) = sock.recvfrom(2048)
            found = _read_icmp(data, sender)
            if found and found[0] in by_ident and verdicts[by_ident[found[0]]] is None:
                verdicts[by_ident[found[0]]] = found[1]
                done_at[by_ident[found[0]]] = time.monotonic()
            ready, _, _ = select.select([sock], [], [], 0)

    try:
        while any(v is None for v in verdicts):
            # What arrived while this thread was not running (a loaded machine) is read
            # before any deadline is applied: the kernel's answer counts, not our lateness.
            take(0)
            now = time.monotonic()
            for i, check in enumerate(checks):
                if verdicts[i] is not None:
                    continue
                if sent[i] and now >= deadline[i]:
                    verdicts[i] = ("unreachable", "no-answer", f"no reply within {_wait_for(check):g} s")
                    done_at[i] = now
                elif now >= next_send[i]:
                    seq += 1
                    if not sent[i]:  # the wait counts from the first echo, however late it left
                        sent[i], deadline[i] = True, now + _wait_for(check)
                    try:
                        sock.sendto(_echo(idents[i], seq), (_address(check, internet), 0))
                    except OSError as exc:
                        verdicts[i] = ("unreachable", _ERRNO_REASON.get(exc.errno or 0, "no-answer"),
                                       os.strerror(exc.errno or 0))
                        done_at[i] = now
                    next_send[i] = now + interval
            waiting = [min(deadline[i], next_send[i]) for i in range(len(checks)) if verdicts[i] is None]
            if not waiting:
                break
            take(max(0.0, min(waiting) - time.monotonic()))
    finally:
        sock.close()
    return [CheckResult(c, c.destination(internet), *v, done_at[i] - start)
            for i, (c, v) in enumerate(zip(checks, verdicts, strict=True)) if v is not None]


def _echo(ident: int, seq: int) -> bytes:
    payload = b"netstep" + struct.pack("!d", time.monotonic())
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


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


def _read_icmp(data: bytes, sender: str) -> tuple[int, tuple[str, str, str]] | None:
    """(ident, verdict) for an echo reply or an ICMP error about one of our echoes."""
    ihl = (data[0] & 0x0F) * 4
    icmp = data[ihl:]
    if len(icmp) < 8:
        return None
    kind, code = icmp[0], icmp[1]
    if kind == 0:
        return struct.unpack("!H", icmp[4:6])[0], ("reachable", "reply", f"echo reply from {sender}")
    if kind in (3, 11) and len(icmp) >= 8 + 20 + 8:
        inner = icmp[8:]
        echo = inner[(inner[0] & 0x0F) * 4:]
        if len(echo) >= 8 and echo[0] == 8:
            ident = struct.unpack("!H", echo[4:6])[0]
            if kind == 11:
                return ident, ("unreachable", "no-answer", f"Time to live exceeded, from {sender}")
            reason = _ICMP_REASON.get(code, "host-unreachable")
            return ident, ("unreachable", reason, f"{REASON_TEXT[reason].split(' (')[0]}, from {sender}")
    return None


def connect(addr: str, port: int, timeout: float = SILENCE, *, http: bool = False) -> tuple[str, str, str]:
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
