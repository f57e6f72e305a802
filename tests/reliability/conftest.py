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

import contextlib
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from machine_guard import differences, machine_state
from relsupport import NOTES, STATS
from support import LABS_ROOT, PREFIX


@pytest.fixture(scope="session", autouse=True)
def labs_folder_never_empty():
    """Keep /run/netstep/labs from emptying while the suite runs.

    Lab.destroy removes /run/netstep/labs when it is empty, and a lab starting at that
    moment fails with FileNotFoundError (a netstep bug, shown by test_concurrency.py's
    test_one_labs_reset_never_breaks_anothers_start). The suite starts and resets labs in
    parallel; an empty folder of this session's kept there stops that race from making
    unrelated tests fail at random. It is removed at the end, with the parents it made.
    """
    made = [d for d in ("/run/netstep", LABS_ROOT) if not os.path.isdir(d)]
    keep = os.path.join(LABS_ROOT, f"{PREFIX}keep")
    os.makedirs(keep, exist_ok=True)
    yield
    os.rmdir(keep)
    for d in reversed(made):
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only if empty


@pytest.fixture(scope="session", autouse=True)
def machine_namespace_untouched_closely():
    before = machine_state(netstep_marker=f"/{PREFIX}")
    yield
    after = machine_state(netstep_marker=f"/{PREFIX}")
    changed = differences(before, after)
    assert not changed, f"the machine's own network namespace changed during the tests: {changed}"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not STATS and not NOTES:
        return
    terminalreporter.section("netstep reliability")
    for line in NOTES:
        terminalreporter.write_line(line)
    if STATS:
        terminalreporter.write_line("totals: " + ", ".join(f"{k}: {v}" for k, v in sorted(STATS.items())))
