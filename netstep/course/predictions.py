"""Predictions: the student says what a check will show before it runs, then is scored.

A prediction is "reachable" or "unreachable" for one check, and it is right when the
kernel's outcome agrees (the outcome, not the lesson's expectation: a prediction is about
the network). A question names only what is tried ("Will netns0 reach 10.0.2.2?"), never
what the lesson expects: that comes with the result. Plain data; the front ends ask the
questions and draw the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netstep.course.checks import REASON_TEXT, Check, CheckResult
from netstep.errors import NetstepError
from netstep.i18n import _, ngettext
from netstep.render import RenderMixin

ANSWERS = {"r": "reachable", "reachable": "reachable", "u": "unreachable", "unreachable": "unreachable",
           "y": "reachable", "yes": "reachable", "n": "unreachable", "no": "unreachable",
           "是": "reachable", "能": "reachable", "否": "unreachable", "不能": "unreachable"}


def answer_of(text: str) -> str | None:
    """`y`/`r`, `n`/`u` (or the words: yes, reachable, no, unreachable; any case) as the
    outcome it names, else None."""
    return ANSWERS.get(text.strip().lower())


def answers_of(words: Iterable[str], count: int) -> list[str]:
    """One outcome per word, exactly `count` of them, or a NetstepError saying what is wrong."""
    words = list(words)
    found = [answer_of(word) for word in words]
    bad = [w for w, a in zip(words, found, strict=True) if a is None]
    if bad:
        raise NetstepError(_("'{word}' is not a prediction: say r (reachable) or u (unreachable) for each check.")
                           .format(word=bad[0]))
    if len(found) != count:
        raise NetstepError(ngettext("The next step has {count} check, and {given} prediction(s) were given: "
                                    "give one r or u for each, in order.",
                                    "The next step has {count} checks, and {given} prediction(s) were given: "
                                    "give one r or u for each, in order.", count).format(count=count, given=len(found)))
    return [a for a in found if a is not None]


def question(check: Check, internet: str | None = None) -> str:
    """The question a check asks, without its answer: "Will netns0 reach 10.0.2.2?", and
    for tcp and http "Will netns0 connect to 10.0.2.15:5005?". The target keeps the name the
    lesson gives it: "internet (203.0.113.8)". A bind check asks whether a new socket can
    take the address and port: "Will netns0 bind 127.0.0.1:6000?"."""
    if check.kind == "dns":
        return _("Will {source} resolve {name}?").format(source=check.source, name=check.target)
    ask = {"ping": _("Will {source} reach {target}?"), "bind": _("Will {source} bind {target}?")}.get(
        check.kind, _("Will {source} connect to {target}?"))
    return ask.format(source=check.source, target=target_words(check, internet))


def target_words(check: Check, internet: str | None = None) -> str:
    """A check's target as the lesson writes it, the internet host's address beside its name."""
    if check.target != "internet" or not internet:
        return check.destination()
    return _("internet ({address})").format(address=check.destination(internet))


@dataclass(frozen=True)
class Prediction(RenderMixin):
    """What the student said about one check, and what the kernel then did."""

    result: CheckResult
    said: str  # reachable | unreachable
    step: str = ""  # the step's ref ("2.3"), for the summary

    @property
    def right(self) -> bool:
        return self.said == self.result.actual

    @property
    def why(self) -> str:
        """The kernel's reason for the outcome, in words."""
        result = self.result
        if result.actual == "unreachable":
            return _(REASON_TEXT.get(result.reason, result.detail or result.reason))
        return result.detail or result.reason


def predicted(results: list[CheckResult], said: list[str | None], step: str = "") -> list[Prediction]:
    """The predictions made for a step's checks, in order; a question skipped (None) makes none."""
    return [Prediction(result, answer, step) for result, answer in zip(results, said, strict=True)
            if answer is not None]


@dataclass
class Score(RenderMixin):
    """Predictions counted: "predictions: 5 of 7 right", and the wrong ones with the reason."""

    title: str
    predictions: list[Prediction] = field(default_factory=list)

    @property
    def right(self) -> int:
        return sum(p.right for p in self.predictions)

    @property
    def total(self) -> int:
        return len(self.predictions)

    @property
    def wrong(self) -> list[Prediction]:
        return [p for p in self.predictions if not p.right]

    def as_json(self) -> dict:
        return {"event": "predictions", "of": self.title, "right": self.right, "total": self.total,
                "wrong": [{"step": p.step, "check": p.result.check.describe(), "to": p.result.to,
                           "predicted": p.said, "actual": p.result.actual, "reason": p.result.reason}
                          for p in self.wrong]}
