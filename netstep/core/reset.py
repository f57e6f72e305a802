"""Removing a lab: everything it made, and nothing else.

Kept apart from the engine so that `netstep reset` does not load the course: a sandbox
lab is only its namespaces, and a host-mode lab's journal says what to undo.
"""

from __future__ import annotations

import os

from netstep.core.journal import Journal
from netstep.core.lab import Lab
from netstep.course.actions import Action, Iptables
from netstep.errors import NetstepError
from netstep.ops import apply as executor
from netstep.ops.iptables import remove_marked_rules


def reset_lab(lab: Lab) -> list[str]:
    """Remove everything `lab` made, and nothing else; return what could not be undone.

    A sandbox lab is its namespaces: removing them removes everything. In host mode the
    lab host is the machine's own namespace, so the journal's undos run first, newest first
    (also after a crash), then any rule still carrying the lab's mark is deleted. An undo
    journaled just before its change (a kill came in between) may find nothing to undo.
    A host-mode lab whose namespace is gone (`lab.orphaned`) has nothing left to undo: only
    its files and its own namespaces are removed, and nothing is applied anywhere.
    """
    problems: list[str] = []
    if lab.host_mode and not lab.orphaned and os.path.exists(lab.journal_path):
        journal = Journal(lab.journal_path)
        entries = [*reversed(journal.own)]
        entries += [e for record in reversed(journal.steps) for e in reversed(record["entries"])]
        for entry in entries:
            if entry["undo"] is None:
                action = Action.from_dict(entry["do"])
                if not entry.get("failed") and executor.tells_undo_first(action):
                    continue  # killed before its change: nothing to undo
                if not _deletes_a_lab_rule(action):  # (which remove_marked_rules below would do anyway)
                    problems.append(f"`{action.command()}` was interrupted; check it by hand")
                continue
            undo = Action.from_dict(entry["undo"])
            try:
                executor.apply(lab, undo)
            except (NetstepError, OSError) as exc:
                # A prepared undo whose change never came finds nothing to undo; a rule of
                # the lab's may already be gone (an interrupted -D took it).
                if not entry.get("prepared") and not _deletes_a_lab_rule(undo):
                    problems.append(f"`{undo.command()}`: {exc}")
        problems += remove_marked_rules(lab)
    lab.destroy()
    return problems


def _deletes_a_lab_rule(action) -> bool:
    """An `iptables -D`: in host mode every rule netstep adds carries the lab's mark, and
    reset ends by deleting all of those, so one already gone is no loss."""
    return isinstance(action, Iptables) and action.args[:1] == ("-D",)
