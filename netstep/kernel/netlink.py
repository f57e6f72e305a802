"""pyroute2, netstep's netlink library, loaded the first time netlink is used.

Importing pyroute2 takes about 0.1 s of CPU (its package's `__init__` imports every
protocol it knows: NDB, IPDB, conntrack, ethtool, wireguard, plan9...), and `list`,
`doctor`, the `reset` of a sandbox lab and the `--json` paths that only read files never
speak netlink: so nothing here imports pyroute2 until a client is made, and then only
its rtnetlink client (`pyroute2.iproute.linux`), without the package's `__init__` (see
`iproute_class`): ~65 ms instead of ~110 ms, every command that reads a lab.

    ipr = netlink.client(sock, loop)      # an IPRoute on a socket made in a namespace
    except netlink.NetlinkError as exc:   # pyroute2's error; exc.code is the errno

`NetlinkError` is looked up when an exception is being matched (an `except` clause
evaluates its expression then), so modules that catch it need not import pyroute2. If
pyroute2 was never imported, no NetlinkError can have been raised, and the name stands
for an exception class nothing raises.

What a call costs, measured in a scratch namespace (pyroute2 0.9.7, CPU time): a link set
~250 µs, a dump of 22 links ~6 ms (pyroute2 makes an object for every attribute of every
message), an address or route dump ~300-600 µs. What makes netstep's use cheaper is
around the library: a client per namespace kept while the lab is locked, made on a
socket netstep opens in the namespace (~0.45 ms; `IPRoute(netns=...)` forks a child to
make its socket, ~2.5 ms and a process), one event loop per thread for all its clients,
device indexes by ioctl (2 µs; `link_lookup` dumps, ~0.5 ms), a dump per kind per
namespace read, and only the namespaces a step touched. Tried and measured, no gain
here: `ext_mask` RTEXT_FILTER_SKIP_STATS (pyroute2 decodes attribute values lazily, so the
counters cost little), and `strict_check` with dump filters (pyroute2 0.9.7 sends only a
dump's family and ext_mask to the kernel; it applies `index=`, `master=` or `table=`
itself, after decoding every message).
"""

from __future__ import annotations

import importlib.util
import socket
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from pyroute2 import IPRoute


class _NeverRaised(Exception):
    """Stands for NetlinkError while pyroute2 is not loaded: nothing can have raised it."""


def __getattr__(name: str) -> type[Exception]:
    if name == "NetlinkError":
        module = sys.modules.get("pyroute2.netlink.exceptions")
        return module.NetlinkError if module is not None else _NeverRaised
    raise AttributeError(name)


def client(sock: socket.socket, loop: asyncio.AbstractEventLoop | None = None) -> IPRoute:
    """A pyroute2 IPRoute on `sock`, a netlink socket made in the namespace it talks to.

    The socket is handed over (`use_socket`), so pyroute2 never opens a namespace itself:
    given a name it would fork a child to make the socket and create a namespace that is
    missing (unless flags=0). `loop`, an event loop the calling thread keeps for all its
    clients, saves making one per client (IPRoute is a synchronous face on asyncio). The
    client closes `sock` when it is closed.
    """
    IPRoute = iproute_class()
    # groups=0: no subscription to the namespace's events, which nothing here would read.
    ipr = IPRoute(use_socket=sock, use_event_loop=loop, groups=0, flags=0)
    # IPRoute (0.9.7) leaves unset the status its own nlm_request reads; False: answers as a tuple.
    ipr.status["nlm_generator"] = False
    return ipr


_loading = threading.Lock()


def iproute_class() -> type[IPRoute]:
    """pyroute2's IPRoute, imported on first use without running the package's `__init__`.

    That `__init__` imports every protocol pyroute2 knows, ~45 ms of CPU more than the
    rtnetlink client netstep uses (pyroute2 issue 1404; `pyroute2-minimal`, the same
    package without NDB and IPDB, still imports the rest). So the package is put in place
    as a module whose `__init__` has not run, and only `pyroute2.iproute.linux` is
    imported (with what it imports itself). The package's `__init__` runs in full the
    first time anything asks the package for a name it does not have yet (`from pyroute2
    import NDB` in a notebook, netstep.kernel.threaded): every public name is still there.
    If pyroute2 was imported already, it is used as it is.
    """
    with _loading:
        if "pyroute2" not in sys.modules:
            spec = importlib.util.find_spec("pyroute2")
            if spec is None or spec.loader is None:
                raise ModuleNotFoundError("No module named 'pyroute2'", name="pyroute2")
            package = importlib.util.module_from_spec(spec)

            def rest(name: str) -> object:
                """A submodule (`from pyroute2 import config`, as pyroute2 itself says it), or
                the package's own `__init__`, run the first time a name it makes is asked for."""
                if name.startswith("__"):  # (copy, pickle and pydoc probe for dunders)
                    raise AttributeError(name)
                if importlib.util.find_spec(f"pyroute2.{name}") is not None:
                    return importlib.import_module(f"pyroute2.{name}")
                del package.__getattr__
                spec.loader.exec_module(package)
                return getattr(package, name)

            package.__getattr__ = rest
            sys.modules["pyroute2"] = package
        from pyroute2.iproute.linux import IPRoute
    return IPRoute


def event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop, for a thread's clients. (asyncio, ~27 ms to import, is loaded with
    pyroute2, which needs it: not by commands that never speak netlink.)"""
    import asyncio

    return asyncio.new_event_loop()


def close(ipr: IPRoute) -> None:
    """Close `ipr` and its socket, from any thread (IPRoute.close frees only what belongs
    to the calling thread, and a lab may close another thread's clients)."""
    sock = ipr.asyncore.use_socket
    try:
        ipr.close()
    finally:
        if sock is not None:
            sock.close()


def set_arp_retrans(ipr: IPRoute, index: int, ms: int) -> None:
    """Set ARP's retransmit time on link `index` (RTM_SETNEIGHTBL on the "arp_cache" table):
    pyroute2 reads neighbour tables (`get_neighbour_tables`) but has no call to change one,
    so the message is built with its ndtmsg and sent as a plain request."""
    from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST  # loaded already: `ipr` is pyroute2's
    from pyroute2.netlink.rtnl import RTM_SETNEIGHTBL
    from pyroute2.netlink.rtnl.ndtmsg import ndtmsg

    msg = ndtmsg()
    msg["family"] = socket.AF_INET
    msg["attrs"] = [("NDTA_NAME", "arp_cache"),
                    ("NDTA_PARMS", {"attrs": [("NDTPA_IFINDEX", index), ("NDTPA_RETRANS_TIME", ms)]})]
    ipr.nlm_request(msg, msg_type=RTM_SETNEIGHTBL, msg_flags=NLM_F_REQUEST | NLM_F_ACK)

