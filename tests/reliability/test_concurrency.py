"""Promise 4: labs are isolated and locked.

- Eight labs run the whole course at the same time (eight CLI processes): every one exits
  0 with every check as the lessons say, and each lab's configuration equals a lab that
  ran alone; eight resets at once then leave nothing.
- The same lab started twice at once: exactly one run; the other exits non-zero at once
  with one clear "busy" message; the lab is consistent afterwards and a third run passes.
  The same for `reset`, `next` and `rollback` against a running `run`: refused as busy,
  and the running course is not disturbed.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from relsupport import (
    STATS,
    config,
    destroy_quietly,
    json_lines,
    kill_if_running,
    lab_dir,
    leftovers,
    needs_lessons,
    netstep,
    note,
    read_journal,
    server_count,
    show,
    start,
)
from support import config_diff, needs_root, unique_name

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course

pytestmark = [needs_root, needs_lessons]

PARALLEL = int(os.environ.get("NETSTEP_REL_PARALLEL", "8"))


def test_eight_labs_run_the_whole_course_at_once(course: Course, clean) -> None:
    snaps, servers = clean
    names = [unique_name("par") for _ in range(PARALLEL)]
    expected = sum(len(s.checks) for s in course.steps)
    started = time.monotonic()
    procs = [start(name, "run", "all", "--yes", "--json") for name in names]
    try:
        outputs = [proc.communicate(timeout=900) for proc in procs]
        seconds = time.monotonic() - started
        for name, proc, (out, err) in zip(names, procs, outputs, strict=True):
            assert proc.returncode == 0, f"{name}: exit {proc.returncode}\n{out[-2000:]}\n{err[-2000:]}"
            assert "Traceback" not in err
            records = json_lines(out)
            assert len(records) == expected and all(r["ok"] for r in records), (
                name, [r for r in records if not r["ok"]])
        # Each lab is exactly what one lab alone becomes: nothing leaked from one to another.
        for name in names:
            with Lab(name) as lab:
                now = config(lab, course)
                assert now.same_config(snaps[-1]), f"{name}:\n" + "\n".join(config_diff(snaps[-1], now))
                assert server_count(lab) == servers[-1]
                assert Engine(lab, course).position == len(course.steps)
        with ThreadPoolExecutor(PARALLEL) as pool:
            resets = list(pool.map(lambda n: netstep(n, "reset", timeout=300), names))
        for name, reset in zip(names, resets, strict=True):
            assert reset.returncode == 0, show(reset)
            assert not any(leftovers(name).values()), (name, leftovers(name))
    finally:
        for proc in procs:
            kill_if_running(proc)
        for name in names:
            destroy_quietly(name)
    STATS["labs run at once"] = max(STATS["labs run at once"], PARALLEL)
    note(f"concurrency: {PARALLEL} labs ran the whole course at once ({PARALLEL * expected} checks) "
         f"in {seconds:.0f} s, all passed")


def _wait_until_running(name: str, proc, steps: int = 2) -> None:
    """Until the course has begun step `steps` (or has ended: the caller checks that)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        journal = read_journal(name)
        if journal and len(journal["steps"]) >= steps:
            return
        time.sleep(0.01)
    assert proc.poll() is not None, f"the course never reached step {steps} in 120 s"


def test_the_same_lab_started_twice_at_once_gives_one_run_and_one_busy(course: Course, clean) -> None:
    snaps, servers = clean
    name = unique_name("twice")
    expected = sum(len(s.checks) for s in course.steps)
    try:
        for round_ in range(3):
            procs = [start(name, "run", "all", "--yes", "--json") for _ in range(2)]
            results = [(p, *p.communicate(timeout=300)) for p in procs]
            winners = [r for r in results if r[0].returncode == 0]
            losers = [r for r in results if r[0].returncode != 0]
            assert len(winners) == 1 and len(losers) == 1, [(p.returncode, e[-500:]) for p, _, e in results]
            _, out, err = losers[0]
            assert "busy" in err and "Traceback" not in err and not json_lines(out), err
            with Lab(name) as lab:
                engine = Engine(lab, course)
                position = engine.position
                assert config(lab, course).same_config(snaps[position]), f"round {round_}"
                assert server_count(lab) == servers[position]
            assert len(json_lines(winners[0][1])) == expected
            assert position == len(course.steps)
        third = netstep(name, "run", "all", "--yes", "--json")
        assert third.returncode == 0 and all(r["ok"] for r in json_lines(third.stdout)), show(third)
        STATS["same-lab races refused as busy"] += 3
    finally:
        reset = netstep(name, "reset")
        left = leftovers(name)
        destroy_quietly(name)
    assert reset.returncode == 0, show(reset)
    assert not any(left.values()), left


@pytest.mark.parametrize("other", [["reset"], ["next"], ["back"], ["rollback", "--all"], ["run", "lesson2", "--yes"]],
                         ids=lambda a: " ".join(a))
def test_a_second_command_on_a_running_lab_is_refused_as_busy(other: list[str]) -> None:
    name = unique_name("busy")
    proc = start(name, "run", "all", "--yes", "--json")
    try:
        _wait_until_running(name, proc)
        assert proc.poll() is None, "the course ended before the second command could start"
        second = netstep(name, *other, timeout=120)
        assert second.returncode != 0, show(second)
        assert "busy" in second.stderr and "Traceback" not in second.stderr, show(second)
        assert os.path.exists(lab_dir(name)), "the second command removed the lab under the running course"
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"the running course was disturbed:\n{out[-2000:]}\n{err[-2000:]}"
        assert all(r["ok"] for r in json_lines(out))
        STATS["busy refusals"] += 1
    finally:
        kill_if_running(proc)
        reset = netstep(name, "reset")
        destroy_quietly(name)
    assert reset.returncode == 0, show(reset)


def _start_and_reset(root: str, name: str, seconds: float, queue) -> None:
    """Start lab `name` (its folder and lock, no namespaces) and reset it, again and again."""
    failures, rounds, started, end = [], 0, 0, time.monotonic() + seconds
    while time.monotonic() < end and len(failures) < 3:
        lab = Lab(name, root=root)
        try:
            lab.lock(build=False)  # a NetstepError here too: the other lab's reset broke this start
            started += 1
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        try:
            lab.destroy()
        except Exception as exc:
            failures.append(f"destroy: {type(exc).__name__}: {exc}")
        finally:
            lab.close()
        rounds += 1
    queue.put((rounds, started, failures))


def test_one_labs_reset_never_breaks_anothers_start(tmp_path) -> None:
    """Two processes, each starting and resetting a lab of its own, over and over, in a labs
    folder of their own (so that no other lab keeps it from emptying)."""
    import multiprocessing

    root = str(tmp_path / "netstep" / "labs")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    procs = [context.Process(target=_start_and_reset, args=(root, f"race{i}", 3.0, queue)) for i in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    failures = [f for _, _, fs in results for f in fs]
    note(f"concurrency: {sum(r for r, _, _ in results)} starts and resets of two labs side by side: "
         f"{len(failures)} failed with an exception: {failures[:1]}")
    assert not failures, failures
    assert all(started > 0 for _, started, _ in results), results
