"""The lab's HTTP server: `python3 -m http.server` as the article runs it, minus the waits.

Started by netstep.ops.servers as its own process so that it outlives the command that started
it: it enters the container's namespace, binds, says "ready" on stdout and serves until
SIGTERM. Its command line names the lab's folder (--lab): that is how netstep finds it.
It answers every GET with a short page that names where it runs, but `GET /N` (a number of
bytes, up to LARGEST), which gets a page that long: a large answer, as a file download is,
for lessons on the MTU. It does no reverse DNS (which hangs in a namespace without a
resolver).
"""

from __future__ import annotations

import argparse
import os
import signal
import socketserver
import sys
from http.server import BaseHTTPRequestHandler

from netstep.kernel.namespaces import enter

LARGEST = 10_000_000  # bytes a `GET /N` may ask for


class Handler(BaseHTTPRequestHandler):
    where = "?"

    def do_GET(self) -> None:
        host, port = self.server.server_address[:2]
        body = f"Hello from {self.where} ({host}:{port}), asked by {self.client_address[0]}\n".encode()
        size = self.path.lstrip("/")
        if size.isdigit() and int(size) <= LARGEST:
            body = (body * (int(size) // len(body) + 1))[: int(size)]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def address_string(self) -> str:
        return self.client_address[0]

    def log_message(self, format: str, *args: object) -> None:  # quiet: nobody reads it
        return


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netstep.kernel.httpd")
    parser.add_argument("--netns", required=True)
    parser.add_argument("--name", default="?")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--lab", default="", help="the lab's folder: marks the process as the lab's")
    args = parser.parse_args(argv)
    enter(args.netns)
    Handler.where = args.name
    server = Server((args.bind, args.port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print("ready", flush=True)
    sys.stdout.close()
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
