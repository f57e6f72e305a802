"""Every step's diff is exactly what changed in the kernel.

The whole course is walked step by step. Around each step every namespace of the lab is
read from outside netstep (`ip -j -d link` with each link's MTU and a bridge port's
hairpin, `ip -j addr`, `ip -j route`, `iptables-save` and the sysctls, through nsenter),
and the changes found there must be the changes the step's diff lists: nothing missing,
nothing extra. A step that changes nothing must say so.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from support import needs_root, real_lesson_files, unique_name

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course
from netstep.state.reader import WATCHED_SYSCTLS
from netstep.state.snapshot import to_json

pytestmark = [
    needs_root,
    pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/"),
]

BUILTIN = {"filter": {"INPUT", "FORWARD", "OUTPUT"}, "nat": {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
           "mangle": {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}, "raw": {"PREROUTING", "OUTPUT"},
           "security": {"INPUT", "FORWARD", "OUTPUT"}}
PART_NAMES = {"links": "devices"}


def _in(path: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={path}", "--", *argv], check=True, capture_output=True,
                          text=True).stdout


def _rules(text: str) -> dict[str, str]:
    """iptables-save as "TABLE -A CHAIN ..." keys; a table with nothing but ACCEPT policies is
    as good as absent (iptables-nft keeps a table once touched)."""
    out: dict[str, str] = {}
    table, lines = "", []
    for raw in [*text.splitlines(), "*end"]:
        line = raw.strip()
        if line.startswith("*"):
            out.update({f"{table} {x}": f"{table} {x}" for x in lines})
            table, lines = line[1:], []
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            if chain not in BUILTIN.get(table, set()):
                lines.append(f"-N {chain}")
            elif policy != "ACCEPT":
                lines.append(f"-P {chain} {policy}")
        elif line.startswith("-"):
            lines.append(line)
    return out


def read_namespace(path: str, sysctls: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """One namespace as {part: {key: value}}, read with iproute2 and iptables-save."""
    links = json.loads(_in(path, "ip", "-j", "-d", "link", "show"))
    devices = {}
    for link in links:
        peer = link.get("link") or (f"#{link.get('link_index')}@{link.get('link_netnsid')}"
                                    if "link_index" in link else "")
        info = link.get("linkinfo", {})
        hairpin = info.get("info_slave_data", {}).get("hairpin", False) if info.get("info_slave_kind") == "bridge" \
            else False
        bridged = info.get("info_data", {}).get("nf_call_iptables", 0) if info.get("info_kind") == "bridge" else 0
        devices[link["ifname"]] = " ".join(map(str, (
            info.get("info_kind", "loopback" if link["ifname"] == "lo" else "ether"),
            "UP" in link["flags"], link.get("master", ""), peer, f"mtu {link['mtu']}", f"hairpin {hairpin}",
            f"nf_call_iptables {bridged}")))
    addresses = {}
    for link in json.loads(_in(path, "ip", "-j", "addr", "show")):
        for a in link.get("addr_info", []):
            if a["family"] == "inet":
                key = f"{link['ifname']} {a['local']}/{a['prefixlen']}"
                addresses[key] = key
    routes = {}
    for r in json.loads(_in(path, "ip", "-j", "route", "show", "table", "main")):
        key = " ".join(x for x in (r["dst"], f"via {r['gateway']}" if "gateway" in r else "",
                                   f"dev {r['dev']}" if "dev" in r else "") if x)
        routes[key] = "linkdown" if "linkdown" in r.get("flags", []) else ""
    values = {}
    for key in sysctls:
        file = "/proc/sys/" + key.replace(".", "/")
        text = _in(path, "sh", "-c", f"cat {file} 2>/dev/null || true").strip()
        if text:
            values[key] = text
    return {"devices": devices, "addresses": addresses, "routes": routes,
            "rules": _rules(_in(path, "iptables-save")), "sysctls": values}


def read_lab(lab: Lab, sysctls: tuple[str, ...]) -> dict[str, dict]:
    paths = {"host": lab.path_of("host"), "upstream": lab.path_of("upstream")}
    if os.path.isdir(lab.netns_dir):
        paths.update({n: os.path.join(lab.netns_dir, n) for n in os.listdir(lab.netns_dir)})
    return {ns: read_namespace(p, sysctls) for ns, p in paths.items() if p and os.path.exists(p)}


def changes(before: dict, after: dict) -> set[tuple[str, str, str, str]]:
    """(namespace, part, +|-|~, key) for everything that differs, read independently."""
    out = set()
    for ns in set(before) | set(after):
        a, b = before.get(ns), after.get(ns)
        if a is None or b is None:
            out.add((ns, "namespace", "+" if a is None else "-", ns))
        a, b = a or {}, b or {}
        for part in ("devices", "addresses", "routes", "rules", "sysctls"):
            pa, pb = a.get(part, {}), b.get(part, {})
            out |= {(ns, part, "+", k) for k in pb.keys() - pa.keys()}
            out |= {(ns, part, "-", k) for k in pa.keys() - pb.keys()}
            out |= {(ns, part, "~", k) for k in pa.keys() & pb.keys() if pa[k] != pb[k]}
    return out


def _route_key(line: str) -> str:
    words = line.split()
    out = [words[0]]
    for word in ("via", "dev"):
        if word in words:
            out.append(f"{word} {words[words.index(word) + 1]}")
    return " ".join(out)


def _key(part: str, entry: str) -> str:
    if part == "links":
        return entry.split(": ", 1)[0]
    if part == "sysctls":
        return entry.split(" = ", 1)[0]
    if part == "routes":
        return _route_key(entry)
    return entry


def listed(diff) -> set[tuple[str, str, str, str]]:
    """The same tuples, from what netstep's diff of the step lists."""
    out = set()
    for ns in diff.namespaces:
        if ns.status != "changed":
            out.add((ns.name, "namespace", "+" if ns.status == "added" else "-", ns.name))
        for part in ns.parts:
            name = PART_NAMES.get(part.part, part.part)
            added = {_key(part.part, e) for e in part.added}
            removed = {_key(part.part, e) for e in part.removed}
            out |= {(ns.name, name, "~", k) for k in added & removed}  # a route that only turned linkdown
            out |= {(ns.name, name, "+", k) for k in added - removed}
            out |= {(ns.name, name, "-", k) for k in removed - added}
            out |= {(ns.name, name, "~", _key(part.part, old)) for old, _ in part.changed}
    return out


def watched(course: Course) -> tuple[str, ...]:
    """Which sysctls a diff covers is netstep's choice; their values are read here independently."""
    return tuple(dict.fromkeys((*WATCHED_SYSCTLS, *(a.key for s in course.steps for a in s.actions
                                                    if hasattr(a, "key")))))


def next_step_diffed(engine: Engine, lab: Lab, sysctls: tuple[str, ...]):
    """Apply the next step: (its result, the changes read from outside, the changes its diff lists)."""
    before = read_lab(lab, sysctls)
    result = engine.apply_next(run_checks=False, show=False)
    return result, changes(before, read_lab(lab, sysctls)), listed(result.diff)


def test_every_step_of_the_course_diffs_exactly_what_the_kernel_shows():
    course = Course.load()
    sysctls = watched(course)
    lab = Lab(unique_name("exact"))
    lab.lock()
    try:
        engine = Engine(lab, course)
        wrong = []
        quiet = 0
        for step in course.steps:
            result, seen, shown = next_step_diffed(engine, lab, sysctls)
            if seen != shown:
                wrong.append((step.ref, step.title, sorted(seen - shown), sorted(shown - seen)))
            if not seen:
                quiet += 1
                assert not result.diff, step.ref
        assert not wrong, "\n".join(f"{ref} {title}: missing {miss}, extra {extra}" for ref, title, miss, extra
                                    in wrong)
        assert quiet >= 3  # steps that only look (1.3, 2.6, ...) change nothing and say so
    finally:
        lab.destroy()
        lab.close()


@pytest.mark.parametrize("there, back", [(13, None), (20, 9)])
def test_steps_after_a_skip_diff_exactly_what_the_kernel_shows(there, back):
    """`skip_to` (run's way to a lesson's start) reads nothing on the way: the steps after
    it, forward and after a skip back, must still diff exactly what the kernel shows."""
    course = Course.load()
    sysctls = watched(course)
    lab = Lab(unique_name("skip"))
    lab.lock()
    try:
        engine = Engine(lab, course)
        engine.apply_next(run_checks=False, show=False)  # a move that read the lab: known state to go stale
        engine.skip_to(there)
        if back is not None:
            engine.skip_to(back)
        assert engine.position == (back if back is not None else there)
        # The invariant the next diffs rest on: what is known is what the lab holds.
        assert to_json(engine.moments.last()) == to_json(engine.moments.read())
        engine.persist()
        assert os.path.exists(lab.last_snapshot_path)
        assert to_json(Engine(lab, course).moments.last()) == to_json(engine.moments.read())  # (last.json)
        for _ in range(3):
            result, seen, shown = next_step_diffed(engine, lab, sysctls)
            assert seen == shown, result.step.ref
    finally:
        lab.destroy()
        lab.close()
