"""What a step shows is told in terms the student has met.

A new namespace is "created, with the kernel's default settings", not a list of sysctls
no lesson has named yet (while the JSON diff keeps every one: it is exactly the kernel's
change); a step that shows conntrack shows the entries NAT rewrote, the ones its text
talks about, and counts the others.
"""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from support import needs_root, real_lesson_files

from netstep.core.engine import Engine
from netstep.core.lab import Lab
from netstep.present.views import renderable, translated

MASQUERADED = ("icmp 1 29 src=172.18.0.10 dst=203.0.113.8 type=8 code=0 id=7 src=203.0.113.8 dst=10.0.2.15 "
               "type=0 code=0 id=7")
FORWARDED = ("icmp 1 29 src=172.18.0.10 dst=203.0.113.8 type=8 code=0 id=7 src=203.0.113.8 dst=172.18.0.10 "
             "type=0 code=0 id=7")
PUBLISHED = ("tcp 6 119 TIME_WAIT src=10.0.2.2 dst=10.0.2.15 sport=40000 dport=5005 src=172.18.0.10 dst=10.0.2.2 "
             "sport=5000 dport=40000 [ASSURED]")
LOCAL = ("tcp 6 119 TIME_WAIT src=10.0.2.2 dst=10.0.2.15 sport=40000 dport=5000 src=10.0.2.15 dst=10.0.2.2 "
         "sport=5000 dport=40000 [ASSURED]")


def text_of(obj) -> str:
    console = Console(width=200, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable(obj))
    return console.export_text()


def test_an_entry_is_translated_when_its_reply_is_not_its_original_turned_around() -> None:
    assert translated(MASQUERADED) and translated(PUBLISHED)
    assert not translated(FORWARDED) and not translated(LOCAL)


@needs_root
@pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")
def test_a_new_namespace_is_shown_as_made_with_the_kernels_defaults(lab: Lab) -> None:
    engine = Engine(lab)
    netns = engine.course.find("netns")
    list(engine.goto(engine.course.start_of(netns) + 1))
    result = engine.apply_next()
    assert result.step.commands[0].text == "ip netns add netns0"
    shown = text_of(result.diff)
    assert "netns0 namespace created, with the kernel's default settings" in shown, shown
    assert "lo: loopback DOWN" in shown and "rp_filter" not in shown and "sysctls" not in shown.lower(), shown
    exact = result.diff.as_json()  # the JSON diff is still exactly the kernel's change
    assert {"ns": "netns0", "part": "namespace", "change": "+", "before": None, "after": "netns0"} in exact
    assert any(e["part"] == "sysctls" and "rp_filter" in e["after"] for e in exact if e["ns"] == "netns0")


@needs_root
@pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")
def test_a_conntrack_listing_shows_the_entries_nat_rewrote(lab: Lab) -> None:
    engine = Engine(lab)
    masquerade = engine.course.find("masquerade")
    step = next(s for s in masquerade.steps if any(show.what == "conntrack" for show in s.shows))
    list(engine.goto(engine.course.start_of(masquerade) + step.index))
    result = engine.apply_next()
    assert result.step is step
    entries = result.shown["host"].conntrack
    kept = [entry for entry in entries if translated(entry)]
    assert any("dst=10.0.2.15" in entry and "src=172.18.0.10" in entry for entry in kept), entries
    shown = text_of(result).split("Connection tracking", 1)[1]
    for entry in entries:
        assert (entry[:60] in shown) == (entry in kept), (entry, shown)
    if len(kept) < len(entries):
        assert f"(and {len(entries) - len(kept)} more, which no NAT rule rewrote)" in shown
