"""Messages in the student's language: gettext catalogs, chosen once per process.

Every sentence netstep shows a person goes through `_()` (or `ngettext` for counts) where
it is shown, as a whole sentence with named fields (`_("{ns} has no route to {dst}")`), so
a translator can reorder it. The catalogs are gettext's: netstep/locale/LANG/LC_MESSAGES/
netstep.po, extracted and compiled with Babel (README, "Another language"); the compiled
.mo files are committed beside them, so an install needs no Babel.

The language is, in order: the one asked for (`--lang`, `Tutor(lang=)`), then the variables
gettext reads (LANGUAGE, LC_ALL, LC_MESSAGES, LANG), then English. Chinese locales of every
region get the one Chinese catalog, Simplified (zh_CN); `note()` says so to a zh_TW or
zh_HK reader. The choice is the process's, as gettext's own is.
"""

from __future__ import annotations

import gettext as _gettext
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

DOMAIN = "netstep"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = {"en": "", "zh": "zh_CN"}  # netstep's name for a language -> its catalog's folder
ENVIRONMENT = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")  # gettext's order
SIMPLIFIED = ("zh_cn", "zh_sg", "zh_hans", "zh")

_language = "en"
_translation: _gettext.NullTranslations = _gettext.NullTranslations()
_note = ""


def resolve(asked: str | None = None, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(language, locale it came from): `asked` if given, else the first of gettext's
    variables that names a language netstep has ('C' and 'POSIX' name English)."""
    if asked:
        key = asked.strip().replace("-", "_")
        lang = key.split("_")[0].lower()
        if lang not in LANGUAGES:  # (front ends offer only LANGUAGES: a ValueError is a bug)
            raise ValueError(f"netstep does not speak {asked!r}: choose one of {', '.join(LANGUAGES)}")
        return lang, key
    environ = os.environ if environ is None else environ
    for variable in ENVIRONMENT:
        value = environ.get(variable, "")
        for entry in value.split(":") if variable == "LANGUAGE" else [value]:
            locale = entry.split(".")[0].split("@")[0]
            if locale in ("C", "POSIX"):
                return "en", locale
            lang = locale.split("_")[0].lower()
            if lang in LANGUAGES:
                return lang, locale
        if value and variable != "LANGUAGE":
            return "en", value  # the first locale set decides, as in gettext
    return "en", ""


def use(asked: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Choose the language for this process (see `resolve`) and return it: 'en' or 'zh'."""
    global _language, _translation, _note
    lang, locale = resolve(asked, environ)
    folder = LANGUAGES[lang]
    _translation = (_gettext.translation(DOMAIN, LOCALE_DIR, languages=[folder], fallback=True) if folder
                    else _gettext.NullTranslations())
    _language = lang
    _note = ""
    if lang == "zh" and locale.lower().replace("-", "_") not in SIMPLIFIED and "_" in locale:
        _note = _("This course is in Simplified Chinese; there is no Traditional Chinese translation yet.")
    return lang


@contextmanager
def speaking(lang: str) -> Iterator[str]:
    """The process in `lang` for a while (writing the notebooks of every language in one
    run), then back in the language it spoke before, note and all."""
    global _language, _translation, _note
    before = _language, _translation, _note
    try:
        yield use(lang)
    finally:
        _language, _translation, _note = before


def language() -> str:
    """The language chosen: 'en' or 'zh'."""
    return _language


def note() -> str:
    """One line to show first when the catalog is not exactly the reader's locale (zh_TW gets zh_CN), or ""."""
    return _note


def _(message: str) -> str:
    """`message` in the chosen language; English when the catalog lacks it."""
    return _translation.gettext(message)


def ngettext(singular: str, plural: str, count: int) -> str:
    """The form of a message for `count` things, in the chosen language."""
    return _translation.ngettext(singular, plural, count)


def N_(message: str) -> str:
    """Marks a message kept as data (a table of titles) for extraction; `_()` translates it where shown."""
    return message


FIELD_RE = re.compile(r"\{(\w+)\}")


def fill(template: str, style: str = "", **fields: str | tuple[str, str]) -> list[tuple[str, str]]:
    """A translated sentence as (text, style) parts, for rich's Text.assemble: the words in
    `style`, each {field} in its own (a field is text, or (text, style)). So a translator
    may reorder the fields of a coloured line as of a plain one."""
    parts: list[tuple[str, str]] = []
    last = 0
    for match in FIELD_RE.finditer(template):
        if match.start() > last:
            parts.append((template[last:match.start()], style))
        value = fields[match.group(1)]
        parts.append(value if isinstance(value, tuple) else (str(value), ""))
        last = match.end()
    if last < len(template):
        parts.append((template[last:], style))
    return parts


use()  # from the environment, until a front end asks for a language
