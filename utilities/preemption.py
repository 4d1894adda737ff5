"""Stopping on SIGTERM or SIGINT without losing work: the run finishes its step, saves, and says how to resume.

Clusters announce the end of a job with SIGTERM and kill it a grace period later (SLURM `--signal`, the
Kubernetes termination grace period); Ctrl-C sends SIGINT. `StopSignals` turns both into a request that the
run honours at its next safe point:

* while the run is being set up (data, model, nothing written yet) the signal stops it at once
  (`Interrupted`);
* once the run begins to write in its folder (`StopSignals.defer()`), the signal only sets `requested`. The
  training loop looks at it between steps: the step in flight finishes, the `last` checkpoint is written
  atomically with the position inside the epoch (utilities/resume.py), and the run ends with one line
  saying how to resume and exit status 75 (`EXIT_INTERRUPTED`). A signal during the evaluation takes
  effect after it, with the epoch's own checkpoint.

A second signal while the run is stopping (for instance during the checkpoint write) is noted and ignored,
so it cannot cut the write short; SIGKILL still can, and then the write's temporary file is discarded and
the previous checkpoint is intact (utilities/checkpoint.save_atomic).

DataLoader workers ignore both signals (`ignore_in_worker`): Ctrl-C reaches the whole foreground process
group and SLURM signals every process of a job step, and a worker that died of the signal would crash the
main process in the middle of the step it is finishing. Workers end when the main process closes its loader;
the code that makes such workers calls `kill_workers_at_exit()`, so that the daemon children still alive at
interpreter exit are killed: multiprocessing's own exit handler ends them with SIGTERM and then waits for them,
forever for ours.
"""
from __future__ import annotations

import atexit
import multiprocessing
import multiprocessing.util  # registers multiprocessing's exit handler (torch imports it anyway), before ours
import signal
import sys
import threading
from typing import Optional

from utilities.errors import Interrupted, signal_name

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """`with StopSignals() as stop:` handles SIGTERM and SIGINT for the block (see the module docstring) and
    restores the previous handlers after it. Outside the main thread, where Python cannot handle signals,
    it does nothing and `requested` stays False."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._deferring = False
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def defer(self) -> None:
        """From now on a signal waits for the next safe point instead of stopping the run at once (the run has
        begun to write in its folder, and saves before it stops); one that came just before is honoured there."""
        self._deferring = True

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            sys.stderr.write(f"main.py: {signal_name(signum)} again: the run is already stopping and saves first; "
                             "SIGKILL would stop it now and keep the previous checkpoint\n")
            return
        self.signum = signum
        if not self._deferring:
            raise Interrupted(signum, "while setting up the run")


def ignore_in_worker() -> None:
    """In a DataLoader worker: leave SIGTERM and SIGINT to the main process (see the module docstring)."""
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def kill_daemon_children_at_exit() -> None:
    """SIGKILL the daemon child processes (DataLoader workers) still alive when the interpreter exits.

    A worker outlives its loader when an exception keeps the loader's iterator referenced (the traceback of an
    uncaught error, a test report). multiprocessing's exit handler, which runs after this one, would send it
    SIGTERM, which it ignores, and join it: the crashed run would never exit (and hold its GPU). The workers
    only read images, so nothing is lost. PyTorch's SIGCHLD handler, which reports a killed worker as an error,
    is reset first: the run's own error stays the last line."""
    children = [child for child in multiprocessing.active_children() if child.daemon]
    if children and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for child in children:
        child.kill()
        child.join(timeout=5)


_registered = False


def kill_workers_at_exit() -> None:
    """Register `kill_daemon_children_at_exit` with atexit, once; call it where workers that run
    `ignore_in_worker` are made. It runs before multiprocessing's exit handler, which was registered when
    multiprocessing.util was imported (above), as atexit runs the latest registered first."""
    global _registered
    if not _registered:
        atexit.register(kill_daemon_children_at_exit)
        _registered = True
