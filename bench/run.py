"""netstep's benchmark: netstep and its baselines, side by side in one run, as ratios.

    sudo .venv/bin/python bench/run.py            # the full run; writes bench/RESULTS.md
    sudo .venv/bin/python bench/run.py --quick    # one small round of each, for the tests

1. The whole course with every check and the clean-up: `netstep run all --yes --json`
   then `reset`, against bench/course.sh (the same course as plain ip, iptables,
   ping -c1 -W1 and curl commands, run inside `unshare -n`), alternating, with medians;
   the verdicts of both must be identical.
2. One step's latency (apply + snapshots + diff), median over the course's steps, against
   the shell doing the same step's commands with an inspection before and after.
3. N containers on a bridge with every pair checked: `netstep run bridge --containers N`
   against Mininet's `mn --topo single,N --switch lxbr --controller none --test pingall`,
   inside `unshare -n` (bench installs Debian's mininet and bridge-utils if missing).
4. CLI start-up (`netstep list`, against a bare `python -c pass`) and the peak memory of
   `run all` (against the targets).
5. The paths a user sees: `run all --yes` and `run bridge --containers N --yes`, each with
   `--json` and drawn to a terminal (a pty of fixed size, bench/terminal.py), wall time and
   CPU time. With `--before DIR` (a checkout of an earlier netstep, e.g. `git worktree add
   --detach ../before REV`) the same runs of that version alternate with this one's.
6. (issue 13) The whole course drawn to a pseudo-terminal and with `--json`, against a
   bare shell script (bench/course.sh without its inspections: the article's commands,
   each check a `ping -c1 -W1` or `curl -m1`); how fast an expected failure is proven
   from the kernel's counters; and 30 labs running the course at once (a class on one
   machine): the wall time, the largest peak memory of one, every check as expected.

Everything runs in namespaces made for the purpose; nothing touches the machine's own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from terminal import COLUMNS, LINES, run_on_pty  # noqa: E402 (bench/ is on the path only now)

PY = sys.executable
UNSHARE = ["unshare", "--net", "--mount", "--propagation", "private", "--"]
# A private /run, and /etc as an overlay whose writes land there: the shell course's lesson 13
# writes /etc/netns/NAME/resolv.conf and /etc/resolv.conf, never the machine's.
PRIVATE_RUN = ("mount -t tmpfs tmpfs /run && mkdir -p /run/netns /run/etc /run/etc-work && "
               "mount -t overlay overlay -o lowerdir=/etc,upperdir=/run/etc,workdir=/run/etc-work /etc && "
               f"export NETSTEP_PYTHON={shlex.quote(sys.executable)} && ")


def run(argv: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, **kw)
    return time.perf_counter() - start, result


def netstep(lab: str, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    return run([PY, "-m", "netstep", "--lab", lab, *args])


def cpu_seconds() -> float:
    """CPU time of the children waited for so far (a run's processes and their helpers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- 1 and 2: the course ------------------------------------------------------------------


def netstep_course(lab: str) -> tuple[float, list[tuple]]:
    took, result = netstep(lab, "run", "all", "--yes", "--json")
    if result.returncode != 0:
        raise SystemExit(f"netstep run all failed:\n{result.stderr[-2000:]}")
    reset_took, _ = netstep(lab, "reset")
    verdicts = [(r["step"], r["kind"], r["from"], r["to"], r["actual"])
                for r in map(json.loads, result.stdout.splitlines()) if "event" not in r]
    return took + reset_took, verdicts


def shell_course() -> tuple[float, list[tuple], list[float]]:
    script = HERE / "course.sh"
    command = PRIVATE_RUN + f"bash {script} 3>&2"
    took, result = run([*UNSHARE, "bash", "-c", command])
    verdicts = [tuple(line.split()) for line in result.stdout.splitlines() if line.strip()]
    steps = [int(line.split()[2]) / 1e6 for line in result.stderr.splitlines() if line.startswith("step ")]
    return took, verdicts, steps


def step_latency() -> list[float]:
    """Each step's apply + snapshots + diff, in-process, on a lab of its own."""
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab

    lab = Lab(f"bench-steps-{os.getpid()}")
    times = []
    try:
        with lab:
            engine = Engine(lab)
            while engine.next_step():
                start = time.perf_counter()
                engine.apply_next(run_checks=False)
                times.append(time.perf_counter() - start)
            engine.rollback_all()
    finally:
        lab.destroy()
    return times


# -- 3: containers ---------------------------------------------------------------------------


def netstep_containers(n: int) -> float:
    lab = f"bench-n{n}-{os.getpid()}"
    took, result = netstep(lab, "run", "bridge", "--containers", str(n), "--yes", "--json")
    reset_took, _ = netstep(lab, "reset")
    pairs = [p for line in result.stdout.splitlines() if "event" not in (p := json.loads(line))]
    if result.returncode != 0 or len(pairs) != n * (n - 1) or not all(p["ok"] for p in pairs):
        raise SystemExit(f"netstep with {n} containers failed:\n{result.stderr[-2000:]}")
    return took + reset_took


def mininet_containers(n: int) -> float:
    took, result = run([*UNSHARE, "mn", "--topo", f"single,{n}", "--switch", "lxbr", "--controller", "none",
                        "--test", "pingall"])
    if "0% dropped" not in result.stdout + result.stderr:
        raise SystemExit(f"Mininet's pingall with {n} hosts failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return took


def ensure_mininet() -> bool:
    if shutil.which("mn") and shutil.which("brctl"):
        return True
    print("bench: installing Debian's mininet and bridge-utils", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mininet", "bridge-utils"],
                   env=env, check=False, capture_output=True)
    return bool(shutil.which("mn") and shutil.which("brctl"))


# -- 4: start-up and memory ---------------------------------------------------------------------


def startup(rounds: int) -> tuple[float, float]:
    cli, bare = [], []
    for _ in range(rounds):
        cli.append(run([PY, "-m", "netstep", "list"])[0])
        bare.append(run([PY, "-c", "pass"])[0])
    return statistics.median(cli), statistics.median(bare)


def peak_memory_mib() -> float:
    """Peak resident memory of `run all` (the largest process of it, from a fresh wrapper)."""
    lab = f"bench-mem-{os.getpid()}"
    code = ("import resource, subprocess, sys;"
            "subprocess.run(sys.argv[1:], capture_output=True);"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    _, result = run([PY, "-c", code, PY, "-m", "netstep", "--lab", lab, "run", "all", "--yes", "--json"])
    netstep(lab, "reset")
    return int(result.stdout.strip()) / 1024


# -- 5: the paths a user sees --------------------------------------------------------------------

USER_PATHS = [("whole course", ["run", "all", "--yes"]), ("{n} containers", ["run", "bridge", "--containers", "{n}",
                                                                             "--yes"])]


def user_run(tree: Path, args: list[str], terminal: bool) -> tuple[float, float]:
    """One run of `args` by the netstep in `tree` (wall, CPU), on a pty or with --json; then reset."""
    lab = f"bench-user-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    argv = [PY, "-m", "netstep", "--lab", lab, *args]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    if terminal:
        took, cpu, status, drawn = run_on_pty(argv, cwd=str(tree), env=env)
        output = drawn.decode(errors="replace")
    else:
        cpu = cpu_seconds()
        start = time.perf_counter()
        result = subprocess.run([*argv, "--json"], capture_output=True, text=True, cwd=tree, env=env)
        took, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        status, output = result.returncode, result.stdout + result.stderr
    subprocess.run([PY, "-m", "netstep", "--lab", lab, "reset"], capture_output=True, cwd=tree, env=env)
    if status != 0:
        raise SystemExit(f"{' '.join(args)} ({tree}, {'terminal' if terminal else 'json'}) failed:\n{output[-2000:]}")
    return took, cpu


def user_paths(rounds: int, n: int, before: Path | None) -> list[dict]:
    """Each user path with --json and on a terminal, this netstep and `before` alternating."""
    trees = {"after": REPO, **({"before": before} if before else {})}
    times: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    for _ in range(rounds):
        for name, args in USER_PATHS:
            args = [a.format(n=n) for a in args]
            for mode in ("--json", "terminal"):
                for label, tree in sorted(trees.items(), key=lambda t: t[0] != "before"):
                    took = user_run(tree, args, terminal=mode == "terminal")
                    times.setdefault((name.format(n=n), mode, label), []).append(took)
    rows = []
    for (name, mode, label), values in times.items():
        if label != "after":
            continue
        old = times.get((name, mode, "before"))
        rows.append({"what": f"{name}, {mode}", "after": [statistics.median(v) for v in zip(*values, strict=True)],
                     "before": [statistics.median(v) for v in zip(*old, strict=True)] if old else None})
    return rows


def user_markdown(rows: list[dict], rounds: int, before: str | None) -> str:
    lines = [
        "",
        "## The paths a user sees",
        "",
        f"`run` only (its `reset` not counted), medians of {rounds} round(s); a terminal run draws to a pty of "
        f"{COLUMNS}x{LINES}. CPU is the run's processes and their helpers (iptables, conntrack, the HTTP server)."
        + (f" Before: {before}, run alternately with this one in the same bench run." if before else ""),
        "",
        "| run | wall before | wall after | CPU before | CPU after |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["before"] or [None, None]
        a = r["after"]
        lines.append(f"| {r['what']} | {fmt(b[0], 's')} | {fmt(a[0], 's')} | {fmt(b[1], 's')} | {fmt(a[1], 's')} |")
    return "\n".join(lines) + "\n"


# -- 5: proven verdicts, a bare script, a class on one machine (issue 13) ---------------------------


def bare_script(full: str) -> str:
    """bench/course.sh without its inspections: the article's commands, and each check a
    `ping -c1 -W1` or `curl -m1`, nothing else (what a student would type)."""
    return full.replace("t0=$(now); inspect\n", "t0=$(now)\n").replace("\ninspect; echo", "\necho")


def bare_course(path: Path) -> tuple[float, list[tuple]]:
    took, result = run([*UNSHARE, "bash", "-c", PRIVATE_RUN + f"bash {path} 3>/dev/null"])
    return took, [tuple(line.split()) for line in result.stdout.splitlines() if line.strip()]


def on_terminal(argv: list[str]) -> float:
    """Wall time of `argv` drawing to a pseudo-terminal (120x40), as a student sees it."""
    import pty
    import select

    start = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(REPO)
        os.execvpe(argv[0], argv, {**os.environ, "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"})
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    if not os.read(fd, 65536):
                        break
                except OSError:  # EIO: the child closed the terminal
                    break
    finally:
        os.waitpid(pid, 0)
        os.close(fd)
    return time.perf_counter() - start


def class_at_once(labs: int) -> tuple[float, float, int]:
    """`labs` labs running the whole course at once: the wall time, the largest peak
    memory of one (MiB), and how many checks came out as expected."""
    tag = f"bench-class-{os.getpid()}"
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
               "sys.stdout.write(r.stdout); print('maxrss', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    start = time.perf_counter()
    procs = [subprocess.Popen([PY, "-c", wrapper, PY, "-m", "netstep", "--lab", f"{tag}-{i}", "run", "all", "--yes",
                               "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for i in range(labs)]
    peaks, ok = [], 0
    for proc in procs:
        lines = proc.communicate()[0].splitlines()
        ok += sum(1 for line in lines if '"ok": true' in line)
        peaks += [int(line.split()[1]) / 1024 for line in lines[-1:] if line.startswith("maxrss ")]
    took = time.perf_counter() - start
    for i in range(labs):
        netstep(f"{tag}-{i}", "reset")
    return took, max(peaks, default=0.0), ok


def proof_measures(quick: bool, rounds: int, full_script: str) -> list[dict]:
    """Issue 13's figures: the course on the terminal and in JSON against the bare script,
    the expected failures proven from the kernel's counters, and a class of labs at once."""
    bare = Path(tempfile.mkstemp(prefix="netstep-bare-", suffix=".sh")[1])
    bare.write_text(bare_script(full_script))
    ours_json, ours_tty, theirs, proven, waited = [], [], [], [], []
    for i in range(rounds):
        lab = f"bench-proof-{os.getpid()}-{i}"
        took, result = netstep(lab, "run", "all", "--yes", "--json")
        netstep(lab, "reset")
        records = [r for r in map(json.loads, result.stdout.splitlines()) if "kind" in r]
        verdicts = [(r["step"], r["kind"], r["from"], r["to"], r["actual"]) for r in records]
        ours_json.append(took)
        proven += [r["ms"] / 1000 for r in records if r.get("concluded") == "evidence"]
        waited += [r["ms"] / 1000 for r in records if r.get("concluded") == "timeout"]
        ours_tty.append(on_terminal([PY, "-m", "netstep", "--lab", lab + "t", "run", "all", "--yes"]))
        netstep(lab + "t", "reset")
        took, shell_verdicts = bare_course(bare)
        theirs.append(took)
        if verdicts != shell_verdicts:
            raise SystemExit(f"the bare script's verdicts differ: {set(verdicts) ^ set(shell_verdicts)}")
    median = statistics.median
    rows = [
        row("whole course on a terminal (pty)", median(ours_tty), median(theirs), "s", "bare shell script",
            target=">= 10x", ok=median(theirs) >= 10 * median(ours_tty), note=f"{len(verdicts)} identical verdicts"),
        row("whole course, --json", median(ours_json), median(theirs), "s", "bare shell script", target=">= 10x",
            ok=median(theirs) >= 10 * median(ours_json)),
        row("an expected failure, proven from the counters (median)", median(proven) if proven else None, 0.2, "ms",
            "waiting for silence", note=f"{len(proven) // rounds} a run; {len(waited) // rounds} left to the timeout"),
    ]
    bare.unlink()
    labs = 3 if quick else 30
    took, peak, ok = class_at_once(labs)
    expected = labs * len(verdicts)
    rows.append(row(f"{labs} labs, the whole course at once", took, None, "s", "", target="all checks as expected",
                    ok=ok == expected, note=f"{ok}/{expected} checks as expected; at most {peak:.0f} MiB a lab"))
    return rows


# -- the report ---------------------------------------------------------------------------------


def measure(quick: bool, rounds: int, sizes: list[int], mininet: bool) -> list[dict]:
    from course_sh import script

    from netstep.course.course import Course

    full_script = script(Course.load())
    (HERE / "course.sh").write_text(full_script)
    rows: list[dict] = []

    ours, theirs, shell_steps = [], [], []
    for i in range(rounds):  # alternate, so that a slow moment of the machine hits both
        took, verdicts = netstep_course(f"bench-course-{os.getpid()}-{i}")
        ours.append(took)
        took, shell_verdicts, steps = shell_course()
        theirs.append(took)
        shell_steps += steps
        if verdicts != shell_verdicts:
            differ = [(a, b) for a, b in zip(verdicts, shell_verdicts, strict=False) if a != b]
            raise SystemExit(f"the verdicts differ ({len(verdicts)} vs {len(shell_verdicts)}): {differ[:5]}")
    rows.append(row("whole course, every check, clean-up", statistics.median(ours), statistics.median(theirs),
                    "s", "shell script", target=">= 5x", ok=statistics.median(theirs) >= 5 * statistics.median(ours),
                    note=f"{len(verdicts)} identical verdicts"))

    steps = step_latency()
    median_step = statistics.median(steps)
    rows.append(row("one step: apply + snapshots + diff (median)", median_step, statistics.median(shell_steps), "ms",
                    "shell: commands + inspect before/after", target="<= 50 ms", ok=median_step <= 0.050,
                    note=f"{len(steps)} steps"))

    for n in sizes:
        ours_n = [netstep_containers(n) for _ in range(rounds)]
        if mininet:
            theirs_n = [mininet_containers(n) for _ in range(rounds)]
            rows.append(row(f"{n} containers, all {n * (n - 1)} pairs", statistics.median(ours_n),
                            statistics.median(theirs_n), "s", "Mininet pingall",
                            target=">= 10x" if n == 30 else "",
                            ok=(statistics.median(theirs_n) >= 10 * statistics.median(ours_n)) if n == 30 else None))
        else:
            rows.append(row(f"{n} containers, all {n * (n - 1)} pairs", statistics.median(ours_n), None, "s",
                            "Mininet (not installed)"))

    cli, bare = startup(3 if quick else 7)
    rows.append(row("CLI start-up: netstep list", cli, bare, "s", "python -c pass", target="<= 0.5 s",
                    ok=cli <= 0.5, ratio=False))
    memory = peak_memory_mib()
    rows.append(row("peak memory of run all", memory, None, "MiB", "", target="<= 100 MiB", ok=memory <= 100))
    return rows + proof_measures(quick, rounds, full_script)


def row(what, ours, base, unit, baseline, *, target="", ok=None, note="", ratio=True) -> dict:
    """One measure; the ratio is baseline / netstep where the baseline does the same work."""
    return {"what": what, "netstep": ours, "baseline": base, "unit": unit, "against": baseline,
            "ratio": (base / ours) if ratio and base and ours else None, "target": target, "ok": ok, "note": note}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.1f} ms" if unit == "ms" else f"{value:.2f} {unit}"


def markdown(rows: list[dict], rounds: int, quick: bool) -> str:
    machine = (f"{platform.node()}: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
               f"Python {platform.python_version()}")
    lines = [
        "# netstep benchmark results",
        "",
        f"Run on {date.today().isoformat()} by `bench/run.py{' --quick' if quick else ''}` on {machine}; "
        f"{rounds} round(s), medians, netstep and each baseline alternating in the same run. A ratio is "
        "baseline time / netstep time (higher is better for netstep).",
        "",
        "| measure | netstep | baseline | against | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r["ok"]]
        what = r["what"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(f"| {what} | {fmt(r['netstep'], r['unit'])} | {fmt(r['baseline'], r['unit'])} | "
                     f"{r['against'] or '-'} | {ratio} | {r['target'] or '-'} | {met} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, 5 containers: proves the bench runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument("--no-mininet", action="store_true", help="do not install or run Mininet")
    parser.add_argument("--before", metavar="DIR", type=Path,
                        help="a checkout of an earlier netstep: its user paths alternate with this one's")
    parser.add_argument("--only-user-paths", action="store_true", help="measure the paths a user sees, nothing else")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/run.py makes network namespaces: run it as root", file=sys.stderr)
        return 1
    rounds = 1 if args.quick else args.rounds
    sizes = [5] if args.quick else [10, 30]
    # (Only the full bench runs Mininet: the user paths alone do not install it.)
    mininet = not (args.no_mininet or args.only_user_paths) and (
        shutil.which("mn") is not None if args.quick else ensure_mininet())
    # Python compiles a module on first import and keeps the bytecode, unless it may not
    # write it (PYTHONDONTWRITEBYTECODE, a read-only checkout); then every run would pay
    # that again, about 50 ms. An installed package has its bytecode, as Debian's mininet has.
    for tree in (REPO, args.before) if args.before else (REPO,):
        subprocess.run([PY, "-m", "compileall", "-q", str(tree / "netstep")], check=False, capture_output=True)
    text = "" if args.only_user_paths else markdown(measure(args.quick, rounds, sizes, mininet), rounds, args.quick)
    before = None
    if args.before:
        rev = subprocess.run(["git", "-C", str(args.before), "log", "-1", "--format=%h %s"], capture_output=True,
                             text=True).stdout.strip()
        before = f"`{rev}`" if rev else str(args.before)
    text += user_markdown(user_paths(rounds, sizes[-1], args.before), rounds, before)
    Path(args.out).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
    sys.exit(main())
