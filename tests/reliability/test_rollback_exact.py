"""Promise 1: rollback is exact.

A clean forward run of the whole course records the lab's configuration at every position
(0..N steps applied). Then hypothesis (a RuleBasedStateMachine) drives random sequences of
moves on one lab: apply the next step, back, jump to the start of a lesson, roll back the
current lesson, roll back everything, go to any position (engine.goto, as `run lessonN`
does). Each sequence starts with a goto to a position that hypothesis draws, from where the
last one ended. After every move, and at every position a goto passes, the lab must
be exactly where a model of the course (written from the lesson files, independently of
the engine) says, and equal the clean run at that position: the links, addresses, routes,
iptables rules and sysctls of every namespace, hence which containers exist; which HTTP
servers run; and the journal's steps, all complete.

The lab is read by a new Lab object each time (the kernel's state, no cache); the engine's
own Lab object's reading is compared with it separately (it once misnamed veth peers after
namespaces were made again, when it trusted reused inode numbers).

The walk runs in walk_worker.py, one worker per CPU (at most two), each on a lab of its
own, so that it fits CI's time on a two-core machine. Moves run without checks: the
clean run's checks are covered by tests/test_course.py. The seed is printed and
NETSTEP_REL_SEED replays it; the example database is off and print_blob is on. A failure
names the whole path of moves, starting with where the lab stood when its sequence began
(since a sequence starts where the last one ended, hypothesis may call its replay flaky:
the first error reported is the one to read). After a failure the lab is made again, so
that the replays run on a fresh lab rather than on a broken one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter

import pytest
from relsupport import ENV, HERE, STATS, destroy_quietly, kill_if_running, master_seed, needs_lessons, note
from support import REPO, needs_root, unique_name

pytestmark = [needs_root, needs_lessons]

SEQUENCES = int(os.environ.get("NETSTEP_REL_SEQUENCES", "200"))
MOVES = int(os.environ.get("NETSTEP_REL_MOVES", "5"))  # the most moves in one sequence, after its start
WORKERS = max(1, min(2, os.cpu_count() or 1))


@pytest.fixture(scope="module")
def walk() -> dict:
    """Run the random walk (in WORKERS processes); the workers' reports, added up."""
    master = master_seed()
    # More examples than sequences wanted: hypothesis counts a few (about 3 in 100) that it
    # stops before they run through (they never reach teardown, where a sequence is counted).
    asked = SEQUENCES + max(2, SEQUENCES * 8 // 100)
    share = [asked // WORKERS + (i < asked % WORKERS) for i in range(WORKERS)]
    note(f"rollback walk: seed {master} (NETSTEP_REL_SEED={master} replays it), {WORKERS} workers with seeds "
         f"{[master + i for i in range(WORKERS)]}, max_examples {share}, stateful_step_count {MOVES}")
    names = [unique_name("walk") for _ in range(WORKERS)]
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, str(HERE / "walk_worker.py"), name, str(master + i), str(n),
                               str(MOVES)], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
             for i, (name, n) in enumerate(zip(names, share, strict=True))]
    reports = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            lines = [line for line in out.splitlines() if line.startswith("{")]
            assert lines, f"a walk worker printed no report (exit {proc.returncode}):\n{out[-4000:]}\n{err[-4000:]}"
            report = json.loads(lines[-1])
            report["output"] = (out[-6000:], err[-3000:])
            reports.append(report)
    finally:
        for proc in procs:
            kill_if_running(proc)
        for name in names:
            destroy_quietly(name)
            destroy_quietly(f"{name}-ref")
    totals: Counter = Counter()
    for report in reports:
        totals.update(report["stats"])
    STATS["rollback sequences"] += totals["sequences"]
    STATS["rollback moves"] += totals["moves"]
    STATS["rollback positions checked"] += totals["positions checked"]
    kinds = {k: v for k, v in sorted(totals.items())
             if k not in ("sequences", "moves", "positions checked", "misreads")}
    note(f"rollback walk: {totals['sequences']} sequences, {totals['moves']} moves ({kinds}); "
         f"{totals['positions checked']} positions checked against the clean run, on the way of a goto too, "
         f"in {time.monotonic() - started:.0f} s; the engine's own Lab object misread the lab "
         f"{totals['misreads']} time(s)")
    return {"reports": reports, "totals": totals}


def test_random_moves_always_match_the_clean_forward_run(walk: dict) -> None:
    for report in walk["reports"]:
        assert report["failure"] is None, (
            f"worker {report['lab']} (seed {report['seed']}) failed:\n{report['failure']}\n"
            f"--- its output\n{report['output'][0]}\n{report['output'][1]}")
    assert walk["totals"]["sequences"] >= SEQUENCES, f"only {walk['totals']['sequences']} of {SEQUENCES} ran"
    assert all(r["servers"][-1] == 1 and r["servers"][0] == 0 for r in walk["reports"]), "the clean run's server"


def test_the_engines_own_view_of_the_lab_is_right(walk: dict) -> None:
    """The engine's long-lived Lab reads what a new one reads: namespace ids are asked again
    for every reading, since a namespace made again can come back with a reused inode."""
    misreads = [m for report in walk["reports"] for m in report["misreads"]]
    assert not misreads, "\n\n".join(misreads[:3])
