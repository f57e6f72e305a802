"""Lesson 4 with N containers: every pair checked, the neighbour table's limit explained."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

from rich.console import Console
from support import REPO, needs_root, run_on_pty, unique_name

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course
from netstep.course.scale import address, neighbour_room
from netstep.present.views import check_lines


def netstep(lab: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netstep", "--lab", lab, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def test_addresses_are_assigned_in_order():
    assert [address(i) for i in (0, 1, 24, 25)] == ["172.18.0.10", "172.18.0.20", "172.18.0.250", "172.18.1.4"]


def test_the_generated_lesson_checks_every_pair():
    lesson = Course.load().with_containers(5).find("bridge")
    checks = lesson.steps[-1].checks
    assert len(checks) == 5 * 4
    assert {(c.source, c.target) for c in checks} == {
        (f"netns{i}", address(j)) for i in range(5) for j in range(5) if i != j}


@needs_root
def test_run_bridge_with_containers_and_go_back():
    lab = unique_name("scale")
    try:
        run = netstep(lab, "run", "bridge", "--containers", "6", "--yes", "--json")
        assert run.returncode == 0, run.stderr
        results = [r for line in run.stdout.splitlines() if "event" not in (r := json.loads(line))]
        assert len(results) == 30 and all(r["ok"] and r["actual"] == "reachable" for r in results)
        # The lab remembers it was built for six containers: back and next work on it.
        assert netstep(lab, "back").returncode == 0
        again = netstep(lab, "next")
        assert again.returncode == 0, again.stderr
        assert "netns5" in again.stdout
        rollback = netstep(lab, "rollback", "--all")
        assert rollback.returncode == 0, rollback.stderr
    finally:
        netstep(lab, "reset")
        Lab(lab).destroy()


@needs_root
def test_too_many_containers_is_refused_with_the_reason():
    free, size = neighbour_room()
    count = 2
    while count * (count - 1) <= free:
        count += 1
    lab = unique_name("scalex")
    try:
        run = netstep(lab, "run", "bridge", "--containers", str(count), "--yes")
        assert run.returncode != 0 and "Traceback" not in run.stderr
        assert "neighbour" in run.stderr and "gc_thresh3" in run.stderr and str(size) in run.stderr
    finally:
        Lab(lab).destroy()


@needs_root
def test_a_large_lab_is_built_again_right_after_its_reset():
    """The neighbour entries of a lab just reset stay counted until the kernel has torn its
    namespaces down; the next run waits for them instead of refusing."""
    lab = unique_name("scaleagain")
    try:
        for _ in range(3):
            run = netstep(lab, "run", "bridge", "--containers", "30", "--yes", "--json")
            assert run.returncode == 0, run.stderr
            assert sum(r["ok"] for line in run.stdout.splitlines() if "event" not in (r := json.loads(line))) == 30 * 29
            assert netstep(lab, "reset").returncode == 0
    finally:
        netstep(lab, "reset")
        Lab(lab).destroy()


@needs_root
def test_a_large_build_shows_a_progress_bar_on_a_terminal():
    lab = unique_name("scalebar")
    try:
        argv = [sys.executable, "-m", "netstep", "--lab", lab, "run", "bridge", "--containers", "10", "--yes"]
        code, output = run_on_pty(argv, 120, 40, timeout=120)
        text = output.decode(errors="replace")
        assert code == 0 and "Traceback" not in text, text[-3000:]
        assert b"\x1b[?25l" in output, "rich hides the cursor while a live progress bar is drawn"
        assert "Every check came out as expected" in text
        # 90 alike checks are asked and answered in one line each, not 90.
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
        group = "90 × ping from netns0 … netns9 (10 namespaces) to 172.18.0.10 … 172.18.0.100 (10 addresses)"
        assert plain.count(group) == 2, plain[-3000:]
        assert f"✔ {group}: reachable, as expected" in plain and "✔ ping" not in plain
    finally:
        netstep(lab, "reset")
        Lab(lab).destroy()


@needs_root
def test_a_large_step_shows_each_unexpected_check_on_its_own():
    """With many checks, those that did not come out as expected are still drawn one by
    one, with what the kernel showed; the rest are counted."""
    lab = Lab(unique_name("scalefail"))
    course = Course.load().with_containers(5)
    bridge = course.find("bridge")
    lab.lock()
    try:
        engine = Engine(lab, course)
        engine.skip_to(course.start_of(bridge) + len(bridge.steps))
        lab.ipr("netns2").link("set", index=lab.link_index("netns2", "ceth2"), state="down")
        results = engine.run_checks(bridge.steps[-1].checks)
        console = Console(file=io.StringIO(), width=160, color_system=None)
        for line in check_lines(results):
            console.print(line)
        drawn = console.file.getvalue()
        failed = [r for r in results if not r.ok]
        assert len(results) == 20 and len(failed) == 8, drawn  # netns2 neither sends nor answers
        for r in failed:
            assert f"✘ ping {r.check.source} → {r.to} " in drawn, drawn
        counted = "✔ 12 × ping from netns0 … netns4 (4 namespaces) to 172.18.0.10 … 172.18.0.50 (4 addresses)"
        assert counted in drawn and drawn.count("✔") == 1, drawn
    finally:
        lab.destroy()
        lab.close()
