"""netstep: container networking, step by step, on a real kernel."""

__version__ = "0.1.0"
