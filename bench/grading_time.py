"""How fast verify, hint and solution answer, for every target of lessons 1-7 (issue 19).

    sudo .venv/bin/python bench/grading_time.py               # 3 rounds; prints a Markdown section
    sudo .venv/bin/python bench/grading_time.py --rounds 1 --lessons 3
    sudo .venv/bin/python bench/grading_time.py --rounds 1 --before ../before   # an older checkout beside

A student calls these again and again, so each must answer within 0.5 s (median) on the
path they see: a terminal (a pty of 120x40, bench/terminal.py) and `--json`, the two
alternating target by target. For each target (every step and every "Your turn" of the
lessons), the lab is brought to where the target starts (in this process, not timed),
then, each a process of its own and timed: `hint` three times (the idea, the command
with blanks, the command), `verify` before any work (it fails, and its checks say why),
`solution`, and `verify` again (it passes). The course's states come from the
machine-wide cache (netstep.core.reference); the first call of a new version builds it,
so one untimed `verify` runs first. With `--before DIR` (a checkout of an earlier netstep,
e.g. `git worktree add --detach ../before REV`), the same calls of that version run
alternately with this one's, target by target, on the same lab.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO), str(HERE)]

from terminal import COLUMNS, LINES, run_on_pty  # noqa: E402 (bench/ is on the path only now)

PY = sys.executable
CALLS = [("baseline: `list` (start-up, no lab read)", "list"),
         ("hint 1 (the idea)", "hint"), ("hint 2 (blanks)", "hint"), ("hint 3 (the command)", "hint"),
         ("verify, nothing done (fails)", "verify"), ("solution", "solution"), ("verify, done (passes)", "verify")]
LIMIT = 0.5


def targets(lessons: int) -> list[tuple[str, int]]:
    """(ref, position the lab starts at) of every step and exercise of the first `lessons` lessons."""
    from netstep.course.course import Course

    course = Course.load()
    out = []
    for lesson in course.lessons[:lessons]:
        start = course.start_of(lesson)
        out += [(step.ref, start + i) for i, step in enumerate(lesson.steps)]
        if lesson.exercise is not None:
            out.append((lesson.exercise.ref, start + len(lesson.steps)))
    return out


def place(lab_name: str, position: int) -> None:
    """The lab at `position`, the student's own work taken back, no hint given yet."""
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab

    lab = Lab(lab_name)
    with lab:
        Engine(lab).skip_to(position)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(lab.dir, "hints.json"))


def call(lab: str, command: str, ref: str, terminal: bool, tree: Path = REPO) -> tuple[float, float, int, str]:
    """(wall, CPU of the process and its helpers, exit status, output) of one call, by the
    netstep of the checkout `tree`."""
    argv = [PY, "-m", "netstep", "--lab", lab, command, *([] if command == "list" else [ref])]
    if terminal:
        took, cpu, status, drawn = run_on_pty(argv, cwd=str(tree))
        return took, cpu, status, drawn.decode(errors="replace")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run([*argv, *([] if command == "list" else ["--json"])], capture_output=True, text=True,
                            cwd=tree)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu, result.returncode, result.stdout + result.stderr


def measure(rounds: int, lessons: int, before: Path | None = None) -> tuple[dict, dict, list[str]]:
    """The timings of this checkout's calls by (call, mode), and of `before`'s if given."""
    lab = f"bench-grading-{os.getpid()}"
    found = targets(lessons)
    trees = [("after", REPO), *([("before", before)] if before else [])]
    times: dict[str, dict[tuple[str, str], list[tuple[float, float, str]]]] = {name: {} for name, _ in trees}
    wrong: list[str] = []
    try:
        place(lab, found[0][1])
        for _, tree in trees:  # builds the course's states if this version lacks them
            call(lab, "verify", found[0][0], terminal=False, tree=tree)
        turn = 0
        for _ in range(rounds):
            for ref, position in found:
                for mode in ("terminal", "--json"):
                    turn += 1
                    for name, tree in (trees if turn % 2 else trees[::-1]):
                        place(lab, position)
                        for label, command in CALLS:
                            took, cpu, status, output = call(lab, command, ref, terminal=mode == "terminal",
                                                             tree=tree)
                            times[name].setdefault((label, mode), []).append((took, cpu, ref))
                            if (label.startswith("verify, done") and status != 0) or "Traceback" in output:
                                wrong.append(f"{name}: {command} {ref} ({mode}): exit {status}: {output[-300:]!r}")
    finally:
        subprocess.run([PY, "-m", "netstep", "--lab", lab, "reset"], capture_output=True, cwd=REPO)
    return times["after"], times.get("before", {}), wrong


def comparison(after: dict, before: dict, label_before: str) -> str:
    """Medians over the targets, before and after, side by side."""
    lines = [
        f"Before: {label_before}, its calls alternating with this checkout's target by target, on the same lab.",
        "",
        "| call | terminal: before | after | CPU before | after | --json: before | after | CPU before | after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, _ in CALLS:
        cells = []
        for mode in ("terminal", "--json"):
            old, new = before.get((label, mode), []), after.get((label, mode), [])
            if not old or not new:
                continue
            cells += [f"{statistics.median(t for t, _, _ in values):.2f} s" for values in (old, new)]
            cells += [f"{statistics.median(c for _, c, _ in values):.2f} s" for values in (old, new)]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def markdown(times: dict, rounds: int, lessons: int, count: int) -> str:
    lines = [
        f"### verify, hint and solution, every target of lessons 1-{lessons} (bench/grading_time.py)",
        "",
        f"{count} targets (each step and each \"Your turn\"), {rounds} round(s); each call a process of its own, "
        f"on a pty of {COLUMNS}x{LINES} and with `--json`, alternating target by target. Median and slowest "
        f"over the targets, wall time and CPU time (the process and its helpers: iptables-save, the probes' "
        f"threads); the limit is {LIMIT} s (median, wall). The ratio is the call's median wall time over "
        "the baseline's, a `list` run beside it (Python's start and netstep's CLI, no lab read): a "
        "figure that a loaded machine moves less than the seconds.",
        "",
        "| call | terminal: median | slowest | CPU | --json: median | slowest | CPU | ratio to `list` | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = statistics.median(t for mode in ("terminal", "--json") for t, _, _ in times.get((CALLS[0][0], mode), []))
    for label, _ in CALLS:
        cells, ok, medians = [], True, []
        for mode in ("terminal", "--json"):
            values = times.get((label, mode), [])
            median = statistics.median(t for t, _, _ in values)
            cpu = statistics.median(c for _, c, _ in values)
            worst, _, where = max(values)
            ok = ok and median <= LIMIT
            medians.append(median)
            cells += [f"{median:.2f} s", f"{worst:.2f} s ({where})", f"{cpu:.2f} s"]
        ratio = f"{statistics.mean(medians) / base:.1f}x" if base else "-"
        lines.append(f"| {label} | {' | '.join(cells)} | {ratio} | {'yes' if ok else '**no**'} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lessons", type=int, default=7, help="the first N lessons' targets (default 7)")
    parser.add_argument("--json-out", metavar="FILE", help="also write every timing as JSON")
    parser.add_argument("--before", metavar="DIR", type=Path,
                        help="a checkout of an earlier netstep whose calls run alternately with this one's")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/grading_time.py makes network namespaces: run it as root", file=sys.stderr)
        return 1
    for tree in (REPO, args.before) if args.before else (REPO,):
        subprocess.run([PY, "-m", "compileall", "-q", str(tree / "netstep")], check=False, capture_output=True)
    times, old, wrong = measure(args.rounds, args.lessons, args.before)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({f"{k[0]} | {k[1]}": v for k, v in times.items()}
                                                  | {f"before: {k[0]} | {k[1]}": v for k, v in old.items()}))
    print(markdown(times, args.rounds, args.lessons, len(targets(args.lessons))))
    if args.before:
        rev = subprocess.run(["git", "-C", str(args.before), "log", "-1", "--format=%h %s"], capture_output=True,
                             text=True).stdout.strip()
        print(comparison(times, old, f"`{rev}`" if rev else str(args.before)))
    for line in wrong:
        print("unexpected:", line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
