"""Helpers of the reliability suite: the CLI as a subprocess, what a lab may leave behind,
the course's configuration at every position, and the numbers the suite reports.

Built on tests/support.py (unique lab names, needs_root, mounts and server lookups); every
lab made here is named by `unique_name`, so the session guards in tests/conftest.py and
tests/reliability/conftest.py can tell this session's labs from anybody else's.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from support import LABS_ROOT, REPO, httpd_pids, mounts_under, real_lesson_files, sysctl_keys, unique_name

HERE = Path(__file__).resolve().parent
ENV = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"}

# What the suite did, for the summary printed at the end of the session and the README.
STATS: Counter = Counter()
NOTES: list[str] = []


def note(line: str) -> None:
    """Remember a line for the end-of-session summary (and print it for `pytest -s`)."""
    NOTES.append(line)
    print(line, flush=True)


def cli_argv(lab: str, *args: str, host: tuple[str, ...] = ()) -> list[str]:
    return [sys.executable, "-m", "netstep", "--lab", lab, *host, *args]


def netstep(lab: str, *args: str, timeout: float = 300, host: tuple[str, ...] = (), cwd: Path = REPO,
            env: dict | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m netstep --lab LAB ARGS...`, as a student runs it."""
    return subprocess.run(cli_argv(lab, *args, host=host), cwd=cwd, env=env or ENV, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def start(lab: str, *args: str, host: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    """The CLI in a process group of its own (so a signal can go to it, or to its whole group)."""
    return subprocess.Popen(cli_argv(lab, *args, host=host), cwd=REPO, env=ENV, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def show(result) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"


def json_lines(stdout: str) -> list[dict]:
    out = []
    for line in stdout.splitlines():
        if line.strip() and "event" not in (record := json.loads(line)):  # check lines, not step lines
            out.append(record)
    return out


def assert_clean_refusal(result, *words: str) -> None:
    """One clear message on stderr, a non-zero exit, and no traceback anywhere."""
    assert result.returncode != 0, show(result)
    assert "Traceback" not in result.stdout + result.stderr, show(result)
    assert result.stderr.strip(), show(result)
    for word in words:
        assert word.lower() in result.stderr.lower(), f"{word!r} not in stderr\n{show(result)}"


def lab_dir(name: str) -> str:
    return os.path.join(LABS_ROOT, name)


def read_journal(name: str) -> dict | None:
    """The steps lab `name`'s journal records ({"steps": [...]}), read without the lock and
    without changing the file; None when there is none (yet) or it cannot be read now."""
    from netstep.core.journal import Journal

    path = os.path.join(lab_dir(name), "journal.json")
    if not os.path.exists(path):
        return None
    try:
        return {"steps": Journal(path).steps}  # (reading opens nothing for writing)
    except (OSError, ValueError, KeyError, IndexError):
        return None


def last_step(name: str) -> dict | None:
    """The newest step lab `name`'s journal records, or None."""
    journal = read_journal(name)
    return journal["steps"][-1] if journal and journal["steps"] else None


def leftovers(name: str) -> dict[str, list]:
    """Everything of lab `name` that exists: its folder's files, mounts and HTTP servers."""
    d = lab_dir(name)
    files = sorted(str(p.relative_to(d)) for p in Path(d).rglob("*")) if os.path.isdir(d) else []
    return {
        "folder": [d] if os.path.exists(d) else [],
        "files": files,
        "mounts": mounts_under(d),  # (the namespace files' nsfs mounts among them)
        "httpd processes": httpd_pids(d),
    }


def kill_if_running(proc: subprocess.Popen) -> None:
    """Kill `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def master_seed() -> int:
    """NETSTEP_REL_SEED, or a fresh random seed (the caller prints it, for a replay)."""
    return int(os.environ.get("NETSTEP_REL_SEED", random.SystemRandom().randrange(2**31)))


def crash_run(name: str, command: str, when: str, *, host: tuple[str, ...] = (),
              new_session: bool = False) -> subprocess.CompletedProcess[str]:
    """`run all` of lab `name` under crash_at.py, which kills it at COMMAND (see there)."""
    argv = [sys.executable, str(HERE / "crash_at.py"), command, when, "--", "--lab", name, *host,
            "run", "all", "--yes", "--json"]
    return subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, start_new_session=new_session)


def destroy_quietly(name: str) -> None:
    """Last-resort cleanup of a test lab: reset through the library, kill its servers, remove its files."""
    from netstep.core.lab import Lab

    lab = Lab(name)
    try:
        lab.destroy()
    except Exception as exc:  # a cleanup failure must not hide the test's own report
        print(f"could not destroy lab {name}: {exc!r}", file=sys.stderr)
    finally:
        lab.close()
    for pid in httpd_pids(lab.dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if os.path.isdir(lab.dir) and not mounts_under(lab.dir):
        shutil.rmtree(lab.dir, ignore_errors=True)


def config(lab, course):
    """The lab's configuration (links, addresses, routes, rules, sysctls of every namespace),
    as a new Lab object reads it: a long-lived one keeps caches (the ids under which namespaces
    know each other) that can go stale, and the tests compare the kernel, not a cache."""
    from netstep.core.lab import Lab

    reader = Lab(lab.name, root=os.path.dirname(lab.dir), host=lab.host_mode, upstream=lab.upstream_path)
    try:
        return reader.snapshot(caches=False, sysctls=sysctl_keys(course))
    finally:
        reader.close()


def view(lab, course):
    """The configuration as `lab` itself (with its caches) reads it."""
    return lab.snapshot(caches=False, sysctls=sysctl_keys(course))


def server_count(lab) -> int:
    return len(httpd_pids(lab.dir))


def clean_positions(course, name: str):
    """A clean forward run of the whole course on a fresh lab, without checks.

    Returns, for every position 0..N (steps applied), the lab's configuration and the
    number of HTTP servers it runs. The lab is destroyed afterwards.
    """
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab

    lab = Lab(name)
    try:
        lab.lock()
        engine = Engine(lab, course)
        snaps, servers = [config(lab, course)], [server_count(lab)]
        while engine.next_step() is not None:
            engine.apply_next(run_checks=False)
            snaps.append(config(lab, course))
            servers.append(server_count(lab))
        return snaps, servers
    finally:
        lab.destroy()
        lab.close()


needs_lessons = pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")


def crash_points(course) -> list[tuple[str, str]]:
    """(step ref, command) of the first action of each kind in the course: each kind of
    namespace, device, address, route, rule, sysctl and server change, and each iptables op."""
    seen: dict[str, tuple[str, str]] = {}
    for step in course.steps:
        for action in step.actions:
            kind = type(action).__name__
            if kind == "Iptables":
                kind += " " + action.args[0]
            if kind in ("SetLinkUp", "Address"):
                kind += " host" if action.ns == "host" else " container"
            seen.setdefault(kind, (step.ref, action.command()))
    return list(seen.values())


def midway_points(course) -> list[tuple[str, str]]:
    """(step ref, command[#N]) where a kill in the middle of making or removing a namespace
    can hurt (crash_at.py's `midway`): the first `ip netns delete`, and the first `ip netns
    add` of a name deleted before it (whose undo, a restore, is still in the journal)."""
    from netstep.course.actions import AddNetns, DeleteNetns

    first_delete = first_readd = None
    deleted: set[str] = set()
    times: Counter = Counter()
    for step in course.steps:
        for action in step.actions:
            command = action.command()
            times[command] += 1
            if isinstance(action, DeleteNetns):
                first_delete = first_delete or (step.ref, command)
                deleted.add(action.name)
            elif isinstance(action, AddNetns) and action.name in deleted:
                first_readd = first_readd or (step.ref, f"{command}#{times[command]}")
    return [point for point in (first_delete, first_readd) if point]


def run_scenario(mode: str) -> dict:
    """foreign_scenario.py (MODE foreign or sweep) in a network and mount namespace of its
    own, as root; its JSON report, with the seed and the time it took."""
    lab = unique_name(mode[:5])
    seed = master_seed()
    argv = ["unshare", "--net", "--mount", "--propagation", "private", "--", sys.executable,
            str(HERE / "foreign_scenario.py"), lab, str(seed), mode]
    started = time.monotonic()
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=REPO,
                                env={**ENV, "NETSTEP_REL_IN_UNSHARE": "1"})
    finally:
        # Everything of the scenario lived on its own tmpfs /run: nothing of it is on the machine.
        assert not os.path.exists(lab_dir(lab))
    assert result.returncode == 0, f"the scenario failed (seed {seed}):\n{result.stderr[-6000:]}"
    report = json.loads(result.stdout)
    report["seed"], report["seconds"] = seed, time.monotonic() - started
    return report
