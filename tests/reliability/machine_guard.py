"""Promise 6: a closer look at the machine's own namespace than tests/conftest.py's guard.

`machine_state()` reads, in the namespace this process runs in: every link with its kind,
flags, master and MTU; IPv4 and IPv6 addresses; the routes of every table (IPv4 and
IPv6); the policy-routing rules; iptables and ip6tables rules (counters stripped); every
readable sysctl under /proc/sys/net (a few counters left out); the namespaces `ip netns
list` shows and the mounts under /run/netns; and mounts under /run/netstep. tests/
reliability/conftest.py compares it before and after the session;
test_machine_guard.py proves, inside `unshare --net --mount`, that it sees each kind of
change. Lifetimes, counters, timers and states that follow carrier and duplicate address detection
(linkdown, tentative) are normalised away.
"""

from __future__ import annotations

import os
import re
import subprocess

# Values the kernel changes by itself, whoever runs.
DYNAMIC_SYSCTLS = re.compile(r"nf_conntrack_count$|/stable_secret$|/base_reachable_time(_ms)?$")


def _run(argv: list[str]) -> list[str]:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [f"<{' '.join(argv)} could not run: {exc}>"]
    if result.returncode != 0:
        return [f"<{' '.join(argv)}: exit {result.returncode}: {result.stderr.strip()[:200]}>"]
    return result.stdout.splitlines()


def _links() -> list[str]:
    out = []
    for line in _run(["ip", "-d", "-o", "link", "show"]):
        line = re.sub(r"\\\s+", " ", line)
        m = re.match(r"\d+: (\S+?)(@\S+)?: <([^>]*)> mtu (\d+)", line)
        if not m:
            out.append(line)
            continue
        master = re.search(r" master (\S+)", line)
        kind = re.search(r"\s(veth|bridge|dummy|vxlan|macvlan|ipvlan|tun|bond|vlan|ifb|wireguard|gre\w*|ipip|sit)"
                         r"\b", line.split(" link/", 1)[-1])
        flags = ",".join(sorted(set(m.group(3).split(",")) - {"LOWER_UP", "NO-CARRIER", "DORMANT"}))
        out.append(f"{m.group(1)} {kind.group(1) if kind else '-'} <{flags}> mtu {m.group(4)} "
                   f"master {master.group(1) if master else '-'}")
    return sorted(out)


def _addresses(family: str) -> list[str]:
    out = []
    for line in _run(["ip", "-o", family, "addr", "show"]):
        line = re.sub(r"\\\s+", " ", line)
        line = re.sub(r"\b(valid_lft|preferred_lft)\s+\S+|\btentative\b", "", line)
        line = re.sub(r"^\d+:\s+", "", line)
        out.append(" ".join(line.split()))
    return sorted(out)


def _routes(family: str) -> list[str]:
    lines = _run(["ip", family, "route", "show", "table", "all"])
    return [" ".join(re.sub(r"\b(expires|age)\s+\S+|\blinkdown\b", "", line).split())
            for line in lines if "cache" not in line]


def _rules(tool: str) -> list[str]:
    out = []
    for line in _run([tool]):
        if line.startswith("#"):
            continue
        out.append(re.sub(r"\[\d+:\d+\]", "", line).strip())
    return out


def _sysctls() -> dict[str, str]:
    values = {}
    for root, _dirs, files in os.walk("/proc/sys/net"):
        for name in files:
            path = os.path.join(root, name)
            if DYNAMIC_SYSCTLS.search(path):
                continue
            try:
                with open(path) as f:
                    values[path[len("/proc/sys/"):].replace("/", ".")] = " ".join(f.read().split())
            except OSError:
                continue  # write-only (flush) or unreadable here
    return values


def _mounts(prefix: str) -> list[str]:
    found = []
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if fields[1] == prefix or fields[1].startswith(prefix + "/"):
                    found.append(f"{fields[2]} {fields[1]}")
    except OSError as exc:
        found.append(f"<{exc}>")
    return sorted(found)


def machine_state(netstep_marker: str | None = None) -> dict[str, object]:
    """The state of the namespace this process runs in. `netstep_marker` limits the
    /run/netstep mounts compared to those whose path contains it (this session's labs)."""
    netstep_mounts = _mounts("/run/netstep")
    if netstep_marker is not None:
        netstep_mounts = [m for m in netstep_mounts if netstep_marker in m]
    return {
        "links": _links(),
        "IPv4 addresses": _addresses("-4"),
        "IPv6 addresses": _addresses("-6"),
        "IPv4 routes (all tables)": _routes("-4"),
        "IPv6 routes (all tables)": _routes("-6"),
        "IPv4 rules": _run(["ip", "-4", "rule", "show"]),
        "IPv6 rules": _run(["ip", "-6", "rule", "show"]),
        "iptables": _rules("iptables-save"),
        "ip6tables": _rules("ip6tables-save"),
        "sysctls": _sysctls(),
        "ip netns list": sorted(_run(["ip", "netns", "list"])),
        "mounts under /run/netns": _mounts("/run/netns"),
        "mounts under /run/netstep": netstep_mounts,
    }


def differences(before: dict, after: dict) -> dict[str, object]:
    """What changed, part by part: lists give what is gone and what is new (or both whole
    lists when only the order changed); sysctls give key -> (before, after). Sysctl keys
    that appear or vanish are left out: they come with kernel modules loaded on demand
    (nf_conntrack for a NAT rule in a lab, say) or with devices, which `links` compares."""
    changed: dict[str, object] = {}
    for key, a in before.items():
        b = after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diff = {k: (a[k], b[k]) for k in sorted(set(a) & set(b)) if a[k] != b[k]}
            if diff:
                changed[key] = diff
        elif a != b:
            if isinstance(a, list) and isinstance(b, list) and set(a) != set(b):
                changed[key] = {"gone": [x for x in a if x not in b], "new": [x for x in b if x not in a]}
            else:
                changed[key] = (a, b)
    return changed
