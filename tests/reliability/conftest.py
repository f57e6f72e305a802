"""The reliability suite's session guard (promise 6) and its summary.

tests/conftest.py already fails the session if the machine's own namespace changed (link
names, addresses, main routes, iptables rules, ip_forward, `ip netns list`) or a test lab
survived. This guard looks closer (machine_guard.py): link kinds, flags, masters and
MTUs, IPv6, the routes of every table, policy rules, ip6tables, every sysctl under
/proc/sys/net, and mounts under /run/netns and of this session's labs under /run/netstep.
It starts with the first reliability test (pytest collects tests/reliability before the
tests/test_*.py files, so that is near the start of the whole run) and compares at the end
of the session, after every other test too.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from machine_guard import differences, machine_state
from relsupport import NOTES, STATS, clean_positions
from support import PREFIX, unique_name

from netstep.course.course import Course


@pytest.fixture(scope="session", autouse=True)
def machine_namespace_untouched_closely():
    before = machine_state(netstep_marker=f"/{PREFIX}")
    yield
    after = machine_state(netstep_marker=f"/{PREFIX}")
    changed = differences(before, after)
    assert not changed, f"the machine's own network namespace changed during the tests: {changed}"


@pytest.fixture(scope="session")
def course() -> Course:
    return Course.load()


@pytest.fixture(scope="session")
def clean(course: Course):
    """The configuration and HTTP servers at every position, from a clean forward run."""
    return clean_positions(course, unique_name("clean"))


def pytest_terminal_summary(terminalreporter):
    if not STATS and not NOTES:
        return
    terminalreporter.section("netstep reliability")
    for line in NOTES:
        terminalreporter.write_line(line)
    if STATS:
        terminalreporter.write_line("totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items())))
