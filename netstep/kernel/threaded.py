"""A pyroute2 IPRoute for people: made and used on a thread of its own, so it works
anywhere, in a notebook's cell too.

IPRoute is a synchronous face on asyncio: each call runs its own event loop until the
answer comes. A Jupyter cell runs while Jupyter's event loop is running, and there
IPRoute fails ("This event loop is already running"). This IPRoute hands every call to
a thread that has no loop running, and waits for it. It is pyroute2's class, so a
student reads pyroute2's documentation, not ours.

Imported only where such a client is made (netstep.tutor): it loads pyroute2.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pyroute2 import IPRoute

T = TypeVar("T")


class ThreadedIPRoute(IPRoute):
    """pyroute2's IPRoute on `sock` (a netlink socket made in the namespace it talks to),
    every call run on one thread of its own."""

    def __init__(self, sock: socket.socket) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipr")
        self._owner = self._executor.submit(threading.get_ident).result()
        # groups=0: no event subscriptions; flags=0: never create a namespace.
        self._on_owner(super().__init__, use_socket=sock, groups=0, flags=0)
        self.status["nlm_generator"] = False  # as netstep.kernel.netlink.client: unset in IPRoute 0.9.7

    def _on_owner(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        if threading.get_ident() == self._owner:
            return fn(*args, **kwargs)
        return self._executor.submit(fn, *args, **kwargs).result()

    # IPRoute's every request goes through one of these two.
    def _run_with_cleanup(self, func, *argv, **kwarg):
        return self._on_owner(super()._run_with_cleanup, func, *argv, **kwarg)

    def _generate_with_cleanup(self, func, *argv, **kwarg):
        parent = super()._generate_with_cleanup
        return iter(self._on_owner(lambda: tuple(parent(func, *argv, **kwarg))))

    def close(self, *args: object, **kwargs: object) -> None:
        if self._executor is None:
            return
        sock = self.asyncore.use_socket
        try:
            self._on_owner(super().close, *args, **kwargs)
        finally:
            sock.close()
            self._executor.shutdown()
            self._executor = None
