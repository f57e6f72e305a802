"""The real course, end to end, on real labs.

(a) Run straight through, as a student would: every check of every step comes out as the
    lesson says.
(b) Step by step: apply, undo, compare with the snapshot before the step, re-apply.
(c) Afterwards, rollback_all gives back a fresh lab, and destroy leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import pytest
from support import (
    config_diff,
    httpd_pids,
    mounts_under,
    needs_root,
    real_lesson_files,
    sysctl_keys,
    unique_name,
)

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course

pytestmark = [
    needs_root,
    pytest.mark.skipif(len(real_lesson_files()) < 7, reason="the course is not complete yet: lessons/ has "
                       f"{len(real_lesson_files())} of 7 lesson files"),
]


def config(lab: Lab, course: Course):
    return lab.snapshot(caches=False, sysctls=sysctl_keys(course))


@dataclass
class StraightRun:
    """One lab that ran the whole course, kept for the tests below."""

    lab: Lab
    course: Course
    fresh: object
    failures: list[str] = field(default_factory=list)
    checks_run: int = 0
    applied: int = 0
    error: BaseException | None = None
    servers_at_end: list[int] = field(default_factory=list)


@pytest.fixture(scope="module")
def straight_run():
    course = Course.load()
    lab = Lab(unique_name("c"))
    try:
        lab.lock()
        run = StraightRun(lab, course, config(lab, course))
        engine = Engine(lab, course)
        try:
            while engine.next_step() is not None:
                result = engine.apply_next()
                run.applied += 1
                run.checks_run += len(result.checks)
                for r in result.checks:
                    if not r.ok:
                        run.failures.append(f"step {result.step.ref} ({result.step.title}): "
                                            f"{json.dumps(r.as_json(result.step.lesson.name, result.step.ref))}")
        except Exception as exc:  # reported by the tests, with the step it happened in
            run.error = exc
        run.servers_at_end = httpd_pids(lab.dir)
        yield run
    finally:
        lab.destroy()
        lab.close()


def test_every_check_of_the_course_comes_out_as_expected(straight_run: StraightRun) -> None:
    total = len(straight_run.course.steps)
    assert straight_run.error is None, (
        f"applying step {straight_run.applied + 1} of {total} failed: {straight_run.error!r}")
    assert straight_run.applied == total
    expected_checks = sum(len(step.checks) for step in straight_run.course.steps)
    assert straight_run.checks_run == expected_checks
    assert expected_checks > 0
    assert not straight_run.failures, "checks that did not come out as the lesson says:\n" + "\n".join(
        straight_run.failures)


def test_rollback_all_after_the_course_gives_a_fresh_lab(straight_run: StraightRun) -> None:
    lab, course = straight_run.lab, straight_run.course
    assert straight_run.error is None, f"the course did not run through: {straight_run.error!r}"
    server_steps = [s for s in course.steps if any(type(a).__name__ == "HttpServer" for a in s.actions)]
    if server_steps:
        assert straight_run.servers_at_end, "the course starts an HTTP server, but none was running at its end"

    engine = Engine(lab, course)
    undone = engine.rollback_all()

    assert len(undone) == len(course.steps)
    assert engine.position == 0
    now = config(lab, course)
    assert now.same_config(straight_run.fresh), "rollback_all differs from a fresh lab:\n" + "\n".join(
        config_diff(straight_run.fresh, now))
    assert lab.containers() == []
    assert httpd_pids(lab.dir) == []


def test_destroy_after_the_course_leaves_nothing(straight_run: StraightRun) -> None:
    """Bring the lab back to where a server runs, then destroy it: no mount, no process, no folder."""
    lab, course = straight_run.lab, straight_run.course
    engine = Engine(lab, course)
    server_at = [i for i, s in enumerate(course.steps) if any(type(a).__name__ == "HttpServer" for a in s.actions)]
    target = server_at[0] + 1 if server_at else len(course.steps)
    list(engine.goto(target))
    assert mounts_under(lab.dir), "the lab should have namespace mounts before destroy"
    if server_at:
        assert httpd_pids(lab.dir), "the lesson's HTTP server should be running before destroy"

    lab.destroy()
    lab.close()

    assert mounts_under(lab.dir) == []
    assert [m for m in mounts_under("/run/netstep") if lab.name in m] == []
    assert httpd_pids(lab.dir) == []
    assert not os.path.exists(lab.dir)


def test_each_step_is_undone_exactly() -> None:
    """For every step: snapshot, apply, undo, compare; then re-apply and go on."""
    course = Course.load()
    lab = Lab(unique_name("s"))
    inexact = []
    try:
        lab.lock()
        engine = Engine(lab, course)
        for step in course.steps:
            before = config(lab, course)
            engine.apply_next(run_checks=False)
            engine.undo_last()
            after = config(lab, course)
            if not after.same_config(before):
                inexact.append(f"step {step.ref} ({step.title}):\n  " + "\n  ".join(config_diff(before, after)))
            assert engine.position == course.steps.index(step)
            engine.apply_next(run_checks=False)
        assert engine.position == len(course.steps)
    finally:
        lab.destroy()
        lab.close()
    assert not inexact, "steps whose undo did not restore the configuration:\n" + "\n".join(inexact)
    assert httpd_pids(lab.dir) == []
