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
        host, upstream namespace files of the lab host and the upstream
        netns/         container namespaces (a shared mount, for `netstep shell`)

The lab's HTTP servers are found by their command line (netstep.servers), not by files.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import re
import socket
import struct
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, replace

from netstep import namespaces, servers
from netstep.errors import LabBusy, NameConflict, NetstepError
from netstep.rtnl import NetlinkError
from netstep.snapshot import (
    NamespaceState,
    Snapshot,
    parse_iptables_save,
    read_addresses,
    read_conntrack,
    read_fdb,
    read_links,
    read_neighbours,
    read_routes,
)

ROOT = "/run/netstep/labs"
IFNAMSIZ, SIOCGIFINDEX, SIOCGIFFLAGS, SIOCETHTOOL, ETHTOOL_GLINK = 16, 0x8933, 0x8913, 0x8946, 0xA
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
NS_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,30}$")
MS_BIND, MS_SHARED, MS_REC = 4096, 1 << 20, 16384

# ARP gives up after mcast_solicit probes retrans_time_ms apart. A lab's link gets
# 3 x 30 ms instead of 3 x 1 s, so a check that expects "Destination Host Unreachable"
# is decided quickly. (Namespaces other than the first have no neigh/default to tune.)
ARP_RETRANS_MS = 30
WATCHED_SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables")


@dataclass(frozen=True)
class Topology:
    """Addresses of the sandbox: the article's VM, its router and the internet."""

    host_address: str = "10.0.2.15/24"
    router_address: str = "10.0.2.2/24"
    internet: str = "203.0.113.8"


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
        self.upstream_path = upstream
        topology = topology or Topology()
        if internet or host:
            topology = replace(topology, internet=internet or "8.8.8.8")
        self.dir = os.path.join(root, self.name)
        self.netns_dir = os.path.join(self.dir, "netns")
        self.run_dir = os.path.join(self.dir, "run")  # pid files, made only by netstep before 2026-11-28
        self.journal_path = os.path.join(self.dir, "journal.json")
        self.last_snapshot_path = os.path.join(self.dir, "last.json")
        self.topology = topology
        self._lock_fd: int | None = None
        # Netlink handles by (thread, namespace): two threads on one socket would read each
        # other's answers, so each thread that uses the lab gets its own.
        self._handles: dict[tuple[int, str], object] = {}
        # A datagram socket per namespace, for the interface ioctls (see link_index).
        self._ioctl_sockets: dict[str, socket.socket] = {}
        # Namespace ids as each namespace knows the others: see _nsid_resolver.
        self._nsids: dict[str, dict[int, str]] = {}
        # Namespace files seen pinned; like the ids, kept only while nothing else can change them.
        self._pinned: set[str] = set()

    # -- life cycle ---------------------------------------------------------------

    @property
    def internet(self) -> str:
        return self.topology.internet

    def exists(self) -> bool:
        return os.path.exists(os.path.join(self.dir, "lab.json"))

    def __enter__(self) -> Lab:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def lock(self, *, build: bool = True) -> None:
        """Take the lab's lock, creating the lab if it does not exist yet (and `build`).

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
        self._forget_namespaces()  # they may have changed while the lock was free
        if self.exists():
            self._check_mode()
        if build and not self.exists():
            try:
                self._build()
            except BaseException:
                self._cleanup_kernel_state()
                raise

    def close(self) -> None:
        self.close_handles()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _check_mode(self) -> None:
        with open(os.path.join(self.dir, "lab.json")) as f:
            made = json.load(f)
        if bool(made.get("host")) != self.host_mode:
            how = "with --host" if made.get("host") else "without --host"
            raise NetstepError(f"Lab '{self.name}' was made {how}: use it the same way, or `reset` it first.")
        if self.host_mode:
            self.upstream_path = self.upstream_path or made.get("upstream")
            self.topology = replace(self.topology, internet=made.get("internet", self.topology.internet))

    def _build(self) -> None:
        """Create the lab host and the upstream, wired as the article's VM and router."""
        self._cleanup_kernel_state()
        os.makedirs(self.netns_dir, exist_ok=True)
        d = self.netns_dir.encode()
        namespaces._check(namespaces._libc.mount(d, d, None, MS_BIND, None), "bind netns dir")
        namespaces._check(namespaces._libc.mount(None, d, None, MS_SHARED, None), "share netns dir")
        if not self.host_mode:
            self._build_sandbox()
        with open(os.path.join(self.dir, "lab.json"), "w") as f:
            json.dump({"netstep": 1, "name": self.name, "created": time.time(), "host": self.host_mode,
                       "internet": self.internet, "upstream": self.upstream_path}, f)

    def _build_sandbox(self) -> None:
        for ns in ("host", "upstream"):
            namespaces.create(self.path_of(ns))
        topo = self.topology
        host, up = self.ipr("host"), self.ipr("upstream")
        host.link("add", ifname="eth0", kind="veth", peer="uplink")
        fd = os.open(self.path_of("upstream"), os.O_RDONLY)
        try:
            host.link("set", index=host.link_lookup(ifname="uplink")[0], net_ns_fd=fd)
        finally:
            os.close(fd)
        up.link("set", index=up.link_lookup(ifname="uplink")[0], ifname="eth0")
        for ipr, addr in ((host, topo.host_address), (up, topo.router_address)):
            lo, eth0 = ipr.link_lookup(ifname="lo")[0], ipr.link_lookup(ifname="eth0")[0]
            ipr.link("set", index=lo, state="up")
            ip, prefix = addr.split("/")
            ipr.addr("add", index=eth0, address=ip, prefixlen=int(prefix))
            ipr.link("set", index=eth0, state="up")
            self.tune_link("host" if ipr is host else "upstream", "eth0")
        up.addr("add", index=up.link_lookup(ifname="lo")[0], address=topo.internet, prefixlen=32)
        host.route("add", dst="0.0.0.0/0", gateway=topo.router_address.split("/")[0], proto=3)
        self.write_sysctl("upstream", "net.ipv4.ip_forward", "1")

    def tune_link(self, ns: str, ifname: str) -> None:
        """Make ARP on a lab link give up in 0.1 s (see ARP_RETRANS_MS). A link with no
        ARP (or gone already) is left alone."""
        index = self.link_index(ns, ifname)
        if index is None:
            return
        try:
            self.ipr(ns).arp_retrans(index, ARP_RETRANS_MS)
        except NetlinkError as exc:
            if exc.code != errno.ENOENT:
                raise

    def destroy(self) -> None:
        """Remove every namespace, mount, process and file of this lab, and nothing else."""
        self.close_handles()
        self._forget_namespaces()
        self._cleanup_kernel_state()
        for sub in ("journal.json", "last.json", "course.json", "hints.json", "lab.json"):
            for name in (sub, sub + ".tmp"):  # a .tmp is left by a kill in the middle of a rewrite
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, name))
        if os.path.isdir(self.run_dir):  # a lab made by an older netstep: its servers' pid files
            for entry in os.listdir(self.run_dir):
                with suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.run_dir, entry))
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
        if os.path.isdir(self.netns_dir):
            for entry in os.listdir(self.netns_dir):
                namespaces.remove(os.path.join(self.netns_dir, entry))
            while namespaces._libc.umount2(self.netns_dir.encode(), namespaces.MNT_DETACH) == 0:
                pass
        for ns in ("host", "upstream"):
            namespaces.remove(os.path.join(self.dir, ns))

    def close_handles(self, *, all_threads: bool = True) -> None:
        """Close netlink handles: every thread's, or only the calling thread's."""
        me = threading.get_ident()
        for key in [k for k in self._handles if all_threads or k[0] == me]:
            with suppress(Exception):
                self._handles.pop(key).close()
        # The ioctl sockets and namespace ids are shared by threads: they go too, so that a
        # worker that drops its handles after each call (the demo's) starts fresh each time.
        for ns in list(self._ioctl_sockets):
            self._ioctl_sockets.pop(ns).close()
        self._forget_namespaces()

    # -- namespaces ------------------------------------------------------------------

    def _forget_namespaces(self) -> None:
        """Drop what is remembered about the namespaces: they are being made or removed,
        or the lock was free (see _nsid_resolver)."""
        self._nsids.clear()
        self._pinned.clear()

    def _is_pinned(self, path: str) -> bool:
        if path in self._pinned:
            return True
        pinned = namespaces.is_pinned(path)
        if pinned and self._lock_fd is not None and path.startswith(self.dir + os.sep):
            self._pinned.add(path)  # (not host mode's upstream: the user's file, not the lab's)
        return pinned

    def containers(self) -> list[str]:
        if not os.path.isdir(self.netns_dir):
            return []
        return sorted(n for n in os.listdir(self.netns_dir) if self._is_pinned(os.path.join(self.netns_dir, n)))

    def namespace_names(self) -> list[str]:
        return ["host", *self.containers(), *(["upstream"] if self.has_namespace("upstream") else [])]

    def path_of(self, ns: str) -> str | None:
        """The file of namespace `ns`; None for the namespace netstep runs in (host mode)."""
        if ns == "host":
            return None if self.host_mode else os.path.join(self.dir, ns)
        if ns == "upstream":
            return self.upstream_path if self.host_mode else os.path.join(self.dir, ns)
        return os.path.join(self.netns_dir, ns)

    def has_namespace(self, ns: str) -> bool:
        path = self.path_of(ns)
        if path is None:
            return ns == "host"
        return self._is_pinned(path)

    def require(self, ns: str) -> str | None:
        if not NS_NAME_RE.match(ns) or not self.has_namespace(ns):
            known = ", ".join(self.namespace_names())
            hint = " In host mode, checks from upstream need --upstream NETNS_FILE." if ns == "upstream" else ""
            raise NetstepError(f"There is no namespace '{ns}' in lab '{self.name}'. It has: {known}.{hint}")
        return self.path_of(ns)

    def fd_path(self, ns: str) -> str:
        """A file to open for a descriptor of namespace `ns`."""
        return self.require(ns) or "/proc/self/ns/net"

    @property
    def rule_mark(self) -> str | None:
        """The comment on every iptables rule netstep adds in host mode."""
        return f"netstep:{self.name}" if self.host_mode else None

    def ipr(self, ns: str):
        key = (threading.get_ident(), ns)
        handle = self._handles.get(key)
        if handle is None:
            handle = namespaces.iproute(self.require(ns))
            self._handles[key] = handle
        return handle

    def link_index(self, ns: str, name: str) -> int | None:
        """The index of device `name` in `ns`, or None if there is none.

        One ioctl (SIOCGIFINDEX, what if_nametoindex does) on a socket made in `ns`: about
        ten times cheaper than a netlink request, and building 30 containers asks this
        hundreds of times.
        """
        result = self._ifreq(ns, name, SIOCGIFINDEX)
        return None if result is None else struct.unpack_from("i", result, IFNAMSIZ)[0]

    def link_flags(self, ns: str, name: str) -> int | None:
        """The IFF_* flags of device `name` in `ns` (SIOCGIFFLAGS), or None if there is none."""
        result = self._ifreq(ns, name, SIOCGIFFLAGS)
        return None if result is None else struct.unpack_from("H", result, IFNAMSIZ)[0]

    def settle_carrier(self, ns: str, name: str) -> None:
        """Have the kernel finish its pending carrier work on link `name` now.

        A veth going down takes its peer's carrier, and the kernel reacts (the peer's
        routes turn `linkdown`) from a work queue of its own, up to a second later. Asking
        a link's state with ETHTOOL_GLINK makes the kernel do that work for the link first,
        so a snapshot taken next shows the whole effect of a step.
        """
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_GLINK, 0))
        try:
            self._ifreq(ns, name, SIOCETHTOOL, struct.pack("P16x", ctypes.addressof(value)))
        except OSError as exc:
            if exc.errno != errno.EOPNOTSUPP:
                raise

    def _ifreq(self, ns: str, name: str, request: int, data: bytes = bytes(24)) -> bytes | None:
        """An interface ioctl on device `name` in `ns` (the ifreq's name, then `data`);
        None if there is no such device."""
        if not 0 < len(name.encode()) < IFNAMSIZ:
            return None  # no device can have that name
        sock = self._ioctl_sockets.get(ns)
        if sock is None:
            sock = self._ioctl_sockets[ns] = self.socket(ns, socket.AF_INET, socket.SOCK_DGRAM)
        try:
            return fcntl.ioctl(sock.fileno(), request, struct.pack(f"{IFNAMSIZ}s", name.encode()) + data)
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return None
            raise

    def add_container(self, ns: str) -> None:
        if not NS_NAME_RE.match(ns) or ns in ("host", "upstream"):
            raise NetstepError(f"'{ns}' cannot name a container namespace.")
        path = self.path_of(ns)
        if os.path.exists(path):
            raise NameConflict(f"A namespace named '{ns}' already exists in lab '{self.name}'.")
        namespaces.create(path)
        self._forget_namespaces()

    def remove_container(self, ns: str) -> None:
        for key in [k for k in self._handles if k[1] == ns]:
            with suppress(Exception):
                self._handles.pop(key).close()
        if ns in self._ioctl_sockets:
            self._ioctl_sockets.pop(ns).close()
        self.stop_servers(ns)
        try:
            namespaces.remove(self.require(ns))
        finally:
            self._forget_namespaces()

    def exec(self, ns: str, argv: list[str]):
        return namespaces.exec_in(self.require(ns), argv)

    def socket(self, ns: str, family: int, kind: int, proto: int = 0) -> socket.socket:
        return namespaces.socket_in(self.require(ns), family, kind, proto)

    # -- sysctls ---------------------------------------------------------------------

    def read_sysctl(self, ns: str, key: str) -> str | None:
        path = "/proc/sys/" + key.replace(".", "/")

        def read() -> str | None:
            try:
                with open(path) as f:
                    return f.read().strip()
            except FileNotFoundError:
                return None

        return namespaces.run_in(self.require(ns), read)

    def read_forwarding_settings(self, ns: str, family: str) -> tuple[tuple[str, str], ...]:
        """(file under /proc/sys/net, value) of everything that writing `family`'s global
        forwarding switch also sets: every device's `forwarding` (and `default`'s) and, for
        ipv4, `all.accept_redirects`. Read by folder: device names can hold dots."""
        root = f"/proc/sys/net/{family}/conf"

        def read() -> tuple[tuple[str, str], ...]:
            files = [f"{family}/conf/{device}/forwarding" for device in sorted(os.listdir(root)) if device != "all"]
            if family == "ipv4":
                files.append("ipv4/conf/all/accept_redirects")
            values = []
            for name in files:
                with suppress(FileNotFoundError), open(f"/proc/sys/net/{name}") as f:
                    values.append((name, f.read().strip()))
            return tuple(values)

        return namespaces.run_in(self.require(ns), read)

    def write_net_settings(self, ns: str, values: tuple[tuple[str, str], ...]) -> None:
        """Write (file under /proc/sys/net, value) pairs; a device gone meanwhile is skipped."""

        def write() -> None:
            for name, value in values:
                if ".." in name.split("/"):
                    raise NetstepError(f"Refusing a settings path outside /proc/sys/net: {name}")
                with suppress(FileNotFoundError), open(f"/proc/sys/net/{name}", "w") as f:
                    f.write(value)

        namespaces.run_in(self.require(ns), write)

    def write_sysctl(self, ns: str, key: str, value: str) -> None:
        path = "/proc/sys/" + key.replace(".", "/")

        def write() -> None:
            with open(path, "w") as f:
                f.write(value)

        namespaces.run_in(self.require(ns), write)

    # -- servers ---------------------------------------------------------------------

    def stop_servers(self, ns: str | None = None, address: str | None = None, port: int | None = None) -> None:
        """Stop the lab's HTTP servers (in `ns`, on `address`:`port`, or all): see netstep.servers."""
        servers.stop(self.dir, ns, address, port)

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(
        self,
        names: list[str] | None = None,
        *,
        caches: bool = True,
        sysctls: tuple[str, ...] = (),
        rules_of: set[str] | None = None,
        known: Snapshot | None = None,
    ) -> Snapshot:
        """Read the state of `names` (default: every namespace of the lab).

        Reading iptables costs a process per namespace and sysctls a thread, so a caller
        that knows where rules and sysctls can have changed names those namespaces in
        `rules_of`; the others keep the rules and sysctls of `known` (a namespace `known`
        lacks was made by the move, and starts with no rules).
        """
        names = [ns for ns in (names or self.namespace_names()) if self.has_namespace(ns)]
        keys = tuple(dict.fromkeys((*WATCHED_SYSCTLS, *sysctls)))
        states = {}
        indexes: dict[str, dict[int, str]] = {}
        for ns in names:
            ipr = self.ipr(ns)
            links, indexes[ns] = read_links(ipr, self._nsid_resolver(ns))
            for link in links:
                if link.kind == "veth":  # before the routes are read: see settle_carrier
                    self.settle_carrier(ns, link.name)
            if rules_of is None or ns in rules_of or known is None:
                rules = tuple(parse_iptables_save(self.exec(ns, ["iptables-save"]).stdout))
                sysctl_values = self.read_sysctls(ns, keys)
            elif ns not in known.namespaces:  # made by this move, which set no rule in it
                rules, sysctl_values = (), self.read_sysctls(ns, keys)
            else:
                rules, sysctl_values = known[ns].rules, known[ns].sysctls
            state = NamespaceState(
                name=ns,
                links=tuple(links),
                addresses=tuple(read_addresses(ipr, indexes[ns])),
                routes=tuple(read_routes(ipr, indexes[ns])),
                rules=rules,
                sysctls=sysctl_values,
            )
            if caches:
                state = _with_caches(state, ipr, indexes[ns], self.exec(ns, ["conntrack", "-L"]).stdout)
            states[ns] = state
        return Snapshot(_name_peers(states, indexes, self, known))

    def read_sysctls(self, ns: str, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        """The values of `keys` that exist in `ns`, read from one thread inside it."""

        def read() -> tuple[tuple[str, str], ...]:
            values = []
            for key in keys:
                try:
                    with open("/proc/sys/" + key.replace(".", "/")) as f:
                        values.append((key, f.read().strip()))
                except FileNotFoundError:
                    continue
            return tuple(values)

        return namespaces.run_in(self.require(ns), read)

    def _nsid_resolver(self, ns: str):
        """A function naming the lab namespace that `ns` knows under a given id.

        The kernel gives ids lazily (when a veth pair first crosses between two
        namespaces) and keeps them while both namespaces live. The answers are kept only
        while this object holds the lock and has made or removed no namespace: then nobody
        else can have changed the lab's namespaces. (Keeping them by nsfs inode number
        instead misnamed peers: the kernel reuses those numbers.)
        """
        known = self._nsids.setdefault(ns, {})

        def name(nsid: int) -> str:
            if nsid not in known:  # new since asked: ask the namespaces not named yet, the host first
                unknown = [o for o in self.namespace_names() if o != ns and o not in known.values()]
                for other in sorted(unknown, key=lambda o: o != "host"):
                    fd = os.open(self.fd_path(other), os.O_RDONLY)
                    try:
                        answer = self.ipr(ns).get_netnsid(fd=fd).get("nsid")
                    finally:
                        os.close(fd)
                    if answer is not None and 0 <= answer < 0xFFFFFFFF:
                        known[answer] = other
                    if nsid in known:
                        break
            return known.get(nsid, "?")

        return name

    def peer_of(self, ns: str, link: str) -> tuple[str, str] | None:
        """Where the other end of veth `link` in `ns` is: (namespace, name)."""
        links, index = read_links(self.ipr(ns), self._nsid_resolver(ns))
        found = next((item for item in links if item.name == link), None)
        if found is None or not found.peer:
            return None
        state = _name_peers({ns: NamespaceState(ns, links=(found,))}, {ns: index}, self)[ns]
        name, _, where = state.links[0].peer.partition("@")
        return (where or ns, name)


def _with_caches(state: NamespaceState, ipr, index: dict[int, str], conntrack: str) -> NamespaceState:
    from dataclasses import replace

    has_bridge = any(link.kind == "bridge" for link in state.links)
    return replace(
        state,
        neighbours=tuple(read_neighbours(ipr, index)),
        fdb=tuple(read_fdb(ipr, index)) if has_bridge else (),
        conntrack=tuple(read_conntrack(conntrack)),
    )


def _name_peers(
    states: dict[str, NamespaceState], indexes: dict[str, dict[int, str]], lab: Lab, known: Snapshot | None = None
) -> dict[str, NamespaceState]:
    """Turn "#7@netns0" peers into "ceth0@netns0" using that namespace's index map.

    A peer in a namespace that was not read now keeps the name `known` gives it when the
    link's peer was in that same namespace before: that namespace did not change (the
    engine reads every namespace a step names), so neither did the peer. Otherwise the
    peer's namespace is asked.
    """
    cache = dict(indexes)
    out = {}
    for ns, state in states.items():
        before = {link.name: link.peer for link in known[ns].links} if known and ns in known.namespaces else {}
        links = []
        for link in state.links:
            if link.peer and link.peer.startswith("#"):
                idx, _, where = link.peer[1:].partition("@")
                kept = before.get(link.name) or ""
                if where not in cache and kept.endswith(f"@{where}") and not kept.startswith("?"):
                    link = replace(link, peer=kept)
                else:
                    if where not in cache and lab.has_namespace(where):
                        cache[where] = {m["index"]: m.get("ifname") for m in lab.ipr(where).link("dump")}
                    link = replace(link, peer=f"{cache.get(where, {}).get(int(idx), '?')}@{where}")
            links.append(link)
        out[ns] = replace(state, links=tuple(links))
    return out


def existing_labs(root: str = ROOT) -> list[str]:
    if not os.path.isdir(root):
        return []
    return sorted(n for n in os.listdir(root) if os.path.exists(os.path.join(root, n, "lab.json")))


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))

