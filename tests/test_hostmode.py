"""Host mode, never on this machine: inside `unshare --net --mount`, on a stand-in VM.

tests/hostmode_scenario.py builds the stand-in (the article's eth0 and router, plus
Docker-like foreign state) in a namespace of its own and drives the CLI in host mode.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from support import LABS_ROOT, REPO, needs_root, unique_name

SCENARIO = REPO / "tests" / "hostmode_scenario.py"
pytestmark = [needs_root, pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare")]


def _scenario(lab: str, *extra: str) -> dict:
    argv = ["unshare", "--net", "--mount", "--propagation", "private", "--", sys.executable, str(SCENARIO), lab,
            *extra]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=REPO)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)
    finally:
        # The scenario's mounts died with its mount namespace; only files can remain.
        shutil.rmtree(os.path.join(LABS_ROOT, lab), ignore_errors=True)


def test_host_mode_runs_the_course_and_restores_the_machine_exactly():
    lab = unique_name("host")
    d = _scenario(lab)
    assert d["run"] == 0, d["run_err"]
    bad = [c for c in d["checks"] if not c["ok"]]
    assert len(d["checks"]) >= 40 and not bad, bad
    assert any(c["from"] == "upstream" and c["actual"] == "reachable" for c in d["checks"])
    assert d["rollback"] == 0 and d["reset"] == 0, (d["rollback_err"], d["reset_err"])
    # While the course stood, netstep's rules carried its mark and the foreign ones were kept.
    assert any(f"netstep:{lab}" in rule for rule in d["middle"]["rules"])
    assert [r for r in d["before"]["rules"] if "DOCKER" in r] == [r for r in d["middle"]["rules"] if "DOCKER" in r]
    for part in ("links", "addresses", "routes", "rules", "sysctls"):
        assert d["after_rollback"][part] == d["before"][part], part
        assert d["after_reset"][part] == d["before"][part], part
    assert d["before"]["sysctls"]["net.ipv4.conf.all.rp_filter"] == "2"


def test_host_mode_refuses_a_foreign_device_and_leaves_it_alone():
    lab = unique_name("hostc")
    d = _scenario(lab, "conflict")
    assert d["run"] != 0
    assert "veth0" in d["run_err"] and "did not create it" in d["run_err"]
    assert "Traceback" not in d["run_err"]
    # Lesson 1 was applied on the way (fast-forward); the foreign pair is exactly as it was.
    foreign = [link for link in d["before"]["links"] if link.startswith(("veth0@", "foreign0@"))]
    assert len(foreign) == 2
    assert [link for link in d["after_run"]["links"] if link.startswith(("veth0@", "foreign0@"))] == foreign
    assert "veth0 inet 192.0.2.1/24" in d["after_run"]["addresses"]
    assert d["after_reset"] == d["before"]
    assert any(link.startswith("veth0@foreign0") for link in d["before"]["links"])
