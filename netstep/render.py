"""How engine objects look: rich renderables for terminals and notebooks.

Engine objects inherit RenderMixin and so render themselves (`__rich__` for rich,
`_repr_mimebundle_` for Jupyter, through rich's JupyterMixin) without the engine knowing
how. The drawing code lives in netstep.views, and rich itself is imported only when
something is drawn: `reset` and `run --json` draw nothing.
"""

from __future__ import annotations


class RenderMixin:
    def __rich__(self):
        from netstep import views

        return views.renderable(self)

    def _repr_mimebundle_(self, include=(), exclude=(), **kwargs):
        from rich.jupyter import JupyterMixin

        return JupyterMixin._repr_mimebundle_(self, include, exclude, **kwargs)
