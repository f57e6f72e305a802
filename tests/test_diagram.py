"""The lab's diagram: its model matches the kernel, its marks are the step's diff, its
DOT is stable, its SVG is valid, and a trace's drawn path is its hops.

The pure tests need no root: a snapshot kept in tests/diagram/ (the lab after lesson 7,
read from the kernel once) goes in, and exact DOT comes out. The course walk reads every
namespace from outside netstep (`ip -j`, `iptables-save`, as tests/test_exact_diffs.py
does) after every step and holds the diagram to it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from support import needs_root, real_lesson_files
from test_exact_diffs import _key, changes, read_lab, watched

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.course.course import Course
from netstep.present.diagram import NO_DOT, DrawingUnavailable, Picture, dot, svg, text_lines, trace_diagram
from netstep.state.diagram import lab_diagram, stop_of, traced
from netstep.state.evidence import RouteLookup
from netstep.state.paths import Hop
from netstep.state.paths import Path as PacketPath
from netstep.state.snapshot import Link, from_json

HERE = Path(__file__).parent / "diagram"
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot (apt install graphviz)")


def lesson7():
    return from_json(json.loads((HERE / "lab-after-lesson7.json").read_text()))


def a_step_before(after):
    """The same lab before an imagined step that published port 5005, took the bridge's
    address, and removed a veth `old0` and the namespace `netns2`."""
    host = after["host"]
    host_before = replace(host, rules=tuple(r for r in host.rules if "DNAT" not in r),
                          addresses=tuple(a for a in host.addresses if not a.startswith("br0")),
                          links=(*host.links, Link("old0", "veth", False, peer="old1")),
                          sysctls=tuple((k, "0" if k == "net.ipv4.ip_forward" else v) for k, v in host.sysctls))
    gone = replace(after["netns1"], name="netns2", links=(after["netns1"].links[0],), addresses=(), routes=())
    return replace(after, namespaces={**after.namespaces, "host": host_before, "netns2": gone})


# -- pure: no root, no kernel -------------------------------------------------------------------


def test_a_fixed_snapshot_gives_exactly_the_same_dot():
    after = lesson7()
    drawn = dot(lab_diagram(after, a_step_before(after), title="after step 7.5", internet="203.0.113.8"))
    assert drawn == (HERE / "lab-after-lesson7.dot").read_text()


def test_the_marks_are_the_changes_and_what_went_is_still_drawn():
    after = lesson7()
    diagram = lab_diagram(after, a_step_before(after), internet="203.0.113.8")
    dnat = [r for r in after["host"].rules if "DNAT" in r]
    assert diagram.marks() == {
        *(("host", "rules", "+", r) for r in dnat),
        ("host", "addresses", "+", "br0 172.18.0.1/16"),
        ("host", "links", "-", "old0: veth DOWN peer old1"),
        ("host", "sysctls", "~", "net.ipv4.ip_forward = 1"),
        ("netns2", "namespace", "-", "netns2"),
        *(("netns2", part, "-", entry) for part, entry in
          [("links", "lo: loopback UP"), ("sysctls", "net.ipv4.ip_forward = 0"),
           ("sysctls", "net.bridge.bridge-nf-call-iptables = 1"), ("sysctls", "net.ipv4.conf.all.rp_filter = 0")]),
    }
    text = text_lines(diagram)
    assert "    iptables + DNAT 10.0.2.15:5005 → 172.18.0.10:5000 (arriving)" in text
    assert "    - old0 DOWN" in text and "- netns2 (container)" in text
    assert [b.ns for b in diagram.boxes] == ["upstream", "host", "netns0", "netns1", "netns2"]


def test_placement_comes_from_ranks_and_names_not_from_what_changed():
    """A container added keeps the others in their places: same ranks, same order."""
    after = lesson7()
    without = replace(after, namespaces={k: v for k, v in after.namespaces.items() if k != "netns1"})
    one, two = dot(lab_diagram(without)), dot(lab_diagram(after, without))
    assert '{ rank=same; "netns0"; }' in one
    assert '{ rank=same; "netns0"; "netns1"; }' in two and '"netns0" -> "netns1" [style=invis];' in two
    assert '{ rank=same; "upstream"; }' in two and '{ rank=same; "host"; }' in two


def with_a_second_bridge(after):
    """Lesson 10's lab: beside br0, a bridge br1 with no address, its ports vnet0 and vnet1
    cabled to two machines' namespaces, vm0 and vm1."""
    host = after["host"]
    host = replace(host, links=(*host.links, Link("br1", "bridge", True),
                                *(Link(f"vnet{i}", "veth", True, master="br1", peer=f"eth0@vm{i}") for i in (0, 1))))
    vms = {f"vm{i}": replace(after["netns0"], name=f"vm{i}", routes=(), sysctls=(),
                             links=(Link("lo", "loopback", True), Link("eth0", "veth", True, peer=f"vnet{i}@host")),
                             addresses=("lo 127.0.0.1/8", f"eth0 10.1.0.{10 + i}/24")) for i in (0, 1)}
    return replace(after, namespaces={**after.namespaces, "host": host, **vms})


def test_a_second_bridge_is_drawn_as_a_bridge_with_its_ports_in_dot_and_in_text():
    from netstep.present.topology import Topology

    after = with_a_second_bridge(lesson7())
    diagram = lab_diagram(after, lesson7(), internet="203.0.113.8")
    host = diagram.box("host")
    assert host.device("br0").ports == ("veth0", "veth1") and host.device("br1").ports == ("vnet0", "vnet1")
    assert {(c.a, c.b, c.mark) for c in diagram.cables if c.b[0].startswith("vm")} == {
        (("host", "vnet0"), ("vm0", "eth0"), "+"), (("host", "vnet1"), ("vm1", "eth0"), "+")}
    assert [b.ns for b in diagram.boxes] == ["upstream", "host", "netns0", "netns1", "vm0", "vm1"]
    drawn = dot(diagram)
    ports = {(box.ns, d.name): f"p{i}" for box in diagram.boxes for i, d in enumerate(box.devices)}
    for bridge, members in (("br0", ("veth0", "veth1")), ("br1", ("vnet0", "vnet1"))):
        cells = "".join(f'<TD PORT="{ports[("host", m)]}"[^>]*>(<FONT[^>]*>[+] )?{m}(</FONT>)?</TD>' for m in members)
        assert re.search(f'<TD COLSPAN="2" PORT="{ports[("host", bridge)]}">(<FONT[^>]*>[+] )?{bridge} bridge'
                         f"[^<]*(</FONT>)?</TD></TR><TR>{cells}</TR></TABLE>", drawn), bridge  # over its ports
    for i in (0, 1):  # each port's cable leaves the bottom of the host's box for the top of its machine's
        assert f'"host":{ports[("host", f"vnet{i}")]}:s -> "vm{i}":{ports[(f"vm{i}", "eth0")]}:n' in drawn
    assert '{ rank=same; "netns0"; "netns1"; "vm0"; "vm1"; }' in drawn
    for width in (40, 72):
        text = Topology(diagram).render(width).plain
        assert "br0 bridge 172.18.0.1/16" in text and "ports veth0 veth1" in text
        assert "br1 bridge" in text and "ports vnet0 vnet1" in text, text
        assert "vm0" in text and "vm1" in text and "10.1.0.11/24" in text, text
        assert max(len(line) for line in text.splitlines()) <= width
    assert "⇄ vnet1@host" in Topology(diagram).render(40).plain  # in the row below the lines, said in words
    if shutil.which("dot"):  # every cable ends at a cell dot knows: no warning
        laid = subprocess.run(["dot", "-Tsvg"], input=drawn, capture_output=True, text=True, check=True)
        assert not laid.stderr, laid.stderr


def a_path():
    """netns0 to the internet host and back, as paths.walk gives it."""
    def hop(ns, arrived, dev, action):
        return Hop(ns, arrived, RouteLookup(ns, "203.0.113.8", dev=dev), action)

    there = PacketPath("netns0", "172.18.0.10", "203.0.113.8", (
        hop("netns0", None, "ceth0", "sent"), hop("host", "br0", "eth0", "forwarded"),
        hop("upstream", "eth0", "lo", "delivered")))
    back = PacketPath("upstream", "203.0.113.8", "172.18.0.10", (
        hop("upstream", None, "eth0", "sent"), hop("host", "eth0", "br0", "forwarded"),
        hop("netns0", "ceth0", "lo", "delivered")))
    return there, back


def test_a_path_is_drawn_leg_by_leg_along_the_cables_it_took():
    there, back = a_path()
    stop = stop_of(there, back, True, "upstream", "answered")
    diagram = traced(lab_diagram(lesson7()), there, back, stop)
    legs = [(leg.number, leg.start, leg.end, leg.reply) for leg in diagram.legs]
    assert legs == [(1, ("netns0", "ceth0"), ("host", "veth0"), False),
                    (2, ("host", "eth0"), ("upstream", "eth0"), False),
                    (3, ("upstream", "eth0"), ("host", "eth0"), True),
                    (4, ("host", "veth0"), ("netns0", "ceth0"), True)]
    drawn = dot(diagram)
    assert drawn.index('id="leg1"') < drawn.index('id="leg2"') < drawn.index('id="leg3"') < drawn.index('id="leg4"')
    assert "✔ answered by upstream (203.0.113.8)" in drawn
    lost = traced(lab_diagram(lesson7()), PacketPath("netns0", "", "", there.hops[:2]), None,
                  stop_of(there, None, False, "host", "host does not forward packets: net.ipv4.ip_forward = 0"))
    assert [leg.number for leg in lost.legs] == [1] and lost.stop.text.startswith("✘ host does not forward")


def test_without_dot_the_lab_is_text_and_one_line_says_how_to_get_pictures(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no dot on it
    diagram = lab_diagram(lesson7(), title="after step 7.5")
    with pytest.raises(DrawingUnavailable, match="apt install graphviz"):
        svg(diagram)
    shown = Picture(diagram).html()
    assert shown.count(NO_DOT.split(":")[0]) == 1 and "<pre>" in shown and "ceth0  172.18.0.10/16" in shown
    assert "<svg" not in shown


@needs_dot
def test_the_svg_is_valid_with_a_title_first_and_text_that_stays_text():
    drawn = svg(lab_diagram(lesson7(), title="after step 7.5: publish"))
    root = ET.fromstring(drawn)
    assert root.tag == f"{SVG}svg" and root.get("class") == "netstep-diagram"
    assert root[0].tag == f"{SVG}title" and root[0].text == "after step 7.5: publish"
    assert root[1].tag == f"{SVG}desc" and "ceth0  172.18.0.10/16" in root[1].text
    words = {" ".join((t.text or "").split()) for t in root.iter(f"{SVG}text")}  # (dot writes nbsp for "  ")
    assert {"netns0", "172.18.0.10/16", "br0 bridge 172.18.0.1/16"} <= words


def a_path_without_dot(folder: Path) -> str:
    """A PATH holding every command this machine's PATH holds but Graphviz's `dot`."""
    import os

    folder.mkdir()
    for where in os.environ["PATH"].split(os.pathsep):
        for command in Path(where).glob("*") if Path(where).is_dir() else ():
            if command.name != "dot" and not (folder / command.name).exists() and os.access(command, os.X_OK):
                (folder / command.name).symlink_to(command)
    return str(folder)


@needs_root
def test_inspect_svg_without_dot_says_how_to_get_pictures_and_draws_the_lab_as_text(cli_lab, tmp_path):
    """A machine without Graphviz's `dot`: `inspect --svg FILE` writes no file, says in one
    line how to get the pictures, draws the lab as text instead, and succeeds."""
    import os

    from support import CLI_ENV, netstep_cli

    path = a_path_without_dot(tmp_path / "bin")
    assert shutil.which("dot", path=path) is None and shutil.which("ip", path=path) is not None
    out = tmp_path / "lab.svg"
    result = netstep_cli(cli_lab, "inspect", "--svg", str(out), env={**CLI_ENV, "PATH": path})
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stdout.splitlines() if "graphviz" in line.lower()]
    assert said == [NO_DOT], result.stdout  # one line, and it says how
    assert "apt install graphviz" in said[0]
    picture = result.stdout[result.stdout.index(NO_DOT):]
    assert "upstream · router" in picture and "┌─ host" in picture and "eth0 ⇄ eth0" in picture, picture
    assert "Traceback" not in result.stderr and not os.path.exists(out)


# -- the course, on the kernel ------------------------------------------------------------------


def _read_ports(reading: dict) -> set[tuple[str, str, str]]:
    out = set()
    for ns, parts in reading.items():
        for dev, text in parts["devices"].items():
            master = text.split(" ")[2]  # "kind up master peer"
            if master:
                out.add((ns, dev, master))
    return out


def _model(diagram) -> dict[str, set]:
    boxes = [b for b in diagram.boxes if b.mark != "-"]
    devices = [(b, d) for b in boxes for d in b.devices if d.item.mark != "-"]
    return {
        "namespaces": {b.ns for b in boxes},
        "devices": {(b.ns, d.name) for b, d in devices},
        "addresses": {(b.ns, a.entry) for b, d in devices for a in d.addresses if a.mark != "-"},
        "ports": {(b.ns, port, d.name) for b, d in devices for port in d.ports},
    }


def _marks(diagram) -> set[tuple[str, str, str, str]]:
    """The diagram's marks in the shape test_exact_diffs.changes gives (a route turned
    linkdown is a removed and an added line: one change, as there)."""
    parts = {"links": "devices"}
    plus = {(ns, part, _key(part, e)) for ns, part, sign, e in diagram.marks() if sign == "+"}
    minus = {(ns, part, _key(part, e)) for ns, part, sign, e in diagram.marks() if sign == "-"}
    out = {(ns, parts.get(p, p), "~", k) for ns, p, k in plus & minus}
    out |= {(ns, parts.get(p, p), "+", k) for ns, p, k in plus - minus}
    out |= {(ns, parts.get(p, p), "-", k) for ns, p, k in minus - plus}
    out |= {(ns, parts.get(p, p), "~", _key(p, e)) for ns, p, sign, e in diagram.marks() if sign == "~"}
    return out


@needs_root
@needs_dot
@pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons in lessons/")
def test_every_step_of_the_course_is_drawn_as_the_kernel_has_it(lab):
    course = Course.load()
    sysctls = watched(course)
    engine = Engine(lab, course)
    wrong = []
    reading = read_lab(lab, sysctls)
    drawn_servers: set[tuple[str, str]] = set()
    for step in course.steps:
        before = engine.moments.last()
        result = engine.apply_next(run_checks=False, show=False)
        after = read_lab(lab, sysctls)
        diagram = lab_diagram(engine.moments.last(), before, change=result.diff, internet=lab.internet,
                              title=f"after step {step.ref}", servers=engine.servers())
        model = {**_model(diagram), "servers": {(box.ns, s.split()[1]) for box in diagram.boxes for s in box.servers}}
        seen = {
            "namespaces": set(after),
            "devices": {(ns, dev) for ns, parts in after.items() for dev in parts["devices"]},
            "addresses": {(ns, a) for ns, parts in after.items() for a in parts["addresses"]},
            "ports": _read_ports(after),
            "servers": {(ns, local) for ns in after for local in _listening(lab, ns)},
        }
        drawn_servers |= model["servers"]
        wrong += [f"{step.ref} {part}: missing {seen[part] - model[part]}, extra {model[part] - seen[part]}"
                  for part in seen if model[part] != seen[part]]
        veths = sum(1 for parts in after.values() for text in parts["devices"].values() if text.startswith("veth "))
        assert veths == 2 * len([c for c in diagram.cables if c.mark != "-"]), step.ref
        expected, marked = changes(reading, after), _marks(diagram)
        if marked != expected:
            wrong.append(f"{step.ref} marks: missing {expected - marked}, extra {marked - expected}")
        laid = subprocess.run(["dot", "-Tsvg"], input=dot(diagram), capture_output=True, text=True, check=True)
        if laid.stderr:  # (a port named but not drawn, say: the cable would end anywhere)
            wrong.append(f"{step.ref} dot warns: {laid.stderr.strip()}")
        root = ET.fromstring(svg(diagram))  # valid XML, every step
        assert root[0].text == f"after step {step.ref}"
        reading = after
    assert not wrong, "\n".join(wrong)
    # lesson 7's server, lesson 12's two in one namespace (a pod), lesson 13's resolvers
    assert {("netns0", "172.18.0.10:5000"), ("netns0", "127.0.0.1:6000"), ("upstream", "10.0.2.2:53"),
            ("host", "127.0.0.53:53")} <= drawn_servers, drawn_servers


def _listening(lab: Lab, ns: str) -> set[str]:
    """ADDRESS:PORT of every listening TCP and bound UDP socket in `ns`, as `ss` reads them
    (lessons 12 and 13 start servers: two in one namespace, DNS servers on UDP port 53)."""
    shown = subprocess.run(["nsenter", f"--net={lab.path_of(ns)}", "ss", "-H", "-l", "-t", "-u", "-n"],
                           capture_output=True, text=True, check=True, timeout=30).stdout
    return {line.split()[4] for line in shown.splitlines() if len(line.split()) > 4}


@needs_root
@needs_dot
def test_a_real_trace_is_drawn_along_its_hops(cli_lab, tmp_path):
    """Lesson 6 done: netns0 reaches the internet host and the reply comes back: each pair
    of hops is one numbered leg, there then back, ending at the namespace that answered."""
    from support import netstep_cli

    name = cli_lab
    assert netstep_cli(name, "run", "masquerade", "--yes").returncode == 0
    lab = Lab(name)
    lab.lock()
    try:
        found = Engine(lab).trace("netns0", "internet")
        diagram = trace_diagram(found, lab.internet)
    finally:
        lab.close()
    assert found.reachable and found.reply is not None
    pairs = [(a, b, path is found.reply) for path in (found.forward, found.reply) for a, b in pairwise(path.hops)]
    assert len(pairs) == 4 and len(diagram.legs) == len(pairs)  # netns0, host, upstream, and back
    for number, (leg, (a, b, back)) in enumerate(zip(diagram.legs, pairs, strict=True), 1):
        left, came = diagram.box(a.ns).device(a.lookup.dev), diagram.box(b.ns).device(b.arrived_on)
        assert leg.number == number and leg.reply == back, leg
        assert leg.start[0] == a.ns and leg.start[1] in (left.name, *left.ports), (leg, a)
        assert leg.end[0] == b.ns and leg.end[1] in (came.name, *came.ports), (leg, b)
    out = tmp_path / "trace.svg"
    result = netstep_cli(name, "trace", "netns0", "internet", "--svg", str(out))
    assert result.returncode == 0, result.stderr
    root = ET.parse(out).getroot()
    edges = {g.get("id") for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("leg")}
    assert edges == {f"leg{n}" for n in range(1, len(pairs) + 1)}  # (in the order dot writes them)
    inspected = tmp_path / "lab.svg"
    assert netstep_cli(name, "inspect", "--svg", str(inspected)).returncode == 0
    assert ET.parse(inspected).getroot()[0].text == f"lab '{name}'"


@needs_root
def test_a_tap_device_is_drawn_as_one_whose_other_end_is_a_program(cli_lab, tmp_path):
    """A TAP device (what slirp4netns or a VM's emulator holds) made by hand in netns0 is
    drawn as a TAP with a program at its other end, in the picture and in text, as
    `ip -d -j link` reads it; a TUN device likewise."""
    from support import netstep_cli

    from netstep.core.lab import Lab

    assert netstep_cli(cli_lab, "run", "lesson2", "--yes").returncode == 0
    where = ["nsenter", f"--net={Lab(cli_lab).registry.path_of('netns0')}", "--"]
    for name, mode in (("tap0", "tap"), ("tun0", "tun")):
        subprocess.run([*where, "ip", "tuntap", "add", name, "mode", mode], check=True)
    read = json.loads(subprocess.run([*where, "ip", "-d", "-j", "link"], check=True, capture_output=True,
                                     text=True).stdout)
    kinds = {link["ifname"]: link["linkinfo"]["info_data"]["type"] for link in read
             if link.get("linkinfo", {}).get("info_kind") == "tun"}
    assert kinds == {"tap0": "tap", "tun0": "tun"}
    out = tmp_path / "lab.svg"
    result = netstep_cli(cli_lab, "inspect", "--svg", str(out))
    assert result.returncode == 0, result.stderr
    drawn = out.read_text()
    text = netstep_cli(cli_lab, "inspect", "netns0").stdout
    for name, kind in kinds.items():
        assert f"{name} {kind.upper()} ⇄ a program" in drawn.replace("&#160;", " "), drawn[-3000:]
        assert f"{name}: {kind} DOWN" in text, text
    # The lab follows the student: the next move takes both devices away, and says so.
    moved = netstep_cli(cli_lab, "back")
    assert moved.returncode == 0, moved.stderr
    assert "ip link delete tap0" in moved.stdout and "ip link delete tun0" in moved.stdout, moved.stdout
    left = json.loads(subprocess.run([*where, "ip", "-j", "link"], check=True, capture_output=True, text=True).stdout)
    assert not {link["ifname"] for link in left} & set(kinds)
