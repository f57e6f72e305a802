"""Probes: checks tested for real from inside a namespace.

A ping is an ICMP echo sent from a raw socket that lives in the source namespace (no
`ping` process); a tcp check connects; an http check also sends a GET and reads the status
line; a bind check only binds a new socket to the address and port, as a second process
in the namespace would, and names the process whose socket holds them. Each result says
what was expected, what happened, and the reason the kernel gave:
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
import sys
import threading
import time
from contextlib import suppress
from dataclasses import replace

from netstep.course.checks import REASON_TEXT, Check, CheckResult
from netstep.i18n import _
from netstep.kernel import namespaces
from netstep.ops import resolve

SILENCE = 0.2  # seconds without an answer that decide an expected failure (when no counter proves it sooner)
POLL = 0.001  # seconds between two readings of the witness's counters
PATIENCE = 2.0  # seconds an expected success may take
PROVEN = {"no-answer": "no reply: the kernel's counters show it was lost",
          "host-unreachable": "no ARP answer can come: nobody on the link has the address"}


def run(checks: list[Check], path_of, internet: str, witness=None, resolv=None) -> list[CheckResult]:
    """Run `checks` at once; `path_of(ns)` gives a namespace's file, `resolv(ns)` the
    resolv.conf (path, text) its programs read, for dns checks (netstep.ops.resolve).

    Pings from one namespace share one raw socket in one thread; each tcp or http check
    has a thread of its own. How long a probe waits for an answer depends on what it
    expects: an expected failure is decided after SILENCE seconds without one (a lab's
    round trip is well under a millisecond, and its ARP gives up after 0.1 s), while an
    expected success gets PATIENCE seconds, so a loaded machine is not taken for a
    broken network.

    A `witness` (netstep.ops.witness) watching the kernel's counters concludes an expected
    failure as soon as they prove the packet was dropped, and says where and why every
    failing check failed.
    """
    results: list[CheckResult | None] = [None] * len(checks)
    errors: list[BaseException] = []
    groups: dict[tuple[str, bool], list[int]] = {}
    jobs = []
    for i, check in enumerate(checks):
        if check.kind == "ping":  # (a large echo that may not be fragmented gets a socket of its own)
            groups.setdefault((check.source, check.size is not None), []).append(i)
        else:
            jobs.append((check.source, [i]))
    jobs += [(source, indexes) for (source, _), indexes in groups.items()]

    def work(source: str, indexes: list[int]) -> None:
        try:
            path = path_of(source)
            if path is not None:
                namespaces.enter(path)
            if checks[indexes[0]].kind == "ping":
                found = ping_all([checks[i] for i in indexes], internet, witness=witness, indexes=indexes)
                for i, result in zip(indexes, found, strict=True):
                    results[i] = result
            elif checks[indexes[0]].kind == "dns":
                text = resolv(source) if resolv is not None else ("/etc/resolv.conf", "")
                results[indexes[0]] = resolve.dns_check(checks[indexes[0]], source, text)
            elif checks[indexes[0]].kind == "bind":
                results[indexes[0]] = bind_check(checks[indexes[0]], source)
            else:
                results[indexes[0]] = _connect_check(checks[indexes[0]], internet, witness, indexes[0])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=job, name=f"check:{job[0]}") for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    done = [r for r in results if r is not None]
    if witness is not None:
        done = [_explained(witness, i, r) for i, r in enumerate(done)]
    return done


def _explained(witness, index: int, result: CheckResult) -> CheckResult:
    if result.actual == "reachable" or result.where is not None:
        return result
    return judged(result, witness.explain(index, result))


def judged(result: CheckResult, finding) -> CheckResult:
    """`result` with the finding's where, why and evidence; where the evidence corrects what the
    socket saw (a REJECT rule's "Connection refused" is no closed port), its reason too."""
    out = replace(result, where=finding.where, why=finding.why, evidence=finding.evidence)
    if finding.reason and finding.reason != result.reason:
        out = replace(out, reason=finding.reason, detail=f"{result.detail} (the answer of a REJECT rule)")
    return out


def _concluded(reason: str, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    return "answer" if reason in ("reply", "connected") or reason.startswith("HTTP") else "error"


def _proven(witness, index: int, check: Check):
    """(verdict, finding) when the witness proves the probe lost, else None."""
    if witness is None or check.expect != "unreachable":
        return None
    finding = witness.conclude(index)
    if finding is None:
        return None
    detail = PROVEN.get(finding.seen, "the kernel's evidence shows it was lost")
    return ("unreachable", finding.seen, detail), finding


def _wait_for(check: Check) -> float:
    return SILENCE if check.expect == "unreachable" else PATIENCE


def _address(check: Check, internet: str) -> str:
    return internet if check.target == "internet" else check.target


def _connect_check(check: Check, internet: str, witness=None, index: int = 0) -> CheckResult:
    start = time.monotonic()
    proof = (lambda: _proven(witness, index, check)) if witness is not None and check.expect == "unreachable" else None
    try:
        actual, reason, detail = connect(_address(check, internet), check.port or 80, _wait_for(check),
                                         http=check.kind == "http", proof=proof, path=check.path or "/")
    except Proven as proven:
        (actual, reason, detail), finding = proven.args
        return CheckResult(check, check.destination(internet), actual, reason, detail, time.monotonic() - start,
                           concluded="evidence", where=finding.where, why=finding.why, evidence=finding.evidence)
    timed_out = reason == "no-answer" and detail.startswith(("no answer within", "connected, but"))
    return CheckResult(check, check.destination(internet), actual, reason, detail, time.monotonic() - start,
                       concluded=_concluded(reason, timed_out))


def bind_check(check: Check, source: str) -> CheckResult:
    """Bind a new TCP socket to the check's address and port in this thread's namespace, as
    a second server would (SO_REUSEADDR on, as Python's servers set it), and let it go. Where
    the kernel refuses with EADDRINUSE, the evidence is the listening socket in the way and
    the process that holds it, read from /proc (the thread's own namespace's sockets)."""
    start = time.monotonic()
    address, port = check.target, check.port or 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
    except OSError as exc:
        elapsed = time.monotonic() - start
        reason = "in-use" if exc.errno == errno.EADDRINUSE else "no-answer"
        holders = listeners(port)
        # (the why names the program, the same in every lab; the evidence adds its pid)
        who = sorted({_("{socket} of {programs}").format(socket=held.split(" held by ")[0], programs=_programs(held))
                      for held in holders})
        why = _("{address}:{port} is taken in {ns}: {sockets}").format(
            address=address, port=port, ns=source, sockets="; ".join(who)) if who else \
            _("{address}:{port} cannot be bound in {ns}: {error}").format(address=address, port=port, ns=source,
                                                                         error=os.strerror(exc.errno or 0))
        return CheckResult(check, check.destination(), "unreachable", reason, os.strerror(exc.errno or 0), elapsed,
                           concluded="error", where=source, why=why, evidence={"sockets": holders})
    finally:
        sock.close()
    return CheckResult(check, check.destination(), "reachable", "bound", f"bound {address}:{port}",
                       time.monotonic() - start, concluded="answer")


def listeners(port: int, proto: str = "tcp") -> list[str]:
    """The listening TCP sockets (`proto` "udp": the bound UDP sockets) on `port` in this
    thread's namespace, each with the processes holding it, as `ss -lnp` shows them:
    'LISTEN 127.0.0.1:6000 held by pid 812 (python3 -m netstep.kernel.httpd)', 'UNCONN ...'."""
    found: dict[str, str] = {}
    waiting = {"tcp": "0A", "udp": "07"}[proto]  # the kernel's TCP_LISTEN; a UDP socket's TCP_CLOSE
    with suppress(OSError), open(f"/proc/thread-self/net/{proto}") as f:
        for line in list(f)[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            addr_hex, port_hex = local.split(":")
            if state == waiting and int(port_hex, 16) == port:
                addr = socket.inet_ntoa(struct.pack("<I", int(addr_hex, 16)))
                found[inode] = f"{addr}:{port}"
    holders: dict[str, list[str]] = {inode: [] for inode in found}
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                inode = target[8:-1] if target.startswith("socket:[") else ""
                if inode in holders and pid not in holders[inode]:
                    holders[inode].append(pid)
    out = []
    for inode, local in found.items():
        who = ", ".join(f"pid {pid} ({_command_of(pid)})" for pid in holders[inode]) or "no process (gone)"
        out.append(f"{'LISTEN' if proto == 'tcp' else 'UNCONN'} {local} held by {who}")
    return out


def _programs(held: str) -> str:
    """'python3 -m netstep.kernel.httpd' from 'LISTEN ... held by pid 812 (python3 -m ...)'."""
    names = [part.split(" (", 1)[1].rstrip(")") for part in held.split(" held by ")[1].split(", pid ")
             if " (" in part]
    return ", ".join(dict.fromkeys(names)) or "no process (gone)"


def _command_of(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "?"
    return " ".join(w for w in words[:3] if w).replace(sys.executable, "python3")


def ping_all(checks: list[Check], internet: str, interval: float = 0.1, *, witness=None,
             indexes: list[int] | None = None) -> list[CheckResult]:
    """ICMP echo to every check's target at once, from this thread's namespace (`indexes`:
    their places in the witness's list)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    if any(c.size is not None for c in checks):  # `ping -M do`: Don't Fragment, nowhere on the way
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    start = time.monotonic()
    idents = random.sample(range(1, 0xFFFF), len(checks))
    by_ident = dict(zip(idents, range(len(checks)), strict=True))
    verdicts: list[tuple[str, str, str] | None] = [None] * len(checks)
    done_at = [0.0] * len(checks)
    deadline = [start + _wait_for(c) for c in checks]  # set again when the first echo leaves
    sent = [False] * len(checks)
    next_send = [start] * len(checks)
    how = [""] * len(checks)
    findings: list = [None] * len(checks)
    places = indexes or list(range(len(checks)))
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
                proof = _proven(witness, places[i], check) if sent[i] else None  # once its echo left
                if proof is not None:
                    verdicts[i], findings[i] = proof
                    how[i], done_at[i] = "evidence", time.monotonic()
                elif sent[i] and now >= deadline[i]:
                    verdicts[i] = ("unreachable", "no-answer", f"no reply within {_wait_for(check):g} s")
                    how[i], done_at[i] = "timeout", now
                elif now >= next_send[i]:
                    seq += 1
                    if not sent[i]:  # the wait counts from the first echo, however late it left
                        sent[i], deadline[i] = True, now + _wait_for(check)
                    try:
                        sock.sendto(_echo(idents[i], seq, check.size), (_address(check, internet), 0))
                    except OSError as exc:
                        verdicts[i] = ("unreachable", _ERRNO_REASON.get(exc.errno or 0, "no-answer"),
                                       os.strerror(exc.errno or 0))
                        done_at[i] = now
                    next_send[i] = now + interval
            waiting = [min(deadline[i], next_send[i]) for i in range(len(checks)) if verdicts[i] is None]
            if not waiting:
                break
            if witness is not None and any(c.expect == "unreachable" for c in checks):
                waiting.append(time.monotonic() + POLL)
            take(max(0.0, min(waiting) - time.monotonic()))
    finally:
        sock.close()
    out = []
    for i, (check, verdict) in enumerate(zip(checks, verdicts, strict=True)):
        result = CheckResult(check, check.destination(internet), *verdict, done_at[i] - start,
                             concluded=how[i] or _concluded(verdict[1], False))
        if findings[i] is not None:
            result = judged(result, findings[i])
        out.append(result)
    return out


IP_MTU_DISCOVER, IP_PMTUDISC_DO = 10, 2  # <linux/in.h>; Python's socket module does not name them


def _echo(ident: int, seq: int, size: int | None = None) -> bytes:
    """An echo request; `size` bytes of payload (`ping -s`), else a small one."""
    payload = b"netstep" + struct.pack("!d", time.monotonic())
    if size is not None:
        payload = (payload + bytes(max(0, size - len(payload))))[:size]
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, seq) + payload


_ERRNO_REASON = {
    errno.ENETUNREACH: "no-route",
    errno.EHOSTUNREACH: "host-unreachable",
    errno.ECONNREFUSED: "refused",
    errno.EPERM: "filtered",
    errno.EACCES: "filtered",
    errno.EMSGSIZE: "too-big",
}
_ICMP_REASON = {0: "net-unreachable", 1: "host-unreachable", 3: "refused", 4: "too-big", 9: "filtered",
                10: "filtered", 13: "filtered"}


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


class Proven(Exception):
    """A pending connection's loss, proven by the witness: args are (verdict, finding)."""


def _connect_watched(sock: socket.socket, addr: str, port: int, timeout: float, proof) -> None:
    """Connect without blocking, asking `proof()` between short waits; raise as connect would
    (or Proven, when the witness proves the connection lost)."""
    sock.setblocking(False)
    code = sock.connect_ex((addr, port))
    deadline = time.monotonic() + timeout
    while code in (errno.EINPROGRESS, errno.EALREADY):
        _, ready, _ = select.select([], [sock], [], POLL)
        if ready:
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            break
        proven = proof()
        if proven is not None:
            raise Proven(*proven)
        if time.monotonic() >= deadline:
            raise TimeoutError
    sock.settimeout(max(0.01, deadline - time.monotonic()))
    if code:
        raise OSError(code, os.strerror(code))


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


def connect(addr: str, port: int, timeout: float = SILENCE, *, http: bool = False, proof=None, path: str = "/"):
    """Open a TCP connection (and, for http, GET `path` and read the whole answer) from this
    thread's namespace: an answer that stops half way (an MTU black hole) is no answer.

    `proof()` is asked while the connection is pending: a (verdict, finding) it returns ends
    the wait, raised as Proven.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            if proof is None:
                sock.connect((addr, port))
            else:
                _connect_watched(sock, addr, port, timeout, proof)
        except TimeoutError:
            return "unreachable", "no-answer", f"no answer within {timeout:g} s"
        except OSError as exc:
            reason = _ERRNO_REASON.get(exc.errno or 0, "no-answer")
            return "unreachable", reason, os.strerror(exc.errno or 0)
        if not http:
            return "reachable", "connected", f"connected to {addr}:{port}"
        reply = b""
        try:
            sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {addr}:{port}\r\n\r\n".encode())
            while True:  # HTTP/1.0: the server closes the connection after its answer
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            if b"\r\n" not in reply:
                return "unreachable", "no-answer", "connected, but no HTTP answer"
            return "unreachable", "no-answer", f"connected, but the answer stopped after {len(reply)} bytes"
        except OSError as exc:
            return "unreachable", _ERRNO_REASON.get(exc.errno or 0, "no-answer"), os.strerror(exc.errno or 0)
        status = reply.split(b"\r\n", 1)[0].decode(errors="replace")
        if not status.startswith("HTTP/"):
            return "unreachable", "no-answer", "connected, but the answer was not HTTP"
        head, _, body = reply.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                       if line.lower().startswith(b"content-length:") and line.split(b":", 1)[1].strip().isdigit()),
                      None)
        if length is not None and len(body) < length:
            return "unreachable", "no-answer", f"the answer ended after {len(body)} of {length} bytes"
        return "reachable", f"HTTP {status.split()[1]}", status + (f", {len(body)} bytes" if len(body) > 4096 else "")
    finally:
        sock.close()
