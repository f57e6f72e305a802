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
    """No --upstream: lesson 7's client on the network is the lab's own stand-in, whose
    requests reach the host through its veth and pass PREROUTING."""
    lab = unique_name("host")
    d = _scenario(lab)
    assert d["run"] == 0, d["run_err"]
    bad = [c for c in d["checks"] if not c["ok"]]
    assert len(d["checks"]) >= 40 and not bad, bad
    from_client = [c for c in d["checks"] if c["from"] == "upstream"]
    assert from_client and any(c["actual"] == "reachable" for c in from_client)
    assert any(c["actual"] == "unreachable" for c in from_client)  # before the DNAT rule
    assert d["rollback"] == 0 and d["reset"] == 0, (d["rollback_err"], d["reset_err"])
    # The stand-in stood while the course did, on its own range, and went with the rollback.
    assert any(link.startswith("nsclient0@") for link in d["middle"]["links"])
    assert "nsclient0 inet 198.51.100.1/30" in d["middle"]["addresses"]
    assert not d["lab_dir"]
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


def test_a_host_mode_lab_is_refused_untouched_from_another_namespace():
    lab = unique_name("hostns")
    d = _scenario(lab, "other-namespace")
    assert d["made"] == 0, d["made_err"]
    for command, r in d["refused"].items():
        assert r["rc"] != 0, (command, r)
        assert "Traceback" not in r["err"], (command, r["err"])
        assert "was made with --host in network namespace net:[" in r["err"], (command, r["err"])
    # Neither the lab's namespace nor the other one changed; the lab is still there.
    assert d["here_after"] == d["here_before"]
    assert d["other_after"] == d["other_before"]
    assert d["other_before"]["sysctls"]["net.ipv4.ip_forward"] == "1"
    assert any("192.0.2.0/24" in rule for rule in d["other_before"]["rules"])
    assert d["lab_left"]
    assert d["reset_here"]["rc"] == 0, d["reset_here"]


def test_a_host_mode_lab_whose_namespace_is_gone_is_removed_without_undoing_anything():
    lab = unique_name("hostgone")
    d = _scenario(lab, "orphan")
    assert d["made"] == 0, d["made_err"]
    assert d["used"]["rc"] != 0 and "is gone" in d["used"]["err"] and "reset" in d["used"]["err"], d["used"]
    assert d["reset"]["rc"] == 0, d["reset"]
    assert "namespace was gone" in d["reset"]["out"]
    assert d["after"] == d["before"]
    assert not d["lab_dir"]


def test_reset_removes_a_lab_whatever_mode_it_was_made_in():
    lab = unique_name("hostmode")
    d = _scenario(lab, "modes")
    assert d["made_host"] == 0 and d["made_sandbox"] == 0
    # Other commands refuse the mismatch and give the command that works.
    assert d["wrong"]["rc"] == 1 and f"--host --lab {lab} next" in d["wrong"]["err"], d["wrong"]
    assert d["wrong_sandbox"]["rc"] == 1 and f"--lab {lab}s reset" in d["wrong_sandbox"]["err"]
    assert d["reset_plain"]["rc"] == 0, d["reset_plain"]
    assert d["reset_host"]["rc"] == 0, d["reset_host"]
    assert d["dirs"] == [False, False]
    # The host-mode lab's reset (without --host) undid its changes in this namespace.
    assert any("veth0" in link for link in d["before_reset"]["links"])
    assert not any("veth0" in link or "nsclient0" in link for link in d["after_host_reset"]["links"])


@pytest.mark.parametrize("command", ["verify", "hint", "solution"])
def test_host_mode_refuses_grading_with_a_clear_message(command: str) -> None:
    """Grading compares with a sandbox reference; host mode's lab host is the machine's own stack."""
    lab = unique_name("hostv")
    script = (f'"{sys.executable}" -m netstep --host --lab {lab} {command}; echo "rc=$?" >&2; '
              f'"{sys.executable}" -m netstep --host --lab {lab} reset >/dev/null')
    try:
        result = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c", script],
                                capture_output=True, text=True, timeout=120, cwd=REPO)
    finally:
        shutil.rmtree(os.path.join(LABS_ROOT, lab), ignore_errors=True)
    assert "rc=1" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "Use a sandbox lab (without --host)" in result.stderr, result.stderr


def test_host_mode_puts_back_what_the_lab_made_and_names_the_rest():
    """In the machine's own namespace a move reconciles only what the lab made (its marked
    rules, its links); the student's own rule and route there are named and kept. In the
    lab's container the student's address is removed, as in a sandbox."""
    lab = unique_name("hosts")
    d = _scenario(lab, "student")
    assert d["made"] == 0, d["made_err"]
    assert d["masquerade"] not in d["typed"]["rules"]
    veth0 = {when: [link for link in d[when]["links"] if link.startswith("veth0@")] for when in
             ("at_end", "typed", "after_back")}
    assert ",UP," in veth0["at_end"][0] and ",UP," not in veth0["typed"][0], veth0
    assert d["back"]["rc"] == 0, d["back"]
    out = d["back"]["out"]
    assert "172.18.0.99" in out and "192.0.2.0/24" in out and "left as it is" in out, out
    assert "172.18.0.77/16" in out and "MASQUERADE" in out, out
    # Read here with iptables-save and ip: the lab's rule and link are back, the student's own
    # rule and route are still there, and netns0 lost the address typed into it.
    assert d["masquerade"] in d["after_back"]["rules"]
    assert "-A FORWARD -s 172.18.0.99/32 -j DROP" in d["after_back"]["rules"]
    assert any(r.startswith("192.0.2.0/24 dev eth0") for r in d["after_back"]["routes"])
    assert veth0["after_back"] == veth0["at_end"]
    # ... in its place among the machine's own rules (Docker's MASQUERADE comes first).
    postrouting = {when: [r for r in d[when]["rules"] if r.startswith("-A POSTROUTING")] for when in
                   ("at_end", "after_back")}
    assert postrouting["after_back"] == postrouting["at_end"] and "docker0" in postrouting["at_end"][0], postrouting
    assert "172.18.0.77" not in d["container_addrs"] and "172.18.0.10/16" in d["container_addrs"]
    # Rolling back and resetting leave the machine as the lesson found it, the student's own
    # changes aside (which they took back themselves).
    assert d["rollback"]["rc"] == 0 and d["reset"]["rc"] == 0, (d["rollback"], d["reset"])
    assert "-A FORWARD -s 172.18.0.99/32 -j DROP" in d["after_rollback"]["rules"]
    assert not any(f"netstep:{lab}" in rule for rule in d["after_rollback"]["rules"])
    assert not any("veth0" in link or "br0" in link for link in d["after_rollback"]["links"])


def test_host_mode_takes_back_what_the_student_ran_through_netstep_on_the_machines_own_link():
    """`%%netstep` in host mode on the machine's own eth0 (its MTU) and a route through it:
    netstep made those changes, so `back` takes them back by their undos and names them
    (not "left as it is"), as iproute2 then reads the machine."""
    lab = unique_name("hosto")
    d = _scenario(lab, "own")
    assert d["made"] == 0, d["made_err"]
    assert d["mtu"]["typed"] == "1300" and d["mtu"]["after_back"] == d["mtu"]["before"] != "1300", d["mtu"]
    assert any(r.startswith("192.0.2.0/24 via 10.0.2.2") for r in d["typed"]["routes"])
    assert d["back"]["rc"] == 0, d["back"]
    out = d["back"]["out"]
    assert "ip link set eth0 mtu 1300" in out and "ip route add 192.0.2.0/24" in out and "left as it is" not in out, out
    assert d["after_back"]["routes"] == d["before"]["routes"]
    assert d["after_back"]["links"] == d["before"]["links"]
    assert d["reset"]["rc"] == 0, d["reset"]
    assert not any("veth0" in link for link in d["after_reset"]["links"])
