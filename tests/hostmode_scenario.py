"""Host mode on a stand-in machine: run me inside `unshare --net --mount --propagation private`.

The namespace this script runs in plays a VM that netstep did not make: it gets the
article's eth0 (10.0.2.15/24, default via 10.0.2.2) wired to a scratch upstream namespace,
and foreign state of the kind Docker leaves (a docker0 bridge, a veth pair, DOCKER chains
and rules, a custom sysctl). Then netstep runs the whole course in host mode, rolls back
and resets. The script prints one JSON object: exit codes, the checks, and the state of
this namespace before the course, after rollback and after reset.
"""

from __future__ import annotations

import glob
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time

from netstep.kernel import namespaces


def sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def build_machine(upstream: str) -> None:
    namespaces.create(upstream)
    host, up = namespaces.iproute(None), namespaces.iproute(upstream)
    sh("ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
    fd = os.open(upstream, os.O_RDONLY)
    host.link("set", index=host.link_lookup(ifname="uplink")[0], net_ns_fd=fd)
    os.close(fd)
    up.link("set", index=up.link_lookup(ifname="uplink")[0], ifname="eth0")
    sh("ip", "addr", "add", "10.0.2.15/24", "dev", "eth0")
    sh("ip", "link", "set", "eth0", "up")
    sh("ip", "route", "add", "default", "via", "10.0.2.2")
    for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "10.0.2.2/24", "dev", "eth0"],
                 ["ip", "link", "set", "eth0", "up"], ["ip", "addr", "add", "203.0.113.8/32", "dev", "lo"],
                 ["sysctl", "-qw", "net.ipv4.ip_forward=1"]):
        sh("nsenter", f"--net={upstream}", "--", *argv)
    # Foreign state: what Docker and other tools leave on a real VM.
    sh("ip", "link", "add", "docker0", "type", "bridge")
    sh("ip", "addr", "add", "172.17.0.1/16", "dev", "docker0")
    sh("ip", "link", "set", "docker0", "up")
    sh("ip", "link", "add", "vethfor0", "type", "veth", "peer", "name", "vethfor1")
    for rule in (["-N", "DOCKER"], ["-N", "DOCKER-USER"], ["-A", "FORWARD", "-j", "DOCKER-USER"],
                 ["-A", "FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED",
                  "-j", "ACCEPT"],
                 ["-A", "DOCKER-USER", "-j", "RETURN"],
                 ["-t", "nat", "-N", "DOCKER"],
                 ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
                 ["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0", "-j",
                  "MASQUERADE"]):
        sh("iptables", *rule)
    sh("sysctl", "-qw", "net.ipv4.conf.all.rp_filter=2")
    host.close()
    up.close()


def state() -> dict:
    links = sorted(" ".join(line.split(": ", 2)[1:]).split(" link/")[0].split(" qdisc")[0].split("mtu")[0]
                   + (" master " + line.split(" master ")[1].split()[0] if " master " in line else "")
                   for line in sh("ip", "-o", "link").splitlines())
    addrs = sorted(" ".join(line.split()[1:4]) for line in sh("ip", "-o", "-4", "addr").splitlines())
    rules = [line for line in sh("iptables-save").splitlines() if not line.startswith("#")]
    rules = [line.split(" [")[0] if line.startswith(":") else line for line in rules]
    sysctls = {k: sh("sysctl", "-n", k).strip() for k in
               ("net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter", "net.bridge.bridge-nf-call-iptables")
               if os.path.exists("/proc/sys/" + k.replace(".", "/"))}
    return {"links": links, "addresses": addrs, "routes": sh("ip", "route").splitlines(), "rules": rules,
            "sysctls": sysctls}


def netstep(lab: str, *args: str, where: str | None = None, host: bool = True) -> subprocess.CompletedProcess:
    """The CLI in host mode, with no --upstream: the lab makes its own stand-in client. With
    `where`, it runs in the namespace pinned there instead of this one."""
    mode = ["--host", "--internet", "203.0.113.8"] if host else []
    argv = [sys.executable, "-m", "netstep", "--lab", lab, *mode, *args]
    if where:
        argv = ["nsenter", f"--net={where}", "--", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def state_in(where: str) -> dict:
    """state() of the namespace pinned at `where`."""
    code = "import json, hostmode_scenario as s; print(json.dumps(s.state()))"
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.abspath(__file__))}
    out = subprocess.run(["nsenter", f"--net={where}", "--", sys.executable, "-c", code], check=True,
                         capture_output=True, text=True, env=env).stdout
    return json.loads(out)


def result(proc: subprocess.CompletedProcess) -> dict:
    return {"rc": proc.returncode, "out": proc.stdout[-3000:], "err": proc.stderr[-3000:]}


def other_namespace(lab: str, upstream: str) -> dict:
    """A host-mode lab made here, then every command from another namespace that has state of
    its own (forwarding on, a rule): refused, and neither namespace changes."""
    made = netstep(lab, "run", "lesson6", "--yes", "--json")
    other = os.path.join(os.path.dirname(upstream), "other")
    namespaces.create(other)
    for argv in (["ip", "link", "set", "lo", "up"], ["sysctl", "-qw", "net.ipv4.ip_forward=1"],
                 ["iptables", "-A", "FORWARD", "-s", "192.0.2.0/24", "-j", "DROP"],
                 ["iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "192.0.2.0/24", "-j", "MASQUERADE"]):
        sh("nsenter", f"--net={other}", "--", *argv)
    here_before, other_before = state(), state_in(other)
    commands = [["reset"], ["rollback", "--all"], ["back"], ["next"], ["run", "lesson7", "--yes"],
                ["check", "lesson6"], ["inspect"], ["diff"]]
    refused = {" ".join(c): result(netstep(lab, *c, where=other)) for c in commands}
    refused["reset (no --host)"] = result(netstep(lab, "reset", where=other, host=False))
    out = {"made": made.returncode, "made_err": made.stderr[-2000:], "refused": refused,
           "here_before": here_before, "here_after": state(), "other_before": other_before,
           "other_after": state_in(other), "lab_left": os.path.exists(f"/run/netstep/labs/{lab}/lab.json")}
    out["reset_here"] = result(netstep(lab, "reset", host=False))
    namespaces.remove(other)
    return out


def orphan(lab: str, upstream: str) -> dict:
    """A host-mode lab made in a namespace that then dies: reset from here removes its files
    and namespaces and changes nothing here."""
    gone = os.path.join(os.path.dirname(upstream), "gone")
    namespaces.create(gone)
    sh("nsenter", f"--net={gone}", "--", "ip", "link", "set", "lo", "up")
    made = netstep(lab, "run", "lesson4", "--yes", "--json", where=gone)
    ident = namespaces.identity(gone)
    namespaces.remove(gone)  # nothing of the test holds it any more
    deadline = time.monotonic() + 20
    while namespaces.is_alive(ident) and time.monotonic() < deadline:
        time.sleep(0.1)  # a process elsewhere (another suite's guard, say) may look at it a moment
    before = state()
    used = result(netstep(lab, "next"))
    reset = result(netstep(lab, "reset"))
    return {"made": made.returncode, "made_err": made.stderr[-2000:], "used": used, "reset": reset,
            "before": before, "after": state(), "lab_dir": os.path.exists(f"/run/netstep/labs/{lab}")}


def modes(lab: str, upstream: str) -> dict:
    """`reset` removes a lab whatever mode it was made in; other commands name the one that works."""
    made_host = netstep(lab, "run", "lesson2", "--yes", "--json")
    before_reset = state()
    wrong = result(netstep(lab, "next", host=False))
    reset_plain = result(netstep(lab, "reset", host=False))
    after_host_reset = state()
    sandbox = lab + "s"
    made_sandbox = netstep(sandbox, "run", "lesson2", "--yes", "--json", host=False)
    wrong_sandbox = result(netstep(sandbox, "next"))
    reset_host = result(netstep(sandbox, "reset"))
    return {"made_host": made_host.returncode, "made_sandbox": made_sandbox.returncode, "wrong": wrong,
            "wrong_sandbox": wrong_sandbox, "reset_plain": reset_plain, "reset_host": reset_host,
            "before_reset": before_reset, "after_host_reset": after_host_reset,
            "dirs": [os.path.exists(f"/run/netstep/labs/{name}") for name in (lab, sandbox)]}


def conflict(lab: str, upstream: str) -> dict:
    """A foreign veth0 where lesson 2 wants to make one: refused, and left alone."""
    sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "foreign0")
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "veth0")
    before = state()
    run = netstep(lab, "run", "lesson2", "--yes")
    after_run = state()
    reset = netstep(lab, "reset")
    return {"run": run.returncode, "run_err": run.stderr, "reset": reset.returncode,
            "before": before, "after_run": after_run, "after_reset": state()}


def student(lab: str, upstream: str) -> dict:
    """At lesson 7's end the student types by hand: in this machine's namespace a rule and a
    route of their own (kept, named), a deleted rule of the lab's and its veth0 set down
    (put back); in netns0 an address (removed). Then `back`, `rollback --all` and `reset`."""
    made = netstep(lab, "run", "lesson7", "--yes", "--json")
    at_end = state()
    masquerade = next(line for line in at_end["rules"] if "MASQUERADE" in line and f"netstep:{lab}" in line)
    container = glob.glob(f"/run/netstep/labs/{lab}/**/netns0", recursive=True)[0]
    sh("iptables", "-A", "FORWARD", "-s", "172.18.0.99", "-j", "DROP")
    sh("ip", "route", "add", "192.0.2.0/24", "dev", "eth0")
    sh("iptables", "-t", "nat", *shlex.split(masquerade.replace("-A ", "-D ", 1)))
    sh("ip", "link", "set", "veth0", "down")
    sh("nsenter", f"--net={container}", "--", "ip", "addr", "add", "172.18.0.77/16", "dev", "ceth0")
    typed = state()
    back = result(netstep(lab, "back"))
    after_back = state()
    container_addrs = sh("nsenter", f"--net={container}", "--", "ip", "-o", "-4", "addr")
    rollback = result(netstep(lab, "rollback", "--all"))
    after_rollback = state()
    sh("iptables", "-D", "FORWARD", "-s", "172.18.0.99", "-j", "DROP")
    sh("ip", "route", "del", "192.0.2.0/24", "dev", "eth0")
    reset = result(netstep(lab, "reset"))
    return {"made": made.returncode, "made_err": made.stderr[-2000:], "at_end": at_end, "typed": typed,
            "masquerade": masquerade, "back": back, "after_back": after_back, "container_addrs": container_addrs,
            "rollback": rollback, "after_rollback": after_rollback, "reset": reset, "after_reset": state()}


def own(lab: str, upstream: str) -> dict:
    """In a notebook (%%netstep, the engine's run_own) the student narrows this machine's own
    eth0 and adds a route through it: netstep did that, so the next move takes both back by
    their undos, and reset has nothing of theirs left to undo."""
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab

    made = netstep(lab, "run", "lesson2", "--yes")
    before, before_mtu = state(), str(json.loads(sh("ip", "-j", "link", "show", "eth0"))[0]["mtu"])
    machine = Lab(lab, host=True, internet="203.0.113.8")
    machine.lock()
    try:
        engine = Engine(machine)
        for line in ("ip link set eth0 mtu 1300", "ip route add 192.0.2.0/24 via 10.0.2.2"):
            engine.run_own(line, "host")
        engine.persist()
    finally:
        machine.close()
    typed = state()
    mtu = {"before": before_mtu, "typed": str(json.loads(sh("ip", "-j", "link", "show", "eth0"))[0]["mtu"])}
    back = result(netstep(lab, "back"))
    after_back = state()
    mtu["after_back"] = str(json.loads(sh("ip", "-j", "link", "show", "eth0"))[0]["mtu"])
    reset = result(netstep(lab, "reset"))
    return {"made": made.returncode, "made_err": made.stderr[-2000:], "before": before, "typed": typed,
            "back": back, "after_back": after_back, "reset": reset, "after_reset": state(), "mtu": mtu}


def main() -> int:
    lab = sys.argv[1]
    upstream = os.path.join(tempfile.mkdtemp(prefix="netstep-up-"), "upstream")
    build_machine(upstream)
    scenarios = {"conflict": conflict, "other-namespace": other_namespace, "orphan": orphan, "modes": modes,
                 "student": student, "own": own}
    if sys.argv[2:3]:
        print(json.dumps(scenarios[sys.argv[2]](lab, upstream)))
        namespaces.remove(upstream)
        return 0
    before = state()
    run = netstep(lab, "run", "all", "--yes", "--json")
    middle = state()
    rollback = netstep(lab, "rollback", "--all")
    after_rollback = state()
    reset = netstep(lab, "reset")
    after_reset = state()
    checks = [c for line in run.stdout.splitlines() if line.startswith("{") and "event" not in (c := json.loads(line))]
    print(json.dumps({
        "run": run.returncode, "run_err": run.stderr[-2000:], "checks": checks,
        "rollback": rollback.returncode, "rollback_err": rollback.stderr[-2000:],
        "reset": reset.returncode, "reset_err": reset.stderr[-2000:],
        "before": before, "middle": middle, "after_rollback": after_rollback, "after_reset": after_reset,
        "lab_dir": os.path.exists(f"/run/netstep/labs/{lab}"),
    }))
    namespaces.remove(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
