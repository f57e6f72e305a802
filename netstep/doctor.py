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


def diagnose() -> list[tuple[bool, str]]:
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
        findings.append((True, f"{version}: the {backend} backend; netstep only touches its own namespaces' rules"))
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
    return findings


def _try_lab() -> tuple[bool, str]:
    from netstep.lab import Lab

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
