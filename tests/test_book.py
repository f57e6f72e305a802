"""`notebooks --html DIR`: the executed course as web pages, for a reader without a VM."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import LABS_ROOT, REPO, needs_root, real_lesson_files

from netstep.course.course import Course

pytestmark = [needs_root, pytest.mark.skipif(len(real_lesson_files()) < 7, reason="needs the seven lessons")]
pytest.importorskip("nbconvert")


def test_notebooks_html_writes_a_readable_book(tmp_path: Path) -> None:
    out = tmp_path / "book"
    before = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    result = subprocess.run([sys.executable, "-m", "netstep", "notebooks", "--html", str(out)], cwd=REPO,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    pages = sorted(p.name for p in out.glob("*.html"))
    lessons = [f.stem + ".html" for f in real_lesson_files()]
    assert pages == sorted(["index.html", "00-start-here.html", *lessons])
    index = (out / "index.html").read_text()
    assert all(f'href="{name}"' in index for name in lessons)
    course = Course.load()
    for name in lessons:
        page = (out / name).read_text()
        # One diagram of the lab after each step, in order, drawn as SVG (its title first)
        steps = [s.ref for s in course.lessons[lessons.index(name)].steps]
        assert re.findall(r'<svg [^>]*class="netstep-diagram"[^>]*>\s*<title>after step ([\d.]+):', page) == steps, name
        assert "What changed" in page, name
        assert "✔" in page and "✘" not in page, name  # every check ran, as expected
        # No cell wrote to stderr (the template's stylesheet names that type, in single quotes).
        assert "Traceback (most recent call last)" not in page, name
        assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page, name
        title = re.search(r"<h1[^>]*>(.*?)<", page)
        assert title and "Lesson" in title.group(1), name
    after = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    assert not {lab for lab in after - before if lab.startswith("book")}, "the book left a lab behind"


def test_notebooks_html_refuses_a_file_as_folder(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    result = subprocess.run([sys.executable, "-m", "netstep", "notebooks", "--html", str(target)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "netstep:" in result.stderr


def test_the_chinese_book(tmp_path: Path) -> None:
    """`--lang zh`: the Chinese notebooks executed (here lesson 1, with the opening one), the
    Tutor's output and the pages' own words in Chinese, a diagram after every step."""
    from netstep import i18n
    from netstep.book import write_book
    from netstep.notebooks import translated

    course, _missing = translated("zh")
    course.lessons = course.lessons[:1]
    out = tmp_path / "book"
    before = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    written = [p.name for p in write_book(course, out, lang="zh")]
    assert written == ["00-start-here.html", "01-netns.html", "index.html"]
    index = (out / "index.html").read_text()
    assert '<html lang="zh">' in index and "一步一步学容器网络" in index and 'href="01-netns.html"' in index
    page = (out / "01-netns.html").read_text()
    steps = [s.ref for s in course.lessons[0].steps]
    with i18n.speaking("zh"):
        changed = i18n._("What changed")
    assert re.findall(r'<svg [^>]*class="netstep-diagram"[^>]*>\s*<title>[^<\d]*(\d+\.\d+)', page) == steps
    assert changed in page and "What changed" not in page
    assert "第 1 课" in page and "✔" in page and "✘" not in page
    assert "Traceback (most recent call last)" not in page
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page
    after = set(os.listdir(LABS_ROOT)) if os.path.isdir(LABS_ROOT) else set()
    assert not {lab for lab in after - before if lab.startswith("book")}, "the book left a lab behind"


def test_notebooks_html_takes_its_language_after_the_command(tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    result = subprocess.run([sys.executable, "-m", "netstep", "notebooks", "--html", str(target), "--lang", "zh"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "netstep:" in result.stderr and "unrecognized" not in result.stderr
