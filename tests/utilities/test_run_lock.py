"""The run-folder lock: one writer, a live owner stops a second one, a dead owner's lock is taken over."""
import json
import multiprocessing
import os
import socket
import subprocess

import pytest

from utilities.errors import UsageError
from utilities.run_lock import LOCK_NAME, RunLock, process_start


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_lock(run_dir, **owner):
    with open(os.path.join(run_dir, LOCK_NAME), "w") as f:
        json.dump(owner, f)


def test_the_lock_records_its_owner_and_is_removed_at_the_end(tmp_path):
    with RunLock(str(tmp_path)):
        with open(tmp_path / LOCK_NAME) as f:
            owner = json.load(f)
        assert (owner["pid"], owner["host"]) == (os.getpid(), socket.gethostname())
        assert owner["started"] == process_start(os.getpid()) is not None
    assert not os.path.exists(tmp_path / LOCK_NAME)


def test_a_live_owner_stops_a_second_writer(tmp_path):
    with RunLock(str(tmp_path)):
        with pytest.raises(UsageError, match=rf"^{tmp_path} is in use by another run \(pid {os.getpid()} on host "):
            RunLock(str(tmp_path)).acquire()
        assert os.path.exists(tmp_path / LOCK_NAME)


def test_a_dead_owner_on_this_host_is_taken_over_with_a_warning(tmp_path):
    pid = dead_pid()
    write_lock(str(tmp_path), pid=pid, host=socket.gethostname(), started=None, since="yesterday")
    with pytest.warns(UserWarning, match=rf"took over the lock of a run that is gone \(pid {pid} on host .* since "
                                         "yesterday\\)"):
        lock = RunLock(str(tmp_path))
        lock.acquire()
    with open(tmp_path / LOCK_NAME) as f:
        assert json.load(f)["pid"] == os.getpid()
    lock.release()
    assert os.listdir(tmp_path) == []  # the stale file is gone too


def test_a_recycled_pid_is_not_taken_for_the_owner(tmp_path):
    """The recorded pid exists again, but its process started at another time: the owner is gone."""
    write_lock(str(tmp_path), pid=os.getpid(), host=socket.gethostname(), started=process_start(os.getpid()) - 1,
               since="then")
    lock = RunLock(str(tmp_path))
    with pytest.warns(UserWarning, match=rf"took over the lock of a run that is gone \(pid {os.getpid()} on host "):
        lock.acquire()
    assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text()) == lock.owner
    assert lock.owner["started"] == process_start(os.getpid())  # this process, now recorded with its start time


def test_an_owner_on_another_host_is_never_judged_from_here(tmp_path):
    write_lock(str(tmp_path), pid=dead_pid(), host="gpu-node-17", started=None, since="then")
    with pytest.raises(UsageError, match=r"in use by another run \(pid \d+ on host gpu-node-17 since then\); wait "):
        RunLock(str(tmp_path)).acquire()


def test_a_lock_left_empty_by_a_creator_that_died_is_taken_over(tmp_path, monkeypatch):
    monkeypatch.setattr(RunLock, "WRITE_GRACE_SECONDS", 0.05)
    (tmp_path / LOCK_NAME).write_text("")
    lock = RunLock(str(tmp_path))
    with pytest.warns(UserWarning, match=r"took over the lock of a run that is gone \(pid None"):
        lock.acquire()
    assert lock.held and json.loads((tmp_path / LOCK_NAME).read_text()) == lock.owner
    lock.release()
    assert os.listdir(tmp_path) == []


def test_a_folder_that_cannot_be_written_is_one_line(tmp_path):
    with pytest.raises(UsageError, match=rf"^{tmp_path}/gone: cannot write in the run folder \(No such file"):
        RunLock(str(tmp_path / "gone")).acquire()


def _try_lock(run_dir, barrier, results):
    barrier.wait()
    try:
        lock = RunLock(run_dir)
        lock.acquire()
        results.put("held")
        barrier.wait()  # hold it until every process has tried
        lock.release()
    except UsageError:
        results.put("refused")
        barrier.wait()


@pytest.mark.filterwarnings("ignore:.*took over")
def test_of_six_processes_taking_over_one_stale_lock_at_once_exactly_one_gets_it(tmp_path):
    context = multiprocessing.get_context("fork")
    for _ in range(5):
        write_lock(str(tmp_path), pid=dead_pid(), host=socket.gethostname(), started=None, since="then")
        barrier, results = context.Barrier(6), context.Queue()
        procs = [context.Process(target=_try_lock, args=(str(tmp_path), barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        assert sorted(results.get(timeout=5) for _ in procs) == ["held"] + ["refused"] * 5
        assert os.listdir(tmp_path) == []
