"""How many students one server carries (issue 21): N ordinary users take the course at once.

    sudo .venv/bin/python bench/class_capacity.py                   # 30, then 40, 50, 60 while all hold
    sudo .venv/bin/python bench/class_capacity.py --sizes 30 45 --rounds 2

For each N, N ordinary Unix users (made here with useradd, removed at the end with their
processes, whatever happened) each run `python -m netstep run all --yes --json` at once,
each in a lab of their own (a user namespace kept by a holder process,
netstep.core.backend), and, side by side in the same round, root runs N sandbox labs at
once the same way (bench/run.py's "30 labs" row): the ratio is the users' wall time over
root's. Every check of every run must come out as root's single run says (the same
verdicts, all as expected); the first N where one does not, or a run fails, ends the
climb.

Memory per lab: what MemAvailable (/proc/meminfo) gains when the N labs, held after their
runs, are reset (their holders stopped, their namespaces freed), divided by N; the
kernel's own share of it (Slab, Percpu, VmallocUsed, KernelStack and PageTables: the
namespaces, devices, routes, conntrack and iptables tables), and that of the processes a
held lab keeps (their PSS from /proc/PID/smaps_rollup): its holder, and the HTTP servers
its lessons started. Each reading is the median of five in half a second,
the two a few seconds apart: other jobs on the machine move MemAvailable too, so it is a
figure to within some MiB a lab, the kernel's figure less so.
While the runs go, the lowest MemAvailable seen gives the peak; each run's largest
process (maxrss) is kept too.

The users run the system's python3 of the venv's version on this checkout and the venv's
site-packages, as tests/test_rootless.py does. Nothing touches the machine's own network.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from contextlib import suppress
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PY = sys.executable
SYSTEM_PYTHON = "/usr/bin/python3"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Each run in a wrapper that reports the largest process of it (netstep and its helpers).
WRAPPER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
           "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr[-2000:]);"
           "print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")


def meminfo() -> dict[str, int]:
    """/proc/meminfo in KiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, value = line.split(":", 1)
            out[key] = int(value.split()[0])
    return out


KERNEL = ("Slab", "Percpu", "VmallocUsed", "KernelStack", "PageTables")  # the kernel's own memory


def settled() -> dict[str, int]:
    """/proc/meminfo's median over 5 readings in half a second (other jobs move it)."""
    readings = []
    for _ in range(5):
        readings.append(meminfo())
        time.sleep(0.1)
    return {key: int(statistics.median(r[key] for r in readings)) for key in readings[0]}


def kernel_kib(info: dict[str, int]) -> int:
    return sum(info.get(key, 0) for key in KERNEL)


def pss_kib(pid: int) -> int:
    with suppress(OSError), open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


class Lowest(threading.Thread):
    """The lowest MemAvailable seen while it runs (every 0.1 s)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.low = meminfo()["MemAvailable"]
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.low = min(self.low, meminfo()["MemAvailable"])

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.low


class Users:
    """N ordinary users made with useradd; `remove()` ends their processes (by pid) and removes
    their records and accounts."""

    _made = itertools.count()

    def __init__(self, n: int) -> None:
        self.names: list[str] = []
        try:
            for _ in range(n):
                name = f"nscap{os.getpid() % 10000}u{next(self._made)}"
                subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                                "/usr/sbin/nologin", "--user-group", name], check=True, capture_output=True)
                self.names.append(name)
        except BaseException:
            self.remove()
            raise
        self.uids = [pwd.getpwnam(name).pw_uid for name in self.names]

    def argv(self, name: str, *args: str) -> list[str]:
        env = {"PATH": PATH, "HOME": "/tmp", "NO_COLOR": "1",
               "PYTHONPATH": f"{REPO}:{sysconfig.get_paths()['purelib']}"}
        return ["runuser", "-u", name, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *args]

    def pids(self) -> list[int]:
        uids = set(getattr(self, "uids", []))
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            with suppress(OSError):
                if os.stat(f"/proc/{pid}").st_uid in uids:
                    found.append(int(pid))
        return found

    def holders(self) -> list[int]:
        """The pids of the users' lab holders, from their records."""
        found = []
        for uid in self.uids:
            with suppress(OSError, ValueError), open(f"/tmp/netstep-{uid}/default.holder") as f:
                found.append(json.load(f)["pid"])
        return found

    def remove(self) -> None:
        for pid in self.pids():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for name in self.names:
            with suppress(KeyError):
                shutil.rmtree(f"/tmp/netstep-{pwd.getpwnam(name).pw_uid}", ignore_errors=True)
            subprocess.run(["userdel", name], capture_output=True)


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def gone(pid: int, limit: float = 5.0) -> bool:
    """True once `pid` has ended (a zombie counts: killed, waiting for init to reap it)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                    return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


def verdicts(stdout: str) -> list[tuple]:
    return [(r["step"], r["kind"], r["from"], r["to"], r["actual"], r["ok"])
            for r in map(json.loads, (line for line in stdout.splitlines() if line.startswith("{")))
            if "kind" in r]


def class_round(n: int, users: Users | None, expected: list[tuple]) -> dict:
    """N runs of the course at once, by the users (or, without users, by root in N labs);
    wall time, memory, and how many runs had every verdict as expected."""
    tag = f"bench-cap-{os.getpid()}"
    if users is None:
        argvs = [[PY, "-c", WRAPPER, PY, "-m", "netstep", "--lab", f"{tag}-{i}", "run", "all", "--yes", "--json"]
                 for i in range(n)]
    else:
        argvs = [users.argv(name, SYSTEM_PYTHON, "-c", WRAPPER, SYSTEM_PYTHON, "-m", "netstep", "run", "all",
                            "--yes", "--json") for name in users.names[:n]]
    before = meminfo()
    lowest = Lowest()
    lowest.start()
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, cwd="/tmp", stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              stdin=subprocess.DEVNULL) for argv in argvs]
    outs = [proc.communicate() for proc in procs]
    took = time.perf_counter() - start
    low = lowest.stop()
    held = settled()  # every run ended, the labs still there
    holders = users.holders()[:n] if users else []
    # What a held lab keeps running: the holder and the lab's HTTP servers (found by the lab's folder).
    kept = users.pids() if users else [pid for pid in _all_pids() if f"/labs/{tag}-".encode() in _cmdline(pid)]
    pss = sum(pss_kib(pid) for pid in kept)
    good, failures, peaks = 0, [], []
    for proc, (out, err) in zip(procs, outs, strict=True):
        peaks += [int(line.split()[1]) / 1024 for line in out.splitlines() if line.startswith("maxrss ")]
        if proc.returncode == 0 and verdicts(out) == expected:
            good += 1
        elif len(failures) < 3:
            failures.append(err[-600:] or out[-600:])
    if users is None:
        resets = [subprocess.Popen([PY, "-m", "netstep", "--lab", f"{tag}-{i}", "reset"], cwd=REPO,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
    else:
        resets = [subprocess.Popen(users.argv(name, SYSTEM_PYTHON, "-m", "netstep", "reset"), cwd="/tmp",
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name in users.names[:n]]
    for proc in resets:
        proc.wait()
    left = [pid for pid in holders if not gone(pid)]
    time.sleep(3)  # the kernel frees a network namespace a moment after its last user (cleanup_net)
    freed = settled()
    return {"n": n, "wall": took, "good": good, "failures": failures, "left": left,
            "lab_kib": (freed["MemAvailable"] - held["MemAvailable"]) / n,
            "kernel_kib": (kernel_kib(held) - kernel_kib(freed)) / n, "kept_kib": pss / n,
            "peak_drop_mib": (before["MemAvailable"] - low) / 1024, "maxrss_mib": max(peaks, default=0.0),
            "available_mib": before["MemAvailable"] / 1024}


def one_course() -> list[tuple]:
    """Root's verdicts of one run of the course: what every student's run must give."""
    lab = f"bench-cap-{os.getpid()}-ref"
    result = subprocess.run([PY, "-m", "netstep", "--lab", lab, "run", "all", "--yes", "--json"], cwd=REPO,
                            capture_output=True, text=True)
    subprocess.run([PY, "-m", "netstep", "--lab", lab, "reset"], cwd=REPO, capture_output=True)
    found = verdicts(result.stdout)
    if result.returncode != 0 or not found or not all(v[-1] for v in found):
        raise SystemExit(f"root's run of the course failed:\n{result.stderr[-2000:]}")
    return found


def markdown(rows: list[dict], expected: list[tuple], rounds: int) -> str:
    machine = (f"{platform.node()}: {os.cpu_count()} cores, {meminfo()['MemTotal'] // 1024} MiB, "
               f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
    lines = [
        "## A class on one server (issue 21: bench/class_capacity.py)",
        "",
        f"Run on {date.today().isoformat()} on {machine}; {rounds} round(s) per size, medians. N ordinary "
        f"users (made with useradd) each run `python -m netstep run all --yes --json` at once, each in a lab of "
        f"their own (a user namespace kept by a holder); beside them in the same round, root runs N sandbox labs "
        f"at once. Every run must give root's {len(expected)} verdicts, all as expected. Memory per lab: what "
        f"MemAvailable gains when the N labs, held after their runs, are reset, divided by N (the kernel's "
        f"share beside it, and the PSS of what a held lab keeps running: its holder, if any, and its HTTP "
        f"servers); peak drop: MemAvailable before the runs less the lowest "
        f"seen while the N ran; largest process: the largest maxrss of a run (netstep or a helper).",
        "",
        "| N | who | wall | ratio users / root | runs as expected | memory a lab | kernel's a lab | lab's processes | "
        "peak drop (all N) | largest process |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['n']} | {r['who']} | {r['wall']:.1f} s | {r['ratio']} | {r['good']}/{r['n']} | "
                     f"{r['lab_kib'] / 1024:.1f} MiB | {r['kernel_kib'] / 1024:.1f} MiB | "
                     f"{r['kept_kib'] / 1024:.1f} MiB | "
                     f"{r['peak_drop_mib']:.0f} MiB | {r['maxrss_mib']:.0f} MiB |")
    return "\n".join(lines) + "\n"


def median_row(runs: list[dict], who: str) -> dict:
    row = {key: statistics.median(r[key] for r in runs) for key in
           ("wall", "lab_kib", "kernel_kib", "kept_kib", "peak_drop_mib", "maxrss_mib")}
    return {**row, "n": runs[0]["n"], "who": who, "good": min(r["good"] for r in runs), "ratio": "-"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30, 40, 50, 60],
                        help="the class sizes, climbed in order while every run holds")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/class_capacity.py makes Unix users and network namespaces: run it as root", file=sys.stderr)
        return 1
    if not os.path.exists(SYSTEM_PYTHON):
        print(f"bench/class_capacity.py runs the users' netstep with {SYSTEM_PYTHON}, which is missing",
              file=sys.stderr)
        return 1
    subprocess.run([PY, "-m", "compileall", "-q", str(REPO / "netstep")], check=False, capture_output=True)
    expected = one_course()
    users = Users(max(args.sizes))
    rows: list[dict] = []
    try:
        for n in args.sizes:
            theirs, ours = [], []
            for _ in range(args.rounds):  # alternating, so that a slow moment of the machine hits both
                theirs.append(class_round(n, users, expected))
                ours.append(class_round(n, None, expected))
            user_row, root_row = median_row(theirs, "ordinary users"), median_row(ours, "root (sandbox)")
            user_row["ratio"] = f"{user_row['wall'] / root_row['wall']:.2f}"
            rows += [user_row, root_row]
            print(f"N={n}: users {user_row['wall']:.1f} s ({user_row['good']}/{n} as expected), root "
                  f"{root_row['wall']:.1f} s ({root_row['good']}/{n})", file=sys.stderr, flush=True)
            left = [pid for r in theirs for pid in r["left"]]
            failures = [f for r in theirs + ours for f in r["failures"]]
            if left:
                raise SystemExit(f"holders left after reset: {left}")
            if user_row["good"] < n or root_row["good"] < n:
                print("stopped: not every run held; first failures:\n" + "\n---\n".join(failures), file=sys.stderr)
                break
    finally:
        users.remove()
    print(markdown(rows, expected, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
