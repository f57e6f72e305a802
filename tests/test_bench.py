"""The benchmark runs (in its quick mode); its numbers are bench/run.py's business, not a test's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from support import LABS_ROOT, REPO, needs_root, needs_users

from netstep.course.course import Course


@needs_root
@pytest.mark.skipif(shutil.which("curl") is None, reason="the shell baseline needs curl")
def test_bench_quick_mode_runs_and_reports(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run([sys.executable, "bench/run.py", "--quick", "--no-mininet", "--out", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=1500)  # (thirteen lessons, a busy machine)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    text = out.read_text()
    checks = sum(len(step.checks) for step in Course.load().steps)
    assert f"| whole course, every check, clean-up ({checks} identical verdicts) |" in text
    for measure in ("one step: apply + snapshots + diff", "containers, all 20 pairs", "CLI start-up",
                    "peak memory of run all", "| whole course, terminal |", "| 5 containers, --json |",
                    "whole course on a terminal (pty)", "proven from the counters",
                    f"3 labs, the whole course at once ({3 * checks}/{3 * checks} checks as expected"):
        assert measure in text


@needs_root
def test_the_profile_sorts_a_run_into_where_its_time_went():
    result = subprocess.run([sys.executable, "bench/profile.py", "--containers", "3"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    seconds = {row[0].strip("| "): float(row[1]) for row in rows[1:]}
    # A drawn run of 3 containers speaks netlink, draws, imports and probes: each is seen.
    for where in ("pyroute2 (its Python and event loop)", "kernel: netlink requests", "imports", "drawing (rich)",
                  "netstep's own Python"):
        assert seconds.get(where, 0) > 0, result.stdout


@needs_root
def test_netlink_time_counts_the_calls_a_run_makes():
    result = subprocess.run([sys.executable, "bench/netlink_time.py", "--rounds", "1", "run", "lesson2", "--yes",
                             "--json"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {REPO.name} |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "pyroute2 IPRoute" and int(cells[-1]) > 0, row
    process, start, client_import, run, in_calls = (float(c.removesuffix(" s")) for c in cells[2:7])
    assert 0 < in_calls < run < process and start > 0 and client_import > 0, row
    counts = {line.split(" x ", 1)[1]: int(line.split(" x ", 1)[0].split()[-1])
              for line in result.stdout.splitlines() if " x " in line}
    # Every `ip link add` of lessons 1 and 2 is a request (the lab's own build adds a link
    # too), and so is every `ip link set` (a move, up), besides the reads around them.
    course = Course.load()
    lines = [c.text for step in course.steps if step.ref.split(".")[0] in ("1", "2") for c in step.commands]
    assert counts.get("link add", 0) >= sum(line.startswith("ip link add") for line in lines), result.stdout
    assert counts.get("link set", 0) >= sum(line.startswith("ip link set") for line in lines), result.stdout
    assert not _bench_labs()  # its lab was reset


@needs_root
def test_netlink_time_stops_on_a_failed_run():
    result = subprocess.run([sys.executable, "bench/netlink_time.py", "--rounds", "1", "run", "lesson99", "--yes"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "There is no lesson 'lesson99'" in result.stderr, result
    assert not _bench_labs()


@needs_root
@needs_users
def test_class_capacity_runs_a_class_of_two_and_removes_its_users():
    """bench/class_capacity.py: two ordinary users and two root labs take the course at once,
    every verdict as root's; then no user, process or lab of it is left."""
    result = subprocess.run([sys.executable, "bench/class_capacity.py", "--sizes", "2"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    checks = sum(len(step.checks) for step in Course.load().steps)
    assert f"give root's {checks} verdicts" in result.stdout, result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    assert [r.split(" | ")[1] for r in rows] == ["ordinary users", "root (sandbox)"], result.stdout
    assert all(" | 2/2 | " in r for r in rows), rows
    with open("/etc/passwd") as f:  # (its users are named nscap<pid>u<n>)
        assert not [line for line in f if line.startswith("nscap")], "a user of the bench is left"
    assert not [p for p in os.listdir(LABS_ROOT) if p.startswith("bench-cap-")] if os.path.isdir(LABS_ROOT) else True


def _bench_labs() -> list[str]:
    """Labs netlink_time.py made and left behind (the labs' folder goes with the last lab)."""
    return [p for p in os.listdir(LABS_ROOT) if p.startswith("bench-netlink-")] if os.path.isdir(LABS_ROOT) else []
