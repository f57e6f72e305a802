"""A lab: the namespaces netstep owns, and the only door to them.

The sandbox lab stands in for the article's VM: a lab host namespace (the article's root
namespace, with eth0 10.0.2.15/24), an upstream namespace (its router and "the internet",
with the internet host 203.0.113.8 on lo) and the container namespaces the lessons make.
All of it lives under one folder, /run/netstep/labs/NAME, that netstep made and marked;
nothing outside that folder is ever created, changed or removed.

    /run/netstep/labs/NAME/
        lab.json       marker: this folder is a netstep lab
        lock           flock'd by the one process using the lab
        journal.json   every action, written before it is applied
        last.json      the lab's state as the last move left it (`diff` compares with it)
        position.json  the course position's state, kept before the student's own commands
        course.json    the course variant the lab was built with (lesson 4's --containers)
        hints.json     how far each target's staged hints went
        kept-servers.json  servers the student started for a step that was adopted
        host, upstream namespace files of the lab host and the upstream
        netns/         container namespaces (a shared mount, for `netstep shell`)

The lab's HTTP servers are found by their command line (netstep.kernel.servers), not by
files; a student's own servers by the namespace they listen in (netstep.kernel.listeners).

Lab is this lifecycle (lock, build, destroy) and the one door to the lab's pieces, each a
module of its own: what lab.json records (netstep.core.record), the sandbox's wiring
(netstep.core.sandbox), the namespace registry (netstep.kernel.registry), netlink handles and
interface ioctls (netstep.kernel.handles), sysctls (netstep.kernel.sysctl), HTTP
servers (netstep.kernel.servers) and state reading (netstep.state.reader). It satisfies
netstep.ops.access.LabAccess, the interface actions are applied through.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from collections.abc import Callable
from contextlib import suppress
from dataclasses import replace
from typing import TYPE_CHECKING

from netstep.core import record, sandbox
from netstep.core.sandbox import Topology
from netstep.errors import LabBusy, NetstepError
from netstep.kernel import listeners, namespaces, servers, sysctl
from netstep.kernel.handles import Handles
from netstep.kernel.registry import Namespaces
from netstep.kernel.standin import StandIn
from netstep.ops import files
from netstep.state.reader import StateReader
from netstep.state.snapshot import Snapshot

if TYPE_CHECKING:
    from pyroute2 import IPRoute

ROOT = "/run/netstep/labs"
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")


def validate_lab_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise NetstepError(
            f"'{name}' is not a usable lab name: use lower-case letters, digits, '-' or '_' "
            "(starting with a letter, at most 31 characters), for example --lab class2."
        )
    return name


class Lab:
    """One lab. Use as a context manager: it takes the lab's lock.

    In host mode (`host=True`, for a VM of one's own) the lab host is the namespace netstep
    runs in, the upstream is the real network (or, for checks, the namespace file given as
    `upstream`), and the internet host defaults to 8.8.8.8. The containers still live in
    the lab's folder, and every rule netstep adds there carries the comment
    `netstep:NAME`, so that exactly those rules are removed again.
    """

    def __init__(
        self,
        name: str = "default",
        *,
        root: str = ROOT,
        topology: Topology | None = None,
        host: bool = False,
        internet: str | None = None,
        upstream: str | None = None,
    ) -> None:
        self.name = validate_lab_name(name)
        self.host_mode = host
        topology = topology or Topology()
        if internet or host:
            topology = replace(topology, internet=internet or "8.8.8.8")
        self.dir = os.path.join(root, self.name)
        self.run_dir = os.path.join(self.dir, "run")  # pid files, made only by netstep before 2026-11-28
        self.journal_path = os.path.join(self.dir, "journal.json")
        self.last_snapshot_path = os.path.join(self.dir, "last.json")
        self._seen_containers: dict[str, tuple[int, int] | None] | None = None  # (notice_outside_changes)
        self.topology = topology
        self._lock_fd: int | None = None
        self.registry = Namespaces(self.name, self.dir, host_mode=host, upstream_path=upstream)
        self.netns_dir = self.registry.netns_dir
        self.handles = Handles(self.registry.require)
        self.reader = StateReader(self.registry, self.handles)
        self.standin = StandIn(self.registry, self.handles)
        # A host-mode lab whose namespace is gone: only its files and own namespaces remain.
        self.orphaned = False
        self._closing: list[Callable[[], None]] = []

    # -- life cycle ---------------------------------------------------------------

    @property
    def internet(self) -> str:
        return self.topology.internet

    @property
    def upstream_path(self) -> str | None:
        return self.registry.upstream_path

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.dir, "lab.json"))

    def __enter__(self) -> Lab:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, *, build: bool = True, adopt: bool = False) -> None:
        """Take the lab's lock, creating the lab if it does not exist yet (and `build`).

        With `adopt` (for `reset`), an existing lab is taken in the mode it was made in,
        whatever this object was asked for. A host-mode lab is refused from any network
        namespace but its own (see _check_mode).

        A reset elsewhere may remove the (empty) folders or this lab's lock file at any
        moment: a folder that vanished is made again, and a lock taken on a file that was
        unlinked meanwhile is dropped and taken again on the new one.
        """
        path = os.path.join(self.dir, "lock")
        for _ in range(50):
            try:
                os.makedirs(self.dir, mode=0o700, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                continue  # a parent folder was removed between the two calls
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise LabBusy(
                    f"Lab '{self.name}' is busy: another netstep process is using it. Wait for it "
                    f"to finish, or use another lab with --lab NAME."
                ) from None
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                current = -1
            if current == os.fstat(fd).st_ino:
                break
            os.close(fd)  # the file was unlinked by a reset: lock the one that is there now
        else:
            raise NetstepError(f"Lab '{self.name}' could not be locked: its folder keeps being removed.")
        self._lock_fd = fd
        self.registry.locked = True
        self._forget_namespaces()  # they may have changed while the lock was free
        try:
            if self.exists():
                self._check_mode(adopt=adopt)
            if build and not self.exists():
                try:
                    self._build()
                except BaseException:
                    self._cleanup_kernel_state()
                    raise
            elif build and self.standin.wanted and not self.standin.exists():
                self._build_standin()  # a rollback of the whole course removed it
        except BaseException:
            self.close()
            raise

    def when_closing(self, save: Callable[[], None]) -> None:
        """Have `save` run when the lock is let go (at most once per registration), while
        it is still held: for state kept in memory while the lab is locked."""
        if save not in self._closing:
            self._closing.append(save)

    def close(self) -> None:
        try:
            while self._lock_fd is not None and self._closing:
                self._closing.pop(0)()
        finally:
            self._closing.clear()
            self.close_handles()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
                self.registry.locked = False

    def _check_mode(self, *, adopt: bool = False) -> None:
        """Take the mode the lab was made in (netstep.core.record), or refuse."""
        with open(os.path.join(self.dir, "lab.json")) as f:
            mode = record.mode_of(json.load(f), self.name, host_mode=self.host_mode, upstream=self.upstream_path,
                                  adopt=adopt)
        self.host_mode = self.registry.host_mode = mode.host
        self.registry.upstream_path = mode.upstream
        self.orphaned = mode.orphaned
        if mode.internet:
            self.topology = replace(self.topology, internet=mode.internet)

    def _build(self) -> None:
        """Create the lab host and the upstream (in host mode, the stand-in client if wanted)."""
        self._cleanup_kernel_state()
        os.makedirs(self.netns_dir, exist_ok=True)
        namespaces.make_shared_folder(self.netns_dir)
        made = record.made(self.name, host_mode=self.host_mode, internet=self.internet, upstream=self.upstream_path)
        if self.host_mode:
            if self.standin.wanted:
                self._build_standin()
        else:
            self._build_sandbox()
            files.seed(self.dir)  # the lab host's own /etc/resolv.conf, as systemd-resolved writes it
        with open(os.path.join(self.dir, "lab.json"), "w") as f:
            json.dump(made, f)

    def _build_standin(self) -> None:
        """Host mode's client on the network (see netstep.kernel.standin). The engine's last
        reading of the lab is stale once the lab itself changed the host."""
        self.standin.build()
        self.reader.forget("upstream")  # (a new namespace: the host may know it by an old id)
        self._drop_last_snapshot()

    def remove_standin(self) -> None:
        """Remove host mode's stand-in client, as a rollback of the whole course does."""
        if self.standin.wanted:
            self.standin.remove()
            self.reader.forget("upstream")  # (its ids may go to a namespace made next)
            self._drop_last_snapshot()

    def _drop_last_snapshot(self) -> None:
        with suppress(FileNotFoundError):
            os.unlink(self.last_snapshot_path)

    def _build_sandbox(self) -> None:
        sandbox.build(self, self.topology)

    def tune_link(self, ns: str, ifname: str) -> None:
        self.handles.tune_link(ns, ifname)

    def destroy(self) -> None:
        """Remove every namespace, mount, process and file of this lab, and nothing else."""
        self._closing.clear()  # (nothing is left to save state for)
        self.close_handles()
        self._forget_namespaces()
        self._cleanup_kernel_state()
        for sub in ("journal.json", "last.json", "position.json", "course.json", "hints.json", "challenge.json",
                    "lab.json", "kept-servers.json"):
            for name in (sub, sub + ".tmp"):  # a .tmp is left by a kill in the middle of a rewrite
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))
        if os.path.isdir(self.run_dir):  # a lab made by an older netstep: its servers' pid files
            for entry in os.listdir(self.run_dir):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.run_dir, entry))
        files.remove(self.dir)  # the lab's /etc (netstep.ops.files)
        for d in (self.netns_dir, self.run_dir):
            with suppress(FileNotFoundError, OSError):
                os.rmdir(d)
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, "lock"))
        for d in (self.dir, os.path.dirname(self.dir), os.path.dirname(os.path.dirname(self.dir))):
            with suppress(FileNotFoundError, OSError):
                os.rmdir(d)  # only if empty: another lab may live beside this one

    def _cleanup_kernel_state(self) -> None:
        self._forget_namespaces()
        self.stop_servers()
        with suppress(OSError):  # a student's server would keep a removed namespace alive, unseen
            listeners.stop(self.student_servers())
        self.standin.delete_link()
        self.handles.close()
        if os.path.isdir(self.netns_dir):
            for entry in os.listdir(self.netns_dir):
                namespaces.remove(os.path.join(self.netns_dir, entry))
            namespaces.unmount_all(self.netns_dir)
        for ns in ("host", "upstream"):
            namespaces.remove(os.path.join(self.dir, ns))

    def close_handles(self, *, all_threads: bool = True) -> None:
        """Close netlink handles (every thread's, or only the calling thread's) and the
        shared ioctl sockets, and forget the namespace ids (see StateReader.nsid_resolver)."""
        self.handles.close(all_threads=all_threads)
        self._forget_namespaces()

    # -- namespaces ------------------------------------------------------------------

    def notice_outside_changes(self) -> None:
        """Forget what is remembered of container namespaces made, removed or replaced by
        someone else (a student's `ip netns delete netns0; ip netns add netns0` in `netstep
        shell` while a notebook holds the lab): a netlink handle kept on the old one would
        read a namespace that is gone from the lab."""
        seen = {}
        for ns in self.registry.containers():
            path = self.registry.path_of(ns)
            try:
                info = os.stat(path) if path else None
            except OSError:
                info = None
            seen[ns] = (info.st_dev, info.st_ino) if info else None
        known = self._seen_containers
        if known is not None and known != seen:
            for ns in set(known) | set(seen):
                if known.get(ns) != seen.get(ns):
                    self.handles.close_namespace(ns)
            self._forget_namespaces()
        self._seen_containers = seen

    def _forget_namespaces(self) -> None:
        """Drop what is remembered about the namespaces: they are being made or removed,
        or the lock was free (see StateReader.nsid_resolver)."""
        self.registry.forget()
        self.reader.forget()

    def containers(self) -> list[str]:
        return self.registry.containers()

    def namespace_names(self) -> list[str]:
        return self.registry.names()

    def path_of(self, ns: str) -> str | None:
        """The file of namespace `ns`; None for the namespace netstep runs in (host mode)."""
        return self.registry.path_of(ns)

    def has_namespace(self, ns: str) -> bool:
        return self.registry.has(ns)

    def require(self, ns: str) -> str | None:
        return self.registry.require(ns)

    def fd_path(self, ns: str) -> str:
        """A file to open for a descriptor of namespace `ns`."""
        return self.registry.fd_path(ns)

    def add_container(self, ns: str) -> None:
        # (Nothing remembered is wrong after this: a new namespace changes no other's ids
        # or pins. Forgetting here made 30 containers ask ~70 namespace ids again.)
        self.registry.create_container(ns)

    def remove_container(self, ns: str) -> None:
        self.handles.close_namespace(ns)
        self.stop_servers(ns)
        try:
            namespaces.remove(self.require(ns))
        finally:
            self.registry.forget(ns)
            self.reader.forget(ns)

    @property
    def rule_mark(self) -> str | None:
        """The comment on every iptables rule netstep adds in host mode."""
        return f"netstep:{self.name}" if self.host_mode else None

    # -- handles, programs -------------------------------------------------------------

    def ipr(self, ns: str) -> IPRoute:
        return self.handles.ipr(ns)

    def link_index(self, ns: str, name: str) -> int | None:
        return self.handles.link_index(ns, name)

    def link_flags(self, ns: str, name: str) -> int | None:
        return self.handles.link_flags(ns, name)

    def settle_carrier(self, ns: str, name: str) -> None:
        self.handles.settle_carrier(ns, name)

    def socket(self, ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        return self.handles.socket(ns, family, kind, proto)

    def exec(self, ns: str, argv: list[str]):
        return namespaces.exec_in(self.require(ns), argv)

    # -- sysctls ---------------------------------------------------------------------

    def read_sysctl(self, ns: str, key: str) -> str | None:
        return sysctl.read(self.require(ns), key)

    def read_sysctls(self, ns: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """The values of `keys` that exist in `ns`, read from one thread inside it."""
        return sysctl.read_many(self.require(ns), keys)

    def read_forwarding_settings(self, ns: str, family: str) -> tuple[tuple[str, str], ...]:
        return sysctl.read_forwarding_settings(self.require(ns), family)

    def write_net_settings(self, ns: str, values: tuple[tuple[str, str], ...]) -> None:
        sysctl.write_net_settings(self.require(ns), values)

    def write_sysctl(self, ns: str, key: str, value: str) -> None:
        sysctl.write(self.require(ns), key, value)

    # -- servers ---------------------------------------------------------------------

    def stop_servers(self, ns: str | None = None, address: str | None = None, port: int | None = None) -> None:
        """Stop the lab's HTTP servers (in `ns`, on `address`:`port`, or all): see netstep.kernel.servers."""
        servers.stop(self.dir, ns, address, port)

    def own_namespaces(self) -> dict[str, str]:
        """The namespaces the lab made, name -> pinned file: never the machine's own (host
        mode's lab host) nor an upstream file the user lent."""
        return {ns: path for ns in self.namespace_names()
                if (path := self.path_of(ns)) is not None and path.startswith(self.dir + os.sep)}

    def student_servers(self) -> list[listeners.Listener]:
        """Processes a student started that listen in the lab's own namespaces (see netstep.kernel.listeners)."""
        return listeners.find(self.own_namespaces(), self.dir)

    def stop_student_servers(self, found: list[listeners.Listener]) -> None:
        listeners.stop(found)

    # -- state -----------------------------------------------------------------------

    def snapshot(self, names: list[str] | None = None, **options) -> Snapshot:
        """Read the state of `names` (default: every namespace of the lab); the options are
        StateReader.snapshot's."""
        return self.reader.snapshot(names, **options)

    def read_caches(self, ns: str, parts: set[str]) -> dict[str, tuple[str, ...]]:
        """The caches (neighbours, fdb, conntrack) of `ns` that `parts` names, read now."""
        return self.reader.caches(ns, parts)

    def peer_of(self, ns: str, msg) -> tuple[str, str] | None:
        """Where the other end of the veth whose link message is `msg` is: (namespace, name)."""
        return self.reader.peer_of(ns, msg)
