"""Where a run's time goes: a netstep command under cProfile, its time sorted by what it was.

    sudo .venv/bin/python bench/profile.py                 # the course drawn on a terminal
    sudo .venv/bin/python bench/profile.py --json          # the same run with --json
    sudo .venv/bin/python bench/profile.py --containers 30 # lesson 4 with 30 containers

The command runs on a pty (bench/terminal.py) as a student would see it, under cProfile,
in a lab of its own that is reset afterwards. Each function's own time is put in one
bucket: imports, drawing (rich), pyroute2 (its Python, and the asyncio loop its calls run
on), the kernel's netlink work (the time spent inside a netlink socket's send or receive,
where the kernel does what was asked), helper processes (iptables, iptables-save,
conntrack, the HTTP server, where started and waited for by the main thread), waiting on
netstep's threads (the probes in flight; a thread switched into a namespace, which starts
the iptables helpers there and makes sockets), netstep's own Python, and the rest of
Python (module bodies run at import among them). A builtin's time goes where its busiest
caller's goes. cProfile profiles the main thread only and slows Python down (about 1.5x),
so the buckets are shares of the profiled run; the unprofiled wall time is given beside.
"""

from __future__ import annotations

import argparse
import os
import pstats
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE)]

from terminal import run_on_pty  # noqa: E402 (bench/ is on the path only now)

PY = sys.executable
SOCKET_CALLS = {"send", "sendto", "sendmsg", "recv", "recvfrom", "recv_into", "recvmsg"}
HELPER = "helper processes (iptables, conntrack, HTTP server)"
OTHER: Counter = Counter()


def bucket(path: str, name: str, callers: dict, depth: int = 0) -> str:
    """The bucket of one profiled function (`path`, `name`); a builtin (path "~") goes
    where the function that called it most goes, unless it is a wait of its own."""
    if path == "~":
        if any(f"'{call}' of '_socket.socket'" in name for call in SOCKET_CALLS):
            netlink = any("/pyroute2/" in c[0] or "/asyncio/" in c[0] for c in callers)
            return "kernel: netlink requests" if netlink else "kernel: other sockets"
        if "acquire" in name:
            return "waiting on threads (probes in flight, helpers started in a namespace)"
        if any(w in name for w in ("waitpid", "fork_exec", "'poll' of 'select.poll'", "BufferedReader")):
            return HELPER
        if "marshal.loads" in name or "create_dynamic" in name or "exec_dynamic" in name:
            return "imports"
        if callers and depth < 5:
            (cpath, _, cname), _ = max(callers.items(), key=lambda kv: kv[1][3])
            return bucket(cpath, cname, {}, depth + 1) if cpath != "~" else "other Python (json, re, dataclasses, ...)"
    if "importlib" in path or path.startswith("<frozen"):
        return "imports"
    if any(p in path for p in ("/rich/", "/markdown_it/", "/pygments/", "/mdurl/")):
        return "drawing (rich)"
    if "/pyroute2/" in path or "/asyncio/" in path or path.endswith("selectors.py"):
        return "pyroute2 (its Python and event loop)"
    if path.endswith("subprocess.py"):
        return HELPER
    if "/netstep/" in path:
        return "netstep's own Python"
    return "other Python (json, re, dataclasses, ...)"


def profile(args: list[str]) -> tuple[float, float, Counter]:
    """(wall without the profiler, profiled total, seconds by bucket) of `netstep args`."""
    lab = f"bench-profile-{os.getpid()}"
    base = [PY, "-m", "netstep", "--lab", lab, *args]
    wall, _, status, drawn = run_on_pty(base, cwd=str(REPO))
    subprocess.run([PY, "-m", "netstep", "--lab", lab, "reset"], capture_output=True, cwd=REPO)
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{drawn.decode(errors='replace')[-2000:]}")
    with tempfile.NamedTemporaryFile(suffix=".prof") as out:
        run_on_pty([PY, "-m", "cProfile", "-o", out.name, "-m", "netstep", "--lab", lab, *args], cwd=str(REPO))
        subprocess.run([PY, "-m", "netstep", "--lab", lab, "reset"], capture_output=True, cwd=REPO)
        stats = pstats.Stats(out.name).stats  # type: ignore[attr-defined]
    buckets: Counter = Counter()
    for (path, _line, name), (_cc, _nc, own, _cum, callers) in stats.items():
        where = bucket(path, name, callers)
        buckets[where] += own
        if where.startswith("other"):
            OTHER[(path, name)] += own
    return wall, sum(buckets.values()), buckets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="profile the --json run instead of the drawn one")
    parser.add_argument("--containers", type=int, help="lesson 4 with N containers instead of the whole course")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/profile.py makes network namespaces: run it as root", file=sys.stderr)
        return 1
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "netstep")], capture_output=True, check=False)
    argv = ["run", "bridge", "--containers", str(args.containers)] if args.containers else ["run", "all"]
    argv += ["--yes", *(["--json"] if args.json else [])]
    wall, total, buckets = profile(argv)
    print(f"`netstep {' '.join(argv)}`: {wall:.2f} s wall without the profiler; {total:.2f} s profiled, of which:\n")
    if os.environ.get("NETSTEP_PROFILE_OTHER"):
        for key, seconds in sorted(OTHER.items(), key=lambda kv: -kv[1])[:25]:
            print(f"{seconds:.3f} {key}")
    print("| where | seconds (profiled) | share |")
    print("|---|---|---|")
    for name, seconds in buckets.most_common():
        print(f"| {name} | {seconds:.3f} | {seconds / total:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
