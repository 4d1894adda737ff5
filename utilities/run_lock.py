"""One writer per run folder: an exclusive lock file, `<run>/.lock`, held while a run writes there.

The lock is a file created with O_CREAT | O_EXCL (atomic on local file systems and on NFS v3+), holding the
owner's pid, host name, process start time and the time it was taken, as JSON. It is taken before anything
is written in the folder (a new run: right after the folder is created; a resumed run: before the data is
built) and removed when the run ends, however it ends short of SIGKILL.

A second process that finds the lock:

* stops with one line naming the owner (pid, host, start time) and exit status 2 when the owner is alive, or
  runs on another host (whose processes cannot be checked from here);
* takes the lock over, with a warning, when the owner ran on this host and is gone (a run killed with
  SIGKILL, or a machine that rebooted): its pid no longer exists, or now belongs to a process that started
  later (a recycled pid). Judging and replacing a stale lock happen under an flock(2) of the run folder
  itself (the kernel releases it when its holder dies; where the file system refuses it, nothing is held), so
  of several processes taking over the same stale lock at once exactly one gets it: only a holder of that
  flock removes a lock file it did not create.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import warnings
from typing import Optional

from utilities.errors import UsageError

LOCK_NAME = ".lock"


def process_start(pid: int) -> Optional[int]:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[19])  # field 22 of stat(5); fields[0] is field 3
    except (OSError, IndexError, ValueError):
        return None


def is_alive(pid: Optional[int], started: Optional[int]) -> bool:
    """Whether `pid` on this host is still the process that recorded `started` (its start time)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    now = process_start(pid)
    return started is None or now is None or now == started


def describe(owner: dict) -> str:
    return f"pid {owner.get('pid')} on host {owner.get('host')} since {owner.get('since')}"


class RunLock:
    """`with RunLock(run_dir):` holds the run folder's lock for the block (see the module docstring)."""

    #: A lock file found empty is being written by its creator; after this long its creator is taken as dead.
    WRITE_GRACE_SECONDS = 2.0

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_NAME)
        self.owner = {"pid": os.getpid(), "host": socket.gethostname(), "started": process_start(os.getpid()),
                      "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.held = False

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        empty_since = None
        for _ in range(1000):  # each pass sees the lock created, held, or gone; bounded against a livelock
            if self._create():
                return
            with folder_mutex(self.run_dir):
                owner = self._read(self.path)
                if owner is None:  # released between the two looks
                    continue
                if not owner:
                    empty_since = empty_since if empty_since is not None else time.monotonic()
                    if time.monotonic() - empty_since < self.WRITE_GRACE_SECONDS:
                        owner = None  # its creator is writing it: look again after a pause
                    else:
                        owner = {"host": self.owner["host"], "pid": None}  # its creator died before writing it
                if owner is not None:
                    if owner.get("host") != self.owner["host"] or is_alive(owner.get("pid"), owner.get("started")):
                        raise UsageError(
                            f"{self.run_dir} is in use by another run ({describe(owner)}); wait for it to end. If no "
                            f"run is writing there any more (its machine went down), delete {self.path} and start "
                            "again")
                    if self._take_over():
                        warnings.warn(f"{self.path}: took over the lock of a run that is gone ({describe(owner)})")
                        return
                    continue
            time.sleep(0.02)
        raise UsageError(f"{self.run_dir}: other runs keep taking and releasing its lock; start again later")

    def release(self) -> None:
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        except OSError as err:
            raise UsageError(f"{self.run_dir}: cannot write in the run folder ({err.strerror}); it must be a "
                             "writable folder") from None
        self.held = True
        with os.fdopen(fd, "w") as f:
            json.dump(self.owner, f)
        return True

    @staticmethod
    def _read(path: str) -> Optional[dict]:
        """The owner recorded in a lock file; None if the file is gone, {} while it is still empty or cut short."""
        try:
            with open(path) as f:
                owner = json.loads(f.read())
        except FileNotFoundError:
            return None
        except ValueError:
            return {}
        return owner if isinstance(owner, dict) else {}

    def _take_over(self) -> bool:
        """Remove the stale lock and create ours (under `folder_mutex`); False when a process that was not
        taking over created its lock first, in between."""
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        return self._create()


@contextlib.contextmanager
def folder_mutex(folder: str):
    """An exclusive flock(2) of `folder` for the block; nothing where it cannot be had (a file system without
    flock on folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the flock
