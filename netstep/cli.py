"""The command line: `python -m netstep [--lab NAME] COMMAND ...`.

A front end: it parses arguments, asks the engine, and prints what comes back. Errors a
person can fix (NetstepError) are caught once, here, and printed as one paragraph with a
non-zero exit; anything else is a bug and keeps its traceback.

Each command imports what it uses when it runs, for start-up speed: `list`, `reset` and
the `--json` paths never load rich, Textual or the engine they do not need. Those imports
point down the layers like any other (tests/test_layers.py reads them too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from netstep.console import LazyConsole
from netstep.console import text as _text
from netstep.errors import NetstepError

TOOLS = {"nsenter": "util-linux", "iptables": "iptables", "iptables-save": "iptables", "conntrack": "conntrack",
         "ip": "iproute2"}


class Terminated(BaseException):
    """SIGTERM, raised like Ctrl-C so that a step in progress is undone."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netstep", description="Container networking, step by step.")
    parser.add_argument("--lab", default="default", help="which lab to use (default: default)")
    parser.add_argument("--host", action="store_true",
                        help="host mode: the lab host is this machine's own namespace (for a VM of your own)")
    parser.add_argument("--internet", metavar="ADDRESS", help="the internet host in host mode (default: 8.8.8.8)")
    parser.add_argument("--upstream", metavar="NETNS_FILE",
                        help="host mode: a namespace file that plays the upstream in checks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help="list the lessons")
    run = sub.add_parser("run", help="run a lesson (or `all`), step by step")
    run.add_argument("lesson")
    run.add_argument("--yes", action="store_true", help="do not pause before each step")
    run.add_argument("--json", action="store_true", help="print each check as a JSON line")
    run.add_argument("--containers", type=int, metavar="N",
                     help="lesson 4 (the bridge) with N containers, every pair checked")
    run.add_argument("--predict", action="store_true",
                     help="before each step's checks, predict each one: r (reachable) or u (unreachable)")
    start = sub.add_parser("start", help="bring the lab to a lesson's start (or exerciseN's), applying none of it")
    start.add_argument("lesson")
    verify = sub.add_parser("verify", help="compare the lab with the course after STEP, then run its checks")
    verify.add_argument("step", nargs="?", help="2.4, a lesson (its last step) or exercise2; default: the next step")
    verify.add_argument("--json", action="store_true")
    for name, what in (("hint", "the next command you are missing for STEP"),
                       ("solution", "run what is missing for STEP, then verify it")):
        sub.add_parser(name, help=what).add_argument("step", nargs="?", help="as for verify")
    next_ = sub.add_parser("next", help="apply the next step")
    next_.add_argument("--json", action="store_true", help="print the step and each check as JSON lines")
    sub.add_parser("back", help="roll back the last step")
    check = sub.add_parser("check", help="run a lesson's final checks against the lab as it is")
    check.add_argument("lesson", nargs="?")
    check.add_argument("--json", action="store_true")
    inspect = sub.add_parser("inspect", help="show a namespace's devices, routes, rules, ...")
    inspect.add_argument("namespace", nargs="?", default="host")
    inspect.add_argument("--all", action="store_true", help="every namespace of the lab")
    inspect.add_argument("--json", action="store_true")
    trace = sub.add_parser("trace", help="send one probe and show, hop by hop, what the kernel did with it")
    trace.add_argument("source", metavar="FROM", help="the namespace it leaves from: host, netns0, upstream, ...")
    trace.add_argument("target", metavar="TO[:PORT]", help="an address (or `internet`), with a port for tcp/http")
    probe = trace.add_mutually_exclusive_group()
    for flag in ("icmp", "tcp", "http"):
        probe.add_argument(f"--{flag}", dest="probe", action="store_const", const="ping" if flag == "icmp" else flag)
    trace.add_argument("--json", action="store_true")
    sub.add_parser("diff", help="what changed since the last step")
    rollback = sub.add_parser("rollback", help="roll back the current lesson (--all: everything)")
    rollback.add_argument("--all", action="store_true")
    sub.add_parser("reset", help="remove the lab entirely")
    shell = sub.add_parser("shell", help="a root shell on the lab host (or in a namespace)")
    shell.add_argument("namespace", nargs="?", default="host")
    sub.add_parser("doctor", help="check that this machine can run the course")
    books = sub.add_parser("notebooks", help="write the Jupyter notebooks generated from the lessons")
    books.add_argument("--out", default="notebooks", help="folder to write to (default: notebooks)")
    books.add_argument("--html", metavar="DIR",
                       help="instead, run every notebook on a lab of its own and write the course as web pages to DIR")
    demo = sub.add_parser("demo", help="instructor demo: the course on a projector, one step at a time")
    demo.add_argument("--lab", default=argparse.SUPPRESS, help="which lab to use (as before the command)")
    demo.add_argument("--from", dest="from_lesson", metavar="N", help="start at lesson N (fast-forward first)")
    demo.add_argument("--to", dest="to_lesson", metavar="M", help="stop after lesson M")
    demo.add_argument("--auto", type=float, metavar="SECONDS",
                      help="advance every SECONDS by itself; at the end roll back, remove the lab and exit")
    demo.add_argument("--rollback-on-exit", action="store_true", help="roll back and remove the lab on quitting")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    out, err = LazyConsole(), LazyConsole(stderr=True)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from netstep.core.lab import validate_lab_name

        validate_lab_name(args.lab)  # once, for every command, before anything else runs
        return COMMANDS[args.command](args, out, err)
    except NetstepError as exc:
        err.print(_text(("netstep: ", "bold red"), str(exc)), soft_wrap=True)
        return 1
    except (KeyboardInterrupt, Terminated):
        err.print("netstep: interrupted; the step in progress was undone, the lab is consistent.")
        return 130
    finally:
        # A SIGTERM after the work is done (while Python exits) just ends the process.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def require_root_and_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        raise NetstepError(
            "netstep needs root: it creates network namespaces and changes their devices, routes and "
            "rules. Run it as root, for example `sudo .venv/bin/python -m netstep ...`."
        )
    missing = [t for t in tools or ("nsenter", "iptables", "iptables-save", "conntrack") if not shutil.which(t)]
    if missing:
        packages = sorted({TOOLS[t] for t in missing})
        raise NetstepError(
            f"netstep needs {', '.join(missing)}, which is not installed. On Debian or Ubuntu: "
            f"`apt-get install {' '.join(packages)}`."
        )


@contextmanager
def opened(args, course=None) -> Iterator:
    """The engine on the lab named by `args`, holding the lab's lock until the block ends."""
    engine = _engine(args, course)
    try:
        yield engine
    finally:
        engine.lab.close()


def _engine(args, course=None):
    from netstep.core.engine import Engine

    require_root_and_tools()
    lab = _lab(args)
    lab.lock()
    try:
        return Engine(lab, course)
    except BaseException:
        lab.close()
        raise


def _lab(args):
    import ipaddress

    from netstep.core.lab import Lab

    if (args.internet or args.upstream) and not args.host:
        raise NetstepError("--internet and --upstream go with --host (host mode).")
    if args.internet:
        try:
            ipaddress.IPv4Address(args.internet)
        except ValueError:
            raise NetstepError(f"--internet takes an IPv4 address, not '{args.internet}'.") from None
    if args.upstream and not os.path.exists(args.upstream):
        raise NetstepError(f"--upstream {args.upstream}: there is no such namespace file.")
    return Lab(args.lab, host=args.host, internet=args.internet, upstream=args.upstream)


def cmd_list(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course

    out.print(Course.load())
    return 0


def _print_checks(results: Iterable, args, out: LazyConsole, lesson: str = "", step: str = "",
                  said: list[str] | None = None) -> None:
    for i, result in enumerate(results):
        if args.json:
            line = result.as_json(lesson, step)
            if said:
                line["predicted"] = said[i]
            print(json.dumps(line), flush=True)
        else:
            out.print(result)


def cmd_run(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course
    from netstep.course.predictions import Score, predicted
    from netstep.practice import ask, show_score

    course = Course.load()
    if args.containers is not None:
        from netstep.core.lab import Lab
        from netstep.course.scale import built_with, check_room

        course = course.with_containers(args.containers)
        if built_with(Lab(args.lab)) != args.containers:  # a lab already built holds its own entries
            check_room(args.containers)
    lessons = course.lessons if args.lesson == "all" else [course.find(args.lesson)]
    start = course.start_of(lessons[0])
    with opened(args, course) as engine:
        if engine.position != start or engine.journal.own:  # (goto takes back the student's own commands)
            note = f"Bringing lab '{engine.lab.name}' to the start of {lessons[0].name}..."
            if args.json:
                err.plain(note)
            else:
                out.print(f"[dim]{note}[/]")
            engine.skip_to(start)
        ok = True
        everything = Score("the run")
        for lesson in lessons:
            if not args.json:
                out.rule(_text((lesson.title, "bold")))
                out.print(lesson)
            score = Score(lesson.name)
            for step in lesson.steps:
                console = err if args.json else out
                if not args.json or not args.yes:
                    console.print(_intro(step, predicting=args.predict))  # what a student reads first
                if not args.yes and not _confirm(console):
                    return 0 if ok else 1
                said = ask(step.checks, engine.lab.internet, console) if args.predict and step.checks else []
                result = _apply_with_progress(engine, step, console, show=not args.json)
                ok = ok and result.ok
                marks = predicted(result.checks, said) if said else []
                score.predictions += marks
                _print_result(result, args, out, said, marks)
            if args.predict:
                show_score(score, args, out)
                everything.predictions += score.predictions
        if args.predict and len(lessons) > 1:
            show_score(everything, args, out)
        if not args.json:
            out.print("[bold green]Every check came out as expected.[/]" if ok
                      else "[bold red]Some checks did not come out as expected.[/]")
        return 0 if ok else 1


def _apply_with_progress(engine, step, console: LazyConsole, *, show: bool = True):
    """Apply a step; one with many actions (a large lab) shows a progress bar meanwhile."""
    if len(step.actions) < 50 or not console.stream.isatty():  # a bar is for a person watching
        return engine.apply_next(show=show)
    from rich.progress import Progress

    with Progress(console=console.console, transient=True) as bar:
        task = bar.add_task(step.title, total=len(step.actions))
        return engine.apply_next(show=show, progress=lambda done, total: bar.update(task, completed=done))


def _print_result(result, args, out: LazyConsole, said: list[str] | None = None, marks: list | None = None) -> None:
    """A step's result: with --json its step line and check lines; otherwise what changed,
    the checks and what the step shows, the predictions marked (`marks`), then the prose
    that explains them."""
    step = result.step
    lesson = step.lesson.name if step.lesson else ""
    if args.json:
        print(json.dumps(step_event(result)), flush=True)
        _print_checks(result.checks, args, out, lesson, step.ref, said)
        return
    out.print(result)
    if marks:
        from netstep.practice import show_predictions

        show_predictions(marks, out)
    if step.after:
        from rich.markdown import Markdown

        out.print(Markdown(step.after))
    out.print()


def step_event(result) -> dict:
    """The JSON line of an applied step: what ran and exactly what it changed."""
    step = result.step
    return {"event": "step", "lesson": step.lesson.name if step.lesson else "", "step": step.ref,
            "title": step.title, "commands": [f"{c.where}# {c.text}" for c in step.commands],
            "diff": result.diff.as_json()}


def _intro(step, *, predicting: bool):
    """The step before it runs; when predicting, its checks' questions without their answers."""
    from netstep.present.views import step_intro

    return step_intro(step, predicting=predicting)


def _confirm(out: LazyConsole) -> bool:
    if not sys.stdin.isatty():
        return True
    answer = out.input("Press Enter to apply this step, or q to stop: ")
    return answer.strip().lower() not in ("q", "quit")


def cmd_next(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        if engine.journal.own:  # an exercise's work, say: the course goes on from its own state
            engine.undo_own()
            (err if args.json else out).plain("Your own commands (an exercise's, say) were taken back first.")
        step = engine.next_step()
        if step is not None and not args.json:
            out.print(step)
        result = engine.apply_next(show=not args.json)
        _print_result(result, args, out)
        return 0 if result.ok else 1


def cmd_back(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        out.print(engine.undo_last())
        return 0


def cmd_check(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        if args.lesson:
            lesson = engine.course.find(args.lesson)
            checks, label, step = engine.final_checks(lesson), lesson.name, ""
        else:
            current = engine.current_step()
            if current is None:
                raise NetstepError("No step is applied yet: name a lesson, as in `check lesson2`.")
            checks, label, step = current.checks, current.lesson.name, current.ref
        results = engine.run_checks(checks)
        _print_checks(results, args, out, label, step)
        return 0 if all(r.ok for r in results) else 1


def cmd_inspect(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        names = engine.lab.namespace_names() if args.all else [args.namespace]
        for name in names:
            engine.lab.require(name)
        snap = engine.snapshot(names)
        if args.json:
            from netstep.state.snapshot import to_json

            print(json.dumps(to_json(snap), indent=1))
        else:
            out.print(snap)
        return 0


def cmd_trace(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.ops.trace import parse_target

    target, port, kind = parse_target(args.target, args.probe)
    with opened(args) as engine:
        found = engine.trace(args.source, target, port=port, kind=kind)
    if args.json:
        print(json.dumps(found.as_json()), flush=True)
    else:
        out.print(found)
    return 0 if found.reachable else 1


def cmd_diff(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        out.print(engine.changes_since_last_step())
        return 0


def cmd_rollback(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        moves = engine.rollback_all() if args.all else engine.rollback_lesson()
        for result in moves:
            out.print(_text(("rolled back ", "dim"), f"{result.step.ref} {result.step.title}"))
        where = engine.current_step()
        out.print("The lab is now at the start of the course." if where is None
                  else f"The lab is now after step {where.ref}: {where.title}.")
        return 0


def cmd_reset(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.core.reset import reset_lab

    require_root_and_tools("nsenter")
    lab = _lab(args)
    lab.lock(build=False, adopt=True)  # whatever mode the lab was made in
    try:
        orphaned = lab.orphaned
        problems = reset_lab(lab)
    finally:
        lab.close()
    for problem in problems:
        err.print(_text(("netstep: could not undo: ", "yellow"), problem), soft_wrap=True)
    if orphaned:
        out.plain(f"Lab '{args.lab}' removed: its network namespace was gone, so only its files and its own "
                  "namespaces were left, and nothing else was touched.")
    else:
        out.plain(f"Lab '{args.lab}' removed: its namespaces, servers and files are gone.")
    return 1 if problems else 0


def cmd_shell(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.shell import open_shell

    engine = _engine(args)
    engine.lab.close()  # the lock is not held while the student works by hand
    engine.lab.require(args.namespace)
    out.print(f"[dim]A root shell in {args.namespace} of lab '{args.lab}'. `ip netns list` shows the lab's "
              "containers. Type exit to leave; then `python -m netstep diff` shows what you changed.[/]")
    out.file.flush()
    return open_shell(engine.lab, args.namespace)


def cmd_practice(args, out: LazyConsole, err: LazyConsole) -> int:
    """start, verify, hint and solution (netstep.practice)."""
    from netstep.practice import COMMANDS as PRACTICE

    with opened(args) as engine:
        return PRACTICE[args.command](engine, args, out)


def cmd_doctor(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.doctor import diagnose

    problems = 0
    for ok, message in diagnose(host=args.host):
        out.print(("[green]✔[/] " if ok else "[red]✘[/] ") + message, soft_wrap=True)
        problems += not ok
    return 1 if problems else 0


def cmd_notebooks(args, out: LazyConsole, err: LazyConsole) -> int:
    from pathlib import Path

    from netstep.course.course import Course
    from netstep.notebooks import write_all

    if args.html:
        from netstep.book import write_book

        require_root_and_tools()
        for path in write_book(Course.load(), Path(args.html)):
            out.plain(f"wrote {path}")
        return 0
    for path in write_all(Course.load(), Path(args.out)):
        out.print(f"wrote {path}", markup=False)
    return 0


def cmd_demo(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course
    from netstep.demo import options_from_args, run_demo

    course = Course.load()
    options = options_from_args(args, course)
    with opened(args, course) as engine:
        return run_demo(engine, options)


COMMANDS = {
    "list": cmd_list, "run": cmd_run, "next": cmd_next, "back": cmd_back, "check": cmd_check,
    "inspect": cmd_inspect, "trace": cmd_trace, "diff": cmd_diff, "rollback": cmd_rollback, "reset": cmd_reset,
    "shell": cmd_shell, "doctor": cmd_doctor, "notebooks": cmd_notebooks,
    "demo": cmd_demo, "start": cmd_practice, "verify": cmd_practice, "hint": cmd_practice,
    "solution": cmd_practice,
}
