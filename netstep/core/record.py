"""lab.json: how a lab was made, written when it is built and read whenever it is locked.

It marks the folder as a netstep lab and records the mode (sandbox or host), the internet
host and upstream of host mode, and, for host mode, the network namespace the lab was made
in: a host-mode lab's journal holds undos for that namespace's devices and rules, so the
lab is refused from any other, where they would change what netstep did not make.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from netstep.errors import NetstepError
from netstep.kernel import namespaces


@dataclass(frozen=True)
class Mode:
    """What a locked lab is: its mode, its upstream file and internet host in host mode, and
    whether its namespace is gone (`orphaned`: only its files and own namespaces remain)."""

    host: bool
    upstream: str | None = None
    internet: str | None = None
    orphaned: bool = False


def made(name: str, *, host_mode: bool, internet: str, upstream: str | None) -> dict:
    """The record of a lab being made now, in this namespace."""
    out = {"netstep": 1, "name": name, "created": time.time(), "host": host_mode, "internet": internet,
           "upstream": upstream}
    if host_mode:
        dev, ino = namespaces.identity()
        out["netns"] = {"dev": dev, "ino": ino}
    return out


def mode_of(record: dict, name: str, *, host_mode: bool, upstream: str | None, adopt: bool = False) -> Mode:
    """The mode of the lab `record` describes, for a command that asked for `host_mode`
    (and `upstream`). A mismatch is refused unless `adopt` (for `reset`), and so is a
    host-mode lab from any namespace but its own."""
    host = bool(record.get("host"))
    if host != host_mode and not adopt:
        flag, how = ("--host ", "with --host") if host else ("", "without --host")
        raise NetstepError(
            f"Lab '{name}' was made {how}: use it the same way (as in `python -m netstep {flag}"
            f"--lab {name} next`), or remove it with `python -m netstep --lab {name} reset`."
        )
    if not host:
        return Mode(host=False)
    mode = Mode(host=True, upstream=record.get("upstream") or (None if adopt else upstream),
                internet=record.get("internet") or "8.8.8.8")
    recorded = record.get("netns")
    if recorded is None:  # made by a netstep that did not record it: trust the caller
        return mode
    ident = (recorded["dev"], recorded["ino"])
    if ident == namespaces.identity():
        return mode
    if not namespaces.is_alive(ident):
        if adopt:
            return Mode(host=True, upstream=mode.upstream, internet=mode.internet, orphaned=True)
        raise NetstepError(
            f"Lab '{name}' was made with --host in network namespace net:[{ident[1]}], which is "
            f"gone. Nothing of it is left to use: remove its files and namespaces with "
            f"`python -m netstep --lab {name} reset`."
        )
    raise NetstepError(
        f"Lab '{name}' was made with --host in network namespace net:[{ident[1]}], and its changes "
        f"live there; this is net:[{namespaces.identity()[1]}] (`ls -l /proc/self/ns/net` shows it). "
        f"Using or resetting the lab from here would apply its undos to a namespace it never changed, "
        f"so netstep touched nothing. Run the command in the namespace where the lab was made (the "
        f"shell you made it from, not inside `ip netns exec` or `unshare`), or use another lab with "
        f"--lab NAME."
    )
