"""Sysctls: /proc/sys read and written from a thread switched into the namespace.

Every function takes the namespace's file (None: the namespace netstep runs in). The
files under /proc/sys/net belong to the namespace of the thread that opens them, so each
call runs in one short-lived thread inside it (netstep.kernel.namespaces.run_in).
"""

from __future__ import annotations

import os
from contextlib import suppress

from netstep.errors import NetstepError
from netstep.kernel.namespaces import run_in


def _file(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def read(path: str | None, key: str) -> str | None:
    """The value of sysctl `key`, or None if there is no such sysctl."""

    def work() -> str | None:
        try:
            with open(_file(key)) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    return run_in(path, work)


def read_many(path: str | None, keys: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The values of `keys` that exist, read from one thread."""

    def work() -> tuple[tuple[str, str], ...]:
        values = []
        for key in keys:
            try:
                with open(_file(key)) as f:
                    values.append((key, f.read().strip()))
            except FileNotFoundError:
                continue
        return tuple(values)

    return run_in(path, work)


def write(path: str | None, key: str, value: str) -> None:
    def work() -> None:
        with open(_file(key), "w") as f:
            f.write(value)

    run_in(path, work)


def read_forwarding_settings(path: str | None, family: str) -> tuple[tuple[str, str], ...]:
    """(file under /proc/sys/net, value) of everything that writing `family`'s global
    forwarding switch also sets: every device's `forwarding` (and `default`'s) and, for
    ipv4, `all.accept_redirects`. Read by folder: device names can hold dots."""
    root = f"/proc/sys/net/{family}/conf"

    def work() -> tuple[tuple[str, str], ...]:
        files = [f"{family}/conf/{device}/forwarding" for device in sorted(os.listdir(root)) if device != "all"]
        if family == "ipv4":
            files.append("ipv4/conf/all/accept_redirects")
        values = []
        for name in files:
            with suppress(FileNotFoundError), open(f"/proc/sys/net/{name}") as f:
                values.append((name, f.read().strip()))
        return tuple(values)

    return run_in(path, work)


def write_net_settings(path: str | None, values: tuple[tuple[str, str], ...]) -> None:
    """Write (file under /proc/sys/net, value) pairs; a device gone meanwhile is skipped."""

    def work() -> None:
        for name, value in values:
            if ".." in name.split("/"):
                raise NetstepError(f"Refusing a settings path outside /proc/sys/net: {name}")
            with suppress(FileNotFoundError), open(f"/proc/sys/net/{name}", "w") as f:
                f.write(value)

    run_in(path, work)
