"""`python -m netstep.worker`: an ordinary user's Tutor, in a process of its own that joins
the lab's user namespace before any thread starts.

A Jupyter kernel has several threads from its start, and the kernel lets only a
single-threaded process join a user namespace (netstep.kernel.userns). So, for an ordinary
user, `Tutor()` starts this process (netstep.tutor.RemoteTutor): it joins the lab's holder
first thing, makes a Tutor there (where it is root over the lab alone, as `python -m
netstep` is), and runs the calls the notebook's Tutor sends it over a Unix socket (its
descriptor given after the lab's name): a method's name and arguments in, its result or
its error out, pickled (netstep.tutor.send and receive). A netlink socket that `ipr` asks
for goes back as a file descriptor (the parent's user owns the lab's user namespace, so
the kernel grants the parent's requests on it too).

It ignores SIGINT (Jupyter's interrupt button signals the kernel's process group): a
step in progress finishes, and the notebook stops waiting for it. It ends when the
notebook's end of the socket closes, or after `close` or `reset` (a reset stops the lab's
holder too: nothing is left).

Only the standard library and netstep.core.backend are imported before joining (an
import may start a thread).
"""

from __future__ import annotations

import pickle
import signal
import socket
import sys

from netstep.core import backend
from netstep.kernel.tools import find_sbin_tools


def serve(lab: str, fd: int) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    find_sbin_tools()
    backend.enter("run", lab, host=False)  # first, while this process has one thread
    sock = socket.socket(fileno=fd)
    from netstep.errors import NetstepError
    from netstep.tutor import Tutor, receive, send

    try:
        backend.current().require()
        tutor = Tutor(lab, course=receive(sock))
    except NetstepError as exc:
        send(sock, ("error", exc))
        return 1
    send(sock, ("ok", None))
    while True:
        try:
            name, args, kwargs = receive(sock)
        except EOFError:  # the notebook's kernel ended: the lab stays, as after a command
            tutor.close()
            return 0
        try:
            if name == "ipr":  # a netlink socket in the lab, handed over as a descriptor
                netlink = tutor._call(tutor.lab.socket, args[0], socket.AF_NETLINK, socket.SOCK_DGRAM,
                                      socket.NETLINK_ROUTE)
                send(sock, ("fd", None))
                socket.send_fds(sock, [b"F"], [netlink.fileno()])
                netlink.close()
                continue
            if name == "getattr":
                result: object = tutor
                for part in args[0].split("."):
                    result = getattr(result, part)
            else:
                result = getattr(tutor, name)(*args, **kwargs)
            reply = ("ok", result)
        except Exception as exc:
            reply = ("error", exc)
        if name == "reset":
            backend.current().stop_holder()  # (this process is the holder's last user)
        try:
            send(sock, reply)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            send(sock, ("error", NetstepError(f"netstep could not hand back the result of {name}: {exc}")))
        if name in ("close", "reset"):
            return 0


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], int(sys.argv[2])))
