"""Running netstep as a student at a terminal sees it: on a pseudo-terminal of fixed size.

rich draws for a terminal only when its output is one (colours, widths, the progress
bar), so the bench gives the command a pty of COLUMNS x LINES and reads everything it
draws, as a terminal would, until the command exits.
"""

from __future__ import annotations

import fcntl
import os
import pty
import resource
import select
import struct
import subprocess
import termios
import time

COLUMNS, LINES = 120, 40


def run_on_pty(argv: list[str], *, cwd: str, env: dict[str, str] | None = None,
               timeout: float = 600.0) -> tuple[float, float, int, bytes]:
    """Run `argv` on a new pty; return (wall seconds, CPU seconds of it and its children,
    exit status, what it drew)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    env = {**(env or os.environ), "TERM": "xterm-256color", "COLUMNS": str(COLUMNS), "LINES": str(LINES)}
    env.pop("NO_COLOR", None)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                            start_new_session=True)
    os.close(slave)
    drawn = bytearray()
    deadline = start + timeout
    try:
        while time.perf_counter() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 1 << 16)
                except OSError:  # EIO: every writer has closed the pty
                    break
                if not chunk:
                    break
                drawn += chunk
            elif proc.poll() is not None:
                break
        status = proc.wait(timeout=max(1.0, deadline - time.perf_counter()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return took, cpu, status, bytes(drawn)
