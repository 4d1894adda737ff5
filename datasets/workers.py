"""How DataLoader workers are started: by multiprocessing's fork server, never forked from the run itself.

By the time a run makes its workers it has threads: gloo's or NCCL's under torchrun, the background
checkpoint writer, W&B's, tqdm's monitor. `fork()` copies only the thread that calls it, and a lock that
another thread holds at that instant stays held in the child for ever (glibc resets its malloc and stdio
locks, not, for instance, the one every first-use C++ static takes). Such a worker hangs before its first
batch, and the run waits for it without end: a resumed two-process run on the CPU hung that way at its first
evaluation, about once in a hundred runs. Python 3.12 warns about forking a threaded process and 3.14 no
longer forks by default; PyTorch's documentation calls it "poison fork".

`loader_options(n)` gives a DataLoader `n` workers that come from the fork server: one single-threaded
process per run, started by fork+exec on first use, which imports what workers need once
(datasets/worker_server.py) and forks each worker from itself. A worker then starts about as fast as a
forked one (some 0.05 s; the server's own start, some 2 s, overlaps the rest of the run's setup, as
`loader_options` starts it). The workers are seeded by `utilities.seeding.worker_init`, as before, so the numbers do not
depend on the start method.

A worker's parent is then the server, not the run, and PyTorch's worker watchdog watches its parent. Two
consequences, both handled here:

* the workers ignore SIGTERM and SIGINT (utilities/preemption.py), and so must the server, or a stop signal
  to the whole job would end it and with it the workers of the step the run is finishing.
  multiprocessing's server ignores SIGINT; datasets/worker_server.py, imported only there, makes it
  ignore SIGTERM too;
* a run that is killed (SIGKILL, the OOM killer) must not leave its workers behind, and neither they nor
  the server would notice: each worker holds the server's "a client is alive" pipe, so the server waits
  for them while they wait for it. Each worker therefore watches the run's process itself
  (`watch_run`) and exits when it is gone; the server follows when its last worker has.
"""
from __future__ import annotations

import functools
import multiprocessing
import os
import select
import threading
import time
from typing import Optional

from utilities import preemption, stack_dumps
from utilities.run_lock import is_alive
from utilities.seeding import worker_init

#: The module the fork server imports before it forks any worker (see datasets/worker_server.py). It imports
#: the main script too (as `__mp_main__`, so main.py's `if __name__ == "__main__"` part does not run), which a
#: worker would otherwise import again on starting.
SERVER_MODULE = "datasets.worker_server"


def context() -> Optional[multiprocessing.context.BaseContext]:
    """The fork-server context with its preload set; None where there is no fork server (Windows, which
    spawns workers anyway)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    forkserver = multiprocessing.get_context("forkserver")
    forkserver.set_forkserver_preload(["__main__", SERVER_MODULE])
    return forkserver


def loader_options(n_workers: int) -> dict:
    """DataLoader keyword arguments for `n_workers` workers started by the fork server, seeded and leaving
    stop signals to the main process; for 0, the main process loads (nothing to start). The server starts
    now, so that its imports overlap the rest of the run's setup."""
    if n_workers <= 0:
        return {"num_workers": 0}
    preemption.kill_workers_at_exit()  # the workers ignore SIGTERM: a crashed run must still exit
    forkserver = context()
    if forkserver is not None:
        from multiprocessing import forkserver as server

        server.ensure_running()
    return {"num_workers": n_workers, "worker_init_fn": functools.partial(start_worker, os.getpid()),
            "multiprocessing_context": forkserver}


def start_worker(run_pid: int, worker_id: int) -> None:
    """A worker's first act: seeding and signals (`utilities.seeding.worker_init`), stacks on SIGUSR1
    (utilities/stack_dumps.py), then a daemon thread that ends the worker when the run's process `run_pid`
    ends."""
    worker_init(worker_id)
    stack_dumps.enable()
    threading.Thread(target=watch_run, args=(run_pid,), name="watch-run", daemon=True).start()


def watch_run(run_pid: int, poll_seconds: float = 1.0) -> None:
    """Return never: exit this process (status 0, nothing to flush in a worker) once process `run_pid` has
    ended. A pidfd (Linux) wakes at the exit itself; elsewhere the process is polled."""
    try:
        handle = os.pidfd_open(run_pid)
    except ProcessLookupError:
        os._exit(0)
    except (AttributeError, OSError):  # no pidfd on this system
        while is_alive(run_pid, None):
            time.sleep(poll_seconds)
        os._exit(0)
    select.select([handle], [], [])
    os._exit(0)
