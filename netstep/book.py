"""The course as a book of web pages: every notebook executed, then exported to HTML.

`python -m netstep notebooks --html DIR` is for a reader without a VM: each lesson's
notebook runs top to bottom in a Jupyter kernel on a lab of its own (as whoever runs it:
root, or an ordinary user, whose labs live in user namespaces of their own), and the
executed notebook becomes DIR/NN-slug.html, with DIR/index.html listing them. What a
page shows is what the kernel did on this machine, not a mock-up. `--lang zh` writes the
Chinese book: the notebooks of notebooks/zh/, the index in Chinese.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path

import nbformat

from netstep.core import backend
from netstep.core.lab import Lab
from netstep.course.course import Course
from netstep.errors import NetstepError
from netstep.i18n import _, speaking
from netstep.notebooks import render_all

KERNEL = "python3"
TIMEOUT = 300  # seconds a cell may take: a large lab is built in one


def write_book(course: Course, folder: Path, *, lang: str = "en", lab_prefix: str = "book") -> Iterator[Path]:
    """Execute every notebook of `course` (as read in `lang`: netstep.notebooks.translated)
    and write it to `folder` as HTML; yield each page as it is written, the index last.
    Each notebook gets a lab of its own, removed after."""
    try:  # imported here: only this command needs them, and they are not small
        from nbclient import NotebookClient
        from nbconvert import HTMLExporter
    except ImportError as exc:
        raise NetstepError(
            f"Writing the course as HTML needs nbclient, nbconvert and ipykernel ({exc.name} is missing): "
            "`pip install nbclient nbconvert ipykernel`, or run ./quickstart.sh setup-tests."
        ) from None

    if folder.exists() and not folder.is_dir():
        raise NetstepError(f"--html {folder}: that is a file, not a folder. Name a folder to write the pages to.")
    folder.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter(template_name="lab")
    pages: list[tuple[str, str]] = []
    for name, text in render_all(course, lang).items():
        nb = nbformat.reads(text, as_version=4)
        lab = f"{lab_prefix}{os.getpid()}-{name[:2]}"
        old = os.environ.get("NETSTEP_LAB")
        os.environ["NETSTEP_LAB"] = lab
        try:
            NotebookClient(nb, timeout=TIMEOUT, kernel_name=KERNEL,
                           resources={"metadata": {"path": str(folder)}}).execute()
        except Exception as exc:  # a cell that failed: say which notebook, keep the message short
            raise NetstepError(f"{name} did not run to the end: {str(exc).strip().splitlines()[-1]}") from None
        finally:
            _restore_env("NETSTEP_LAB", old)
            if backend.current().user_namespace:
                backend.drop(lab)
            else:
                Lab(lab).destroy()
        body, _ = exporter.from_notebook_node(nb)
        page = folder / (Path(name).stem + ".html")
        page.write_text(body, encoding="utf-8")
        pages.append((page.name, _title(nb)))
        yield page
    index = folder / "index.html"
    with speaking(lang):
        index.write_text(_index(pages, lang), encoding="utf-8")
    yield index


def _restore_env(key: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(key, None)
    else:
        os.environ[key] = value


def _title(nb: nbformat.NotebookNode) -> str:
    first = nb.cells[0].source.splitlines()[0] if nb.cells else ""
    return first.lstrip("# ").strip() or "netstep"


def _index(pages: list[tuple[str, str]], lang: str) -> str:
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(title)}</a></li>' for href, title in pages)
    title = html.escape(_("netstep: container networking, step by step"))
    about = html.escape(_("Each page is a lesson notebook as it ran on a real Linux kernel: the commands of every "
                          "step, what they changed, and every check with what was expected and what the kernel did."))
    return f"""<!DOCTYPE html>
<html lang="{html.escape(lang)}"><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: sans-serif; max-width: 46em; margin: 2em auto; line-height: 1.5; }}</style>
</head><body>
<h1>{title}</h1>
<p>{about}</p>
<ol start="0">
{items}
</ol>
</body></html>
"""
