"""Where this process's labs live, chosen once, before anything runs: a backend.

    sandbox    root: the labs' namespaces in the machine's own user namespace
    host       root with --host: the lab host is this machine's own network namespace
    userns     an ordinary user: the lab lives in a user namespace of the user's own, kept
               by a holder process (netstep.kernel.userns) that this process joins first

The backend owns what differs between them: the privileges a lab needs (what is refused,
and why, in one paragraph), how a process gets into its lab (userns: joins the holder
before any thread starts), and what a reset leaves (userns: the holder is stopped, so
nothing is left). Inside the holder, this process is root over the lab's namespaces alone,
so the labs' folders (/run/netstep/..., on the holder's own tmpfs) and everything below
work as they do for root. The machine's root gets exactly what it got before.

Only the standard library and netstep.kernel.userns are imported here: `python -m
netstep` calls `enter` before the rest of netstep is loaded.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import suppress
from dataclasses import dataclass, field

from netstep.errors import NetstepError
from netstep.kernel import userns

# The commands that open a lab. (`notebooks --html` opens one per notebook, in the notebook's
# kernel: an ordinary user's kernel joins none, its Tutor's process does, see netstep.tutor.)
LAB_COMMANDS = frozenset({"run", "start", "verify", "hint", "solution", "next", "back", "check", "inspect",
                          "trace", "diff", "rollback", "reset", "shell", "demo", "challenge"})
HOST_NEEDS_ROOT = "host mode changes this machine's own network and needs root: run it as root, or leave out --host."


@dataclass
class Backend:
    """The backend of this process (see the module's docstring)."""

    name: str
    problem: str | None = None  # why no lab can be opened here, said when one is needed
    lab: str | None = None
    holder: userns.Holder | None = None
    _records: int | None = field(default=None, repr=False)  # the runtime folder, open (see stop_holder)

    def require(self) -> None:
        """Refuse, in one paragraph, to open a lab where this backend cannot."""
        if self.problem:
            raise NetstepError(self.problem)

    @property
    def user_namespace(self) -> bool:
        return self.name == "userns"

    def stop_holder(self) -> None:
        """After a reset: stop the lab's holder and remove its record, so nothing is left.
        (The record's folder may be hidden by the lab's own /run now: it is reached through
        the descriptor opened before joining.)"""
        if self.holder is None:
            return
        self.holder.stop()
        if self._records is not None:
            for name in (f"{self.lab}.holder", f"{self.lab}.lock"):
                with suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self._records)
        self.holder = None


_current = Backend("sandbox")


def current() -> Backend:
    return _current


def enter(command: str | None, lab: str, *, host: bool) -> Backend:
    """Choose this process's backend for `command` on `lab` and, for an ordinary user,
    join the lab's holder (starting one if there is none). Never raises: what went wrong
    is kept as the backend's problem, said when a lab is needed (Backend.require)."""
    global _current
    if os.geteuid() == 0 and not userns.inside():
        _current = Backend("host" if host else "sandbox")
        return _current
    if userns.inside():  # already in a lab's user namespace (a shell's netstep, say): as root there
        _current = Backend("userns", problem=HOST_NEEDS_ROOT if host else None, lab=lab)
        return _current
    if host:
        _current = Backend("userns", problem=HOST_NEEDS_ROOT, lab=lab)
        return _current
    if command not in LAB_COMMANDS:
        _current = Backend("userns", lab=lab)
        return _current
    try:
        _current = _join(lab)
    except (userns.UsernsError, OSError) as exc:
        _current = Backend("userns", problem=str(exc), lab=lab)
    return _current


def drop(lab: str) -> None:
    """An ordinary user's `lab`, not joined, let go: its holder stopped and its record
    removed, so nothing of it is left (the lab's namespaces went with the holder)."""
    holder = userns.find(lab)
    if holder is not None:
        userns.forget(lab, holder)


def _join(lab: str) -> Backend:
    """Find or start `lab`'s holder and join it, under a lock of the user's own so that two
    commands started at once make one holder."""
    folder = userns.runtime_dir()
    records = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    lock = os.open(os.path.join(folder, f"{lab}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        holder = userns.find(lab) or userns.start(lab)
        userns.join(holder)
    except BaseException:
        os.close(records)
        raise
    finally:
        os.close(lock)
    return Backend("userns", lab=lab, holder=holder, _records=records)
