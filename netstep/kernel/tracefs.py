"""The kernel's own account of dropped packets: `skb:kfree_skb` in a private tracefs instance.

Every packet the kernel throws away passes `kfree_skb`, whose trace event names the
function that dropped it and why (`ip_error`, `IP_INADDRERRORS`; `nf_hook_slow`,
`NETFILTER_DROP`). That is what pwru, dropwatch and `perf trace -e skb:kfree_skb` read.

Tracing is machine-wide, so netstep never touches the top-level settings: it makes an
instance of its own (`instances/netstep-PID-N`), enables the one event there, filtered to
IPv4, reads it, and removes the instance, always. If tracefs is not mounted, it is mounted
on a folder of netstep's own for the time of the watch and unmounted after.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
from contextlib import suppress
from dataclasses import dataclass

from netstep.errors import NetstepError
from netstep.kernel import userns

ETH_P_IP = 0x0800
OWN_MOUNT = "/run/netstep/tracefs"
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)
_serial = itertools.count()
# "  python3-1234  [001] ..s1.  5678.901234: kfree_skb: skbaddr=... location=ip_error+0x4c/0x1e0 reason: X"
_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+\(\s*(?P<tgid>[\d-]+)\)\s+\[\d+\].*?\s(?P<ts>\d+\.\d+): "
                   r"kfree_skb: (?P<rest>.*)$")


@dataclass(frozen=True)
class Drop:
    """One packet the kernel dropped: where (the kernel function) and why (its reason)."""

    pid: int
    time: float  # the trace clock, seconds
    location: str  # "ip_error", "nf_hook_slow", ...
    reason: str  # "IP_INADDRERRORS", "NETFILTER_DROP", ...

    def describe(self) -> str:
        return f"{self.reason} in {self.location}"


def _mounted_tracefs() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "tracefs":
                return fields[1].replace("\\040", " ")
    return None


class DropWatch:
    """A private tracefs instance watching IPv4 drops; a context manager that always cleans up.

    `drops()` gives what was dropped so far by this process's threads (a packet sent into
    a lab is carried through its namespaces by the sender's own softirq work, so the
    drops of the probe are recorded with its process id); `others` counts the rest of
    the machine's.
    """

    def __init__(self) -> None:
        self.root: str | None = None
        self.instance: str | None = None
        self._mounted: str | None = None
        self.others = 0

    def __enter__(self) -> DropWatch:
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        if userns.inside():
            raise NetstepError("they need root (tracefs is the machine's, not a user namespace's), so the "
                               "verdict is proven from the kernel's counters alone.")
        root = _mounted_tracefs()
        if root is None:
            root = f"{OWN_MOUNT}.{os.getpid()}"
            os.makedirs(root, exist_ok=True)
            if _libc.mount(b"nodev", root.encode(), b"tracefs", 0, None) != 0:
                err = ctypes.get_errno()
                with suppress(OSError):
                    os.rmdir(root)
                raise NetstepError(f"tracefs could not be mounted ({os.strerror(err)}): the kernel's drop "
                                   "reasons are not available here.")
            self._mounted = root
        self.root = root
        instance = os.path.join(root, "instances", f"netstep-{os.getpid()}-{next(_serial)}")
        os.mkdir(instance)
        self.instance = instance
        event = os.path.join(instance, "events", "skb", "kfree_skb")
        if not os.path.isdir(event):
            raise NetstepError("This kernel has no skb:kfree_skb trace event: drop reasons are not available.")
        self._write(os.path.join(instance, "options", "record-tgid"), "1")  # this instance's option only
        self._write(os.path.join(event, "filter"), f"protocol == {ETH_P_IP}")
        self._write(os.path.join(event, "enable"), "1")

    @staticmethod
    def _write(path: str, text: str) -> None:
        with open(path, "w") as f:
            f.write(text)

    def drops(self) -> list[Drop]:
        """The drops recorded so far by this process's threads, oldest first."""
        if self.instance is None:
            return []
        with open(os.path.join(self.instance, "trace")) as f:
            text = f.read()
        found, others = [], 0
        for line in text.splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            rest = match["rest"]
            location = re.search(r"location=([^\s+/]+)", rest)
            reason = re.search(r"reason: (\S+)", rest)
            pid = int(match["pid"])
            if match["tgid"] != str(os.getpid()):
                others += 1
                continue
            found.append(Drop(pid, float(match["ts"]), location[1] if location else "?",
                              reason[1] if reason else "NOT_SPECIFIED"))
        self.others = others
        return found

    def close(self) -> None:
        """Disable the event and remove the instance (and the mount netstep made, if any)."""
        if self.instance is not None:
            with suppress(OSError):
                self._write(os.path.join(self.instance, "events", "skb", "kfree_skb", "enable"), "0")
            with suppress(FileNotFoundError):
                os.rmdir(self.instance)
            self.instance = None
        if self._mounted is not None:
            _libc.umount2(self._mounted.encode(), MNT_DETACH)
            with suppress(OSError):
                os.rmdir(self._mounted)
            self._mounted = None
