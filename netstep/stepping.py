"""`run` and `next`: steps applied and shown, at a terminal or as JSON lines.

A step reads, in order: its scene, its commands and the questions its checks ask (on a
terminal, asked one by one for a prediction), then what changed, the checks with what was
expected beside what came out, and only then the explanation: nothing a step will show is
on screen before it runs. With `--json`, a `{"event": "step"}` line per step and a line per
check.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from netstep.console import LazyConsole
from netstep.console import text as _text
from netstep.core.grading import Verdict, advance
from netstep.i18n import N_, _
from netstep.session import opened


def print_checks(results: Iterable, args, out: LazyConsole, lesson: str = "", step: str = "",
                  said: list[str | None] | None = None) -> None:
    for i, result in enumerate(results):
        if args.json:
            line = result.as_json(lesson, step)
            if said and said[i] is not None:
                line["predicted"] = said[i]
            print(json.dumps(line), flush=True)
        else:
            out.print(result)


def cmd_run(args, out: LazyConsole, err: LazyConsole) -> int:
    from netstep.course.course import Course
    from netstep.course.predictions import Score, predicted
    from netstep.practice import STOP, ask, show_score

    course = Course.load(mode="host" if args.host else "sandbox")
    if args.containers is not None:
        from netstep.core.lab import Lab
        from netstep.course.scale import built_with, check_room

        course = course.with_containers(args.containers)
        if built_with(Lab(args.lab)) != args.containers:  # a lab already built holds its own entries
            check_room(args.containers)
    lessons = course.lessons if args.lesson == "all" else [course.find(args.lesson)]
    start = course.start_of(lessons[0])
    predicting = _predicting(args)
    with opened(args, course) as engine:
        engine.sole_writer = True  # the run's moves follow one another: the student is only read for at the first
        if engine.position != start or engine.journal.own:  # (goto takes back the student's own commands)
            note = _("Bringing lab '{lab}' to the start of {lesson}...").format(lab=engine.lab.name,
                                                                                 lesson=lessons[0].name)
            if args.json:
                err.plain(note)
            else:
                out.print(_text((note, "dim")))
            engine.skip_to(start)
        ok = True
        everything = Score(N_("the run"))
        internet = engine.lab.internet
        for lesson in lessons:
            if not args.json:
                out.rule(_text((lesson.title, "bold")))
                out.print(lesson)
            score = Score(lesson.name)
            for step in lesson.steps:
                console = err if args.json else out
                asking = predicting and _asks(step, args)
                if not args.json or not args.yes:
                    console.print(_intro(step, asking=asking, internet=internet))  # what a student reads first
                said = ask(step.checks, internet, console) if asking else []
                if said == STOP or (not asking and not args.yes and not _confirm(console)):
                    return 0 if ok else 1
                result = _apply_with_progress(engine, step, console, show=not args.json)
                ok = ok and result.ok
                marks = predicted(result.checks, said, step.ref) if said else []
                score.predictions += marks
                _print_result(result, args, out, said, marks)
            if score.total:
                show_score(score, args, out)
                everything.predictions += score.predictions
        if everything.total and len(lessons) > 1:
            show_score(everything, args, out)
        if not args.json:  # how the checks came out: a line of its own, apart from the predictions
            out.print(_text((_("Every check came out as expected."), "bold green")) if ok
                      else _text((_("Some checks did not come out as expected."), "bold red")))
        return 0 if ok else 1


def _predicting(args) -> bool:
    """Whether `run` asks for predictions: by default on a terminal, where a person reads
    each step, but not with --yes or --json (a run straight through, or for a program);
    --predict asks always (answers may come from a pipe), --no-predict never."""
    if args.predict is not None:
        return args.predict
    return not args.yes and not args.json and sys.stdin.isatty()


def _asks(step, args) -> bool:
    """Whether this step's checks are asked one by one: a step of many checks (a large lab's)
    is asked only when --predict says so, and otherwise shows its questions in groups."""
    from netstep.present.views import MANY

    return bool(step.checks) and (len(step.checks) <= MANY or bool(args.predict))


def _apply_with_progress(engine, step, console: LazyConsole, *, show: bool = True):
    """Apply a step; one with many actions (a large lab) shows a progress bar meanwhile."""
    if len(step.actions) < 50 or not console.stream.isatty():  # a bar is for a person watching
        return engine.apply_next(show=show)
    from rich.progress import Progress

    with Progress(console=console.console, transient=True) as bar:
        task = bar.add_task(step.title, total=len(step.actions))
        return engine.apply_next(show=show, progress=lambda done, total: bar.update(task, completed=done))


def _print_result(result, args, out: LazyConsole, said: list[str | None] | None = None,
                  marks: list | None = None) -> None:
    """A step's result: with --json its step line and check lines; otherwise what changed,
    the checks and what the step shows, the predictions marked (`marks`), then the prose
    that explains them."""
    step = result.step
    lesson = step.lesson.name if step.lesson else ""
    if args.json:
        print(json.dumps(step_event(result)), flush=True)
        print_checks(result.checks, args, out, lesson, step.ref, said)
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
            "diff": result.diff.as_json(),
            **({"reconciled": result.reconciled.as_json()} if result.reconciled else {})}


def _intro(step, *, asking: bool, internet: str | None):
    """The step before it runs; its checks' questions unless they are about to be asked."""
    from netstep.present.views import step_intro

    return step_intro(step, asking=asking, internet=internet)


def _confirm(out: LazyConsole) -> bool:
    if not sys.stdin.isatty():
        return True
    answer = out.input(_("Press Enter to apply this step, or q to stop: "))
    return answer.strip().lower() not in ("q", "quit")


def cmd_next(args, out: LazyConsole, err: LazyConsole) -> int:
    with opened(args) as engine:
        step = engine.next_step()
        result = advance(engine, show=not args.json)
        if isinstance(result, Verdict):  # the student had done the step by hand: counted, not applied again
            if args.json:
                print(json.dumps(result.as_json()), flush=True)
            else:
                out.plain(_("You already did {ref} yourself:").format(ref=result.target.ref))
                out.print(result)
            return 0
        if step is not None and not args.json:
            out.print(step)
        _print_result(result, args, out)
        return 0 if result.ok else 1
