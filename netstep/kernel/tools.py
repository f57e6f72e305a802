"""Where the machine's network tools are.

iptables, iptables-save and conntrack live in /usr/sbin on Debian and Ubuntu, and an
ordinary user's PATH leaves the sbin folders out (root's has them). An ordinary user runs
the course in a user namespace of their own, where these tools work for them, so every
entry point (the command line, a notebook's Tutor, its worker) looks there too. Standard
library only: the worker calls it before it joins the lab.
"""

from __future__ import annotations

import os

SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")


def with_sbin(path: str) -> str:
    """`path` (a PATH value) with the sbin folders it lacks added at its end."""
    folders = [p for p in path.split(os.pathsep) if p]
    return os.pathsep.join([*folders, *(s for s in SBIN if s not in folders)])


def find_sbin_tools() -> None:
    """Let this process (and what it starts: a shell, iptables) find the sbin tools."""
    os.environ["PATH"] = with_sbin(os.environ.get("PATH", os.defpath))
