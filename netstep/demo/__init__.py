"""Instructor demo mode: the course on a projector, one step at a time.

`python -m netstep demo` opens a full-screen Textual app (netstep.demo.app) that applies
the course to a lab through the engine, step by step, and draws the lab as it stands
(netstep.present.topology). The app never touches the kernel itself: every change, check and
snapshot goes through Engine and Lab methods, one at a time, in a worker thread.
"""

from __future__ import annotations

import contextlib

from netstep.demo.options import DemoOptions, options_from_args


def run_demo(engine, options: DemoOptions) -> int:
    """Run the demo app on a terminal; its exit code (0, or 1 if an --auto run saw a check fail)."""
    from netstep.demo.app import DemoApp

    app = DemoApp(engine, options)
    app.run()
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
        print(app.farewell(), flush=True)
    return app.return_code or 0


__all__ = ["DemoOptions", "options_from_args", "run_demo"]
