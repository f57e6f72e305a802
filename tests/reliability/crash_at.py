"""netstep's CLI with a crash at a chosen instant: `crash_at.py COMMAND WHEN -- CLI ARGS...`.

It runs `python -m netstep CLI ARGS...`, except that the first time the executor is asked
to apply the action whose command is COMMAND (as `Action.command()` says it, such as
`ip link add veth0 type veth peer name ceth0`; `COMMAND#N`: the N-th time):

- WHEN `before`: the process kills itself with SIGKILL before the executor starts;
- WHEN `prepared`: just after the executor has told the engine the undo (which the engine
  journals) and before the kernel change;
- WHEN `after`: just after the kernel change, before the engine hears it is done;
- WHEN `midway`: in the middle of a namespace's making or removal (`ip netns add` or
  `delete`): its file made and no namespace mounted on it yet, or the namespace unmounted
  and its file not yet removed;
- WHEN `spawned`: the process kills itself right after starting the action's child
  process (the HTTP server), which is made slow to start (it sleeps 2 s first), so that
  it has written no pid file when a `reset` comes;
- WHEN `ctrl-c`: Ctrl-C is pressed while the action's first helper program (nsenter,
  iptables) starts; `ctrl-c-late`: while the action's last helper ends, its work done.
  SIGINT goes to netstep's process group, as a terminal sends it to its foreground group
  (the helper is in that group only if netstep leaves it there): start this in a process
  group of its own.

A random signal hits those instants only by luck; this hits them on purpose.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    command, when = sys.argv[1], sys.argv[2]
    assert sys.argv[3] == "--" and when in ("before", "prepared", "after", "midway", "spawned", "ctrl-c",
                                            "ctrl-c-late"), __doc__
    command, _, nth = command.partition("#")
    import subprocess

    from netstep.kernel import namespaces
    from netstep.ops import apply as executor

    real, real_exec, armed, seen = executor.apply, namespaces.exec_in, [0], [0]

    def create(path):  # the file, and death before a namespace is mounted on it
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))
        os.kill(os.getpid(), signal.SIGKILL)

    def remove(path):  # the namespace unmounted, and death before its file is removed
        subprocess.run(["umount", "--lazy", path], check=True)
        os.kill(os.getpid(), signal.SIGKILL)

    class Spawned(subprocess.Popen):
        def __init__(self, argv, **kwargs):
            super().__init__(["sh", "-c", 'sleep 2; exec "$@"', "sh", *argv], **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

    def apply(lab, action, ready=None):
        if action.command() == command:
            seen[0] += 1
        if action.command() == command and seen[0] == int(nth or 1):
            if when == "midway":
                namespaces.create, namespaces.remove = create, remove
            if when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            if when == "prepared":
                def ready(undo, journal=ready):  # the undo is journaled, the change not made
                    journal(undo)
                    os.kill(os.getpid(), signal.SIGKILL)
            if when == "spawned":
                subprocess.Popen = Spawned  # the next server started (netstep.ops.servers)
            if when.startswith("ctrl-c"):
                armed[0] = 1
                try:
                    return real(lab, action, ready=ready)
                finally:
                    armed[0] = 0
            undo = real(lab, action, ready=ready)
            os.kill(os.getpid(), signal.SIGKILL)
            return undo
        return real(lab, action, ready=ready)

    group = str(os.getpgid(0))  # the terminal's foreground group: netstep's own

    def exec_in(path, argv, **kwargs):
        if armed[0] and when == "ctrl-c":
            armed[0] = 0
            # Ctrl-C for netstep's group as the helper starts, then the helper would run.
            argv = ["sh", "-c", 'kill -INT "-$0"; exec "$@"', group, *argv]
        elif armed[0] and when == "ctrl-c-late" and argv[:1] == ["iptables"] and "-S" not in argv:
            armed[0] = 0
            # The helper does its work, then Ctrl-C comes before it has exited.
            argv = ["sh", "-c", '"$@"; kill -INT "-$0"; exit 0', group, *argv]
        return real_exec(path, argv, **kwargs)

    executor.apply = apply
    namespaces.exec_in = exec_in
    from netstep.cli import main as cli

    return cli(sys.argv[4:])


if __name__ == "__main__":
    sys.exit(main())
