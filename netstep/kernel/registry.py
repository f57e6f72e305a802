"""A lab's namespaces by the article's names: which exist, and the file of each.

    host, upstream   the lab host and the upstream, files in the lab's folder (in host
                     mode: the namespace netstep runs in, and a file the user names)
    netns/NAME       the containers the lessons make, in a shared mount (netstep shell)

A file only counts once a namespace is pinned on it (a bind mount): a kill between
making the file and mounting leaves an empty file, which is no namespace.
"""

from __future__ import annotations

import os
import re
import stat

from netstep.errors import NameConflict, NetstepError
from netstep.kernel import namespaces

NS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")


def natural(name: str) -> tuple:
    """A sort key that puts netns2 before netns10, as a person counts."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


class Namespaces:
    """The namespace registry of the lab in `folder`."""

    def __init__(self, lab: str, folder: str, *, host_mode: bool, upstream_path: str | None) -> None:
        self.lab = lab
        self.dir = folder
        self.netns_dir = os.path.join(folder, "netns")
        self.host_mode = host_mode
        self.upstream_path = upstream_path
        # Set while the lab's lock is held: only then may what is seen pinned be remembered.
        self.locked = False
        self._pinned: set[str] = set()

    def forget(self, ns: str | None = None) -> None:
        """Drop what is remembered: of namespace `ns` (it is being removed), or of all (the
        lock was free, or the namespaces are being made or removed outside this registry).
        A namespace made is not a reason: it unpins no other."""
        if ns is None:
            self._pinned.clear()
        elif (path := self.path_of(ns)) is not None:
            self._pinned.discard(path)

    def is_pinned(self, path: str) -> bool:
        if path in self._pinned:
            return True
        pinned = namespaces.is_pinned(path)
        if pinned and self.locked and path.startswith(self.dir + os.sep):
            self._pinned.add(path)  # (not host mode's upstream: the user's file, not the lab's)
        return pinned

    def containers(self) -> list[str]:
        if not os.path.isdir(self.netns_dir):
            return []
        names = (n for n in os.listdir(self.netns_dir) if self.is_pinned(os.path.join(self.netns_dir, n)))
        return sorted(names, key=natural)

    def names(self) -> list[str]:
        return ["host", *self.containers(), *(["upstream"] if self.has("upstream") else [])]

    def path_of(self, ns: str) -> str | None:
        """The file of namespace `ns`; None for the namespace netstep runs in (host mode)."""
        if ns == "host":
            return None if self.host_mode else os.path.join(self.dir, ns)
        if ns == "upstream":  # host mode: the user's file, or the lab's own stand-in client
            return self.upstream_path or os.path.join(self.dir, ns)
        return os.path.join(self.netns_dir, ns)

    def has(self, ns: str) -> bool:
        path = self.path_of(ns)
        if path is None:
            return ns == "host"
        return self.is_pinned(path)

    def require(self, ns: str) -> str | None:
        """The file of `ns` (see path_of); an error naming the lab's namespaces if there is none."""
        if not NS_NAME_RE.match(ns) or not self.has(ns):
            known = ", ".join(self.names())
            raise NetstepError(f"There is no namespace '{ns}' in lab '{self.lab}'. It has: {known}.")
        return self.path_of(ns)

    def fd_path(self, ns: str) -> str:
        """A file to open for a descriptor of namespace `ns`."""
        return self.require(ns) or "/proc/self/ns/net"

    def create_container(self, ns: str) -> None:
        if not NS_NAME_RE.match(ns) or ns in ("host", "upstream"):
            raise NetstepError(f"'{ns}' cannot name a container namespace.")
        path = self.path_of(ns)
        if os.path.lexists(path):
            if not self._is_leftover(path):
                raise NameConflict(f"A namespace named '{ns}' already exists in lab '{self.lab}'.")
            os.unlink(path)
        namespaces.create(path)

    def _is_leftover(self, path: str) -> bool:
        """An empty file in the lab's own folder with nothing mounted on it: a kill came
        between making it and mounting a namespace on it (or between unmounting and
        unlinking). No namespace lives there; it is the lab's leftover, not a name in use.
        Anything else (a namespace, a folder, a file with something in it) is left alone.
        A path with anything mounted on it, a namespace included, reports the mounted
        filesystem's device, not the folder's."""
        info = os.lstat(path)
        return (stat.S_ISREG(info.st_mode) and info.st_size == 0
                and info.st_dev == os.stat(self.netns_dir).st_dev)
