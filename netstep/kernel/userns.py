"""A lab in a user namespace of an ordinary user's own: its holder, found, checked, joined.

Without root, a lab lives in a user namespace the user owns, where the kernel grants
root's powers over the network namespaces made inside it and nothing else. A small holder
process per lab keeps that user namespace, a mount namespace (a tmpfs on /run, where the
lab's folder is) and a network namespace alive between commands, as rootless Podman's
pause process does. It is util-linux's `unshare` turned into `sleep infinity`.

The holder is found from a pid file in the user's own runtime folder ($XDG_RUNTIME_DIR/
netstep, or /tmp/netstep-UID), 0700 and checked to be the user's: the record holds the
holder's pid, its start time and its user namespace, and all three must still match (a
pid reused by another process is not the holder). A dead holder's lab is lost with it
(its namespaces and files lived in its namespaces); a new one replaces it.

A process joins the holder with setns, user namespace first: the kernel lets only a
single-threaded process join a user or a mount namespace, so `python -m netstep` joins
before anything starts a thread (see netstep.session.enter_backend).

Imported before the rest of netstep: the standard library only.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import stat
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)

# What the holder runs once `unshare` made its namespaces: the lab's own /run, then sleep.
# /run/netns is a mount of its own, for `netstep shell`, which finds the mount holding it
# with findmnt: the machine's /run/netns, hidden under this /run, is still listed in
# /proc/self/mountinfo, and findmnt would name it.
HOLDER_SCRIPT = ("mount -t tmpfs -o mode=0700 netstep-lab /run && mkdir /run/netns && "
                 "mount -t tmpfs -o mode=0755 netstep-netns /run/netns && echo ready && exec sleep infinity")


class UsernsError(Exception):
    """The user namespace could not be made, found or joined (said in one paragraph)."""


def inside() -> bool:
    """True in a user namespace other than the machine's: uid 0 here is not the machine's root."""
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def runtime_dir() -> str:
    """The user's own folder for holders' pid files, made 0700 if missing; refused if it is
    not the user's alone (someone else could then point this user at their holder)."""
    uid = os.getuid()
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    base = os.path.join(xdg, "netstep") if xdg and _owned_private(xdg, uid, must=False) else f"/tmp/netstep-{uid}"
    with suppress(FileExistsError):
        os.mkdir(base, 0o700)
    if not _owned_private(base, uid, must=True):
        raise UsernsError(f"{base} is not a folder of your own with mode 0700, so netstep will not keep its lab "
                          f"records there. Remove it (or set XDG_RUNTIME_DIR to a folder of your own) and run "
                          f"the command again.")
    return base


def _owned_private(path: str, uid: int, *, must: bool) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == uid and (info.st_mode & 0o077 == 0 or not must)


@dataclass(frozen=True)
class Holder:
    """A lab's holder process: its pid, its start time (clock ticks after boot) and its
    user namespace's inode; together, what tells it from a later process with its pid."""

    pid: int
    start: int
    userns: int

    def alive(self) -> bool:
        """Still this holder, and the user's: same start time, same user namespace, same owner."""
        try:
            return (_start_time(self.pid) == self.start and _state(self.pid) not in "ZX"
                    and os.stat(f"/proc/{self.pid}").st_uid == os.getuid()
                    and os.stat(f"/proc/{self.pid}/ns/user").st_ino == self.userns)
        except (OSError, ValueError):
            return False

    def stop(self) -> None:
        """Kill the holder and wait (up to 2 s) until it is gone: its namespaces go with it
        once no process of the lab is left in them."""
        if self.alive():
            with suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        for _ in range(200):
            if not self.alive():
                return
            time.sleep(0.01)


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields from the third (the state) on: after the (comm), which may hold spaces."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()


def _start_time(pid: int) -> int:
    return int(_stat_fields(pid)[19])  # field 22


def _state(pid: int) -> str:
    return _stat_fields(pid)[0]  # field 3: Z for a zombie (killed, not yet reaped), X dead


def pid_file(lab: str) -> str:
    return os.path.join(runtime_dir(), f"{lab}.holder")


def find(lab: str) -> Holder | None:
    """The live holder of `lab`, or None (a dead one's record is removed)."""
    path = pid_file(lab)
    try:
        with open(path) as f:
            holder = Holder(**json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        holder = None
    if holder is not None and holder.alive():
        return holder
    with suppress(FileNotFoundError):
        os.unlink(path)
    return None


def start(lab: str) -> Holder:
    """A new holder for `lab`, recorded in its pid file."""
    unshare = shutil.which("unshare")
    if unshare is None:
        raise UsernsError("netstep needs `unshare` (util-linux) to make a lab without root: "
                          "`apt-get install util-linux`.")
    argv = [unshare, "--user", "--map-root-user", "--net", "--mount", "--propagation", "private", "--",
            "sh", "-c", HOLDER_SCRIPT]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd="/", start_new_session=True, close_fds=True)
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if line != b"ready\n":
        error = proc.stderr.read().decode(errors="replace").strip() if proc.wait(10) is not None else ""
        raise UsernsError(f"netstep could not make a user namespace for lab '{lab}' ({error or 'no reason given'}). "
                          "`python -m netstep doctor` says what this machine allows and how to change it.")
    proc.stdout.close()
    proc.stderr.close()
    holder = Holder(proc.pid, _start_time(proc.pid), os.stat(f"/proc/{proc.pid}/ns/user").st_ino)
    path = pid_file(lab)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(holder.__dict__, f)
    os.replace(path + ".tmp", path)
    return holder


def forget(lab: str, holder: Holder) -> None:
    """Stop `holder` and remove its record (if it is still the one recorded for `lab`)."""
    holder.stop()
    if find(lab) in (None, holder):
        with suppress(FileNotFoundError):
            os.unlink(pid_file(lab))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def join(holder: Holder) -> None:
    """Move this process into `holder`'s user, mount and network namespaces, keeping its
    working folder. Only a single-threaded process may (the kernel's rule)."""
    if threads() != 1:
        raise UsernsError("netstep must join its lab's user namespace before any thread starts, and this "
                          "process has several: run the lab's work in a process of its own.")
    cwd = os.getcwd()
    fds: list[int] = []
    try:
        for kind in ("user", "mnt", "net"):
            fds.append(os.open(f"/proc/{holder.pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        for fd in fds:
            os.close(fd)
        raise UsernsError("the lab's holder process ended while netstep was joining it; run the command again.") \
            from None
    try:
        if not holder.alive():  # (the pid was checked before its files were opened)
            raise UsernsError("the lab's holder process ended while netstep was joining it; run the command again.")
        for fd, kind in zip(fds, (CLONE_NEWUSER, CLONE_NEWNS, CLONE_NEWNET), strict=True):
            if _libc.setns(fd, kind) != 0:
                err = ctypes.get_errno()
                raise UsernsError(f"netstep could not join its lab's namespaces (setns: {os.strerror(err)}).")
    finally:
        for fd in fds:
            os.close(fd)
    try:
        os.chdir(cwd)
    except OSError:
        os.chdir(os.path.expanduser("~"))
