"""The notebooks: generated from the lessons, committed, and executable top to bottom.

Each notebook runs under nbclient in a real Jupyter kernel, against a lab of its own,
and must leave no lab behind; an executed notebook must also export to HTML that shows
rendered diffs and checks, not raw reprs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from support import LABS_ROOT, REPO, filled_notebook, needs_root, unique_name

from netstep import i18n
from netstep.course.course import Course
from netstep.notebooks import folder_of, render_all, translated

NOTEBOOKS = REPO / "notebooks"
nbformat = pytest.importorskip("nbformat")


@pytest.mark.parametrize("lang", list(i18n.LANGUAGES))
def test_committed_notebooks_match_the_lessons(lang):
    course, missing = translated(lang)
    expected = render_all(course, lang)
    folder = folder_of(NOTEBOOKS, lang)
    committed = {p.name: p.read_text(encoding="utf-8") for p in folder.glob("*.ipynb")}
    assert sorted(committed) == sorted(expected), "run `python -m netstep notebooks` and commit the result"
    stale = [name for name, text in expected.items() if committed[name] != text]
    assert not stale, f"out of step with lessons/: {stale}; run `python -m netstep notebooks`"
    translations = sorted(p.name for p in (REPO / "lessons" / lang).glob("*.md")) if lang != "en" else []
    assert sorted(Path(le.path).name for le in course.lessons if lang != "en") == translations
    assert not {Path(le.path).name for le in missing} & set(translations)


def test_chinese_notebooks_speak_chinese():
    """notebooks/zh/: the lessons from lessons/zh/, a Tutor in Chinese, the cells' own words
    from the catalog; the English notebooks keep theirs, whatever language the process spoke."""
    with i18n.speaking("zh"):
        english = render_all(Course.load(REPO / "lessons"), "en")  # (the folder given: the English files)
    zh = nbformat.reads((NOTEBOOKS / "zh" / "04-bridge.ipynb").read_text(encoding="utf-8"), as_version=4)
    text = "\n".join(c.source for c in zh.cells)
    assert zh.cells[0].source.startswith("# 第 4 课") and 't = Tutor(lang="zh")' in text
    assert "给我看命令" in text and "自己动手" in text and "Show me the commands" not in text
    en = nbformat.reads(english["04-bridge.ipynb"], as_version=4)
    assert "Show me the commands" in "\n".join(c.source for c in en.cells) and i18n.language() == "en"


def test_notebooks_command_writes_every_language(tmp_path):
    """One run writes notebooks/ and notebooks/zh/; a lesson not translated yet gets one line, no notebook."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "netstep", "--lang", "en", "notebooks", "--out", str(tmp_path)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    translations = {p.stem for p in (REPO / "lessons" / "zh").glob("*.md")}
    english = {p.stem for p in (REPO / "lessons").glob("*.md")}
    assert {p.stem for p in (tmp_path / "zh").glob("*.ipynb")} == translations | {"00-start-here"}
    said = [line for line in result.stdout.splitlines() if "not translated into zh" in line]
    assert sorted(said) == sorted(f"{stem}.md: not translated into zh yet, so it has no notebook in that language"
                                  for stem in english - translations)


def test_one_notebook_per_lesson_and_an_opening_one():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names[0] == "00-start-here.ipynb"
    assert len(names) == 1 + len(Course.load().lessons) >= 8


def _execute(path: Path, lab: str):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    old = os.environ.get("NETSTEP_LAB")
    os.environ["NETSTEP_LAB"] = lab
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    finally:
        if old is None:
            os.environ.pop("NETSTEP_LAB", None)
        else:
            os.environ["NETSTEP_LAB"] = old
    return nb


# Executed here too, the Tutor speaking Chinese (the browser test runs every Chinese notebook).
CHINESE_RUN = ["zh/00-start-here.ipynb", "zh/01-netns.ipynb", "zh/04-bridge.ipynb"]


@needs_root
@pytest.mark.parametrize("name", [*sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")), *CHINESE_RUN])
def test_notebook_executes_and_leaves_no_lab(name):
    from netstep.core.lab import Lab

    lab = unique_name("nb")
    try:
        nb = _execute(NOTEBOOKS / name, lab)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"]
        rendered = [o for o in outputs if o.output_type == "execute_result"]
        assert rendered and all("text/html" in o.data for o in rendered)
        html = "\n".join(o.data["text/html"] for o in rendered)
        assert "StepResult(" not in html and "Snapshot(" not in html and "<netstep." not in html
        if name == "zh/00-start-here.ipynb":  # the opening one: where the lab stands, in Chinese
            assert "实验环境" in html and "What changed" not in html, html[:2000]
        elif name.startswith("zh/"):  # in Chinese: the step's output and its checks' lines too
            assert "变化" in html and "What changed" not in html and "✔" in html, html[:2000]
            assert "✘" not in html, "a check came out other than expected"
        elif name != "00-start-here.ipynb":
            assert "What changed" in html and "✘" not in html, "a check came out other than expected"
        if any("t.challenge(" in c.source for c in nb.cells) and name.startswith("zh/"):  # solved and said
            with i18n.speaking("zh"):
                assert i18n._("What was broken:") in html
        elif any("t.challenge(" in c.source for c in nb.cells):  # set up, not typed yet, then solved and said
            assert "Nothing typed yet for the challenge" in html and "What was broken" in html
        assert not os.path.exists(os.path.join(LABS_ROOT, lab)), "the notebook left its lab behind"
    finally:
        Lab(lab).destroy()


@needs_root
def test_executed_notebook_exports_to_html(tmp_path):
    from nbconvert import HTMLExporter

    from netstep.core.lab import Lab

    lab = unique_name("nbh")
    try:
        nb = _execute(NOTEBOOKS / "02-veth.ipynb", lab)
    finally:
        Lab(lab).destroy()
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert "What changed" in body and "netns0 → 172.18.0.11" in body
    assert 'style="color: #008000' in body  # added lines in green, as rich renders them
    assert "✔" in body and "✘" not in body


@needs_root
def test_tutor_ipr_changes_the_lab_from_a_cell(tmp_path):
    """`t.ipr(ns)` in a notebook: pyroute2's IPRoute, working inside Jupyter's running event
    loop, bound to the lab's namespace (the change shows in `ip -j` there, from outside),
    and closed with the tutor."""
    import json
    import subprocess

    from netstep.core.lab import Lab

    cells = [
        "from netstep.tutor import Tutor\nt = Tutor()",
        "from pyroute2 import IPRoute\nipr = t.ipr('host')\nassert isinstance(ipr, IPRoute)\n"
        "ipr.link('add', ifname='veth9', kind='veth', peer='ceth9')\n"
        "ipr.link('set', index=ipr.link_lookup(ifname='veth9')[0], state='up')\n"
        "sorted(m.get('ifname') for m in ipr.get_links())",
        "t.close()\ntry:\n    ipr.get_links()\n    print('still open')\nexcept Exception:\n    print('closed')",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    path = tmp_path / "ipr.ipynb"
    nbformat.write(nb, path)
    lab = unique_name("nbipr")
    try:
        nb = _execute(path, lab)
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not [o for o in outputs if o.output_type == "error"], outputs
        assert "'ceth9', 'eth0', 'lo', 'veth9'" in outputs[0].data["text/plain"]
        assert outputs[-1].text.strip() == "closed"
        host = os.path.join(LABS_ROOT, lab, "host")
        listed = subprocess.run(["nsenter", f"--net={host}", "ip", "-j", "link"], capture_output=True, text=True)
        links = {entry["ifname"]: entry for entry in json.loads(listed.stdout)}
        assert "UP" in links["veth9"]["flags"] and "ceth9" in links
        mine = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True).stdout
        assert "veth9" not in {entry["ifname"] for entry in json.loads(mine)}  # the machine's own: untouched
    finally:
        Lab(lab).destroy()


@pytest.mark.parametrize(("right", "typed"), [(True, True), (False, False)], ids=["right-typed", "wrong-shown"])
def test_a_notebook_filled_in_by_a_student(tmp_path, right: bool, typed: bool) -> None:
    from netstep.core.lab import Lab

    name = "02-veth.ipynb"
    total = sum(len(s.checks) for s in Course.load().find("veth").steps)
    path = tmp_path / name
    book = nbformat.reads(filled_notebook(NOTEBOOKS / name, right=right, typed=typed), as_version=4)
    setup = next(i for i, cell in enumerate(book.cells) if "t = Tutor()" in cell.source)
    bad = nbformat.v4.new_code_cell('t.predict("maybe")')  # bad input: a message, no traceback
    bad.metadata["tags"] = ["raises-exception"]  # (the cell still fails, as a bad call should)
    book.cells.insert(setup + 1, bad)
    nbformat.write(book, path)
    lab = unique_name("nbf")
    try:
        nb = _execute(path, lab)
    finally:
        Lab(lab).destroy()
    texts = {}
    for cell in nb.cells:
        if cell.cell_type == "code":
            texts[cell.source] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(
                o.get("data", {}).get("text/plain", "") + o.get("text", "") for o in cell.get("outputs", [])))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert "netstep: 'maybe' is not a prediction" in texts['t.predict("maybe")']
    score = texts["t.score()"]
    assert f"predictions: {total if right else 0} of {total} right (so far)" in score, score
    marked = [text for source, text in texts.items() if "you said" in text and source.startswith("t.")]
    assert marked and all(("✘" not in t) == right for t in marked), marked
    verdicts = [text for source, text in texts.items() if source.startswith("t.verify(\"2.")]
    if typed:  # every step typed by hand was verified, and "show me" then had nothing to do
        assert verdicts and all("Counted as done" in v for v in verdicts), verdicts
        shows = [text for source, text in texts.items() if source.startswith('t.step("2.') and "2.6" not in source]
        assert all("is done already" in s for s in shows), shows
    else:
        assert all("Nothing typed yet" in v for v in verdicts), verdicts
    assert "✔ exercise2: Your turn: wire netns1 yourself" in texts['t.solution("exercise2")']
