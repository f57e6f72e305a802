"""A dns check: a name looked up from a namespace as its programs look it up.

The probe reads the resolv.conf a program started there by `ip netns exec` reads (the
namespace's own /etc/netns/NAME/resolv.conf in the lab's /etc, else the lab host's: see
netstep.ops.files), asks its first nameserver over UDP from inside the namespace with a
query dnslib builds, and says what came back: an address, the server's "no such name" or
failure, or the kernel's refusal (nothing listens there: an ICMP port unreachable), no
route, or silence. A failure names the file and the nameserver it came from, and, where the
nameserver is a loopback address, that it is the namespace's own loopback.
"""

from __future__ import annotations

import errno
import os
import socket
import time

from dnslib import QTYPE, RCODE, DNSRecord

from netstep.course.checks import Check, CheckResult
from netstep.i18n import _
from netstep.ops.files import nameservers

TIMEOUT = 1.0  # seconds a resolver may take (a forwarder asks another one)
_ERRNO = {errno.ECONNREFUSED: "refused", errno.ENETUNREACH: "no-route", errno.EHOSTUNREACH: "host-unreachable",
          errno.EACCES: "filtered", errno.EPERM: "filtered",
          errno.EINVAL: "not-sent"}


def dns_check(check: Check, source: str, resolv: tuple[str, str]) -> CheckResult:
    """Look `check.target` up from this thread's namespace; `resolv` is (path, text) of the
    resolv.conf a program there reads."""
    start = time.monotonic()
    path, text = resolv
    servers = nameservers(text)
    evidence = {"resolv.conf": [f"{path}: nameserver {s}" for s in servers] or [f"{path}: no nameserver"]}

    def result(actual: str, reason: str, detail: str, why: str = "", answer: list[str] | None = None) -> CheckResult:
        failed = actual == "unreachable"
        return CheckResult(check, check.target, actual, reason, detail, time.monotonic() - start,
                           concluded="answer" if reason in ("answer", "not-found", "server-failure") else "error",
                           where=source if failed else None, why=why,
                           evidence=evidence if failed else {**evidence, "answer": answer or []})

    if not servers:
        return result("unreachable", "no-answer", f"no nameserver in {path}",
                      _("{path} in {ns} names no nameserver").format(path=path, ns=source))
    server = servers[0]
    asked = _("{ns} asks {server} (from {path})").format(ns=source, server=server, path=path)
    loopback = server.startswith("127.")
    own = _("; {server} is {ns}'s own loopback, and nothing there answers on port 53").format(
        server=server, ns=source) if loopback else ""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(TIMEOUT if check.expect == "reachable" else TIMEOUT / 2)
    try:
        query = DNSRecord.question(check.target, "A")
        sock.connect((server, 53))
        sock.send(query.pack())
        reply = DNSRecord.parse(sock.recv(4096))
    except TimeoutError:
        return result("unreachable", "no-answer", f"no answer from {server} within {sock.gettimeout():g} s",
                      _("{asked}: no answer came back").format(asked=asked))
    except OSError as exc:
        reason = _ERRNO.get(exc.errno or 0, "no-answer")
        why = f"{asked}: {os.strerror(exc.errno or 0)}{own if reason == 'refused' else ''}"  # (strerror: the kernel's)
        if exc.errno == errno.EINVAL and loopback:  # a DNAT sent it elsewhere, its source still 127.0.0.1
            why += _("; the kernel sends no packet from a loopback address out of a real interface "
                     "(route_localnet is 0), so {server} cannot be rewritten to another host").format(server=server)
        return result("unreachable", reason, os.strerror(exc.errno or 0), why)
    finally:
        sock.close()
    addresses = [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]
    if reply.header.rcode == RCODE.NXDOMAIN:
        return result("unreachable", "not-found", f"{server} says {check.target} does not exist (NXDOMAIN)",
                      _("{asked}: no such name").format(asked=asked))
    if reply.header.rcode != RCODE.NOERROR or not addresses:
        return result("unreachable", "server-failure",
                      f"{server} answered {RCODE.get(reply.header.rcode)} with no address",
                      _("{asked}: the server could not answer").format(asked=asked))
    return result("reachable", "answer", f"{check.target} is {', '.join(addresses)} (answered by {server})",
                  answer=addresses)

