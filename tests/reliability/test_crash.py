"""Promise 2: a crash loses nothing and leaves nothing.

`run all --yes --json` is stopped at random moments, spread over the whole run: at a
random time, in the middle of a step (the journal shows a step begun and not complete),
while a step's checks run, and while the lesson's HTTP server runs.

- kill -9 (to the process, or to its whole process group): then `reset` must exit 0 and
  leave nothing of the lab: no folder or file, no mount (nsfs or the netns folder), no
  netstep.kernel.httpd process. After the last kill of a series, `run all` on the same lab
  passes every check.
- SIGINT and SIGTERM (to the process): exit 130 with one line and no traceback, and the
  lab is consistent and resumable: the journal has no incomplete step, the configuration
  equals the clean run's at the journal's position, the same HTTP servers run, and
  `run all --yes` from there passes every check. A terminal's Ctrl-C goes to the whole
  process group, netstep's helper programs included: crash_at.py presses it at the two
  worst moments, as a helper starts and as it ends (test_ctrl_c_*_helper_*).
- Every kind of action crashed on purpose (crash_at.py), in sandbox and host mode; Ctrl-C
  while a step is rolled back, and a second Ctrl-C while a step is undone.

Trials run in a few parallel series, each on a lab of its own (which also stresses
several labs at once). The moments come from a seeded random generator whose seed is
printed; NETSTEP_REL_SEED replays a run's choices (the timing itself is the kernel's).
The machine's own namespace is compared before and after by the session guards.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from relsupport import (
    ENV,
    STATS,
    config,
    crash_points,
    crash_run,
    destroy_quietly,
    json_lines,
    kill_if_running,
    lab_dir,
    last_step,
    leftovers,
    master_seed,
    midway_points,
    needs_lessons,
    netstep,
    note,
    read_journal,
    run_scenario,
    server_count,
    show,
    start,
)
from support import REPO, config_diff, httpd_pids, needs_root, real_lesson_files, unique_name

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course
from netstep.errors import NetstepError

pytestmark = [needs_root, needs_lessons]

KILLS = int(os.environ.get("NETSTEP_REL_KILLS", "30"))
INTERRUPTS = int(os.environ.get("NETSTEP_REL_INTERRUPTS", "8"))  # half SIGINT, half SIGTERM
SERIES = 3
STRATEGIES = ("random time", "mid-step", "during checks", "server running")


@pytest.fixture(scope="module")
def full_run_seconds() -> float:
    """How long an undisturbed `run all --yes --json` takes here (it must pass)."""
    name = unique_name("time")
    try:
        started = time.monotonic()
        result = netstep(name, "run", "all", "--yes", "--json")
        seconds = time.monotonic() - started
        assert result.returncode == 0, show(result)
        assert all(r["ok"] for r in json_lines(result.stdout))
        assert netstep(name, "reset").returncode == 0
    finally:
        destroy_quietly(name)
    note(f"crash: an undisturbed `run all --yes --json` takes {seconds:.1f} s here")
    return seconds


def wait_for_moment(proc, name: str, course: Course, rng: random.Random, strategy: str, seconds: float) -> str:
    """Wait (polling the journal every few ms) for the moment `strategy` asks for; say what it was."""
    steps = course.steps
    started = time.monotonic()

    def alive() -> bool:
        return proc.poll() is None and time.monotonic() - started < seconds * 4 + 60

    if strategy == "random time":
        delay = rng.uniform(0.0, seconds * 0.9)
        while alive() and time.monotonic() - started < delay:
            time.sleep(0.002)
        return f"after {delay:.2f} s"
    if strategy == "mid-step":
        target = rng.choice([i for i, s in enumerate(steps) if s.actions])
        while alive():
            last = last_step(name)
            if last and not last["complete"] and last["index"] >= target:
                return f"step {last['ref']} begun, {len(last['entries'])} action(s) journaled"
            time.sleep(0.001)
        return "mid-step never seen"
    if strategy == "during checks":
        target = rng.choice([i for i, s in enumerate(steps) if s.checks])
        delay = rng.uniform(0.0, 0.3)
        while alive():
            last = last_step(name)
            if last and last["complete"] and last["index"] >= target and steps[last["index"]].checks:
                time.sleep(delay)
                return f"{delay:.2f} s after step {last['ref']} completed"
            time.sleep(0.002)
        return "checks never seen"
    assert strategy == "server running"
    delay = rng.uniform(0.0, seconds * 0.12)
    while alive():
        if httpd_pids(lab_dir(name)):
            time.sleep(delay)
            return f"{delay:.2f} s after the HTTP server started"
        time.sleep(0.005)
    return "the server never ran"


def classify(name: str, course: Course, stdout: str, server_was_running: bool) -> list[str]:
    """What the run was doing when it died, from its journal (frozen since) and its output."""
    journal = read_journal(name)
    if not os.path.exists(os.path.join(lab_dir(name), "lab.json")):
        kinds = ["starting or building the lab"]
    elif not journal or not journal["steps"]:
        kinds = ["before the first step"]
    else:
        last = journal["steps"][-1]
        step = course.steps[last["index"]]
        printed = sum(1 for r in json_lines(stdout) if r["step"] == step.ref)
        if not last["complete"]:
            kinds = ["mid-step"]
        elif step.checks and printed < len(step.checks):
            kinds = ["during checks"]
        else:
            kinds = ["between steps"]
    if server_was_running:
        kinds.append("server running")
    return kinds


def stop(proc, signum: int, group: bool) -> tuple[str, str]:
    try:
        if group:
            os.killpg(proc.pid, signum)
        else:
            os.kill(proc.pid, signum)
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=180)


# -- kill -9 ----------------------------------------------------------------------------------


def kill_series(index: int, trials: int, course: Course, seconds: float, seed: int, log: list) -> None:
    rng = random.Random(seed)
    name = unique_name(f"kill{index}")
    try:
        kills, trial = 0, 0
        while kills < trials and trial < trials * 3:  # a run that ends before its kill does not count
            strategy = STRATEGIES[(trial + index) % len(STRATEGIES)]
            trial += 1
            group = rng.random() < 0.5
            proc = start(name, "run", "all", "--yes", "--json")
            try:
                moment = wait_for_moment(proc, name, course, rng, strategy, seconds)
                finished_first = proc.poll() is not None
                out, err = stop(proc, signal.SIGKILL, group)
            finally:
                kill_if_running(proc)
            killed = proc.returncode == -signal.SIGKILL
            kills += killed
            server = bool(httpd_pids(lab_dir(name)))
            kinds = classify(name, course, out, server) if killed else ["finished before the kill"]
            record = {"series": index, "trial": trial, "strategy": strategy, "moment": moment, "kinds": kinds,
                      "to": "group" if group else "process", "killed": killed, "finished_first": finished_first}
            log.append(record)
            assert killed or proc.returncode == 0, f"{record}\n{out[-2000:]}\n{err[-2000:]}"
            assert "Traceback" not in err, f"{record}\n{err[-3000:]}"
            assert all(r["ok"] for r in json_lines(out)), f"a check failed before the kill: {record}\n{out}"

            reset = netstep(name, "reset", timeout=120)
            assert reset.returncode == 0 and "Traceback" not in reset.stderr, f"{record}\n{show(reset)}"
            left = leftovers(name)
            assert not any(left.values()), f"after kill -9 ({record}) and reset, the lab left: {left}"
        final = netstep(name, "run", "all", "--yes", "--json")
        assert final.returncode == 0, f"`run all` after the kills of series {index}:\n{show(final)}"
        records = json_lines(final.stdout)
        assert records and all(r["ok"] for r in records), [r for r in records if not r["ok"]]
        reset = netstep(name, "reset", timeout=120)
        assert reset.returncode == 0, show(reset)
        assert not any(leftovers(name).values()), leftovers(name)
    finally:
        destroy_quietly(name)


def test_kill_9_at_random_moments_then_reset_leaves_nothing(course: Course, full_run_seconds: float) -> None:
    seed = master_seed()
    note(f"crash: kill -9 seed {seed} (NETSTEP_REL_SEED={seed} replays the choices), {KILLS} kills "
         f"in {SERIES} parallel series")
    log: list[dict] = []
    shares = [KILLS // SERIES + (i < KILLS % SERIES) for i in range(SERIES)]
    started = time.monotonic()
    with ThreadPoolExecutor(SERIES) as pool:
        futures = [pool.submit(kill_series, i, n, course, full_run_seconds, seed + i, log)
                   for i, n in enumerate(shares)]
        errors = [f.exception() for f in futures]
    for record in log:
        print(record)
    kills = [r for r in log if r["killed"]]
    STATS["kill -9 survived"] += len(kills)
    kinds = {k: sum(k in r["kinds"] for r in kills) for k in
             ("starting or building the lab", "before the first step", "mid-step", "during checks",
              "between steps", "server running")}
    note(f"crash: {len(kills)} kill -9 survived in {time.monotonic() - started:.0f} s: {kinds}")
    for error in errors:
        if error is not None:
            raise error
    assert len(kills) >= KILLS, f"only {len(kills)} of {KILLS} runs were still running when killed"
    assert kinds["mid-step"] and kinds["during checks"] and kinds["server running"], kinds


# -- SIGINT and SIGTERM --------------------------------------------------------------------------


def interrupt_series(index: int, trials: list[int], course: Course, seconds: float, clean, seed: int,
                     log: list) -> None:
    snaps, servers = clean
    rng = random.Random(seed)
    name = unique_name(f"int{index}")
    try:
        pending, trial = list(trials), 0
        while pending and trial < len(trials) * 3:  # a run that ends before its signal does not count
            signum = pending[0]
            strategy = STRATEGIES[(trial + index) % len(STRATEGIES)]
            trial += 1
            proc = start(name, "run", "all", "--yes", "--json")
            try:
                # Interrupt netstep itself, not Python's start-up: wait until the lab exists.
                deadline = time.monotonic() + 60
                while not os.path.exists(os.path.join(lab_dir(name), "lab.json")) and time.monotonic() < deadline:
                    time.sleep(0.002)
                moment = wait_for_moment(proc, name, course, rng, strategy, seconds)
                # To netstep itself: a terminal's Ctrl-C also reaches its helpers, which is a known
                # bug with tests of its own (test_ctrl_c_during_a_helper_*), made deterministic there.
                out, err = stop(proc, signum, group=False)
            finally:
                kill_if_running(proc)
            record = {"series": index, "trial": trial, "signal": signal.Signals(signum).name, "strategy": strategy,
                      "moment": moment, "exit": proc.returncode}
            log.append(record)
            journal = read_journal(name)
            finished = bool(journal) and len(journal["steps"]) == len(course.steps)
            assert "Traceback" not in err, f"{record}\n{err[-3000:]}"
            if proc.returncode == 0 or (proc.returncode == -signum and finished):
                # Done before the signal, or the signal came while Python was exiting after the
                # whole course (no handler any more): nothing was interrupted.
                record["kinds"] = ["finished before the signal"]
            else:
                assert proc.returncode == 130 and "interrupted" in err, f"{record}\n{out[-1500:]}\n{err[-1500:]}"
                pending.pop(0)
            assert all(r["ok"] for r in json_lines(out)), f"a check failed before the signal: {record}\n{out}"

            with Lab(name) as lab:
                engine = Engine(lab, course)  # a NetstepError here: a step was left half-applied
                position = engine.position
                record["position"] = position
                assert all(s["complete"] for s in engine.journal.steps), record
                now = config(lab, course)
                assert now.same_config(snaps[position]), (
                    f"after {record} the lab differs from the clean run at position {position}:\n"
                    + "\n".join(config_diff(snaps[position], now)))
                assert server_count(lab) == servers[position], record
            again = netstep(name, "run", "all", "--yes", "--json")
            assert again.returncode == 0, f"`run all` after {record}:\n{show(again)}"
            assert all(r["ok"] for r in json_lines(again.stdout))
            reset = netstep(name, "reset", timeout=120)
            assert reset.returncode == 0, show(reset)
            assert not any(leftovers(name).values()), leftovers(name)
    finally:
        destroy_quietly(name)


def test_sigint_and_sigterm_leave_a_consistent_resumable_lab(course: Course, full_run_seconds: float,
                                                             clean) -> None:
    seed = master_seed()
    # Two series, each alternating SIGINT and SIGTERM: half of each in all.
    lengths = [INTERRUPTS - INTERRUPTS // 2, INTERRUPTS // 2]
    series = [[signal.SIGINT if (i + j) % 2 == 0 else signal.SIGTERM for j in range(n)] for i, n in enumerate(lengths)]
    note(f"crash: SIGINT/SIGTERM seed {seed}, {INTERRUPTS} interruptions in {len(series)} parallel series")
    log: list[dict] = []
    started = time.monotonic()
    with ThreadPoolExecutor(len(series)) as pool:
        futures = [pool.submit(interrupt_series, i, s, course, full_run_seconds, clean, seed + 100 + i, log)
                   for i, s in enumerate(series)]
        errors = [f.exception() for f in futures]
    for record in log:
        print(record)
    interrupted = [r for r in log if r["exit"] == 130]
    STATS["SIGINT survived"] += sum(r["signal"] == "SIGINT" for r in interrupted)
    STATS["SIGTERM survived"] += sum(r["signal"] == "SIGTERM" for r in interrupted)
    note(f"crash: {len(interrupted)} SIGINT/SIGTERM interruptions left a consistent, resumable lab "
         f"({time.monotonic() - started:.0f} s): " + ", ".join(f"{r['signal']} {r['moment']} -> position "
                                                                f"{r.get('position')}" for r in interrupted))
    for error in errors:
        if error is not None:
            raise error
    assert len(interrupted) >= INTERRUPTS, log



# -- every kind of action, crashed on purpose ------------------------------------------------------

POINTS = crash_points(Course.load()) if len(real_lesson_files()) >= 7 else []


def sweep_series(points: list[tuple[str, str, str]], log: list) -> None:
    name = unique_name("sweep")
    try:
        for ref, command, when in points:
            run = crash_run(name, command, when)
            record = {"step": ref, "command": command, "when": when, "exit": run.returncode}
            log.append(record)
            assert run.returncode == -signal.SIGKILL, f"no crash at {record}:\n{run.stderr[-2000:]}"
            reset = netstep(name, "reset", timeout=120)
            assert reset.returncode == 0 and "Traceback" not in reset.stderr, f"{record}\n{show(reset)}"
            left = leftovers(name)
            assert not any(left.values()), f"a crash {when} `{command}` (step {ref}), then reset, left {left}"
        final = netstep(name, "run", "all", "--yes", "--json")
        assert final.returncode == 0 and all(r["ok"] for r in json_lines(final.stdout)), show(final)
        assert netstep(name, "reset").returncode == 0
    finally:
        destroy_quietly(name)


def test_crash_at_every_kind_of_action_then_reset_leaves_nothing() -> None:
    """Sandbox: SIGKILL right before and right after the kernel change of the first action of
    each kind (crash_at.py), then reset: nothing of the lab is left, and the course passes."""
    points = [(ref, command, when) for ref, command in POINTS for when in ("after", "before")]
    points = points[::2] + [p for p in points[1::2] if p[0] in ("2.1", "6.5", "7.1")]  # every 'after', a few 'before'
    log: list[dict] = []
    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(sweep_series, points[i::2], log) for i in range(2)]
        errors = [f.exception() for f in futures]
    STATS["crashes on purpose survived"] += len(log)
    note(f"crash: {len(log)} crashes on purpose (SIGKILL just before/after a kernel change) survived: "
         + ", ".join(f"{r['when']} {r['step']}" for r in log))
    for error in errors:
        if error is not None:
            raise error
    assert len(log) == len(points)


def test_crash_as_the_server_starts_then_reset_stops_it() -> None:
    """SIGKILL right after the HTTP server's process is started, before it is ready
    (crash_at.py makes it slow to start): reset still finds the lab's server by its command
    line and stops it. (Found by the random kills, when servers were found by pid files the
    servers wrote themselves, which could come too late for a reset that followed at once.)"""
    command = next((c for _, c in POINTS if c.startswith("python3 -m http.server")), None)
    assert command is not None, "the course starts no HTTP server any more: this test needs one"
    name = unique_name("spawn")
    try:
        for _ in range(3):
            run = crash_run(name, command, "spawned")
            assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
            reset = netstep(name, "reset", timeout=120)
            assert reset.returncode == 0 and "Traceback" not in reset.stderr, show(reset)
            assert not any(leftovers(name).values()), leftovers(name)
    finally:
        destroy_quietly(name)  # (kills the lab's servers too)


# Host mode: what a crash around the kernel change leaves on the machine, once reset ran. The
# executor tells the engine each undo just before the change, and the engine journals it, so
# reset can take the change back; `prepared` kills in between (the change never made), `after`
# right after the change.
@pytest.fixture(scope="module")
def host_sweep() -> dict:
    report = run_scenario("sweep")
    note(f"crash: host-mode sweep (seed {report['seed']}, {report['seconds']:.0f} s), "
         f"{len(report['sweep'])} crashes: "
         + "; ".join(f"{r['when']} {r['step']} `{r['command'][:40]}` left {sorted(r['left']) or 'nothing'}"
                     for r in report["sweep"] if r["left"] or r["reset"]["exit"]))
    return {(r["command"], r["when"]): r for r in report["sweep"]}


# `midway`: a kill in the middle of a namespace's making or removal (its file made and no
# namespace on it yet, or unmounted and not yet unlinked). Found by a random kill in step
# 4.3: the empty file left by `ip netns add netns1` made reset's restore of the netns1 that
# 4.1 deleted say it already existed.
MIDWAY = midway_points(Course.load(mode="host")) if len(real_lesson_files()) >= 7 else []
# The host-mode sweep's points come from the course host mode runs (no sandbox-only lesson,
# such as lesson 8's chains, which the stand-in machine's Docker has already).
HOST_POINTS = crash_points(Course.load(mode="host")) if len(real_lesson_files()) >= 7 else []


@pytest.mark.skipif(shutil.which("unshare") is None, reason="host mode is tested only inside unshare")
@pytest.mark.parametrize("ref,command,when", [
    *[pytest.param(ref, command, when, id=f"{ref}:{command.split(' -s ')[0][:40]}-{when}")
      for ref, command in HOST_POINTS for when in ("prepared", "after")],
    *[pytest.param(ref, command, "midway", id=f"{ref}:{command}-midway") for ref, command in MIDWAY]])
def test_host_mode_crash_around_each_kind_of_action_then_reset_restores_the_machine(
        host_sweep: dict, ref: str, command: str, when: str) -> None:
    result = host_sweep[(command, when)]
    assert result["crashed"], result["run_stderr"]
    assert "Traceback" not in result["reset"]["stderr"], result["reset"]
    assert result.get("repaired", True), "the scenario could not repair the machine after this crash"
    STATS["host-mode crashes on purpose"] += 1
    assert result["left"] == {}, (f"after a crash {when} `{command}` (step {ref}) and reset, the machine "
                                  f"kept: {result['left']}; reset said: {result['reset']['stderr']}")
    assert result["reset"]["exit"] == 0, f"reset after a crash {when} `{command}`: {result['reset']}"


# -- interruptions inside the engine, made deterministic ----------------------------------------------


def _interrupt_on_calls(monkeypatch, calls: set[int]) -> None:
    """Ctrl-C (SIGINT to this process) during the executor's N-th call, for N in `calls`."""
    from netstep.ops import apply as executor

    real, count = executor.apply, [0]

    def apply(lab, action, **kwargs):
        count[0] += 1
        if count[0] in calls:
            os.kill(os.getpid(), signal.SIGINT)
        return real(lab, action, **kwargs)

    monkeypatch.setattr(executor, "apply", apply)


def _widest_step(course: Course) -> int:
    return max(range(len(course.steps)), key=lambda i: len(course.steps[i].actions))


def test_ctrl_c_while_a_step_is_rolled_back_leaves_a_consistent_lab(course: Course, clean, monkeypatch) -> None:
    """Ctrl-C during the second undo action of the widest step: the rollback finishes, then
    the Ctrl-C is raised; the journal and the lab agree."""
    snaps, _ = clean
    target = _widest_step(course)
    name = unique_name("undo")
    try:
        with Lab(name) as lab:
            engine = Engine(lab, course)
            list(engine.goto(target + 1))
            _interrupt_on_calls(monkeypatch, {2})
            with pytest.raises(KeyboardInterrupt):  # held until the rollback is done, then raised
                engine.undo_last()
            monkeypatch.undo()
        with Lab(name) as lab:
            engine = Engine(lab, course)
            position = engine.position
            assert position == target
            now = config(lab, course)
            assert now.same_config(snaps[position]), (
                f"the journal says {position} steps are applied, the lab is elsewhere:\n"
                + "\n".join(config_diff(snaps[position], now)))
    finally:
        destroy_quietly(name)


def test_second_ctrl_c_while_a_step_is_undone_is_never_silent(course: Course, clean, monkeypatch) -> None:
    """Ctrl-C in a step, and again while its first actions are undone: the lab is either
    consistent, or netstep refuses to go on and asks for a reset; never silently wrong."""
    snaps, _ = clean
    target = _widest_step(course)
    name = unique_name("twice")
    try:
        with Lab(name) as lab:
            engine = Engine(lab, course)
            list(engine.goto(target))
            _interrupt_on_calls(monkeypatch, {3, 5})  # during the 3rd action, and the 2nd undo after it
            with pytest.raises(KeyboardInterrupt):
                engine.apply_next(run_checks=False)
            monkeypatch.undo()
        with Lab(name) as lab:
            try:
                engine = Engine(lab, course)
            except NetstepError as exc:
                assert "reset" in str(exc), exc
                STATS["double Ctrl-C: reset asked"] += 1
                engine = None
            if engine is not None:
                now = config(lab, course)
                assert now.same_config(snaps[engine.position]), "\n".join(config_diff(snaps[engine.position], now))
    finally:
        reset = netstep(name, "reset")
        destroy_quietly(name)
    assert reset.returncode == 0, show(reset)


# -- Ctrl-C from a terminal while a helper program runs: only netstep sees it ------------------------

HELPER_ACTION = "iptables -t nat -A POSTROUTING -s 172.18.0.0/16 ! -o br0 -j MASQUERADE"  # step 6.3


@pytest.fixture(scope="module")
def ctrl_c_runs(course: Course, clean) -> dict:
    """`run all` with Ctrl-C pressed while step 6.3's iptables helper starts, or as it ends."""
    snaps, _ = clean
    assert HELPER_ACTION in [a.command() for s in course.steps for a in s.actions], (
        "the course no longer has step 6.3's MASQUERADE rule: this test needs an iptables helper to interrupt")
    runs = {}
    for when in ("ctrl-c", "ctrl-c-late"):
        name = unique_name("ctrlc")
        try:
            run = crash_run(name, HELPER_ACTION, when, new_session=True)
            with Lab(name) as lab:
                engine = Engine(lab, course)
                now = config(lab, course)
                runs[when] = {"exit": run.returncode, "stderr": run.stderr[-2000:], "position": engine.position,
                              "diff": config_diff(snaps[engine.position], now)}
        finally:
            netstep(name, "reset")
            destroy_quietly(name)
    return runs


def test_ctrl_c_as_a_helper_starts_leaves_a_consistent_lab(ctrl_c_runs: dict) -> None:
    run = ctrl_c_runs["ctrl-c"]
    assert not run["diff"], f"the lab at position {run['position']} differs from the clean run:\n{run['diff']}"


def test_ctrl_c_as_a_helper_ends_leaves_a_consistent_lab(ctrl_c_runs: dict) -> None:
    run = ctrl_c_runs["ctrl-c-late"]
    assert not run["diff"], f"the lab at position {run['position']} differs from the clean run:\n{run['diff']}"


@pytest.mark.parametrize("when", ["ctrl-c", "ctrl-c-late"])
def test_ctrl_c_during_a_helper_says_interrupted(ctrl_c_runs: dict, when: str) -> None:
    run = ctrl_c_runs[when]
    assert run["exit"] == 130 and "interrupted" in run["stderr"], run


@pytest.mark.parametrize("half_written", ["last.json.tmp", "journal.json.tmp"])
def test_reset_after_a_crash_mid_write_leaves_no_file(half_written: str) -> None:
    """The journal and the last snapshot are written to NAME.tmp, then renamed: a kill -9
    between the two leaves the .tmp (found by the random kills), and reset removes it."""
    name = unique_name("tmp")
    try:
        assert netstep(name, "next").returncode == 0
        with open(os.path.join(lab_dir(name), half_written), "w") as f:
            f.write('{"steps": [')  # what a kill -9 in the middle of the write leaves
        reset = netstep(name, "reset")
        assert reset.returncode == 0, show(reset)
        assert not any(leftovers(name).values()), leftovers(name)
    finally:
        destroy_quietly(name)


def test_sigterm_after_the_work_is_done_is_quiet() -> None:
    """SIGTERM right after main() returns: the process should end without a traceback."""
    code = ("import os, signal, sys\nfrom netstep.cli import main\nrc = main(['list'])\n"
            "os.kill(os.getpid(), signal.SIGTERM)\nsys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode in (0, -signal.SIGTERM), result.stderr[-2000:]
