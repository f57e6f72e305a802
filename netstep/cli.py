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
import signal
import sys

from netstep import i18n
from netstep.console import LazyConsole
from netstep.console import text as _text
from netstep.errors import Interrupted, NetstepError, Terminated
from netstep.i18n import LANGUAGES, N_, _, fill
from netstep.session import engine_for, lab_for, opened, require_root_and_tools
from netstep.stepping import cmd_next, cmd_run, print_checks

# argparse's own words ("usage:", "options", its errors) go through gettext's default
# domain, for which netstep has no catalog: they are in netstep's, and argparse is handed
# netstep's `_` (it looks its `_` up each time it speaks).
ARGPARSE = (N_("usage: "), N_("positional arguments"), N_("options"), N_("show this help message and exit"),
            N_("%(prog)s: error: %(message)s\n"), N_("the following arguments are required: %s"),
            N_("unrecognized arguments: %s"), N_("invalid choice: %(value)r (choose from %(choices)s)"),
            N_("argument %(argument_name)s: %(message)s"), N_("expected one argument"),
            N_("invalid %(type)s value: %(value)r"), N_("ambiguous option: %(option)s could match %(matches)s"),
            N_("not allowed with argument %s"), N_("one of the arguments %s is required"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m netstep", description=_("Container networking, step by step."))
    parser.add_argument("--lab", default="default", help=_("which lab to use (default: default)"))
    parser.add_argument("--lang", choices=tuple(LANGUAGES),
                        help=_("the language netstep speaks: zh or en (default: from LANGUAGE, LC_ALL, LC_MESSAGES, "
                               "LANG, else en)"))
    parser.add_argument("--host", action="store_true",
                        help=_("host mode: the lab host is this machine's own namespace (for a VM of your own)"))
    parser.add_argument("--internet", metavar="ADDRESS", help=_("the internet host in host mode (default: 8.8.8.8)"))
    parser.add_argument("--upstream", metavar="NETNS_FILE",
                        help=_("host mode: a namespace file that plays the upstream in checks"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("list", help=_("list the lessons"))
    run = sub.add_parser("run", help=_("run a lesson (or `all`), step by step"))
    run.add_argument("lesson")
    run.add_argument("--yes", action="store_true", help=_("do not pause before each step"))
    run.add_argument("--json", action="store_true", help=_("print each check as a JSON line"))
    run.add_argument("--containers", type=int, metavar="N",
                     help=_("lesson 4 (the bridge) with N containers, every pair checked"))
    run.add_argument("--predict", action=argparse.BooleanOptionalAction, default=None,
                     help=_("before each step, predict what each check will show: y or n, Enter skips "
                          "(default: asked on a terminal, not with --yes or --json; --predict asks even "
                          "from a pipe)"))
    start = sub.add_parser("start", help=_("bring the lab to a lesson's start (or exerciseN's), applying none of it"))
    start.add_argument("lesson", metavar="LESSON|exerciseN",
                       help=_("a lesson (lesson2, veth or 2): the lab goes to its start; or exerciseN, lesson N's "
                            "\"Your turn\": the lab goes to lesson N's end, where the exercise starts"))
    verify = sub.add_parser("verify", help=_("compare the lab with the course after STEP, then run its checks"))
    verify.add_argument("step", nargs="?", help=_("2.4, a lesson (its last step), exercise2 or a challenge; default: "
                        "the challenge the lab holds, else the next step"))
    verify.add_argument("--json", action="store_true")
    challenge = sub.add_parser("challenge", help=_("list the break-it challenges, or set one up: a working lab, one "
                               "thing broken"))
    challenge.add_argument("name", nargs="?", help=_("the challenge to set up (without: list them, one a line)"))
    challenge.add_argument("--json", action="store_true", help=_("one JSON object a line"))
    for name, what in (("hint", _("the next command you are missing for STEP")),
                       ("solution", _("run what is missing for STEP, then verify it"))):
        command = sub.add_parser(name, help=what)
        command.add_argument("step", nargs="?", help=_("as for verify"))
        command.add_argument("--json", action="store_true")
    next_ = sub.add_parser("next", help=_("apply the next step"))
    next_.add_argument("--json", action="store_true", help=_("print the step and each check as JSON lines"))
    sub.add_parser("back", help=_("roll back the last step"))
    check = sub.add_parser("check", help=_("run a lesson's final checks against the lab as it is"))
    check.add_argument("lesson", nargs="?", help=_("a lesson (lesson2, veth, 2), or `all`: every finished lesson's "
                       "(the last one decides the exit status); default: the checks of the step the lab is at"))
    check.add_argument("--json", action="store_true")
    inspect = sub.add_parser("inspect", help=_("show a namespace's devices, routes, rules, ..."))
    inspect.add_argument("namespace", nargs="?", default="host")
    inspect.add_argument("--all", action="store_true", help=_("every namespace of the lab"))
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--svg", metavar="FILE",
                         help=_("also draw the whole lab to FILE (SVG), what changed since the last step marked"))
    trace = sub.add_parser("trace", help=_("send one probe and show, hop by hop, what the kernel did with it"))
    trace.add_argument("source", metavar="FROM", help=_("the namespace it leaves from: host, netns0, upstream, ..."))
    trace.add_argument("target", metavar="TO[:PORT]", help=_("an address (or `internet`), with a port for tcp/http; "
                                                             "with --dns, a name"))
    probe = trace.add_mutually_exclusive_group()
    for flag in ("icmp", "tcp", "http"):
        probe.add_argument(f"--{flag}", dest="probe", action="store_const", const="ping" if flag == "icmp" else flag)
    probe.add_argument("--dns", dest="probe", action="store_const", const="dns",
                       help=_("look the name TO up as a program in FROM does: through the nameserver of the "
                              "resolv.conf it reads, over UDP"))
    trace.add_argument("--size", metavar="N", type=int,
                       help=_("a ping of N bytes of payload that may not be fragmented, as `ping -M do -s N`"))
    trace.add_argument("--json", action="store_true")
    trace.add_argument("--svg", metavar="FILE", help=_("also draw the path on the lab's diagram, to FILE (SVG)"))
    sub.add_parser("diff", help=_("what changed since the last step"))
    rollback = sub.add_parser("rollback", help=_("roll back the current lesson (--all: everything)"))
    rollback.add_argument("--all", action="store_true")
    sub.add_parser("reset", help=_("remove the lab entirely"))
    shell = sub.add_parser("shell", help=_("a root shell on the lab host (or in a namespace)"))
    shell.add_argument("namespace", nargs="?", default="host")
    sub.add_parser("doctor", help=_("check that this machine can run the course"))
    books = sub.add_parser("notebooks", help=_("write the Jupyter notebooks generated from the lessons"))
    books.add_argument("--out", default="notebooks", help=_("folder to write to (default: notebooks)"))
    books.add_argument("--html", metavar="DIR",
                       help=_("instead, run every notebook on a lab of its own and write the course as web pages "
                              "to DIR"))
    books.add_argument("--lang", choices=tuple(LANGUAGES), default=argparse.SUPPRESS,
                       help=_("with --html: the book's language (as before the command)"))
    demo = sub.add_parser("demo", help=_("instructor demo: the course on a projector, one step at a time"))
    demo.add_argument("--lab", default=argparse.SUPPRESS, help=_("which lab to use (as before the command)"))
    demo.add_argument("--from", dest="from_lesson", metavar="N", help=_("start at lesson N (fast-forward first)"))
    demo.add_argument("--to", dest="to_lesson", metavar="M", help=_("stop after lesson M"))
    demo.add_argument("--auto", type=float, metavar="SECONDS",
                      help=_("advance every SECONDS by itself; at the end roll back, remove the lab and exit"))
    demo.add_argument("--rollback-on-exit", action="store_true", help=_("roll back and remove the lab on quitting"))
    return parser


def main(argv: list[str] | None = None) -> int:
    choose_language(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    out, err = LazyConsole(), LazyConsole(stderr=True)
    if i18n.note():
        err.plain(i18n.note())
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from netstep.core.lab import validate_lab_name

        validate_lab_name(args.lab)  # once, for every command, before anything else runs
        return COMMANDS[args.command](args, out, err)
    except NetstepError as exc:
        err.print(_text(("netstep: ", "bold red"), str(exc)), soft_wrap=True)
        return 1
    except (KeyboardInterrupt, Terminated) as exc:
        where = f" {exc.where}" if isinstance(exc, Interrupted) else ""
        err.print(_("netstep: interrupted; the step in progress was undone, the lab is consistent.") + where,
                  markup=False, soft_wrap=True)
        return 130
    finally:
        # A SIGTERM after the work is done (while Python exits) just ends the process.
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def choose_language(argv: list[str]) -> str:
    """The language of this process: `--lang` if the command line has it (read before the
    parser is built: its help is translated), else the environment's (netstep.i18n)."""
    asked = None
    for i, word in enumerate(argv):
        if word == "--lang" and i + 1 < len(argv):
            asked = argv[i + 1]
        elif word.startswith("--lang="):
            asked = word.partition("=")[2]
    if asked not in LANGUAGES:
        asked = None  # (the parser then says what --lang takes)
    language = i18n.use(asked)
    argparse._ = i18n._  # (ARGPARSE)
    return language


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def cmd_list(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course

    out.print(Course.load())
    return 0


def cmd_back(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        out.print(engine.undo_last())
        return 0


def cmd_check(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        if args.lesson and args.lesson.strip().lower() == "all":
            return _check_all(engine, args, out)
        if args.lesson:
            lesson = engine.course.find(args.lesson)
            checks, label, step = engine.final_checks(lesson), lesson.name, ""
        else:
            current = engine.current_step()
            if current is None:
                raise NetstepError(_("No step is applied yet: name a lesson, as in `check lesson2`."))
            checks, label, step = current.checks, current.lesson.name, current.ref
        results = engine.run_checks(checks)
        print_checks(results, args, out, label, step)
        return 0 if all(r.ok for r in results) else 1


def _check_all(engine, args, out: LazyConsole) -> int:
    """Each finished lesson's final checks, against the lab as it is. A later lesson changes
    what an earlier one ended with (lesson 5 lets the containers reach the host, which
    lesson 2's end says they cannot), so only the last finished lesson must still hold: the
    exit status is its; the others are shown for what they are."""
    course = engine.course
    done = [le for le in course.lessons if course.start_of(le) + len(le.steps) <= engine.position]
    if not done:
        raise NetstepError(_("No lesson is finished yet, so no lesson's end can be checked: `check` runs the "
                             "checks of the step the lab is at."))
    names = set(engine.lab.namespace_names())
    ok = True
    for lesson in done:
        last = lesson is done[-1]
        checks = [c for c in engine.final_checks(lesson) if c.source in names]
        results = engine.run_checks(checks)
        if not args.json:
            held = sum(r.ok for r in results)
            line = (_("{lesson}'s end: {held} of {total} as the lesson expects") if last else
                    _("{lesson}'s end: {held} of {total} as the lesson expects (later lessons may have changed this)"))
            out.print(_text(*fill(line, "", lesson=(lesson.name, "bold"), held=str(held), total=str(len(results)))))
        if last or args.json:  # (the earlier ones in a line each: `check lessonN` lists them)
            print_checks(results, args, out, lesson.name)
        if last:
            ok = all(r.ok for r in results) and len(checks) == len(engine.final_checks(lesson))
    return 0 if ok else 1


def cmd_inspect(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        names = engine.lab.namespace_names() if args.all else [args.namespace]
        for name in names:
            engine.lab.require(name)
        snap = engine.snapshot(names)
        if args.svg:
            from netstep.state.diagram import lab_diagram

            whole = snap if args.all else engine.snapshot()
            drawn = lab_diagram(whole, engine.moments.last(), title=_("lab '{lab}'").format(lab=args.lab),
                                internet=engine.lab.internet, servers=engine.servers())
            _write_svg(args.svg, drawn, None if args.json else out, err)
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
        found = engine.trace(args.source, target, port=port, kind=kind, size=args.size)
        internet = engine.lab.internet
    if args.svg:
        from netstep.present.diagram import trace_diagram

        _write_svg(args.svg, trace_diagram(found, internet), None if args.json else out, err)
    if args.json:
        print(json.dumps(found.as_json()), flush=True)
    else:
        out.print(found)
    return 0 if found.reachable else 1


def _write_svg(path: str, diagram, out: LazyConsole | None, err: LazyConsole) -> None:
    """Draw `diagram` to the SVG file `path` (a clear error for a bad path). Without
    Graphviz's `dot`, the lab is drawn as text instead (on stderr with --json, where
    stdout is JSON only), after one line saying how to get the pictures."""
    from netstep.present.diagram import NO_DOT, DrawingUnavailable, svg

    try:
        drawn = svg(diagram)
    except DrawingUnavailable:
        from netstep.present.topology import Topology

        shown = out or err
        shown.print(_text((_(NO_DOT), "yellow")))
        shown.print(Topology(diagram))
        return
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n' + drawn)
    except OSError as exc:
        raise NetstepError(_("--svg {path}: cannot write it ({error}). Name a file in a folder that exists.").format(
            path=path, error=exc.strerror)) from None
    if out is not None:  # (not with --json: stdout is JSON only)
        out.print(_text((_("drew the lab to {path}").format(path=path), "dim")))


def cmd_diff(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        out.print(engine.changes_since_last_step())
        return 0


def cmd_rollback(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        moves = engine.rollback_all() if args.all else engine.rollback_lesson()
        for result in moves:
            if result.reconciled:  # the student's own changes, taken back before the steps
                out.print(result.reconciled)
                if result.reconciled.changes:
                    continue
            out.print(_text(*fill(_("rolled back {ref} {title}"), "dim", ref=result.step.ref,
                                  title=result.step.title)))
        where = engine.current_step()
        out.print(_("The lab is now at the start of the course.") if where is None
                  else _("The lab is now after step {ref}: {title}.").format(ref=where.ref, title=where.title),
                  markup=False)
        return 0


def cmd_reset(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.core.reset import reset_lab

    require_root_and_tools("iptables")  # (a host-mode lab's rules are removed with it)
    lab = lab_for(args)
    lab.lock(build=False, adopt=True)  # whatever mode the lab was made in
    try:
        orphaned = lab.orphaned
        problems = reset_lab(lab)
    finally:
        lab.close()
    for problem in problems:
        err.print(_text((_("netstep: could not undo: "), "yellow"), problem), soft_wrap=True)
    if orphaned:
        out.plain(_("Lab '{lab}' removed: its network namespace was gone, so only its files and its own "
                    "namespaces were left, and nothing else was touched.").format(lab=args.lab))
    else:
        out.plain(_("Lab '{lab}' removed: its namespaces, servers and files are gone.").format(lab=args.lab))
    return 1 if problems else 0


def cmd_shell(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.shell import open_shell

    require_root_and_tools("nsenter", "unshare", "findmnt", "bash")  # before a lab is built for it
    engine = engine_for(args)
    engine.lab.close()  # the lock is not held while the student works by hand
    engine.lab.require(args.namespace)
    out.print(_text((_("A root shell in {ns} of lab '{lab}'. `ip netns list` shows the lab's "
                       "containers. Type exit to leave; then `python -m netstep diff` shows what you changed.").format(
        ns=args.namespace, lab=args.lab), "dim")))
    out.file.flush()
    return open_shell(engine.lab, args.namespace)


def cmd_practice(args, out: LazyConsole, err: LazyConsole) -> int:
    """start, verify, hint and solution (netstep.practice)."""
    from netstep.practice import COMMANDS as PRACTICE

    with opened(args) as engine:
        return PRACTICE[args.command](engine, args, out)


def cmd_challenge(args, out: LazyConsole, err: LazyConsole) -> int:
    """Without a name, the challenges one a line (no lab needed); with one, set it up."""
    from netstep.course.challenges import Challenges
    from netstep.course.course import Course

    if not args.name:
        found = Challenges.load(Course.load().lessons)
        width = max((len(c.name) for c in found.items), default=0)
        for c in found.items:
            out.plain(json.dumps({"name": c.name, "lesson": c.lesson, "story": c.story}) if args.json
                      else f"{c.name:<{width}}  lesson {c.lesson}  {c.story}")
        return 0
    from netstep.core import challenges

    with opened(args) as engine:
        begun = challenges.begin(engine, challenges.catalogue(engine).find(args.name))
        if args.json:
            print(json.dumps(begun.as_json(engine.lab.internet)), flush=True)
            return 0
        from netstep.present.coaching import begun_view

        out.print(begun_view(begun, engine.lab.internet))
        return 0


def cmd_doctor(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.doctor import diagnose

    problems = 0
    for ok, message in diagnose(host=args.host):
        out.print(_text(("✔ ", "green") if ok else ("✘ ", "red"), message), soft_wrap=True)
        problems += not ok
    return 1 if problems else 0


def cmd_notebooks(args, out: LazyConsole, err: LazyConsole) -> int:
    from pathlib import Path

    from netstep.notebooks import translated, write_all

    if args.html:
        from netstep.book import write_book

        require_root_and_tools(joined=False)  # (an ordinary user's notebooks join their labs themselves)
        course, missing = translated(i18n.language())
        _say_untranslated(out, [(i18n.language(), lesson) for lesson in missing])
        for path in write_book(course, Path(args.html), lang=i18n.language()):
            out.plain(_("wrote {path}").format(path=path))
        return 0
    written, missing = write_all(Path(args.out))
    for path in written:
        out.print(_("wrote {path}").format(path=path), markup=False)
    _say_untranslated(out, missing)
    return 0


def _say_untranslated(out: LazyConsole, missing: list) -> None:
    """One line for each lesson left out of a language's notebooks, not yet translated."""
    from pathlib import Path

    for lang, lesson in missing:
        out.plain(_("{file}: not translated into {lang} yet, so it has no notebook in that language").format(
            file=Path(lesson.path).name, lang=lang))


def cmd_demo(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course
    from netstep.demo import options_from_args, run_demo

    course = Course.load(mode="host" if args.host else "sandbox")
    options = options_from_args(args, course)
    with opened(args, course) as engine:
        return run_demo(engine, options)


COMMANDS = {
    "list": cmd_list, "run": cmd_run, "next": cmd_next, "back": cmd_back, "check": cmd_check,
    "inspect": cmd_inspect, "trace": cmd_trace, "diff": cmd_diff, "rollback": cmd_rollback, "reset": cmd_reset,
    "shell": cmd_shell, "doctor": cmd_doctor, "notebooks": cmd_notebooks,
    "demo": cmd_demo, "start": cmd_practice, "verify": cmd_practice, "hint": cmd_practice,
    "solution": cmd_practice, "challenge": cmd_challenge,
}
