"""One worker of promise 1's random walk: `python walk_worker.py LAB SEED SEQUENCES MOVES`.

It makes a clean forward run of the course on a lab of its own (LAB-ref) to record the
configuration at every position, then lets hypothesis drive SEQUENCES random sequences of
at most MOVES moves on lab LAB, checking every move against that record (see
test_rollback_exact.py). Both labs are destroyed at the end, whatever happened. It prints
one JSON line: sequences and moves done, the moves by kind, and the failure, if any, with
hypothesis's report (the falsifying sequence and its reproduce_failure blob).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from hypothesis import HealthCheck, seed, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.stateful import (  # noqa: E402
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from relsupport import clean_positions, config, server_count, view  # noqa: E402
from support import config_diff  # noqa: E402

from netstep.core.engine import Engine  # noqa: E402
from netstep.core.lab import Lab  # noqa: E402
from netstep.course.course import Course  # noqa: E402


class CourseModel:
    """Where each move must take the lab, worked out from the lesson files alone."""

    def __init__(self, course: Course) -> None:
        self.lessons = [len(lesson.steps) for lesson in course.lessons]
        self.starts = [sum(self.lessons[:i]) for i in range(len(self.lessons))]
        self.total = sum(self.lessons)
        self.lesson_of = [i for i, n in enumerate(self.lessons) for _ in range(n)]  # by step index

    def rollback_lesson(self, position: int) -> int:
        """Back to the start of the lesson of the last applied step."""
        return self.starts[self.lesson_of[position - 1]]


def make_machine(box: dict, course: Course, snaps: list, servers: list[int], stats: Counter, misreads: list):
    """The state machine; box["engine"] is the engine of the walking lab, box["fresh"]() gives a
    fresh one (after a failure, so that hypothesis replays on a clean lab, not a broken one)."""
    model = CourseModel(course)
    refs = [step.ref for step in course.steps]
    expected = [s.config() for s in snaps]

    class CourseWalk(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.engine: Engine = box["engine"]
            self.position = -1
            self.history: list[str] = []

        def verify(self, move: str, *, passing: bool = False) -> None:
            """Check the lab against the model and the clean run (`passing`: on the way of a goto)."""
            stats["positions checked"] += 1
            if not passing:
                stats["moves"] += 1
                stats[move.split()[0]] += 1
                self.history.append(f"{move} -> {self.position}")
            where = f"after: {' ; '.join(self.history)}" + (f" ; {move}, passing {self.position}" if passing else "")
            engine, problem = self.engine, None
            if engine.position != self.position:
                problem = f"the engine is at {engine.position}, the model at {self.position}"
            elif [s["ref"] for s in engine.journal.steps] != refs[: self.position]:
                problem = f"the journal holds {[s['ref'] for s in engine.journal.steps]}"
            elif not all(s["complete"] for s in engine.journal.steps):
                problem = "the journal holds an incomplete step"
            else:
                # The lab as a new Lab object reads it (no cache), and as the engine's own one does.
                real = config(engine.lab, course)
                running = server_count(engine.lab)
                if real.config() != expected[self.position]:
                    problem = (f"the configuration at position {self.position} differs from the clean run's:\n"
                               + "\n".join(config_diff(snaps[self.position], real)))
                elif running != servers[self.position]:
                    problem = f"{running} HTTP servers run where the clean run had {servers[self.position]}"
                elif not passing:  # (at the end of a move only: it costs another reading)
                    seen = view(engine.lab, course)
                    # What the engine remembers of the lab after its last move (each step reads
                    # only the namespaces it can change): the next diff starts from it.
                    remembered = engine.moments.last()
                    for what, reading in (("Lab object misreads", seen), ("memory differs from", remembered)):
                        if reading.config() != real.config():
                            stats["misreads"] += 1
                            if len(misreads) < 5:
                                misreads.append(f"the engine's {what} the lab at position {self.position}:\n"
                                                + "\n".join(config_diff(real, reading)) + f"\n{where}")
            if problem:
                box["fresh"]()
                raise AssertionError(f"{problem}\n{where}")

        def move(self, label: str, do, target: int) -> None:
            """Do a move that must take the lab to `target`, then check it there."""
            do()
            self.position = target
            self.verify(label)

        def walk_to(self, position: int) -> None:
            """engine.goto, checked at every position it passes."""

            def go() -> None:
                for result in self.engine.goto(position):
                    self.position += 1 if result.direction == "apply" else -1
                    if self.position != position:
                        self.verify(f"goto {position}", passing=True)

            self.move(f"goto {position}", go, position)

        @initialize(position=st.integers(0, model.total))
        def start_at(self, position: int) -> None:
            # From where the last sequence left the lab (checked there; position 0 after a failure).
            self.position = self.engine.position
            self.history.append(f"(the lab at {self.position})")
            self.walk_to(position)

        @rule(position=st.integers(0, model.total))
        def goto(self, position: int) -> None:
            self.walk_to(position)

        @precondition(lambda self: self.position < model.total)
        @rule()
        def apply_next(self) -> None:
            self.move("next", lambda: self.engine.apply_next(run_checks=False), self.position + 1)

        @precondition(lambda self: self.position > 0)
        @rule()
        def back(self) -> None:
            self.move("back", self.engine.undo_last, self.position - 1)

        @rule(lesson=st.integers(0, len(course.lessons) - 1))
        def jump_to_lesson(self, lesson: int) -> None:
            self.move(f"jump {course.lessons[lesson].name}", lambda: self.engine.start_lesson(course.lessons[lesson]),
                      model.starts[lesson])

        @precondition(lambda self: self.position > 0)
        @rule()
        def rollback_lesson(self) -> None:
            self.move("rollback-lesson", self.engine.rollback_lesson, model.rollback_lesson(self.position))

        @rule()
        def rollback_all(self) -> None:
            self.move("rollback-all", self.engine.rollback_all, 0)

        def teardown(self) -> None:
            stats["sequences"] += 1
            print(" ; ".join(self.history), file=sys.stderr, flush=True)

    return CourseWalk


def main() -> int:
    name, chosen, sequences, moves = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    started = time.monotonic()
    course = Course.load()
    stats: Counter = Counter()
    report = {"lab": name, "seed": chosen, "failure": None, "misreads": []}
    box: dict = {}
    try:
        snaps, servers = clean_positions(course, f"{name}-ref")
        report["servers"] = servers
        options = settings(max_examples=sequences, stateful_step_count=moves, deadline=None, database=None,
                           print_blob=True, suppress_health_check=list(HealthCheck))

        def fresh() -> None:
            if "engine" in box:
                box["engine"].lab.destroy()
                box["engine"].lab.close()
            lab = Lab(name)
            lab.lock()
            box["engine"] = Engine(lab, course)
            box["engine"].sole_writer = True  # nothing but the walk moves this lab (as in `run`)

        box["fresh"] = fresh
        fresh()
        machine = make_machine(box, course, snaps, servers, stats, report["misreads"])
        run_state_machine_as_test(seed(chosen)(machine), settings=options)
        list(box["engine"].goto(0))
        if config(box["engine"].lab, course).config() != snaps[0].config():
            report["failure"] = "after the walk, going back to position 0 did not give a fresh lab"
    except BaseException:
        report["failure"] = traceback.format_exc()[-12000:]
    finally:
        lab = box["engine"].lab if "engine" in box else Lab(name)
        try:
            lab.destroy()
        finally:
            lab.close()
    report.update(stats=dict(stats), seconds=round(time.monotonic() - started, 1))
    print(json.dumps(report), flush=True)
    return 1 if report["failure"] else 0


if __name__ == "__main__":
    sys.exit(main())
