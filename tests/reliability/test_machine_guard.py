"""Promise 6: the machine's own namespace is untouched by the whole suite.

Two session guards compare the machine's namespace before and after the run: the suite's
own (tests/conftest.py: link names, addresses, main routes, iptables rules, ip_forward,
`ip netns list`, and no lab of the session left) and the reliability suite's closer look
(machine_guard.py, used by tests/reliability/conftest.py). This test proves that the
guards would see a change, without touching the machine: inside `unshare --net --mount
--propagation private` it changes one thing at a time in a namespace of its own, and
checks which guard noticed. It also checks that an unchanged namespace reads the same
twice (no false alarm).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from relsupport import ENV, HERE, STATS, note
from support import REPO, needs_root

pytestmark = [needs_root, pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")]

PROBE = textwrap.dedent("""
    import json, os, subprocess, sys
    sys.path[:0] = [sys.argv[1], sys.argv[2]]
    assert os.environ.get("NETSTEP_REL_IN_UNSHARE") == "1"
    from support import machine_network_state
    from machine_guard import differences, machine_state

    def sh(*argv):
        subprocess.run(argv, check=True, capture_output=True)

    sh("mount", "-t", "tmpfs", "guard", "/run")
    os.makedirs("/run/netns")
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "guarda", "type", "veth", "peer", "name", "guardb")
    CHANGES = {
        "nothing": [],
        "a new link": [["ip", "link", "add", "guardc", "type", "bridge"]],
        "an address": [["ip", "addr", "add", "192.0.2.77/24", "dev", "lo"]],
        "a main route": [["ip", "route", "add", "198.51.100.0/24", "dev", "lo"]],
        "a route in table 200": [["ip", "route", "add", "198.51.100.0/24", "dev", "lo", "table", "200"]],
        "a policy rule": [["ip", "rule", "add", "from", "198.51.100.0/24", "lookup", "200"]],
        "an iptables rule": [["iptables", "-A", "INPUT", "-s", "198.51.100.1", "-j", "DROP"]],
        "an iptables policy": [["iptables", "-P", "FORWARD", "DROP"]],
        "an ip6tables rule": [["ip6tables", "-A", "INPUT", "-s", "2001:db8::1", "-j", "DROP"]],
        "ip_forward": [["sysctl", "-qw", "net.ipv4.ip_forward=1"]],
        "another sysctl": [["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2"]],
        "a link's MTU": [["ip", "link", "set", "guarda", "mtu", "1400"]],
        "a link's master": [["ip", "link", "add", "guardbr", "type", "bridge"],
                            ["ip", "link", "set", "guarda", "master", "guardbr"]],
        "a link up": [["ip", "link", "set", "guarda", "up"]],
        "ip netns add": [["ip", "netns", "add", "guardns"]],
    }
    seen = {}
    for what, commands in CHANGES.items():
        # (mounts under /run/netstep: only this probe's, none; labs of tests running beside it come and go)
        root_before, close_before = machine_network_state(), machine_state(netstep_marker="/guard-probe/")
        for argv in commands:
            sh(*argv)
        root_after, close_after = machine_network_state(), machine_state(netstep_marker="/guard-probe/")
        seen[what] = {
            "tests/conftest.py": sorted(k for k in root_before if root_before[k] != root_after[k]),
            "machine_guard.py": sorted(differences(close_before, close_after)),
        }
    print(json.dumps(seen))
""")

# What each guard must notice. tests/conftest.py looks at less; the closer look sees all.
ROOT_GUARD_SEES = {"a new link", "an address", "a main route", "an iptables rule", "an iptables policy",
                   "ip_forward", "ip netns add"}


@pytest.fixture(scope="module")
def seen() -> dict:
    result = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--", sys.executable, "-c",
                             PROBE, str(REPO / "tests"), str(HERE)], capture_output=True, text=True, timeout=300,
                            cwd=REPO, env={**ENV, "NETSTEP_REL_IN_UNSHARE": "1"})
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_an_unchanged_namespace_reads_the_same(seen: dict) -> None:
    assert seen["nothing"] == {"tests/conftest.py": [], "machine_guard.py": []}


def test_the_closer_guard_sees_every_kind_of_change(seen: dict) -> None:
    blind = [what for what, found in seen.items() if what != "nothing" and not found["machine_guard.py"]]
    assert not blind, f"machine_guard.py did not notice: {blind}"
    STATS["kinds of change the guards notice"] = len(seen) - 1
    note("machine guard: tests/conftest.py notices " + ", ".join(sorted(
        w for w, f in seen.items() if f["tests/conftest.py"])) + "; machine_guard.py notices all "
         f"{len(seen) - 1} kinds of change tried")


def test_the_suites_own_guard_sees_what_it_promises(seen: dict) -> None:
    blind = [what for what in ROOT_GUARD_SEES if not seen[what]["tests/conftest.py"]]
    assert not blind, f"tests/conftest.py did not notice: {blind}"
