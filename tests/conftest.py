"""Fixtures: labs that are always destroyed, and a guard on the machine's own network stack.

The guard records the network state of the namespace the tests run in (the machine's
own) before the session and asserts after it that nothing changed: link names, addresses,
routes, iptables rules (counters stripped), ip_forward and `ip netns list`. It also
asserts that no lab, mount or HTTP server of this session is left under /run/netstep.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from support import LABS_ROOT, PREFIX, httpd_pids, machine_network_state, mounts_under, ordinary_users, unique_name


def _session_leftovers() -> dict[str, list]:
    labs = sorted(n for n in os.listdir(LABS_ROOT) if n.startswith(PREFIX)) if os.path.isdir(LABS_ROOT) else []
    mounts = [m for m in mounts_under(LABS_ROOT) if os.path.basename(m).startswith(PREFIX)
              or f"/{PREFIX}" in m]
    servers = httpd_pids(f"{LABS_ROOT}/{PREFIX}")
    return {"labs": labs, "mounts": mounts, "httpd processes": servers}


@pytest.fixture(scope="session", autouse=True)
def machine_network_unchanged():
    """Fail the session if the machine's own network stack changed, or a test lab survived."""
    before = machine_network_state()
    yield
    after = machine_network_state()
    leftovers = _session_leftovers()
    try:
        changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        assert not changed, f"the machine's own network namespace changed during the tests: {changed}"
        assert not any(leftovers.values()), f"test labs left behind under {LABS_ROOT}: {leftovers}"
    finally:
        # Report first (above), then still leave the machine clean.
        if leftovers["labs"] or leftovers["mounts"] or leftovers["httpd processes"]:
            from netstep.core.lab import Lab

            for name in leftovers["labs"]:
                try:
                    Lab(name).destroy()
                except Exception as exc:  # a cleanup failure must not hide the report
                    print(f"could not destroy leftover lab {name}: {exc}", file=sys.stderr)


@pytest.fixture
def make_lab():
    """A factory of locked labs with unique names; every one is destroyed at the end."""
    from netstep.core.lab import Lab

    made: list[Lab] = []

    def factory(tag: str = "x") -> Lab:
        lab = Lab(unique_name(tag))
        made.append(lab)
        lab.lock()
        return lab

    try:
        yield factory
    finally:
        errors = []
        for lab in reversed(made):
            try:
                lab.destroy()
            except Exception as exc:
                errors.append(f"{lab.name}: {exc!r}")
            finally:
                lab.close()
        assert not errors, f"lab.destroy() failed: {errors}"


@pytest.fixture
def lab(make_lab):
    """One locked lab, destroyed after the test."""
    return make_lab()


@pytest.fixture
def cli_lab():
    """A lab name for the command line; the lab is reset and destroyed at the end."""
    from support import netstep_cli

    from netstep.core.lab import Lab

    name = unique_name("c")
    try:
        yield name
    finally:
        try:
            netstep_cli(name, "reset", timeout=60)
        finally:
            Lab(name).destroy()


@pytest.fixture
def make_user():
    """A factory of ordinary Unix users (support.User); removed at the end with their
    processes, records and homes, whatever happened."""
    with ordinary_users() as factory:
        yield factory


def pytest_collection_modifyitems(config, items) -> None:
    """The VM test first: it takes longer than the rest together, so under pytest-xdist (`-n
    2`) it starts at once on one worker while the other runs everything else beside it."""
    items.sort(key=lambda item: item.get_closest_marker("vm") is None)
