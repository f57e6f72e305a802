"""How the student's own work is drawn: predictions, scores, verdicts, hints, solutions.

Renderers for netstep.present.views' `renderable`, registered there. Marks (✔ ✘) carry the
meaning as well as the colours do.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.text import Text

from netstep.core.challenges import Begun
from netstep.core.grading import Hint, Solution, Verdict
from netstep.course.checks import CheckResult
from netstep.course.lessons import Exercise, Lesson
from netstep.course.predictions import Prediction, Score, question
from netstep.i18n import N_, _, fill, ngettext
from netstep.present import prose


def route(result: CheckResult) -> str:
    """Where a check went, its target named as the lesson names it: `netns1 → internet (203.0.113.8)`."""
    check = result.check
    to = _("internet ({address})").format(address=result.to) if check.target == "internet" else result.to
    return f"{check.source} → {to}"


def prediction_view(prediction: Prediction) -> RenderableType:
    mark, style = ("✔", "green") if prediction.right else ("✘", "bold red")
    result = prediction.result
    return Text.assemble(*fill(_("{mark} {check}  you said {said}, it was {actual}: {why}"), "dim",
                               mark=(mark, style), check=(f"{result.check.kind} {route(result)}", "bold"),
                               said=_(prediction.said),
                               actual=(_(result.actual), "green" if result.actual == "reachable" else "yellow"),
                               why=(prediction.why, "dim")))


def predictions_view(predictions: list[Prediction]) -> RenderableType:
    return Group(Text(_("Your predictions"), style="bold"), *(prediction_view(p) for p in predictions))


def questions_view(ref: str, questions: list[str], said: list[str]) -> RenderableType:
    if not questions:
        return Text(_("Step {ref} runs no checks: there is nothing to predict.").format(ref=ref))
    if said:
        return Group(Text(_("Your predictions for step {ref}, recorded:").format(ref=ref), style="bold"),
                     *(Text(f"  {i}. {q} → {_(answer)}") for i, (q, answer) in enumerate(zip(questions, said,
                                                                                          strict=True), 1)))
    example = ", ".join('"r"' if i % 2 == 0 else '"u"' for i in range(len(questions)))
    return Group(Text(_("Step {ref} asks:").format(ref=ref), style="bold"),
                 *(Text(f"  {i}. {q}") for i, q in enumerate(questions, 1)),
                 Text(_("Record your answers in order, r (reachable: yes) or u (unreachable: no): "
                        "t.predict({example})").format(example=example), style="dim"))


def score_view(score: Score) -> RenderableType:
    """How the predictions came out: a count of its own, apart from how the checks came out,
    and each wrong one under its step's number."""
    style = "bold green" if score.right == score.total else "bold"
    parts: list[RenderableType] = [Text(_("predictions: {right} of {total} right ({of})").format(
        right=score.right, total=score.total, of=_(score.title)), style=style)]
    for wrong in score.wrong:
        result = wrong.result
        line = (_("step {step}, {check}: you said {said}; it was {actual}, {why}") if wrong.step
                else _("{check}: you said {said}; it was {actual}, {why}"))
        parts.append(Text.assemble(("  ✘ ", "red"), *fill(line, "", step=wrong.step,
                                                           check=f"{result.check.kind} {route(result)}",
                                                           said=_(wrong.said), actual=_(result.actual),
                                                           why=(wrong.why, "dim"))))
    return Group(*parts)


def verdict_view(verdict: Verdict, check_view: Callable[[object], RenderableType]) -> RenderableType:
    target = verdict.target
    head = Text.assemble(("✔ " if verdict.ok else "✘ ", "green" if verdict.ok else "bold red"),
                         (_("{ref}: {title}").format(ref=target.ref, title=target.title), "bold"))
    parts: list[RenderableType] = [head]
    if verdict.problems:
        parts.append(Text(_("Not there yet:"), style="bold"))
        parts += [Text(f"  • {line}") for line in verdict.problems]
    if verdict.checks or verdict.skipped:
        parts.append(Text(_("Checks"), style="bold"))
        parts += [check_view(result) for result in verdict.checks]
        parts += [Text(_("✘ {check}: not run, there is no {source}").format(check=check.describe(),
                                                                              source=check.source), style="red")
                  for check in verdict.skipped]
    if verdict.notes:
        parts.append(Text(_("Not needed for this, but different from the course's own lab (fine):"), style="dim"))
        parts += [Text(f"  · {line}", style="dim") for line in verdict.notes]
    if verdict.adopted:
        parts.append(Text(_("Counted as done: `next` goes on after {ref}; `back` takes your work back.").format(
            ref=target.ref), style="green"))
    elif verdict.ok and target.challenge:
        parts.append(Text(_("Fixed: it works again. The lab stays as you left it until the course moves on (next, "
                            "start, rollback), which brings it back to the course's own state."), style="green"))
    elif verdict.ok and target.exercise:
        parts.append(Text(_("Well done. Your work stays in the lab until the course moves on (next, start, run, "
                            "back, rollback), which takes it back first."), style="green"))
    elif verdict.ok:
        parts.append(Text(_("It works."), style="green"))
    else:
        parts.append(Text(_("`hint` gives a hint, a little more each time; `solution` finishes it for you."),
                          style="dim"))
    return Group(*parts)


def exercise_view(exercise: Exercise) -> RenderableType:
    return Group(Text(exercise.title, style="bold"), prose.markdown(exercise.prose))


def goals_view(lesson: Lesson, internet: str | None = None) -> RenderableType:
    """What a lesson asks of the student, step by step: each step's title and the questions
    its checks will ask, never their answers nor the step's commands (those are for the
    student to find; `hint` gives them in stages)."""
    parts: list[RenderableType] = [Text(lesson.title, style="bold underline")]
    if lesson.intro:
        parts.append(prose.markdown(lesson.intro))
    parts.append(Text(_("What each step asks of you:"), style="bold"))
    for step in lesson.steps:
        parts.append(Text.assemble((f"  {step.ref}  ", "bold"), step.title))
        parts += [Text(f"        {question(check, internet)}", style="dim") for check in step.checks]
    return Group(*parts)


def exercise_goals_view(exercise: Exercise, internet: str | None = None) -> RenderableType:
    """An exercise's task, then the questions its checks will ask of the student's lab."""
    parts = [exercise_view(exercise)]
    if exercise.checks:
        parts.append(Text(_("When you are done, the checks ask:"), style="bold"))
        parts += [Text(f"  {question(check, internet)}", style="dim") for check in exercise.checks]
    return Group(*parts)


HINT_STAGES = {"written": N_("hint"), "idea": N_("what is missing"), "blanks": N_("the command, with blanks to fill"),
               "command": N_("the command"), "text": N_("hint")}


def hint_view(hint: Hint) -> RenderableType:
    head = Text(_("Hint for {ref} ({stage}): {title}").format(
        ref=hint.target.ref, stage=_(HINT_STAGES.get(hint.stage, "hint")), title=hint.target.title), style="bold")
    if hint.command is None:
        body: RenderableType = Text(hint.text)
    else:
        body = prose.commands(f"{hint.command.where}# {hint.command.text}")
    after = {"idea": _("Ask again for the command with blanks."), "blanks": _("Ask again for the whole command.")}
    more = [Text(after[hint.stage], style="dim")] if hint.stage in after else []
    if hint.remaining and hint.stage == "written":  # (an exercise's or a challenge's own hints)
        more.append(Text(ngettext("({count} more hint after this one)", "({count} more hints after this one)",
                                  hint.remaining).format(count=hint.remaining), style="dim"))
    elif hint.remaining:
        more.append(Text(ngettext("({count} more command missing after this one)",
                                  "({count} more commands missing after this one)", hint.remaining).format(
            count=hint.remaining), style="dim"))
    return Group(head, body, *more)


def solution_view(solution: Solution, check_view: Callable[[object], RenderableType]) -> RenderableType:
    parts: list[RenderableType] = []
    if solution.removed:
        parts.append(Text(_("Removed what was in the way:"), style="bold"))
        parts.append(prose.commands("\n".join(solution.removed)))
    ran = [f"{c.where}# {c.text}" for c in solution.ran] + solution.restored
    if ran:
        parts.append(Text(_("Ran for you:"), style="bold"))
        parts.append(prose.commands("\n".join(ran)))
    elif not solution.removed:
        parts.append(Text(_("No command was missing."), style="bold"))
    if solution.broken:
        parts.append(Text(_("What was broken:"), style="bold"))
        parts.append(prose.markdown(solution.broken))
    parts.append(verdict_view(solution.verdict, check_view))
    return Group(*parts)


def begun_view(begun: Begun, internet: str | None = None) -> RenderableType:
    """A challenge set up: its story and what its checks will ask, never what was broken."""
    challenge = begun.challenge
    parts: list[RenderableType] = [
        Text(_("Challenge {name}, at the end of lesson {number}: {title}").format(
            name=challenge.name, number=challenge.lesson, title=_lesson_title(begun.lesson_title)),
            style="bold underline"),
        Text(challenge.story, style="bold")]
    if challenge.prose:
        parts.append(prose.markdown(challenge.prose))
    parts.append(Text(_("When it is fixed, the checks ask:"), style="bold"))
    parts += [Text(f"  {question(check, internet)}", style="dim") for check in challenge.checks]
    parts.append(Text(_("Something in the lab is broken. Find it (trace, inspect, the counters) and fix it in "
                        "`python -m netstep shell`; `verify` grades it, `hint` helps, `solution` repairs it and "
                        "says what it was."), style="dim"))
    return Group(*parts)


def _lesson_title(title: str) -> str:
    """"Lesson 5: The default gateway" -> "The default gateway"; a Chinese title's full-width colon too."""
    for colon in (":", "："):
        if colon in title:
            return title.split(colon, 1)[1].strip()
    return title
