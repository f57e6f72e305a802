"""Prose and commands as they are drawn: Markdown, and a console session's highlighting.

rich.markdown (with markdown-it) and rich.syntax (with pygments) cost ~27 ms of CPU to
import, more than a `verify` spends grading: so they are imported the first time
something is drawn with them, not with the views. `verify`, a hint's first stage and
`check` draw neither; a step's prose and a command do.
"""

from __future__ import annotations

from rich.console import RenderableType


def markdown(text: str) -> RenderableType:
    """`text` drawn as Markdown."""
    from rich.markdown import Markdown  # on first use: see the module's docstring

    return Markdown(text)


def commands(code: str) -> RenderableType:
    """Lines of `where# command`, highlighted as a console session."""
    from rich.syntax import Syntax  # on first use: see the module's docstring

    return Syntax(code, "console", theme="ansi_dark", background_color="default", word_wrap=True)
