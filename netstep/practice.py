"""The command line's practice commands: start, verify, hint, solution, and predictions.

A front end like netstep.cli, which parses the arguments and opens the lab: these
functions get the engine, ask it, and print what comes back.
"""

from __future__ import annotations

import json
import sys
from typing import TextIO

from netstep.core.challenges import target_of
from netstep.core.engine import Engine
from netstep.core.grading import next_hint, solution, verify
from netstep.course.checks import Check
from netstep.course.predictions import Prediction, Score, answer_of, question
from netstep.errors import NetstepError, did_you_mean
from netstep.i18n import _


def cmd_start(engine: Engine, args, out) -> int:
    """Bring the lab to a lesson's start (or an exercise's: the lesson's end), applying none
    of its steps, and say what each step asks of the student: its title and its checks'
    questions, never their answers nor its commands."""
    from netstep.present.coaching import exercise_goals_view, goals_view

    ref = args.lesson.strip()
    internet = engine.lab.internet
    if ref.lower().startswith("exercise"):
        target = target_of(engine, ref)
        engine.skip_to(target.position)
        lesson = engine.steps[target.position - 1].lesson
        assert lesson is not None and lesson.exercise is not None
        out.print(exercise_goals_view(lesson.exercise, internet))
        out.print(_("Do the task in `python -m netstep shell`; `verify {ref}` grades it, `hint {ref}` helps.").format(
            ref=target.ref), markup=False)
        return 0
    try:
        lesson = engine.course.find(ref)
    except NetstepError:
        course = engine.course
        near = did_you_mean(ref, course.names() + [le.exercise.ref for le in course.lessons if le.exercise])
        raise NetstepError(_("There is no lesson or exercise '{ref}'.{near} Name a lesson as `lesson2`, `veth` or "
                             "`2`, or a lesson's \"Your turn\" as `exercise2`; `python -m netstep list` shows "
                             "them.").format(ref=ref, near=near)) from None
    start = engine.course.start_of(lesson)
    engine.skip_to(start)
    out.print(goals_view(lesson, internet))
    first = lesson.steps[0]
    out.print(_("The lab is at the start of {lesson}: none of its steps is applied. Type step {ref}'s "
                "commands in `python -m netstep shell` and `verify` them, or apply it with `next`.").format(
        lesson=lesson.name, ref=first.ref), markup=False)
    return 0


def cmd_verify(engine: Engine, args, out) -> int:
    verdict = verify(engine, target_of(engine, args.step))
    if args.json:
        print(json.dumps(verdict.as_json()), flush=True)
    else:
        out.print(verdict)
    return 0 if verdict.ok else 1


def cmd_hint(engine: Engine, args, out) -> int:
    found = next_hint(engine, target_of(engine, args.step))
    if args.json:
        print(json.dumps(found.as_json()), flush=True)
    else:
        out.print(found)
    return 0


def cmd_solution(engine: Engine, args, out) -> int:
    done = solution(engine, target_of(engine, args.step))
    if args.json:
        print(json.dumps(done.as_json()), flush=True)
    else:
        out.print(done)
    return 0 if done.verdict.ok else 1


COMMANDS = {"start": cmd_start, "verify": cmd_verify, "hint": cmd_hint, "solution": cmd_solution}


# -- predictions ------------------------------------------------------------------------------


STOP = "stop"  # what `ask` returns when the student typed q


def ask(checks: list[Check], internet: str | None, console, stream: TextIO = sys.stdin) -> list[str | None] | str:
    """Ask each check's question once and read one answer a line, from a person or a pipe:
    y (or r) for reachable, n (or u) for unreachable, an empty line to skip the question
    (None in the list), q to stop the run (returns STOP)."""
    console.print(_("Before it runs: what will each check show? y (yes), n (no); Enter skips, q stops."),
                  style="dim", markup=False)
    answers: list[str | None] = []
    for check in checks:
        while True:
            console.print(question(check, internet) + " [y/n] ", end="", markup=False)
            console.file.flush()
            line = stream.readline()
            if not line:
                console.print()
                raise NetstepError(_("No prediction for `{question}`: predictions are read one a "
                                     "line (y, n, or an empty line to skip), and the input ended.").format(
                    question=question(check, internet)))
            if not stream.isatty():
                console.print(line.strip(), markup=False)  # echo what a pipe answered, as a terminal would
            if line.strip().lower() in ("q", "quit"):
                return STOP
            answer = answer_of(line) if line.strip() else None
            if answer is not None or not line.strip():
                answers.append(answer)
                break
            console.print(_("Answer y (it gets through), n (it does not), or press Enter to skip."), markup=False)
    return answers


def show_score(score: Score, args, out) -> None:
    if args.json:
        print(json.dumps(score.as_json()), flush=True)
    else:
        out.print(score)


def show_predictions(predictions: list[Prediction], out) -> None:
    if predictions:
        out.print(_("Your predictions"), style="bold", markup=False)
        for prediction in predictions:
            out.print(prediction)
