"""The notebooks in JupyterLab, in Debian's Chromium, as a student opens them.

One JupyterLab on 127.0.0.1 serves a temporary copy of notebooks/; each notebook is
opened in the browser, every cell run with the kernel the notebook names, and the page
must show no error output and every step rendered as HTML: the diff ("What changed",
added lines in green) and the checks table (a ✔ per check as expected, never a ✘).
The notebooks run in sandbox mode, in one lab named for this test run, removed afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_browser import CHROMIUM, Browser, Lab, start_lab
from support import LABS_ROOT, REPO, filled_notebook, needs_root, unique_name

from netstep import i18n
from netstep.course.course import Course

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
CHINESE = sorted(f"zh/{p.name}" for p in (REPO / "notebooks" / "zh").glob("*.ipynb"))  # the Tutor speaking Chinese
PICTURED = "04-bridge.ipynb"  # the notebook whose first diagram is screenshot
pytestmark = [needs_root, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                             reason="needs Debian's chromium (./quickstart.sh setup-tests)")]

# rich's HTML for a diff's added line, and a check that came out as expected.
ADDED = re.compile(r'<span style="color: #008000[^"]*"[^>]*>\+</span>')
CHECK_OK = re.compile(r'<span style="color: #008000[^"]*"[^>]*>✔ </span>')


@pytest.fixture(scope="module")
def lab_name() -> Iterator[str]:
    """The notebooks' lab, unique to this run, removed afterwards whatever happened."""
    name = unique_name("br")
    yield name
    subprocess.run([sys.executable, "-m", "netstep", "--lab", name, "reset"], cwd=REPO,
                   capture_output=True, text=True, timeout=120)
    assert not os.path.exists(os.path.join(LABS_ROOT, name)), f"lab {name} was not removed"


@pytest.fixture(scope="module")
def jupyter(tmp_path_factory: pytest.TempPathFactory, lab_name: str) -> Iterator[tuple[Lab, Browser]]:
    root = tmp_path_factory.mktemp("notebooks")
    (root / "zh").mkdir()
    for name in [*NOTEBOOKS, *CHINESE]:  # each lesson's predictions made (all right) as a student would
        if name.endswith("00-start-here.ipynb"):
            shutil.copy2(REPO / "notebooks" / name, root / name)
        else:
            (root / name).write_text(filled_notebook(REPO / "notebooks" / name, right=True, typed=False))
    # The harness's own control: a notebook that fails in its second cell.
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": [src]}
             for src in ("x = 1", "1 / 0", "print('never')")]
    (root / "fails.ipynb").write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}))
    with start_lab(root, env={"NETSTEP_LAB": lab_name}) as lab, Browser() as browser:
        yield lab, browser


def test_the_harness_sees_an_error_and_the_cells_it_never_ran(jupyter: tuple[Lab, Browser]) -> None:
    lab, browser = jupyter
    try:
        run = browser.run_notebook(lab, "fails.ipynb", timeout=120)
    finally:
        lab.shutdown_kernels()
    assert run.finished and not run.ok
    assert run.errors == ["cell 1: ZeroDivisionError: division by zero"], run.report()
    assert run.not_run == [2], run.report()


@pytest.mark.parametrize("name", [*NOTEBOOKS, *CHINESE])
def test_notebook_runs_in_jupyterlab(jupyter: tuple[Lab, Browser], lab_name: str, name: str, tmp_path: Path) -> None:
    lab, browser = jupyter
    shoot = "svg.netstep-diagram" if name == PICTURED else ""
    try:
        run = browser.run_notebook(lab, name, shoot=shoot)
    finally:
        lab.shutdown_kernels()  # the kernel holds the lab; the next notebook needs it
    print(f"\n{run.report()}")
    assert run.ok, run.report()
    assert all(out.get("output_type") != "stream" or out.get("name") != "stderr"
               for cell in run.code_cells for out in cell.get("outputs", [])), run.report()
    if name.endswith("00-start-here.ipynb"):
        return
    html = "\n".join(run.html)
    slug = Path(name).stem[3:]
    steps = Course.load().find(slug).steps
    total = sum(len(step.checks) for step in steps)
    with i18n.speaking("zh" if name.startswith("zh/") else "en"):  # what the notebook's own language says
        changed, checks = i18n._("What changed"), i18n._("Checks")
        score = i18n._("predictions: {right} of {total} right ({of})").format(right=total, total=total,
                                                                              of=i18n._("so far"))
        said = i18n._("{mark} {check}  you said {said}, it was {actual}: {why}").split("{said}")[0].split("{check}")[1]
    assert changed in html and ADDED.search(html), f"{name}: no diff rendered as HTML"
    assert f">{checks}</span>" in html and CHECK_OK.search(html), f"{name}: no check table rendered as HTML"
    assert "✘" not in html, f"{name}: a check came out other than expected"
    assert said.strip() in html, f"{name}: no prediction marked"
    assert score in html, f"{name}: the predictions were not scored"
    assert "&lt;netstep." not in html and "StepResult(" not in html, f"{name}: a raw repr instead of HTML"
    assert len(re.findall(r'<svg [^>]*class="netstep-diagram"', html)) >= len(steps), f"{name}: a step without diagram"
    if shoot:  # the first diagram, as Chromium drew it: a picture, not a blank
        (tmp_path / "diagram.png").write_bytes(run.shot)
        ink = run.ink
        print(f"{name}: its first diagram in Chromium: {ink}")
        assert ink and ink["width"] > 300 and ink["height"] > 200, f"{name}: no diagram drawn: {ink}"
        assert 0.01 < ink["ink"] < 0.5 and ink["colours"] > 8, f"{name}: the diagram is blank: {ink}"
