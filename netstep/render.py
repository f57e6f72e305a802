"""How netstep's objects look: a hook that presentation fills.

Model objects (snapshots, diffs, checks, lessons, results) inherit RenderMixin and so
render themselves (`__rich__` for rich, `_repr_mimebundle_` for Jupyter, through rich's
JupyterMixin) without importing any drawing code: netstep.present.views hands its
dispatcher to `use` when it is imported, and the front ends import it before they draw.
So imports point down only, and rich is imported only when something is drawn: `reset`
and `run --json` draw nothing.
"""

from __future__ import annotations

from collections.abc import Callable

_drawer: Callable[[object], object] | None = None


def use(drawer: Callable[[object], object]) -> None:
    """Draw objects with `drawer(obj)`, which returns a rich renderable."""
    global _drawer
    _drawer = drawer


def renderable(obj: object) -> object:
    """What rich draws for `obj`: the drawer's renderable, or the repr before any drawer is set."""
    return repr(obj) if _drawer is None else _drawer(obj)


class RenderMixin:
    def __rich__(self):
        return renderable(self)

    def _repr_mimebundle_(self, include=(), exclude=(), **kwargs):
        # rich is imported here, when a notebook first shows an object, not when netstep is
        # imported: the command line's `reset` and `--json` paths never load it.
        from rich.jupyter import JupyterMixin

        return JupyterMixin._repr_mimebundle_(self, include, exclude, **kwargs)
