"""Messages are data: every message netstep shows is in each catalog, translated, with the
same named fields, and the compiled .mo says what the .po says; the language is chosen as
gettext chooses it."""

from __future__ import annotations

import gettext
import os
import string
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from netstep import i18n

ROOT = Path(__file__).resolve().parent.parent
LOCALE = ROOT / "netstep" / "locale"
CATALOGS = sorted(LOCALE.glob("*/LC_MESSAGES/netstep.po"))


def extracted() -> dict[str, str]:
    """msgid -> where it is, as `pybabel extract -k N_` finds them."""
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(ROOT / "netstep", keywords=keywords):
        found[message if isinstance(message, str) else message[0]] = f"{filename}:{lineno}"
    return found


def fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def test_there_is_a_chinese_catalog():
    assert LOCALE / "zh_CN" / "LC_MESSAGES" / "netstep.po" in CATALOGS


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.parts[-3])
def test_every_message_is_in_the_catalog_translated_with_its_fields(po: Path):
    catalog = read_po(po.open("rb"))
    messages = extracted()
    assert len(messages) > 100  # the extraction found the code's messages
    missing = [f"{where}: {msgid!r}" for msgid, where in messages.items()
               if msgid not in catalog or not catalog[msgid].string or catalog[msgid].fuzzy]
    assert not missing, f"not translated in {po} (pybabel update, then translate):\n" + "\n".join(missing)
    for message in catalog:
        if not message.id:
            continue
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        for text in strings:
            assert fields(text) == fields(ids[-1]), f"{message.id!r}: the translation's fields differ"


@pytest.mark.parametrize("po", CATALOGS, ids=lambda p: p.parts[-3])
def test_the_compiled_catalog_is_the_source_catalog(po: Path):
    catalog = read_po(po.open("rb"))
    with po.with_suffix(".mo").open("rb") as f:
        compiled = gettext.GNUTranslations(f)
    for message in catalog:
        if message.id and isinstance(message.id, str):
            assert compiled.gettext(message.id) == message.string, \
                f"{po.with_suffix('.mo')} is older than its .po: pybabel compile -d netstep/locale -D netstep"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "en"),
    ({"LANG": "zh_CN.UTF-8"}, "zh"),
    ({"LANG": "zh_CN.UTF-8", "LC_MESSAGES": "en_US.UTF-8"}, "en"),
    ({"LC_MESSAGES": "en_US.UTF-8", "LC_ALL": "zh_CN.UTF-8"}, "zh"),
    ({"LC_ALL": "C", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LANGUAGE": "fr:zh_CN", "LC_ALL": "en_US.UTF-8"}, "zh"),  # LANGUAGE first, its first language netstep has
    ({"LANGUAGE": "en", "LANG": "zh_CN.UTF-8"}, "en"),
    ({"LANG": "de_DE.UTF-8"}, "en"),
    ({"LANG": "zh_TW.UTF-8"}, "zh"),
])
def test_the_language_comes_from_gettexts_variables_in_its_order(environ, expected):
    assert i18n.resolve(None, environ)[0] == expected
    assert i18n.resolve("en", environ)[0] == "en"  # an explicit choice wins


def test_traditional_chinese_gets_the_simplified_catalog_and_a_line_saying_so():
    try:
        assert i18n.use(None, {"LANG": "zh_TW.UTF-8"}) == "zh"
        assert "简体中文" in i18n.note()
        assert i18n._("What changed") == "变化"
        assert i18n.use(None, {"LANG": "zh_CN.UTF-8"}) == "zh" and i18n.note() == ""
        assert i18n.use("en") == "en" and i18n._("What changed") == "What changed"
    finally:
        i18n.use()


def cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in i18n.ENVIRONMENT} | env
    return subprocess.run([sys.executable, "-m", "netstep", *args], capture_output=True, text=True, env=environ,
                          cwd=ROOT, timeout=60)


def test_help_and_errors_speak_chinese_when_asked():
    shown = cli("--lang", "zh", "--help")
    assert "一步一步学容器网络" in shown.stdout and "列出课程" in shown.stdout
    wrong = cli("--lang", "zh", "run", "lesson99", "--yes", LANG="en_US.UTF-8")
    assert wrong.returncode == 1 and "没有“lesson99”这一课" in wrong.stderr
    assert "There is no lesson 'lesson99'" in cli("run", "lesson99", "--yes", LANG="en_US.UTF-8").stderr


def test_a_probes_words_are_translated_where_shown_and_the_kernels_kept():
    from netstep.course.checks import said

    try:
        i18n.use("zh")
        assert said("echo reply from 10.0.2.2") == "收到 10.0.2.2 的回显应答（echo reply）"
        refused = said("Connection refused (the answer of a REJECT rule)")
        assert refused == "Connection refused（这是一条 REJECT 规则的应答）"
        assert said("connected, but the answer stopped after 12 bytes") == "已连接，但应答在 12 字节后中断"
        assert said("Network is unreachable") == "Network is unreachable"  # the kernel's own words
        i18n.use("en")
        assert said("echo reply from 10.0.2.2") == "echo reply from 10.0.2.2"
    finally:
        i18n.use()


def test_argparses_own_words_speak_chinese_too():
    shown = cli("--lang", "zh", "--help")
    assert "用法：" in shown.stdout and "选项" in shown.stdout and "显示此帮助信息并退出" in shown.stdout
    assert "usage:" not in shown.stdout and "show this help message" not in shown.stdout
    wrong = cli("--lang", "zh", "frobnicate")
    assert wrong.returncode == 2 and "错误" in wrong.stderr and "无效的选择" in wrong.stderr
