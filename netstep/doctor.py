"""`netstep doctor`: can this machine run the course, and if not, what to do about it.

Each finding is (ok, a sentence). It only reads the machine, except for building and
removing one throwaway lab to prove that namespaces, veth pairs and iptables work.
"""

from __future__ import annotations

import os
import shutil
import subprocess

TOOLS = {"ip": "iproute2", "nsenter": "util-linux", "iptables": "iptables", "iptables-save": "iptables",
         "conntrack": "conntrack"}


def diagnose(*, host: bool = False) -> list[tuple[bool, str]]:
    """What matters for the course here; with `host`, for host mode in this namespace."""
    findings: list[tuple[bool, str]] = []
    root = os.geteuid() == 0
    findings.append((root, "running as root" if root else
                     "not root: netstep creates namespaces and needs root; run it with sudo"))
    for tool, package in TOOLS.items():
        found = shutil.which(tool)
        findings.append((bool(found), f"{tool} found at {found}" if found else
                         f"{tool} is missing: `apt-get install {package}`"))
    if shutil.which("iptables"):
        version = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
        backend = "nf_tables" if "nf_tables" in version else "legacy"
        findings.append((True, f"{version}: the {backend} backend, which netstep uses for every rule it adds"))
    if os.path.isdir("/proc/sys/net/bridge"):
        findings.append((True, "br_netfilter is loaded: bridged traffic passes iptables, so a FORWARD policy of "
                               "DROP also blocks container-to-container traffic on a bridge"))
    else:
        findings.append((True, "br_netfilter is not loaded: bridged traffic skips iptables (the course works "
                               "either way)"))
    if shutil.which("dockerd") or os.path.exists("/var/run/docker.sock"):
        findings.append((True, "Docker is installed: it sets the FORWARD policy to DROP in the machine's own "
                               "namespace; the sandbox is not affected"))
    if root and all(shutil.which(t) for t in TOOLS):
        findings.append(_try_lab())
        if host:
            findings += _host_findings()
    return findings


def _lesson_names() -> tuple[set[str], set[str]]:
    """Device and chain names the lessons create on the lab host."""
    # Imported here, as the command line imports this module: only `doctor --host` needs the course.
    from netstep.course.actions import AddLink, Iptables
    from netstep.course.course import Course

    devices, chains = set(), set()
    for step in Course.load().steps:
        for action in step.actions:
            if isinstance(action, AddLink) and action.ns == "host":
                devices.update(n for n in (action.name, action.peer) if n)
            if isinstance(action, Iptables) and action.ns == "host" and action.args[0] == "-N":
                chains.add(action.args[1])
    return devices, chains


def _host_findings() -> list[tuple[bool, str]]:
    """Host mode runs in this namespace: what here would break a lesson."""
    findings: list[tuple[bool, str]] = []
    devices, chains = _lesson_names()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    present = sorted({line.split(": ")[1].split("@")[0] for line in links.splitlines()} & devices)
    if present:
        verb = "exists" if len(present) == 1 else "exist"
        findings.append((False, f"host mode: {', '.join(present)} already {verb} here and netstep did not make "
                                "it; the lessons that create them will refuse to run (nothing is touched). "
                                "Remove them yourself, or use the sandbox (run without --host)."))
    else:
        findings.append((True, f"host mode: none of the lessons' devices ({', '.join(sorted(devices))}) exists yet"))
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    taken = sorted(c for c in chains if f"-N {c}" in rules.splitlines())
    if taken:
        findings.append((False, f"host mode: the chain(s) {', '.join(taken)} already exist; lesson 1 will refuse "
                                f"to create them. Delete them with `iptables -X` if they are leftovers."))
    if "-P FORWARD DROP" in rules.splitlines():
        docker = " (Docker sets it)" if "-N DOCKER" in rules else ""
        findings.append((False, f"host mode: the FORWARD policy is DROP{docker}. With br_netfilter loaded, "
                                "bridged traffic passes FORWARD too, so lesson 4 (netns0 <-> netns1 over br0) and "
                                "lesson 6 (to the internet) fail. Allow the lab's bridge first, e.g. "
                                "`iptables -I DOCKER-USER -i br0 -j ACCEPT` and "
                                "`iptables -I DOCKER-USER -o br0 -j ACCEPT` (or the FORWARD chain without "
                                "Docker), or use the sandbox, which Docker does not affect."))
    return findings


def _try_lab() -> tuple[bool, str]:
    # Imported here, as the command line imports this module: only a root with the tools tries a lab.
    from netstep.core.lab import Lab

    lab = Lab(f"doctor-{os.getpid()}")
    try:
        with lab:
            result = subprocess.run(["nsenter", f"--net={lab.path_of('host')}", "--", "iptables", "-S"],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                return False, f"iptables does not work inside a namespace: {result.stderr.strip()}"
        return True, "a test lab (two namespaces, a veth pair, iptables) was built and removed"
    except Exception as exc:  # doctor reports whatever went wrong, as a finding
        return False, f"building a test lab failed: {exc}"
    finally:
        lab.lock(build=False)
        lab.destroy()
        lab.close()
