"""The demo's keys in the language chosen. Textual reads a class's BINDINGS when the class
is made, which is before `--lang` is read; each screen puts its own copy in that language
when it is made, from descriptions marked for the catalog (N_)."""

from __future__ import annotations

from dataclasses import replace

from textual.binding import BindingsMap

from netstep.i18n import _


def translated(bindings: BindingsMap) -> BindingsMap:
    """`bindings` with each description in the chosen language."""
    return BindingsMap.from_keys({key: [replace(b, description=_(b.description)) if b.description else b
                                        for b in found]
                                  for key, found in bindings.key_to_bindings.items()})
