"""How much of a run is spent in netlink calls: a netstep command run in this process, every
call to its netlink client timed (the kernel's work inside the call included).

    sudo .venv/bin/python bench/netlink_time.py                         # 30 containers, --json
    sudo .venv/bin/python bench/netlink_time.py --tree ../before        # an older checkout
    sudo .venv/bin/python bench/netlink_time.py run all --yes --json    # any netstep command

It times pyroute2's `IPRoute` calls (each request it makes for netstep), or, in a checkout
from before pyroute2 (dbf637e and older), the requests of netstep's own rtnetlink client,
so that the two can be set side by side: what the calls cost, the kernel's work in them
included, against the whole run's wall time. The command runs in a lab of its own, reset
afterwards.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import os
import runpy
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The old client's requests by message type, named as pyroute2's calls are.
RTM_NAMES = {16: "link add/set", 17: "link del", 18: "link get/dump", 20: "addr add", 21: "addr del",
             22: "addr dump", 24: "route add", 25: "route del", 26: "route dump", 90: "get_netnsid",
             67: "ARP timer (neighbour table)"}
DEFAULT = ["run", "bridge", "--containers", "30", "--yes", "--json"]


def timed(owner: type, name: str, totals: collections.Counter, counts: collections.Counter, key) -> None:
    """Replace `owner.name` with a wrapper adding each outermost call's time to totals[key(...)]."""
    original = getattr(owner, name)
    depth = [0]

    def wrapper(self, *args, **kwargs):
        if depth[0]:
            return original(self, *args, **kwargs)
        depth[0] += 1
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1
            which = key(args)
            totals[which] += time.perf_counter() - start
            counts[which] += 1

    setattr(owner, name, wrapper)


def instrument(totals: collections.Counter, counts: collections.Counter) -> str:
    """Time the netlink client that the imported netstep uses; its name."""
    try:
        from netstep.kernel import rtnl  # a checkout from before pyroute2
    except ImportError:
        from pyroute2 import IPRoute

        # Every rtnetlink method of IPRoute (link, addr, route, get_netnsid, ...) goes through
        # _run_generic_rtnl; netstep's one plain request (ARP's timer) through nlm_request.
        timed(IPRoute, "_run_generic_rtnl", totals, counts,
              lambda a: f"{a[0].__name__} {a[1] if len(a) > 1 and isinstance(a[1], str) else ''}".strip())
        timed(IPRoute, "nlm_request", totals, counts, lambda a: "nlm_request")
        return "pyroute2 IPRoute"
    timed(rtnl.Rtnl, "request", totals, counts, lambda a: RTM_NAMES.get(a[0], f"type {a[0]}"))
    return "netstep.kernel.rtnl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, default=REPO, help="the netstep checkout to run (default: this one)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=f"netstep's arguments (default: {' '.join(DEFAULT)})")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/netlink_time.py makes network namespaces: run it as root", file=sys.stderr)
        return 1
    tree = args.tree.resolve()
    sys.path[:0] = [str(tree)]
    os.chdir(tree)
    totals: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    client = instrument(totals, counts)
    lab = f"bench-netlink-{os.getpid()}"
    sys.argv = ["netstep", "--lab", lab, *(args.command or DEFAULT)]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            contextlib.suppress(SystemExit):
        runpy.run_module("netstep", run_name="__main__")
    wall = time.perf_counter() - start
    subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], cwd=tree, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(tree)})
    print(f"`netstep {' '.join(sys.argv[3:])}` in {tree.name}: {wall:.3f} s wall, of which "
          f"{sum(totals.values()):.3f} s in {sum(counts.values())} calls to {client}:")
    for which, seconds in totals.most_common():
        print(f"  {seconds * 1000:8.1f} ms  {counts[which]:4d} x {which}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
