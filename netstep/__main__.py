"""`python -m netstep` and the `netstep` command: one command of the command line, in a
process of its own."""

import gc

# No collection while the command line's modules load, and what they made is then frozen
# out of the collector's sight (it lives until the process ends): each collection would
# scan all the imports have made so far, none of it garbage (~5 ms of the start).
_collecting = gc.isenabled()
gc.disable()
try:
    import io
    import sys
    from contextlib import redirect_stderr, redirect_stdout

    from netstep.cli import build_parser, main
    from netstep.kernel.tools import find_sbin_tools
    from netstep.session import enter_backend, leave_backend, whole_process
finally:
    gc.freeze()  # (this module is loaded only to run one command: `python -m netstep`, `netstep`)
    if _collecting:
        gc.enable()


def entry() -> int:
    """Run the command in sys.argv and return its exit status; the process then ends."""
    find_sbin_tools()  # (an ordinary user's PATH has no /usr/sbin, where iptables is)
    # First, while this process has one thread: an ordinary user joins the lab's user
    # namespace. (A bad command line is left to main(), which says what is wrong.)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
            args = build_parser().parse_args(sys.argv[1:])
    except SystemExit:
        args = None
    if args is not None:
        enter_backend(args)
    whole_process()
    try:
        status = main()
    finally:
        if args is not None:
            leave_backend(args)  # (a reset of an ordinary user's lab stops its holder, whatever happened)
    # The process ends here, and the OS takes back its memory: freezing every object spares
    # the interpreter's last collections on the way out (~40 ms once pyroute2 is loaded).
    gc.freeze()
    return status


if __name__ == "__main__":
    sys.exit(entry())
