"""Where a run's time goes between netstep and its netlink client: the whole process, the
client's import, and every call to the client (the kernel's work inside each included).

    sudo .venv/bin/python bench/netlink_time.py                          # 30 containers, --json
    sudo .venv/bin/python bench/netlink_time.py --before ../before       # and an older checkout
    sudo .venv/bin/python bench/netlink_time.py --rounds 5 run all --yes --json

Each round runs the command once in each checkout, alternately, each in a process of its
own and a lab of its own (reset afterwards). In this checkout the client is pyroute2's
`IPRoute`; in one from before pyroute2 (dbf637e and older) it is netstep's own rtnetlink
client. A run's process time (its reset left out) splits into: its start (Python's, and
this script's few imports), importing the client, and the run (netstep's own imports are
made in it, as the CLI makes them), of which the calls to the client (`in calls`).
Medians are given.
A run that fails stops the bench with its error.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import runpy
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = ["run", "bridge", "--containers", "30", "--yes", "--json"]
# The old client's requests by message type, named as pyroute2's calls are.
RTM_NAMES = {16: "link add/set", 17: "link del", 18: "link get/dump", 20: "addr add", 21: "addr del",
             22: "addr dump", 24: "route add", 25: "route del", 26: "route dump", 90: "get_netnsid",
             67: "ARP timer (neighbour table)"}


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
    """Import and time the netlink client that the imported netstep uses; its name."""
    try:
        from netstep.kernel import rtnl  # a checkout from before pyroute2
    except ImportError:
        try:  # as netstep loads it: the rtnetlink client without the package's __init__
            from netstep.kernel.netlink import iproute_class
        except ImportError:  # a checkout that imported the whole package
            from pyroute2 import IPRoute
        else:
            IPRoute = iproute_class()

        # Every rtnetlink method of IPRoute (link, addr, route, get_netnsid, ...) goes through
        # _run_generic_rtnl; netstep's one plain request (ARP's timer) through nlm_request.
        timed(IPRoute, "_run_generic_rtnl", totals, counts,
              lambda a: f"{a[0].__name__} {a[1] if len(a) > 1 and isinstance(a[1], str) else ''}".strip())
        timed(IPRoute, "nlm_request", totals, counts, lambda a: "nlm_request")
        return "pyroute2 IPRoute"
    timed(rtnl.Rtnl, "request", totals, counts, lambda a: RTM_NAMES.get(a[0], f"type {a[0]}"))
    return "netstep.kernel.rtnl"


def one_run(command: list[str]) -> int:
    """In a child, in the checkout it was started in: run `command`, print a JSON report."""
    importing = time.perf_counter()
    totals: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    client = instrument(totals, counts)
    client_ready = time.perf_counter()
    lab = f"bench-netlink-{os.getpid()}"
    with contextlib.suppress(ImportError):  # as `python -m netstep` runs a command (if it says so)
        from netstep.session import whole_process

        whole_process()
    sys.argv = ["netstep", "--lab", lab, *command]
    out, err, status = io.StringIO(), io.StringIO(), 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            runpy.run_module("netstep", run_name="__main__")
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    finally:
        ran = time.perf_counter() - client_ready
        reset = subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, "reset"], capture_output=True,
                               text=True)
        reset_took = time.perf_counter() - client_ready - ran
    if status or reset.returncode:
        print(f"`netstep {' '.join(command)}` exited {status}; its reset {reset.returncode}:\n"
              f"{err.getvalue()[-2000:]}{reset.stderr[-1000:]}", file=sys.stderr)
        return 1
    print(json.dumps({"client": client,
                      "client import": client_ready - importing, "run": ran, "reset": reset_took,
                      "calls": sum(counts.values()), "in calls": sum(totals.values()),
                      "by kind": {k: [totals[k], counts[k]] for k in totals}}))
    return 0


def measure(tree: Path, command: list[str]) -> dict:
    """One run of `command` by the netstep in `tree`, in a process of its own."""
    start = time.perf_counter()
    child = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", *command], cwd=tree,
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(tree)})
    took = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"bench/netlink_time.py: the run in {tree} failed:\n{child.stderr[-3000:]}")
    report = json.loads(child.stdout)
    report["process"] = took - report["reset"]  # (the reset is not the run's)
    report["start"] = report["process"] - report["client import"] - report["run"]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="an older checkout, run alternately with this one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child: one run, JSON out
    parser.add_argument("command", nargs=argparse.REMAINDER, help=f"netstep's arguments (default: {' '.join(DEFAULT)})")
    args = parser.parse_args()
    command = args.command or DEFAULT
    if os.geteuid() != 0:
        print("bench/netlink_time.py makes network namespaces: run it as root", file=sys.stderr)
        return 1
    if args.one:
        return one_run(command)
    trees = [*([args.before.resolve()] if args.before else []), REPO]
    for tree in trees:  # (as bench/run.py: no run should pay for compiling)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "netstep")], capture_output=True)
    runs: dict[Path, list[dict]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:
            runs[tree].append(measure(tree, command))
    print(f"`netstep {' '.join(command)}`, medians of {args.rounds} round(s), each checkout in turn:\n")
    columns = ["process", "start", "client import", "run", "in calls"]
    print("| checkout | client | " + " | ".join(columns) + " | calls |")
    print("|---|---|" + "---|" * len(columns) + "---|")
    for tree, reports in runs.items():
        medians = [statistics.median(r[c] for r in reports) for c in columns]
        calls = int(statistics.median(r["calls"] for r in reports))
        print(f"| {tree.name} | {reports[0]['client']} | " + " | ".join(f"{m:.2f} s" for m in medians)
              + f" | {calls} |")
    for tree, reports in runs.items():
        kinds = reports[len(reports) // 2]["by kind"]
        print(f"\n{tree.name}, one run's calls by kind:")
        for kind, (seconds, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
            print(f"  {seconds * 1000:8.1f} ms  {count:4d} x {kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
