"""The lab's configuration after the engine's last move: the incremental snapshot cache.

Reading every namespace before and after each step was 70% of a step, so a move reads
only what it can change. That rests on one invariant, kept here and nowhere else:

    `last()` is the configuration of every namespace of the lab after the last move.

A move changes only the namespaces `touched` names (those its actions name, and the
peers of veths whose carrier they change), and rules and sysctls only in its `rules_of`.
So the state after a move is `last()` with those namespaces read again (`moment`): the
reader keeps, from `last()`, the rules and sysctls of namespaces outside `rules_of` and
the names of peers in namespaces it did not read (netstep.state.reader). `remember`
folds the moment back in; `save`, as the lab's lock is let go, writes it to the lab's
last.json, so another process starts from it (none is there while it is stale). A
process that made no move yet reads `before` afresh, since a student may have worked by
hand meanwhile. Checks change only caches, which `last()` does not hold.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable

from netstep.core.lab import Lab
from netstep.course.actions import (
    Action,
    AddLink,
    AddNetns,
    DeleteLink,
    DeleteNetns,
    Iptables,
    MoveLink,
    Restore,
    SetLinkUp,
    Sysctl,
)
from netstep.kernel.registry import natural
from netstep.state.snapshot import Snapshot, from_json, to_json


class Moments:
    """The last known configuration of `lab`; `sysctls()` names the sysctls to read too."""

    def __init__(self, lab: Lab, sysctls: Callable[[], tuple[str, ...]]) -> None:
        self.lab = lab
        self._sysctls = sysctls
        self._last: Snapshot | None = None
        self.moved = False  # True once a move was remembered: the last state is current
        self._current = True  # False from the start of a change until its state is remembered
        self._pending = False  # True while last.json is gone, to be written as the lock is let go

    def forget(self) -> None:
        """The lab changed outside a move (its stand-in client went): read it afresh next time."""
        self._last, self.moved = None, False

    def changing(self) -> None:
        """The lab is about to change. From now until the lock is let go, last.json is gone:
        a kill in the middle leaves none (the next process reads the lab afresh), where a
        stale one would be trusted; and it is written again only if the change's state was
        remembered (`save`)."""
        self._current = False
        if not self._pending:
            self._pending = True
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lab.last_snapshot_path)
            self.lab.when_closing(self.save)

    def lapse(self) -> None:
        """A move is made without reading what it changes (Engine.skip_to): nothing known
        holds after it, in this process or in last.json, until the lab is read again."""
        self.changing()
        self.forget()

    def read(self, names: list[str] | None = None, *, caches: bool = False) -> Snapshot:
        """The state of `names` (every namespace), read afresh."""
        return self.lab.snapshot(names, caches=caches, sysctls=self._sysctls())

    def touched(self, actions: list[Action]) -> tuple[list[str], set[str]]:
        """The namespaces `actions` can change, and those whose rules or sysctls they can change.

        A step is diffed over these only: the namespaces its actions name, and the other
        end of each veth whose state they change (a veth going down, away or gone takes its
        peer's carrier, so the peer's routes turn `linkdown`). Enslaving a veth or giving it
        an address does not reach the peer: 30 containers plugged into a bridge read the
        host alone.
        """
        names: set[str] = set()
        rules_of: set[str] = set()
        carriers: dict[str, set[str] | None] = {}  # ns -> veths whose peers change (None: all)
        for action in actions:
            names.add(action.ns)
            if isinstance(action, MoveLink):
                names.add(action.to)
            elif isinstance(action, AddLink) and action.peer_ns:
                names.add(action.peer_ns)
            elif isinstance(action, (AddNetns, DeleteNetns)):
                names.add(action.name)
            elif isinstance(action, (Iptables, Sysctl)):
                rules_of.add(action.ns)
            elif isinstance(action, Restore):  # rebuilds whatever its image holds: every peer may change
                image = action.image
                rebuilt = {image.get("netns"), *(end["ns"] for link in image.get("links", ())
                                                 for end in (link, link.get("peer")) if end)} - {None}
                names.update(rebuilt, image.get("routes", {}))
                carriers.update(dict.fromkeys(rebuilt))
            if isinstance(action, (SetLinkUp, DeleteLink, MoveLink)):
                wanted = carriers.setdefault(action.ns, set())
                if wanted is not None:
                    wanted.add(action.name)
            elif isinstance(action, DeleteNetns):
                carriers[action.name] = None
        if any(".conf." in key and not key.split(".conf.", 1)[1].startswith(("all.", "default."))
               for key in self._sysctls()):
            # A device's own sysctls (net.ipv4.conf.br0.route_localnet) come and go with it.
            rules_of.update(a.ns for a in actions if isinstance(a, (AddLink, DeleteLink, MoveLink, Restore)))
            rules_of.update(a.to for a in actions if isinstance(a, MoveLink))
            rules_of.update(a.peer_ns for a in actions if isinstance(a, AddLink) and a.peer_ns)
        known = self.last()
        for ns in list(names):
            if ns not in carriers:
                continue
            wanted = carriers[ns]
            state = known.namespaces.get(ns)
            for link in state.links if state else ():
                if link.peer and "@" in link.peer and (wanted is None or link.name in wanted):
                    names.add(link.peer.split("@", 1)[1])
        order = self.lab.namespace_names()  # (namespaces a step makes come last, in their own order)
        return sorted(names, key=lambda n: (order.index(n), ()) if n in order else (len(order), natural(n))), rules_of

    def moment(self, names: list[str], rules_of: set[str]) -> Snapshot:
        """The configuration of `names`, reading iptables only in `rules_of`."""
        return self.lab.snapshot(names, caches=False, sysctls=self._sysctls(), rules_of=rules_of,
                                 known=self.last())

    def before(self, names: list[str], rules_of: set[str]) -> Snapshot:
        """The state a move starts from. Right after this engine's own last move nothing else
        has changed the lab's configuration (checks only add to caches), so that state is
        reused; otherwise (a new process: a student may have worked by hand) it is read."""
        if self.moved:
            last = self.last()
            return Snapshot({n: last.namespaces[n] for n in names if n in last.namespaces})
        return self.moment(names, rules_of)

    def last(self) -> Snapshot:
        """The lab's configuration after the last move (read in full the first time)."""
        if self._last is None:
            try:
                with open(self.lab.last_snapshot_path) as f:
                    self._last = from_json(json.load(f))
            except FileNotFoundError:
                self._last = self.read()
        return self._last

    def remember(self, moment: Snapshot) -> None:
        """Fold the state after a move into the lab's last known state (for `diff`)."""
        merged = {name: state for name, state in self.last().namespaces.items()
                  if self.lab.has_namespace(name) and name not in moment.namespaces}
        merged.update(moment.namespaces)
        self._store(merged)

    def settle(self) -> None:
        """Read the whole lab as the last known state, after moves that read nothing."""
        self._store(dict(self.read().namespaces))

    def _store(self, namespaces: dict) -> None:
        self.changing()  # (settle comes after moves that read nothing: the file is gone already)
        self.moved = self._current = True
        order = self.lab.namespace_names()
        present = sorted((n for n in namespaces if n in order), key=order.index)
        self._last = Snapshot({n: namespaces[n] for n in present})

    def save(self) -> None:
        """Write the last known state to last.json for the next process, if it is known:
        the lab calls this as its lock is let go (written at every move, it cost 2-15 ms a
        step). It is a cache: a file that cannot be written is left out, not an error."""
        if not self._pending or not self._current or self._last is None:
            return
        tmp = self.lab.last_snapshot_path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(json.dumps(to_json(self._last)))  # dumps: C encoder; dump is pure Python
            os.replace(tmp, self.lab.last_snapshot_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            return
        self._pending = False
