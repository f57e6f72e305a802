"""netstep: container networking, step by step, on a real kernel."""

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:
    """`%load_ext netstep` registers the `%%netstep` cell magic."""
    from netstep.magic import register

    register(ipython)
