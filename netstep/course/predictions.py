"""Predictions: the student says what a check will show before it runs, then is scored.

A prediction is "reachable" or "unreachable" for one check, and it is right when the
kernel's outcome agrees (the outcome, not the lesson's expectation: a prediction is about
the network). Plain data; the front ends ask the questions and draw the answers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from netstep.course.checks import REASON_TEXT, Check, CheckResult
from netstep.errors import NetstepError
from netstep.render import RenderMixin

ANSWERS = {"r": "reachable", "reachable": "reachable", "u": "unreachable", "unreachable": "unreachable"}


def answer_of(text: str) -> str | None:
    """`r`, `u`, `reachable` or `unreachable` (any case) as the outcome it names, else None."""
    return ANSWERS.get(text.strip().lower())


def answers_of(words: Iterable[str], count: int) -> list[str]:
    """One outcome per word, exactly `count` of them, or a NetstepError saying what is wrong."""
    words = list(words)
    found = [answer_of(word) for word in words]
    bad = [w for w, a in zip(words, found, strict=True) if a is None]
    if bad:
        raise NetstepError(f"'{bad[0]}' is not a prediction: say r (reachable) or u (unreachable) for each check.")
    if len(found) != count:
        raise NetstepError(f"The next step has {count} check(s), and {len(found)} prediction(s) were given: "
                           "give one r or u for each, in order.")
    return [a for a in found if a is not None]


def question(check: Check, internet: str | None = None) -> str:
    """The question a check asks, without its answer."""
    return f"{check.describe(internet)}: reachable or unreachable?"


@dataclass(frozen=True)
class Prediction(RenderMixin):
    """What the student said about one check, and what the kernel then did."""

    result: CheckResult
    said: str  # reachable | unreachable

    @property
    def right(self) -> bool:
        return self.said == self.result.actual

    @property
    def why(self) -> str:
        """The kernel's reason for the outcome, in words."""
        result = self.result
        if result.actual == "unreachable":
            return REASON_TEXT.get(result.reason, result.detail or result.reason)
        return result.detail or result.reason


def predicted(results: list[CheckResult], said: list[str]) -> list[Prediction]:
    return [Prediction(result, answer) for result, answer in zip(results, said, strict=True)]


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
                "wrong": [{"check": p.result.check.describe(), "to": p.result.to, "predicted": p.said,
                           "actual": p.result.actual, "reason": p.result.reason} for p in self.wrong]}
