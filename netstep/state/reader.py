"""Reading a lab's namespaces into a Snapshot, peers named by the article's names.

A veth's peer in another namespace comes from the kernel as an index and a namespace
id that only the asking namespace understands; `NsidNames` turns the id into the lab's
name for that namespace and `name_peers` the index into the device's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from netstep.errors import NetstepError
from netstep.kernel import namespaces, sysctl
from netstep.kernel.handles import Handles
from netstep.kernel.registry import Namespaces
from netstep.state.read import (
    parse_iptables_save,
    read_addresses,
    read_conntrack,
    read_fdb,
    read_links,
    read_neighbours,
    read_routes,
)
from netstep.state.snapshot import NamespaceState, Snapshot

# Shown by `show sysctls`: forwarding, whether bridged frames pass iptables, and the
# reverse-path filter (a device's effective value is the larger of `all` and its own).
WATCHED_SYSCTLS = ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables", "net.ipv4.conf.all.rp_filter",
                   "net.ipv4.conf.eth0.rp_filter")


class StateReader:
    """Reads the namespaces of `registry` through `handles`."""

    def __init__(self, registry: Namespaces, handles: Handles) -> None:
        self.registry = registry
        self.handles = handles
        # Namespace ids as each namespace knows the others: see nsid_resolver.
        self._nsids: dict[str, dict[int, str]] = {}

    def forget(self, ns: str | None = None) -> None:
        """Drop the namespace ids: those of and for namespace `ns` (it is being removed: the
        kernel may give its ids to a namespace made next), or all (the lock was free)."""
        if ns is None:
            self._nsids.clear()
            return
        self._nsids.pop(ns, None)
        for known in self._nsids.values():
            for nsid in [i for i, name in known.items() if name == ns]:
                del known[nsid]

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
        `rules_of`, and gives in `known` the lab's current state for all it does not ask
        to be read (netstep.core.moments.Moments keeps that promise): the other namespaces
        keep the rules and sysctls of `known` (a namespace `known` lacks was made by the
        move, and starts with no rules), and peers in namespaces not read keep their names.
        """
        registry = self.registry
        # An empty list reads nothing (a step that only checks changes nothing); None reads all.
        names = [ns for ns in (registry.names() if names is None else names) if registry.has(ns)]
        keys = tuple(dict.fromkeys((*WATCHED_SYSCTLS, *sysctls)))
        states = {}
        indexes: dict[str, dict[int, str]] = {}
        # Each namespace's iptables-save starts now, and all run while the dumps are decoded.
        saved = {ns: namespaces.exec_started(registry.require(ns), ["iptables-save"]) for ns in names
                 if rules_of is None or ns in rules_of or known is None}
        for ns in names:
            ipr = self.handles.ipr(ns)
            links, indexes[ns] = read_links(ipr, self.nsid_resolver(ns))
            for link in links:
                if link.kind == "veth":  # before the routes are read: see Handles.settle_carrier
                    self.handles.settle_carrier(ns, link.name)
            if ns in saved:
                rules = tuple(parse_iptables_save(saved[ns]().stdout))
                sysctl_values = sysctl.read_many(registry.require(ns), keys)
            elif ns not in known.namespaces:  # made by this move, which set no rule in it
                rules, sysctl_values = (), sysctl.read_many(registry.require(ns), keys)
            else:
                rules, sysctl_values = known[ns].rules, known[ns].sysctls
            index = indexes[ns]
            state = NamespaceState(
                name=ns,
                links=tuple(links),
                addresses=tuple(read_addresses(ipr, index)),
                routes=tuple(route.text() for route in read_routes(ipr, lambda i, index=index: index.get(i, i))),
                rules=rules,
                sysctls=sysctl_values,
            )
            if caches:
                has_bridge = any(link.kind == "bridge" for link in state.links)
                state = replace(
                    state,
                    neighbours=tuple(read_neighbours(ipr, index)),
                    fdb=tuple(read_fdb(ipr, index)) if has_bridge else (),
                    conntrack=tuple(read_conntrack(self._exec(ns, ["conntrack", "-L"]).stdout)),
                )
            states[ns] = state
        return Snapshot(self.name_peers(states, indexes, known))

    def caches(self, ns: str, parts: set[str]) -> dict[str, tuple[str, ...]]:
        """The caches of `ns` that `parts` names (neighbours, fdb, conntrack), read now: what a
        step shows of them after its checks, without reading its configuration again."""
        out: dict[str, tuple[str, ...]] = {}
        if parts & {"neighbours", "fdb"}:
            ipr = self.handles.ipr(ns)
            links, index = read_links(ipr, self.nsid_resolver(ns))
            if "neighbours" in parts:
                out["neighbours"] = tuple(read_neighbours(ipr, index))
            if "fdb" in parts:
                out["fdb"] = tuple(read_fdb(ipr, index)) if any(link.kind == "bridge" for link in links) else ()
        if "conntrack" in parts:
            out["conntrack"] = tuple(read_conntrack(self._exec(ns, ["conntrack", "-L"]).stdout))
        return out

    def _exec(self, ns: str, argv: list[str]):
        return namespaces.exec_in(self.registry.require(ns), argv)

    def nsid_resolver(self, ns: str) -> Callable[[int], str]:
        """A function naming the lab namespace that `ns` knows under a given id.

        The kernel gives ids lazily (when a veth pair first crosses between two
        namespaces) and keeps them while both namespaces live. The answers are kept while
        the lab is locked, and those naming a namespace until it is removed (the lab calls
        `forget` then): nobody else can have changed the lab's namespaces. (Keeping
        them by nsfs inode number instead misnamed peers: the kernel reuses those numbers.)
        """
        known = self._nsids.setdefault(ns, {})

        def name(nsid: int) -> str:
            if nsid not in known:  # new since asked: ask the namespaces not named yet, the host first
                unknown = [o for o in self.registry.names() if o != ns and o not in known.values()]
                for other in sorted(unknown, key=lambda o: o != "host"):
                    fd = os.open(self.registry.fd_path(other), os.O_RDONLY)
                    try:
                        answer = self.handles.ipr(ns).get_netnsid(fd=fd).get("nsid")
                    finally:
                        os.close(fd)
                    if answer is not None and 0 <= answer < 0xFFFFFFFF:
                        known[answer] = other
                    if nsid in known:
                        break
            return known.get(nsid, "?")

        return name

    def peer_of(self, ns: str, msg) -> tuple[str, str] | None:
        """Where the other end of the veth in `ns` whose link message (pyroute2's, as a
        `get` gives it) is `msg` is: (namespace, name). Its peer is asked with one more
        `get`, not found in a dump of every device on both sides."""
        link = msg.get("ifname")
        info = msg.get("IFLA_LINKINFO")
        peer_index = msg.get("IFLA_LINK")
        if not info or info.get("IFLA_INFO_KIND") != "veth" or not peer_index:
            return None
        nsid = msg.get("IFLA_LINK_NETNSID")
        where = ns if nsid is None else self.nsid_resolver(ns)(nsid)
        if not self.registry.has(where):
            # (deleting it would remove an end netstep cannot name, and so cannot put back)
            raise NetstepError(f"The other end of {link} in {ns} is in a network namespace outside the lab, "
                               f"which netstep does not change: {link} is left as it is.")
        peer = self.handles.ipr(where).link("get", index=peer_index)[0]
        return (where, peer.get("ifname"))

    def name_peers(
        self, states: dict[str, NamespaceState], indexes: dict[str, dict[int, str]], known: Snapshot | None = None
    ) -> dict[str, NamespaceState]:
        """Turn "#7@netns0" peers into "ceth0@netns0" using that namespace's index map.

        A peer in a namespace that was not read now keeps the name `known` gives it when the
        link's peer was in that same namespace before (see `snapshot`). Otherwise the peer's
        namespace is asked.
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
                        if where not in cache and self.registry.has(where):
                            cache[where] = {m["index"]: m.get("ifname") for m in self.handles.ipr(where).link("dump")}
                        link = replace(link, peer=f"{cache.get(where, {}).get(int(idx), '?')}@{where}")
                links.append(link)
            out[ns] = replace(state, links=tuple(links))
        return out
