"""A break-it challenge applied to a lab, and graded by what works.

`begin` brings the lab to the challenge's lesson end (a course move: whatever the
student had typed is taken back first), then runs its setup and its break as the student's own
commands, unseen: the break is "not the course's", so the next move (`next`, `start`,
`rollback`...) takes it back as it takes back anything a student typed
(netstep.core.reconcile). The lab remembers which challenge it holds (MARKER) until that
move; `verify`, `hint` and `solution` without a step then grade the challenge: its checks
and its lesson's final checks (a repair that breaks something else fails), never a
comparison with the course's state, which would name the fault.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from netstep.core import grading
from netstep.core.engine import Engine
from netstep.course.challenges import Challenge, Challenges
from netstep.course.predictions import question
from netstep.errors import NetstepError
from netstep.render import RenderMixin

MARKER = "challenge.json"  # in the lab's folder; the engine removes it on every move (Engine.follow_student)


@dataclass
class Begun(RenderMixin):
    """A challenge set up: what the student is told (never what was broken)."""

    challenge: Challenge
    lesson_title: str

    def as_json(self, internet: str | None = None) -> dict:
        c = self.challenge
        return {"event": "challenge", "name": c.name, "lesson": c.lesson, "story": c.story, "prose": c.prose,
                "step": c.ref, "asks": [question(check, internet) for check in c.checks]}


def catalogue(engine: Engine) -> Challenges:
    return Challenges.load(engine.course.lessons)


def position_of(engine: Engine, challenge: Challenge) -> int:
    """The course position the challenge's lab is built at: its lesson's end."""
    lesson = engine.course.find(str(challenge.lesson))
    return engine.course.start_of(lesson) + len(lesson.steps)


def begin(engine: Engine, challenge: Challenge) -> Begun:
    """Build the working lab at the challenge's lesson end, then break it, unseen."""
    if engine.lab.host_mode:
        raise NetstepError("Challenges are graded against a sandbox built beside the lab, which host mode's lab "
                           "host (this machine's own network) cannot be: use a sandbox lab (without --host).")
    position = position_of(engine, challenge)
    engine.skip_to(position)  # (taking back what the student typed, an earlier challenge's break too)
    engine.run_own("\n".join(f"{c.where}# {c.text}" for c in [*challenge.setup, *challenge.breaks]))
    _forget_hints(engine, challenge.ref)
    with open(os.path.join(engine.lab.dir, MARKER), "w") as f:
        json.dump({"name": challenge.name, "position": position}, f)
    lesson = engine.course.find(str(challenge.lesson))
    return Begun(challenge, lesson.title)


def active(engine: Engine) -> Challenge | None:
    """The challenge the lab holds, if no move took it back since it began."""
    try:
        with open(os.path.join(engine.lab.dir, MARKER)) as f:
            held = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    if held.get("position") != engine.position:
        return None
    try:
        return catalogue(engine).find(str(held.get("name", "")))
    except NetstepError:
        return None


def target(engine: Engine, challenge: Challenge) -> grading.Target:
    """What `verify` grades: the challenge's checks, then its lesson's final checks."""
    checks = list(challenge.checks) + list(challenge.grade_checks)
    lesson = engine.course.find(str(challenge.lesson))
    checks += [c for c in engine.final_checks(lesson)
               if not any((c.kind, c.source, c.target, c.port) == (m.kind, m.source, m.target, m.port)
                          for m in checks)]
    return grading.Target(challenge.ref, challenge.story, position_of(engine, challenge), tuple(checks),
                          tuple(challenge.grade), tuple(challenge.hints), goal=challenge.prose or challenge.story,
                          challenge=True, fix=tuple(challenge.solution), broken=challenge.explain,
                          setup=tuple(challenge.setup))


def target_of(engine: Engine, ref: str | None = None) -> grading.Target:
    """grading.target_of, and challenges: `challenge:NAME` or a challenge's name, or by
    default the challenge the lab holds."""
    if ref is None:
        held = active(engine)
        if held is not None:
            return target(engine, held)
        return grading.target_of(engine, ref)
    key = ref.strip().lower()
    found = catalogue(engine)
    if key.startswith("challenge:") or key in found.names():
        challenge = found.find(key)
        held = active(engine)
        if held is None or held.name != challenge.name:
            raise NetstepError(f"The lab does not hold challenge {challenge.name}: "
                               f"`python -m netstep challenge {challenge.name}` sets it up.")
        return target(engine, challenge)
    return grading.target_of(engine, ref)


def _forget_hints(engine: Engine, ref: str) -> None:
    """A challenge begun again starts its hints from the first."""
    path = os.path.join(engine.lab.dir, "hints.json")
    try:
        with open(path) as f:
            counts = json.load(f)
    except (FileNotFoundError, ValueError):
        return
    counts.pop(ref, None)
    with open(path, "w") as f:
        json.dump(counts, f)
