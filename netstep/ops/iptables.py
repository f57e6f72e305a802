"""iptables: the binary run inside the namespace, each rule change with its undo, and
the removal of every rule that carries the lab's mark (host mode).

A rule's undo finds it by its content: an added rule is deleted by its text, and a deleted
one goes back between the rules it was between, never by an index recorded earlier.
"""

from __future__ import annotations

import shlex

from netstep.course.actions import Action, Iptables
from netstep.errors import KernelError, NameConflict, NetstepError
from netstep.i18n import _
from netstep.ops.access import LabAccess
from netstep.ops.announce import about_to_change


def iptables(lab: LabAccess, ns: str, table: str, args: list[str]) -> str:
    result = lab.exec(ns, ["iptables", "-w", "-t", table, *args])
    if result.returncode != 0:
        msg = (result.stderr.strip().splitlines() or ["failed"])[-1]
        shown = " ".join(shlex.quote(a) for a in args)
        raise KernelError(_("`{command}` on {ns} failed: {error}").format(
            command=f"iptables -t {table} {shown}", ns=ns, error=msg))
    return result.stdout


def _chain_rules(lab: LabAccess, ns: str, table: str, chain: str) -> list[str]:
    return [line for line in iptables(lab, ns, table, ["-S", chain]).splitlines() if line.startswith("-A ")]


def apply_iptables(action: Iptables, lab: LabAccess) -> Action:
    ns, table, args = action.ns, action.table, list(action.args)
    op, chain = args[0], args[1]
    if lab.rule_mark and op in ("-A", "-I", "-D") and lab.rule_mark not in args:
        args += ["-m", "comment", "--comment", lab.rule_mark]
    if op == "-N":
        # Checked before the undo is told: a kill just after must not leave a -X for another's chain.
        if lab.exec(ns, ["iptables", "-w", "-t", table, "-S", chain]).returncode == 0:
            raise NameConflict(
                _("A chain named '{chain}' already exists in the {table} table of {ns}, and netstep did not "
                  "create it, so it will not touch it. Remove it where it came from, or use another lab.")
                .format(chain=chain, table=table, ns=ns))
        undo = about_to_change(Iptables(ns, table=table, args=("-X", chain)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-X":
        undo = about_to_change(Iptables(ns, table=table, args=("-N", chain)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-I" and action.between:
        args[2] = str(_position(lab, ns, table, chain, action.between, int(args[2])))
    if op in ("-A", "-I"):
        rule = args[3:] if op == "-I" and len(args) > 2 and args[2].isdigit() else args[2:]
        undo = about_to_change(Iptables(ns, table=table, args=("-D", chain, *rule)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-P":
        old = next(line.split()[2] for line in iptables(lab, ns, table, ["-S", chain]).splitlines()
                   if line.startswith(f"-P {chain} "))
        undo = about_to_change(Iptables(ns, table=table, args=("-P", chain, old)))
        iptables(lab, ns, table, args)
        return undo
    if op == "-D":
        before = _chain_rules(lab, ns, table, chain)
        iptables(lab, ns, table, args)  # (which rule went is known only after: no undo told first)
        after = _chain_rules(lab, ns, table, chain)
        position = next((i for i, (a, b) in enumerate(zip(before, after, strict=False)) if a != b), len(after))
        words = [tuple(shlex.split(line)[2:]) for line in before]
        around = (words[position - 1] if position else (), words[position + 1] if position + 1 < len(words) else ())
        return Iptables(ns, table=table, args=("-I", chain, str(position + 1), *words[position]), between=around)
    raise NetstepError(_("iptables {op} is not supported").format(op=op))


def _position(lab: LabAccess, ns: str, table: str, chain: str, between: tuple, recorded: int) -> int:
    """Where a deleted rule goes back: after the rule that was before it, or before the one
    that was after it, wherever they are now; first if it was first; else at its recorded
    place, or last if the chain has grown shorter (the student's own deletions)."""
    rules = [tuple(shlex.split(line)[2:]) for line in _chain_rules(lab, ns, table, chain)]
    before, after = (tuple(words) for words in between)
    if 0 < recorded <= len(rules) + 1 and (rules[recorded - 2] if recorded > 1 else ()) == before \
            and (rules[recorded - 1] if recorded <= len(rules) else ()) == after:
        return recorded  # the neighbours are where they were (a duplicate rule elsewhere cannot mislead)
    if before in rules:
        return rules.index(before) + 2
    if after and after in rules:
        return rules.index(after) + 1
    return 1 if not before else min(recorded, len(rules) + 1)


def remove_marked_rules(lab: LabAccess) -> list[str]:
    """Delete the rules in the lab host that carry the lab's mark (host mode, after a crash)."""
    problems = []
    mark = lab.rule_mark
    if not mark:
        return problems
    for table in ("filter", "nat", "mangle", "raw"):
        listing = lab.exec("host", ["iptables", "-w", "-t", table, "-S"])
        for line in listing.stdout.splitlines():
            if line.startswith("-A ") and mark in shlex.split(line):
                words = shlex.split(line)
                try:
                    iptables(lab, "host", table, ["-D", *words[1:]])
                except NetstepError as exc:
                    problems.append(str(exc))
    return problems
