"""Host mode on a stand-in machine: run me inside `unshare --net --mount --propagation private`.

The namespace this script runs in plays a VM that netstep did not make: it gets the
article's eth0 (10.0.2.15/24, default via 10.0.2.2) wired to a scratch upstream namespace,
and foreign state of the kind Docker leaves (a docker0 bridge, a veth pair, DOCKER chains
and rules, a custom sysctl). Then netstep runs the whole course in host mode, rolls back
and resets. The script prints one JSON object: exit codes, the checks, and the state of
this namespace before the course, after rollback and after reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

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


def netstep(lab: str, upstream: str, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "netstep", "--lab", lab, "--host", "--internet", "203.0.113.8",
            "--upstream", upstream, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def conflict(lab: str, upstream: str) -> dict:
    """A foreign veth0 where lesson 2 wants to make one: refused, and left alone."""
    sh("ip", "link", "add", "veth0", "type", "veth", "peer", "name", "foreign0")
    sh("ip", "addr", "add", "192.0.2.1/24", "dev", "veth0")
    before = state()
    run = netstep(lab, upstream, "run", "lesson2", "--yes")
    after_run = state()
    reset = netstep(lab, upstream, "reset")
    return {"run": run.returncode, "run_err": run.stderr, "reset": reset.returncode,
            "before": before, "after_run": after_run, "after_reset": state()}


def main() -> int:
    lab = sys.argv[1]
    upstream = os.path.join(tempfile.mkdtemp(prefix="netstep-up-"), "upstream")
    build_machine(upstream)
    if sys.argv[2:] == ["conflict"]:
        print(json.dumps(conflict(lab, upstream)))
        namespaces.remove(upstream)
        return 0
    before = state()
    run = netstep(lab, upstream, "run", "all", "--yes", "--json")
    middle = state()
    rollback = netstep(lab, upstream, "rollback", "--all")
    after_rollback = state()
    reset = netstep(lab, upstream, "reset")
    after_reset = state()
    checks = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    print(json.dumps({
        "run": run.returncode, "run_err": run.stderr[-2000:], "checks": checks,
        "rollback": rollback.returncode, "rollback_err": rollback.stderr[-2000:],
        "reset": reset.returncode, "reset_err": reset.stderr[-2000:],
        "before": before, "middle": middle, "after_rollback": after_rollback, "after_reset": after_reset,
    }))
    namespaces.remove(upstream)
    return 0


if __name__ == "__main__":
    sys.exit(main())
