"""Diffs: what changed between two snapshots, namespace by namespace, part by part."""

from __future__ import annotations

from dataclasses import dataclass, field

from netstep.render import RenderMixin
from netstep.state.snapshot import CONFIG_PARTS, NamespaceState, Snapshot

JSON_PARTS = {"links": "devices"}


@dataclass(frozen=True)
class PartChange:
    part: str
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[tuple[str, str], ...] = ()  # (before, after) of the same link or sysctl
    reordered: bool = False  # same entries, another order (routes: another one now wins)
    order: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # the entries before and after, if reordered

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.reordered)


@dataclass(frozen=True)
class NamespaceChange:
    name: str
    status: str  # "added", "removed" or "changed"
    parts: tuple[PartChange, ...] = ()


@dataclass(frozen=True)
class Diff(RenderMixin):
    namespaces: tuple[NamespaceChange, ...] = field(default_factory=tuple)
    title: str = ""

    def __bool__(self) -> bool:
        return bool(self.namespaces)

    def as_json(self) -> list[dict]:
        """One entry a change: {"ns", "part", "change": "+|-|~", "before", "after"}, with the
        parts named as a student knows them (devices, not links)."""
        out: list[dict] = []
        for ns in self.namespaces:
            if ns.status != "changed":
                added = ns.status == "added"
                out.append({"ns": ns.name, "part": "namespace", "change": "+" if added else "-",
                            "before": None if added else ns.name, "after": ns.name if added else None})
            for part in ns.parts:
                name = JSON_PARTS.get(part.part, part.part)
                out += [{"ns": ns.name, "part": name, "change": "-", "before": e, "after": None} for e in part.removed]
                out += [{"ns": ns.name, "part": name, "change": "~", "before": a, "after": b} for a, b in part.changed]
                out += [{"ns": ns.name, "part": name, "change": "+", "before": None, "after": e} for e in part.added]
                if part.reordered:
                    out.append({"ns": ns.name, "part": name, "change": "~", "before": list(part.order[0]),
                                "after": list(part.order[1])})
        return out

    def lines(self) -> list[str]:
        """A plain-text form: `+ host routes: 172.18.0.0/16 dev veth0 ...`."""
        out = []
        for ns in self.namespaces:
            if ns.status != "changed":
                out.append(f"{'+' if ns.status == 'added' else '-'} namespace {ns.name}")
            for part in ns.parts:
                out += [f"- {ns.name} {part.part}: {line}" for line in part.removed]
                out += [f"~ {ns.name} {part.part}: {a} -> {b}" for a, b in part.changed]
                out += [f"+ {ns.name} {part.part}: {line}" for line in part.added]
                if part.reordered:
                    out.append(f"~ {ns.name} {part.part}: order changed")
        return out


def _keyed(part: str, entries: tuple[str, ...]) -> dict[str, str]:
    """For links and sysctls, entries keyed by name so that a change shows as one line."""
    if part in ("links", "sysctls"):
        sep = ": " if part == "links" else " = "
        return {entry.split(sep, 1)[0]: entry for entry in entries}
    return {}


def compare_part(part: str, before: tuple[str, ...], after: tuple[str, ...]) -> PartChange:
    keyed_before, keyed_after = _keyed(part, before), _keyed(part, after)
    if keyed_before or keyed_after:
        changed = tuple((keyed_before[k], keyed_after[k]) for k in keyed_before
                        if k in keyed_after and keyed_before[k] != keyed_after[k])
        added = tuple(v for k, v in keyed_after.items() if k not in keyed_before)
        removed = tuple(v for k, v in keyed_before.items() if k not in keyed_after)
        return PartChange(part, added, removed, changed)
    added = tuple(x for x in after if x not in before)
    removed = tuple(x for x in before if x not in after)
    reordered = not added and not removed and before != after
    return PartChange(part, added, removed, (), reordered, (before, after) if reordered else ((), ()))


def diff(before: Snapshot, after: Snapshot, parts: tuple[str, ...] = CONFIG_PARTS, title: str = "") -> Diff:
    changes = []
    names = list(dict.fromkeys([*before.namespaces, *after.namespaces]))
    empty = NamespaceState("")
    for name in names:
        a, b = before.namespaces.get(name), after.namespaces.get(name)
        status = "added" if a is None else "removed" if b is None else "changed"
        found = tuple(c for p in parts
                      if (c := compare_part(p, (a or empty).part(p), (b or empty).part(p))))
        if found or status != "changed":
            changes.append(NamespaceChange(name, status, found))
    return Diff(tuple(changes), title)
