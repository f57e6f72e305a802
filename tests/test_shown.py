"""What a step shows is what the kernel holds: the engine takes the configuration from its
last move and reads only the caches a show names, and that must equal a fresh reading."""

from __future__ import annotations

import io

from rich.console import Console
from support import needs_root

from netstep.core.engine import Engine
from netstep.present.views import renderable
from netstep.state.diff import diff
from netstep.state.snapshot import CACHE_PARTS, Link, NamespaceState, Snapshot


def _entries(state, part: str) -> list[str]:
    """A cache's entries without their state (an ARP entry may turn STALE between two reads)."""
    return [entry.split(" lladdr")[0] if part == "neighbours" else entry for entry in getattr(state, part)]


@needs_root
def test_every_shown_namespace_equals_a_fresh_reading(lab):
    engine = Engine(lab)
    shown = 0
    while engine.next_step() is not None:
        step = engine.next_step()
        result = engine.apply_next()
        if result.shown is None:
            continue
        fresh = lab.snapshot(list(result.shown.namespaces), sysctls=engine.course.sysctl_keys())
        for ns, state in result.shown.namespaces.items():
            assert state.config() == fresh[ns].config(), f"step {step.ref}, {ns}"
            for show in step.shows:
                if ns in show.namespaces and show.what in (*CACHE_PARTS, "all"):
                    parts = CACHE_PARTS if show.what == "all" else (show.what,)
                    for part in set(parts) - {"conntrack"}:  # conntrack: entries come and go with traffic
                        assert _entries(state, part) == _entries(fresh[ns], part), f"step {step.ref}, {ns} {part}"
            shown += 1
    assert shown >= 20


def test_a_long_line_wraps_under_its_own_column():
    """On a narrow terminal a long route or rule wraps under the text it continues, not
    under the part's title or the diff's namespace column."""
    route = "default via 10.0.2.2 dev eth0 proto static metric 100 onlink"
    state = NamespaceState("host", links=(Link("lo", "loopback", True),), routes=(route,))
    console = Console(file=io.StringIO(), width=50, color_system=None)
    console.print(renderable(state))
    drawn = console.file.getvalue().splitlines()
    at = next(i for i, line in enumerate(drawn) if "Routes" in line)
    column = drawn[at].index("default")
    following = drawn[at + 1]
    assert following[2:column].strip() == "" and following[column] != " ", drawn  # (after the border "│ ")
    assert f"{drawn[at][column:].strip(' │')} {following[column:].strip(' │')}" == route, drawn

    change = diff(Snapshot({}), Snapshot({"host": state}))
    console = Console(file=io.StringIO(), width=50, color_system=None)
    console.print(renderable(change))
    drawn = console.file.getvalue().splitlines()
    at = next(i for i, line in enumerate(drawn) if "routes:" in line)
    assert drawn[at + 1].startswith(" " * len("+ host ")) and drawn[at + 1].strip(), drawn


def test_counters_show_what_each_rule_counted_between_two_readings():
    """`show counters`: the packets each rule counted during a step's checks, +0 included;
    an ACCEPT policy only when it counted, a DROP policy always."""
    from netstep.state.evidence import moved_since, parse_rule_counts

    before = parse_rule_counts("*filter\n:INPUT DROP [4:240]\n:FORWARD ACCEPT [10:600]\n:OUTPUT ACCEPT [3:180]\n"
                               "[4:240] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
                               "*nat\n:PREROUTING ACCEPT [0:0]\n[2:120] -A PREROUTING -d 10.0.2.15/32 -j DNAT "
                               "--to-destination 172.18.0.10:5000\nCOMMIT\n")
    after = parse_rule_counts("*filter\n:INPUT DROP [4:240]\n:FORWARD ACCEPT [22:1300]\n:OUTPUT ACCEPT [3:180]\n"
                              "[4:240] -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\nCOMMIT\n"
                              "*nat\n:PREROUTING ACCEPT [0:0]\n[3:180] -A PREROUTING -d 10.0.2.15/32 -j DNAT "
                              "--to-destination 172.18.0.10:5000\nCOMMIT\n")
    assert moved_since(before, after) == (
        "filter INPUT policy DROP: +0 packets",
        "filter FORWARD policy ACCEPT: +12 packets",
        "filter INPUT -p tcp -m tcp --dport 22 -j ACCEPT: +0 packets",
        "nat PREROUTING -d 10.0.2.15/32 -j DNAT --to-destination 172.18.0.10:5000: +1 packet",
    )
