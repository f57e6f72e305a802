"""Lesson 4 for N containers: "now put 30 containers on the bridge".

The generated lesson keeps lesson 4's first step (taking the old cables out), then builds
N container namespaces with veth pairs, a bridge, and plugs them all in; its check is every
one of the N*(N-1) pairs. The kernel's neighbour table is shared by all namespaces, and
each pair needs an entry, so N is limited by that table's size: `neighbour_room` says how
many entries are free, and `bridge_lesson` refuses an N that would not fit.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time

from netstep.course.lessons import Lesson, parse_lesson_text
from netstep.errors import NetstepError

FIRST = ipaddress.IPv4Address("172.18.0.0")


def address(i: int) -> str:
    """Container i's address, in order: 172.18.0.10, .20, ... (then 172.18.1.4, ...)."""
    return str(FIRST + 10 * (i + 1))


def neighbour_room() -> tuple[int, int]:
    """(free entries, size) of the kernel's IPv4 neighbour table, shared by every namespace."""
    with open("/proc/sys/net/ipv4/neigh/default/gc_thresh3") as f:
        size = int(f.read())
    with open("/proc/net/stat/arp_cache") as f:
        f.readline()
        used = int(f.readline().split()[0], 16)
    return size - used, size


def check_room(count: int, *, patience: float = 3.0) -> None:
    """Refuse `count` containers if the neighbour table cannot hold their pairs.

    Entries of namespaces removed a moment ago (a `reset` just before) stay counted until
    the kernel has torn those namespaces down, in its own time: wait `patience` seconds
    for them to go before refusing.
    """
    need = count * (count - 1)
    free, size = neighbour_room()
    waited_until = time.monotonic() + patience
    while free < need <= size and time.monotonic() < waited_until:
        time.sleep(0.05)
        free, size = neighbour_room()
    if need > free:
        largest = max(n for n in range(2, count + 1) if n * (n - 1) <= free) if free >= 2 else 0
        raise NetstepError(
            f"{count} containers that all ping each other need {need} entries in the kernel's neighbour "
            f"(ARP) table, which all namespaces share: it holds {size} (net.ipv4.neigh.default.gc_thresh3) "
            f"and {free} are free now, so the kernel would refuse with ENOBUFS. Use --containers {largest} "
            f"or fewer; a larger lab needs a larger gc_thresh3, a machine-wide setting netstep does not change."
        )


def built_with(lab) -> int | None:
    """How many containers `lab` was built for (None: the plain course)."""
    try:
        with open(os.path.join(lab.dir, "course.json")) as f:
            return json.load(f).get("containers")
    except (FileNotFoundError, ValueError):
        return None


def bridge_lesson(original: Lesson, count: int) -> Lesson:
    """Lesson 4 rebuilt for `count` containers (see `check_room` before building it)."""
    if not 2 <= count <= 250:
        raise NetstepError(f"--containers takes a number from 2 to 250, not {count}.")
    teardown = original.steps[0]
    lines = [f"# {original.title} ({count} containers)", "",
             f"The bridge lesson with {count} containers on `br0`, each with an address of 172.18.0.0/16 "
             "in order, and a check of every pair.", ""]
    lines += [f"## {teardown.title}", "", teardown.before, "", "```console"]
    lines += [f"{c.where}# {c.text}" for c in teardown.commands]
    lines += ["```", "", teardown.after, "", f"## Build {count} containers", "",
              "Each container gets a namespace and a veth pair whose container end is made straight in "
              "the container's namespace (`peer name ... netns ...`: one command instead of add and move); "
              "the host ends get no address.", "",
              "```console"]
    for i in range(count):
        lines += [f"host# ip netns add netns{i}",
                  f"host# ip link add veth{i} type veth peer name ceth{i} netns netns{i}",
                  f"host# ip link set veth{i} up",
                  f"netns{i}# ip link set lo up",
                  f"netns{i}# ip link set ceth{i} up",
                  f"netns{i}# ip addr add {address(i)}/16 dev ceth{i}"]
    lines += ["```", "", "## Create the bridge", "", "```console", "host# ip link add br0 type bridge",
              "host# ip link set br0 up", "```", "", "## Plug every cable into the bridge", "",
              f"With every host end a port of `br0`, each of the {count} containers reaches the "
              f"{count - 1} others: {count * (count - 1)} pairs.", "", "```console"]
    lines += [f"host# ip link set veth{i} master br0" for i in range(count)]
    lines += ["```", "", "```check"]
    lines += [f"ping netns{i} -> {address(j)} reachable" for i in range(count) for j in range(count) if i != j]
    lines += ["```", ""]
    return parse_lesson_text("\n".join(lines), original.path)
