"""Opening a lab for a command of the command line: its backend entered first (an ordinary
user's lab lives in a user namespace of their own: netstep.core.backend), privileges and
tools checked, the lab's options (--host, --internet, --upstream) validated, its lock held
while the command runs."""

from __future__ import annotations

import gc
import ipaddress
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from netstep.errors import Interrupted, NetstepError, Terminated
from netstep.i18n import _

if TYPE_CHECKING:
    from netstep.core.engine import Engine
    from netstep.core.lab import Lab
    from netstep.course.course import Course

TOOLS = {"nsenter": "util-linux", "unshare": "util-linux", "findmnt": "util-linux", "bash": "bash",
         "iptables": "iptables", "iptables-save": "iptables", "conntrack": "conntrack", "ip": "iproute2"}


def enter_backend(args) -> None:
    """Enter the backend of the command `args` parsed, first thing in `python -m netstep`:
    an ordinary user joins the lab's holder while the process has one thread (the kernel's
    rule). What goes wrong is said when the command needs its lab (require_root_and_tools)."""
    from netstep.core import backend

    backend.enter(args.command, args.lab, host=args.host)


def leave_backend(args) -> None:
    """After the command: a reset of an ordinary user's lab also stops its holder."""
    from netstep.core import backend

    if args.command == "reset":
        backend.current().stop_holder()


def require_root_and_tools(*tools: str, joined: bool = True) -> None:
    """Refuse, in one paragraph, to go on without the privileges a lab needs (root, or an
    ordinary user's own user namespace, joined: see enter_backend; not `joined` when each
    lab is opened by a process of its own, as the book's notebooks' are) or without `tools`
    (by default the programs a lab runs inside its namespaces), before anything is touched."""
    from netstep.core import backend

    backend.current().require()
    if os.geteuid() != 0 and (joined or not backend.current().user_namespace):
        raise NetstepError(
            "netstep needs root, or an ordinary user's own user namespace, which `python -m netstep` joins "
            "as it starts (not a program importing netstep): it creates network namespaces and changes their "
            "devices, routes and rules. Run it as `python -m netstep ...`, or as root."
        )
    missing = [t for t in tools or ("iptables", "iptables-save", "conntrack") if not shutil.which(t)]
    if missing:
        packages = sorted({TOOLS[t] for t in missing})
        raise NetstepError(
            f"netstep needs {', '.join(missing)}, which is not installed. On Debian or Ubuntu: "
            f"`apt-get install {' '.join(packages)}`."
        )


@contextmanager
def opened(args, course: Course | None = None) -> Iterator[Engine]:
    """The engine on the lab named by `args`, holding the lab's lock until the block ends."""
    engine = engine_for(args, course)
    try:
        yield engine
    except (KeyboardInterrupt, Terminated) as exc:  # the step in progress is undone: say where that left the lab
        raise Interrupted(_where(engine)) from exc
    finally:
        engine.lab.close()


def _where(engine: Engine) -> str:
    """Where the lab stands, in a sentence, and the command that goes on from there."""
    step = engine.current_step()
    if step is None:
        return _("The lab is at the start of the course: `python -m netstep next` applies step 1.1.")
    upcoming = engine.next_step()
    if upcoming is None:
        return _("The lab is after step {ref} ({title}), the course's end.").format(ref=step.ref, title=step.title)
    return _("The lab is after step {ref} ({title}): `python -m netstep next` applies step {next}.").format(
        ref=step.ref, title=step.title, next=upcoming.ref)


def engine_for(args, course: Course | None = None) -> Engine:
    """An engine on the lab `args` names, its lock taken (and the lab built if new)."""
    from netstep.core.engine import Engine

    require_root_and_tools()
    lab = lab_for(args)
    lab.lock()
    try:
        engine = Engine(lab, course)
    except BaseException:
        lab.close()
        raise
    if _whole_process:
        # What exists now (the modules, pyroute2's among them, the course, the lab) lives
        # until the process ends. Out of the collector's sight, it is not scanned again
        # each time the run's many short-lived netlink messages fill a generation.
        gc.freeze()
    return engine


_whole_process = False


def whole_process() -> None:
    """Say that this process runs one command and ends (`python -m netstep` does): what is
    made before its lab is opened may then be frozen out of the collector's sight (see
    engine_for), which saves a run of 30 containers ~50 ms. Not so for a caller that goes
    on (a test, a notebook): it would keep what it froze."""
    global _whole_process
    _whole_process = True


def lab_for(args) -> Lab:
    """The lab `args` names, its options checked; not locked yet."""
    from netstep.core.lab import Lab  # (imported when used: `list` has no lab)

    if (args.internet or args.upstream) and not args.host:
        raise NetstepError("--internet and --upstream go with --host (host mode).")
    if args.internet:
        try:
            ipaddress.IPv4Address(args.internet)
        except ValueError:
            raise NetstepError(f"--internet takes an IPv4 address, not '{args.internet}'.") from None
    if args.upstream and not os.path.exists(args.upstream):
        raise NetstepError(f"--upstream {args.upstream}: there is no such namespace file.")
    return Lab(args.lab, host=args.host, internet=args.internet, upstream=args.upstream)
