"""Running a command for a test, so that a hang fails with the stacks of the processes that hung."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Dict, List, Sequence

import pytest

from utilities import stack_dumps

#: How long the processes get to write their stacks before they are killed, and the pause between two.
DUMP_SECONDS = 3
DUMP_SPACING = 0.5


def start(command: Sequence[str], **popen) -> subprocess.Popen:
    """`command` in a session of its own, its output captured as text."""
    return subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **popen)


def finish(proc: subprocess.Popen, timeout: float) -> subprocess.CompletedProcess:
    """Wait for `proc` (from `start`) as `subprocess.run` would. After `timeout` seconds every process under
    it that handles SIGUSR1 gets it, one after the other (main.py and DataLoader workers print every
    thread's stack, utilities/stack_dumps.py; to the others it would be fatal), then every one SIGKILL, and
    the test fails with the end of their stderr."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        tree = family(proc.pid)
        for pid in tree:  # one at a time: faulthandler writes a line in pieces, two dumps at once interleave
            if catches(pid, stack_dumps.SIGNAL):
                signal_all([pid], stack_dumps.SIGNAL)
                time.sleep(DUMP_SPACING)
        time.sleep(DUMP_SECONDS)
        signal_all(tree, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"{' '.join(proc.args)}\ndid not end within {timeout} s; its stdout ends with:\n{stdout[-3000:]}\n"
                    f"and its stderr (with every thread's stack of each process) with:\n{stderr[-30000:]}",
                    pytrace=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL `proc` and every process under it, if it still runs."""
    if proc.poll() is None:
        signal_all(family(proc.pid), signal.SIGKILL)
        proc.communicate()


def run(command: Sequence[str], timeout: float, **popen) -> subprocess.CompletedProcess:
    """`finish(start(command, **popen), timeout)`."""
    return finish(start(command, **popen), timeout)


def family(pid: int) -> List[int]:
    """`pid` and every process descended from it, parents first. Its session is not enough: torchrun starts
    each of its processes in a session of its own."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone
        children.setdefault(parent, []).append(int(entry))
    tree, queue = [], [pid]
    while queue:
        tree.append(queue.pop(0))
        queue.extend(children.get(tree[-1], []))
    return tree


def signal_mask(pid: int, kind: str) -> int:
    """Process `pid`'s mask of signals of `kind` in /proc ("SigCgt": caught, "SigIgn": ignored), bit n-1
    for signal n; 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return int(next(line for line in f if line.startswith(f"{kind}:")).split()[1], 16)
    except (OSError, StopIteration):
        return 0


def catches(pid: int, signum: int) -> bool:
    """Whether process `pid` has a handler for `signum`."""
    return bool(signal_mask(pid, "SigCgt") >> (signum - 1) & 1)


def signal_all(pids: List[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
