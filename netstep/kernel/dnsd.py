"""The lab's DNS server: what a lesson types as `dnsmasq`, built on dnslib.

Started by netstep.ops.servers as its own process, like netstep.kernel.httpd: it enters
the namespace, binds UDP port 53 on one address, says "ready" and serves until SIGTERM. It
answers the names it was given (--answers name=ip,...) itself and, with --forward, sends
every other question to that resolver and passes its answer back, as an embedded resolver
such as Docker's 127.0.0.11 does; any other name gets NXDOMAIN. Its command line names the
lab's folder (--lab): that is how netstep finds it.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from netstep.kernel.namespaces import enter

FORWARD_TIMEOUT = 2.0  # seconds the real resolver may take


class Resolver(BaseResolver):
    def __init__(self, answers: dict[str, str], forward: str) -> None:
        self.answers = answers
        self.forward = forward

    def resolve(self, request: DNSRecord, handler) -> DNSRecord:
        name = str(request.q.qname).rstrip(".").lower()
        reply = request.reply()
        if name in self.answers:
            if request.q.qtype in (QTYPE.A, QTYPE.ANY):
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(self.answers[name]), ttl=60))
            return reply
        if self.forward:
            try:
                return DNSRecord.parse(ask(self.forward, request.pack()))
            except OSError:  # refused (nothing on port 53 there), or a timeout
                reply.header.rcode = RCODE.SERVFAIL
                return reply
        reply.header.rcode = RCODE.NXDOMAIN
        return reply


def ask(server: str, query: bytes) -> bytes:
    """Send a query to `server` port 53 and return its answer. The socket is connected, so a
    "port unreachable" from a server that is not running ends the wait at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(FORWARD_TIMEOUT)
        sock.connect((server, 53))
        sock.send(query)
        return sock.recv(4096)


class Quiet:
    """dnslib's logger, silenced: nobody reads it."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netstep.kernel.dnsd")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--name", default="?")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, default=53)
    parser.add_argument("--answers", default="", help="name=ip,name=ip")
    parser.add_argument("--forward", default="")
    parser.add_argument("--lab", default="", help="the lab's folder: marks the process as the lab's")
    args = parser.parse_args(argv)
    enter(args.netns)
    answers = dict(pair.split("=", 1) for pair in args.answers.split(",") if pair)
    server = DNSServer(Resolver(answers, args.forward), address=args.bind, port=args.port, logger=Quiet())
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    sys.stdout.close()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    server.server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
