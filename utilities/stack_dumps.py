"""`kill -USR1 <pid>` makes a run print the Python stack of every thread to its stderr, and go on.

A run that seems stuck (a collective waiting for a process that does not come, a DataLoader worker that does
not answer) is diagnosed without a debugger: faulthandler writes the stacks from the signal handler itself,
so a main thread blocked in C code (a gloo collective, a lock) is shown too. main.py and every DataLoader
worker (datasets/workers.py) turn it on; under torchrun, signal each process of `pgrep -f main.py` in
turn (faulthandler writes a line in pieces, so two dumps written at once into one terminal interleave).
The tests' process helper (tests/processes.py) does so before it kills a run that outlived its timeout, so
that a hang in CI comes with its stacks.
"""
from __future__ import annotations

import faulthandler
import signal
import sys

#: The signal that asks for the stacks (none on Windows, where this does nothing).
SIGNAL = getattr(signal, "SIGUSR1", None)


def enable() -> None:
    """From now on SIGNAL prints every thread's stack of this process to its standard error (file
    descriptor 2, `sys.__stderr__`: `sys.stderr` may be a stream without one, as under pytest's capsys)."""
    if SIGNAL is not None and sys.__stderr__ is not None:
        faulthandler.register(SIGNAL, file=sys.__stderr__, all_threads=True)
