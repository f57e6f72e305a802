"""How engine objects look: rich renderables for terminals and notebooks.

Engine objects inherit RenderMixin and so render themselves (`__rich__` for rich,
`_repr_mimebundle_` for Jupyter, through rich's JupyterMixin) without the engine knowing
how. The drawing code lives in netstep.views, imported only when something is drawn.
"""

from __future__ import annotations

from rich.jupyter import JupyterMixin


class RenderMixin(JupyterMixin):
    def __rich__(self):
        from netstep import views

        return views.renderable(self)
