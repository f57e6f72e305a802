"""`netstep doctor`: can this machine run the course, and if not, what to do about it.

Each finding is (ok, a sentence). It only reads the machine, except for a scratch network
namespace, gone when its process ends, that proves namespaces, veth pairs and iptables work.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess

from netstep.i18n import _, ngettext

TOOLS = {"ip": "iproute2", "nsenter": "util-linux", "unshare": "util-linux", "iptables": "iptables",
         "iptables-save": "iptables", "conntrack": "conntrack"}


def diagnose(*, host: bool = False, proc_sys: str = "/proc/sys") -> list[tuple[bool, str]]:
    """What matters for the course here; with `host`, for host mode in this namespace. An
    ordinary user's labs live in user namespaces of their own: whether the kernel allows
    them is read from `proc_sys` (a test points it at a folder of its own)."""
    findings: list[tuple[bool, str]] = []
    root = os.geteuid() == 0
    allowed = True  # may this process make the namespaces of a lab?
    if root:
        findings.append((True, _("running as root")))
    else:
        findings.append((True, _("not root: each lab lives in a user namespace of your own, where netstep is root "
                                 "over the lab's namespaces alone")))
        userns = user_namespaces(proc_sys)
        allowed = all(ok for ok, _said in userns)
        findings += userns
        if host:
            findings.append((False, _("host mode changes this machine's own network and needs root: run "
                                      "`doctor --host` and the course's --host commands as root")))
    for tool, package in TOOLS.items():
        found = shutil.which(tool)
        findings.append((bool(found), _("{tool} found at {path}").format(tool=tool, path=found) if found else
                         _("{tool} is missing: `apt-get install {package}`").format(tool=tool, package=package)))
    if shutil.which("iptables"):
        version = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
        backend = "nf_tables" if "nf_tables" in version else "legacy"
        findings.append((True, _("{version}: the {backend} backend, which netstep uses for every rule it adds").format(
            version=version, backend=backend)))
    if os.path.isdir("/proc/sys/net/bridge"):
        findings.append((True, _("br_netfilter is loaded: bridged traffic passes iptables, so a FORWARD policy of "
                                 "DROP also blocks container-to-container traffic on a bridge")))
    else:
        findings.append((False, _("br_netfilter is not loaded: bridged traffic skips iptables, and lesson 10, "
                                  "which turns its switch, cannot run, nor the lessons after it. `sudo modprobe "
                                  "br_netfilter` loads it (Docker and Kubernetes load it on their hosts)")))
    if shutil.which("dockerd") or os.path.exists("/var/run/docker.sock"):
        findings.append((True, _("Docker is installed: it sets the FORWARD policy to DROP in the machine's own "
                                 "namespace; the sandbox is not affected")))
    findings.append(_library())
    if all(shutil.which(t) for t in TOOLS) and allowed:
        findings.append(_try_lab(user=not root))
        if host and root:
            findings += _host_findings()
    return findings


def _sysctl(proc_sys: str, key: str) -> str | None:
    try:
        with open(os.path.join(proc_sys, *key.split("."))) as f:
            return f.read().strip()
    except OSError:
        return None


def user_namespaces(proc_sys: str = "/proc/sys") -> list[tuple[bool, str]]:
    """Whether an ordinary user may make a user namespace with a network namespace in it,
    and where not, the exact fix (every sysctl here needs root to change; add the line to
    /etc/sysctl.d/ to keep it after a reboot)."""
    found: list[tuple[bool, str]] = []
    if _sysctl(proc_sys, "user.max_user_namespaces") == "0":
        found.append((False, _("user.max_user_namespaces = 0: the kernel gives nobody a user namespace. Ask root "
                               "for `sysctl -w user.max_user_namespaces=15000` (and the same line in "
                               "/etc/sysctl.d/60-netstep.conf)")))
    if _sysctl(proc_sys, "kernel.unprivileged_userns_clone") == "0":
        found.append((False, _("kernel.unprivileged_userns_clone = 0 (a Debian-patched kernel): only root may make "
                               "a user namespace. Ask root for `sysctl -w kernel.unprivileged_userns_clone=1` (and "
                               "the same line in /etc/sysctl.d/60-netstep.conf)")))
    if _sysctl(proc_sys, "kernel.apparmor_restrict_unprivileged_userns") == "1":
        unshare = os.path.realpath(shutil.which("unshare") or "/usr/bin/unshare")
        found.append((False, _("kernel.apparmor_restrict_unprivileged_userns = 1 (Ubuntu 24.04 and later): a user "
                               "namespace is made, but confined to a profile without capabilities, so making a "
                               "network namespace in it fails. Either ask root for `sysctl -w "
                               "kernel.apparmor_restrict_unprivileged_userns=0` (for every program), or for an "
                               "AppArmor profile that grants `userns,` to the program netstep makes its namespace "
                               "with, util-linux's unshare, by its real path ({unshare}; not a symlink or a venv "
                               "path): /etc/apparmor.d/netstep-unshare holding `{profile}`, then "
                               "`apparmor_parser -r /etc/apparmor.d/netstep-unshare`. Not on the Python "
                               "interpreter: that would let every Python program make user namespaces; a small "
                               "program that only makes namespaces grants less").format(
            unshare=unshare, profile=f"abi <abi/4.0>, include <tunables/global> profile netstep-unshare {unshare} "
                                     "flags=(unconfined) { userns, }")))
    if not found:
        limit = _sysctl(proc_sys, "user.max_user_namespaces")
        found.append((True, _("unprivileged user namespaces are allowed (user.max_user_namespaces = {limit})").format(
            limit=limit) if limit else _("unprivileged user namespaces are allowed")))
    return found


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
        findings.append((False, ngettext(
            "host mode: {names} already exists here and netstep did not make it; the lessons that create it will "
            "refuse to run (nothing is touched). Remove it yourself, or use the sandbox (run without --host).",
            "host mode: {names} already exist here and netstep did not make them; the lessons that create them "
            "will refuse to run (nothing is touched). Remove them yourself, or use the sandbox (run without --host).",
            len(present)).format(names=", ".join(present))))
    else:
        findings.append((True, _("host mode: none of the lessons' devices ({names}) exists yet").format(
            names=", ".join(sorted(devices)))))
    rules = subprocess.run(["iptables", "-S"], capture_output=True, text=True).stdout
    taken = sorted(c for c in chains if f"-N {c}" in rules.splitlines())
    if taken:
        findings.append((False, _("host mode: the chain(s) {chains} already exist; lesson 1 will refuse to create "
                                  "them. Delete them with `iptables -X` if they are leftovers.").format(
            chains=", ".join(taken))))
    if "-P FORWARD DROP" in rules.splitlines():
        docker = _(" (Docker sets it)") if "-N DOCKER" in rules else ""
        findings.append((False, _("host mode: the FORWARD policy is DROP{docker}. With br_netfilter loaded, "
                                  "bridged traffic passes FORWARD too, so lesson 4 (netns0 <-> netns1 over br0) and "
                                  "lesson 6 (to the internet) fail. Allow the lab's bridge first, e.g. "
                                  "`iptables -I DOCKER-USER -i br0 -j ACCEPT` and "
                                  "`iptables -I DOCKER-USER -o br0 -j ACCEPT` (or the FORWARD chain without "
                                  "Docker), or use the sandbox, which Docker does not affect.").format(docker=docker)))
    return findings


# The kernel's modules a lab uses (built in, or loaded); br_netfilter is optional (lesson 6 says what it changes).
MODULES = ("bridge", "veth", "nf_nat", "nf_conntrack", "br_netfilter")


def _try_lab(*, user: bool = False) -> tuple[bool, str]:
    """What a lab needs, tried in a scratch network and mount namespace that go with the
    process (for an ordinary `user`, in a user namespace of their own, as their labs are):
    a namespace pinned by a bind mount (as a lab keeps its namespaces), a veth
    pair brought up with an address, a bridge, and iptables adding a rule and a MASQUERADE
    (the kernel's bridge, veth, nf_nat and nf_conntrack at work). With `ip`,
    not netstep's own netlink client: doctor runs where netstep may not (pyroute2, its
    netlink library, takes ~0.1 s to load; whether it is installed is checked apart)."""
    script = ("mount -t tmpfs netstep-doctor /run && touch /run/ns && mount --bind /proc/self/ns/net /run/ns && "
              "ip link add doctor0 type veth peer name doctor1 && ip link set doctor0 up && "
              "ip addr add 192.0.2.1/24 dev doctor0 && ip link add doctor2 type bridge && "
              "iptables -w -A FORWARD -i doctor0 -j ACCEPT && "
              "iptables -w -t nat -A POSTROUTING -s 192.0.2.0/24 -o doctor0 -j MASQUERADE && iptables -w -S FORWARD")
    try:
        result = subprocess.run(["unshare", *(["--user", "--map-root-user"] if user else []), "--net", "--mount",
                                 "--propagation", "private", "--", "sh", "-ec", script],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, _("a scratch namespace could not be made: {error}").format(error=exc)
    if result.returncode != 0 or "doctor0" not in result.stdout:
        return False, _("namespaces, their bind mounts, veth pairs, bridges or iptables (its nat table) do not work "
                        "here: {error}. Where a kernel module is missing, root loads it once: "
                        "`modprobe -a {modules}`, and lists them in /etc/modules-load.d/netstep.conf "
                        "to load them at boot").format(error=result.stderr.strip(), modules=" ".join(MODULES))
    if user:
        return True, _("a user namespace of your own: a scratch namespace, pinned by a bind mount, with a veth pair, "
                       "an address, a bridge, an iptables rule and a MASQUERADE worked (and is gone)")
    return True, _("a scratch namespace, pinned by a bind mount, with a veth pair, an address, a bridge, an "
                   "iptables rule and a MASQUERADE worked (and is gone)")


def _library() -> tuple[bool, str]:
    """Whether pyroute2 is installed, found without importing it."""
    found = importlib.util.find_spec("pyroute2") is not None
    return found, (_("pyroute2, netstep's netlink library, is installed") if found else
                   _("pyroute2 is missing: install netstep with pip (`pip install -e .`), which brings it"))
