"""DataLoader workers come from a single-threaded fork server (datasets/workers.py): a lock that another thread
of the run holds does not reach them, the server outlives stop signals, and a killed run leaves nothing behind."""
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from datasets.workers import loader_options
from tests.processes import signal_mask
from utilities.run_lock import is_alive

#: Taken by every item; a thread of the test process holds it while the workers start.
SHARED_LOCK = threading.Lock()


class LockedItems(Dataset):
    """Items that take the module's `SHARED_LOCK`, as a library's global lock is taken inside a worker."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        with SHARED_LOCK:
            return torch.tensor(i)


class Parents(Dataset):
    """Each item: the worker's parent process."""

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return torch.tensor([os.getppid()])


def server_pid() -> int:
    from multiprocessing import forkserver

    return forkserver._forkserver._forkserver_pid


def gone(pids, within: float) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if not any(is_alive(pid, None) and not zombie(pid) for pid in pids):
            return True
        time.sleep(0.2)
    return False


def zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return False


def test_a_lock_held_by_another_thread_at_worker_start_does_not_reach_the_workers():
    """What hung a resumed two-process run: a fork copies a lock that another thread holds, held, into the
    child. Forked workers would wait for it for ever (here: until the DataLoader's timeout); the server's do not."""
    release = threading.Event()

    def hold():
        with SHARED_LOCK:
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        while not SHARED_LOCK.locked():
            time.sleep(0.01)
        loader = DataLoader(LockedItems(), batch_size=2, timeout=60, **loader_options(2))
        assert [batch.tolist() for batch in loader] == [[0, 1], [2, 3]]
    finally:
        release.set()
        holder.join()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_workers_parent_is_a_single_threaded_server_that_ignores_stop_signals():
    seen = []
    for batch in DataLoader(Parents(), batch_size=1, **loader_options(1)):
        seen.append(batch[0].tolist())
    server = server_pid()
    assert {parent for parent, in seen} == {server} and server != os.getpid()
    assert len(os.listdir(f"/proc/{server}/task")) == 1  # forks from it copy no other thread
    ignored = signal_mask(server, "SigIgn")
    assert ignored >> (signal.SIGTERM - 1) & 1 and ignored >> (signal.SIGINT - 1) & 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_run_leaves_no_worker_and_no_server_behind(tmp_path):
    """SIGKILL to a process with two persistent workers: they, and then the server, exit within seconds (the
    server alone would wait for its workers and they for it); the caller's pipes close."""
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        from datasets.workers import loader_options
        from multiprocessing import forkserver
        if __name__ == "__main__":
            loader = DataLoader(TensorDataset(torch.arange(8)), batch_size=2, persistent_workers=True,
                                **loader_options(2))
            next(iter(loader))
            pids = [w.pid for w in loader._iterator._workers] + [forkserver._forkserver._forkserver_pid]
            print(*pids, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)  # pipes close
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    pids = [int(pid) for pid in proc.stdout.split()]
    assert len(pids) == 3 and gone(pids, within=15), [p for p in pids if is_alive(p, None)]
