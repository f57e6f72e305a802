"""`%%netstep`: type the article's commands in a notebook cell.

    %load_ext netstep
    %%netstep
    host# ip link add veth9 type veth peer name ceth9
    netns0# ip route add default via 172.18.0.1

Lines run through the current Tutor's lab (`host#` by default), journaled so that
`t.undo_mine()` takes them back; the cell shows what changed. A NetstepError, in this
cell or any other once the extension is loaded, shows as a short message, not a traceback.
"""

from __future__ import annotations

from netstep.errors import NetstepError


def netstep_magic(line: str, cell: str):
    # Imported at the first %%netstep cell, not at %load_ext: IPython's display and the
    # Tutor (which loads rich) cost start-up time a kernel that never runs a cell need not pay.
    from IPython.display import display

    from netstep.tutor import current

    try:
        return current().run(cell, where=line.strip() or "host")
    except NetstepError as exc:
        display(_Message(str(exc)))
        return None


class _Message:
    def __init__(self, text: str) -> None:
        self.text = text

    def _repr_markdown_(self) -> str:
        return f"**netstep:** {self.text}"

    def __repr__(self) -> str:
        return f"netstep: {self.text}"


def _show_error(shell, kind, value, traceback, tb_offset=None):
    """A NetstepError from any cell (a bad `t.predict(...)`, say) as one short message."""
    from IPython.display import display

    display(_Message(str(value)))


def register(ipython) -> None:
    ipython.register_magic_function(netstep_magic, magic_kind="cell", magic_name="netstep")
    ipython.set_custom_exc((NetstepError,), _show_error)
