"""The lab's journal: every action, written before it is applied, with its undo."""

from __future__ import annotations

import json
import os

from netstep.course.actions import Action


class Journal:
    """The applied steps and the student's own commands, as an append-only log.

    Each change is one JSON line appended before (or right after) the kernel change it
    records, so a kill at any moment leaves a readable journal; loading replays the lines
    and rewrites them compactly. No fsync: a machine that goes down takes the lab's
    namespaces with it, while a killed process leaves its writes in the page cache.
    """

    def __init__(self, path: str, *, compact: bool = False) -> None:
        """Read the journal at `path`; `compact` rewrites it (only with the lab's lock held)."""
        self.path = path
        self.steps: list[dict] = []
        self.own: list[dict] = []  # commands a student ran by hand through the engine
        if os.path.exists(path):
            with open(path) as f:
                for line in f:
                    if not line.endswith("\n"):
                        break  # a write cut short by a kill: that change never started
                    if line.strip():
                        self._replay(json.loads(line))
            if compact:
                self._compact()
        self._file = None

    def _replay(self, op: dict) -> None:
        kind = op["op"]
        if kind == "begin":
            self.steps.append({"index": op["index"], "ref": op["ref"], "entries": [], "complete": False})
        elif kind == "do":
            self.steps[-1]["entries"].append({"do": op["action"], "undo": None})
        elif kind == "undo":
            self._set_undo(self.steps[-1]["entries"][-1], op)
        elif kind == "complete":
            self.steps[-1]["complete"] = True
        elif kind == "adopt":
            self.steps.append({"index": op["index"], "ref": op["ref"], "entries": [], "complete": True,
                               "adopted": True, "before": op["before"]})
        elif kind == "drop":
            self.steps[-1]["entries"].pop()
        elif kind == "pop":
            self.steps.pop()
        elif kind == "own":
            self.own.append({"do": op["action"], "undo": None, "text": op["text"], "where": op["where"]})
        elif kind == "own-undo":
            self._set_undo(self.own[-1], op)
        elif kind == "own-drop":
            self.own.pop()

    @staticmethod
    def _set_undo(entry: dict, op: dict) -> None:
        entry["undo"] = op["undo"]
        for flag in ("prepared", "failed"):  # prepared: told before the change, which may not have happened
            if op.get(flag):
                entry[flag] = True
            else:
                entry.pop(flag, None)

    def _compact(self) -> None:
        lines = []
        for step in self.steps:
            if step.get("adopted"):
                lines.append({"op": "adopt", "index": step["index"], "ref": step["ref"], "before": step["before"]})
                continue
            lines.append({"op": "begin", "index": step["index"], "ref": step["ref"]})
            for entry in step["entries"]:
                lines.append({"op": "do", "action": entry["do"]})
                if entry["undo"] is not None or entry.get("failed"):
                    lines.append({"op": "undo", "undo": entry["undo"], **_flags(entry)})
            if step["complete"]:
                lines.append({"op": "complete"})
        for entry in self.own:
            lines.append({"op": "own", "action": entry["do"], "text": entry["text"], "where": entry["where"]})
            if entry["undo"] is not None:
                lines.append({"op": "own-undo", "undo": entry["undo"], **_flags(entry)})
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(line) + "\n" for line in lines)
        os.replace(tmp, self.path)

    def _log(self, op: dict) -> None:
        self._replay(op)
        if self._file is None:
            self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the journal's life)
        self._file.write(json.dumps(op) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def begin(self, index: int, ref: str) -> dict:
        self._log({"op": "begin", "index": index, "ref": ref})
        return self.steps[-1]

    def intend(self, action: Action) -> None:
        self._log({"op": "do", "action": action.to_dict()})

    def prepare(self, undo: Action) -> None:
        """The undo of the action in progress, known before its kernel change."""
        self._log({"op": "undo", "undo": undo.to_dict(), "prepared": True})

    def done(self, undo: Action) -> None:
        self._log({"op": "undo", "undo": undo.to_dict()})

    def failed(self) -> None:
        """The action in progress failed: its prepared undo must not run (what is there may
        not be the lab's), and a reset says to check it (it may have changed something)."""
        self._log({"op": "undo", "undo": None, "failed": True})

    def complete(self) -> None:
        self._log({"op": "complete"})

    def drop(self) -> None:
        """Forget the last step's newest action (it was undone)."""
        self._log({"op": "drop"})

    def adopt(self, index: int, ref: str, before: dict) -> None:
        """A step the student did by hand, counted as done: undone by bringing the lab back to
        `before` (a snapshot as JSON), since its actions are the student's, not the course's."""
        self._log({"op": "adopt", "index": index, "ref": ref, "before": before})

    def pop(self) -> None:
        """Forget the last step (it was undone)."""
        self._log({"op": "pop"})

    def own_intend(self, action: Action, text: str, where: str) -> None:
        self._log({"op": "own", "action": action.to_dict(), "text": text, "where": where})

    def own_prepare(self, undo: Action) -> None:
        self._log({"op": "own-undo", "undo": undo.to_dict(), "prepared": True})

    def own_done(self, undo: Action) -> None:
        self._log({"op": "own-undo", "undo": undo.to_dict()})

    def own_drop(self) -> None:
        self._log({"op": "own-drop"})


def _flags(entry: dict) -> dict:
    return {flag: True for flag in ("prepared", "failed") if entry.get(flag)}
