"""SIGUSR1 prints every thread's stack (utilities/stack_dumps.py), and a test's process that hangs fails with
them (tests/processes.py)."""
import faulthandler
import os
import sys
import textwrap
import time

import pytest

import main
from tests import processes
from utilities import stack_dumps

HANGS = textwrap.dedent("""
    import subprocess, sys, threading
    sys.path.insert(0, {root!r})
    CHILD = {child!r}
    from utilities import stack_dumps
    stack_dumps.enable()

    def waits_for_a_lock_nobody_releases():
        lock = threading.Lock()
        lock.acquire()
        print("waiting", flush=True)
        lock.acquire()

    def side_thread_sleeps():
        threading.Event().wait()

    threading.Thread(target=side_thread_sleeps, daemon=True).start()
    child = subprocess.Popen([sys.executable, "-c", CHILD], start_new_session=True)  # as torchrun starts its processes
    print("child", child.pid, flush=True)
    waits_for_a_lock_nobody_releases()
""")
CHILD = """
import sys, threading
sys.path.insert(0, {root!r})
from utilities import stack_dumps
stack_dumps.enable()

def child_in_a_session_of_its_own_waits():
    threading.Event().wait()

child_in_a_session_of_its_own_waits()
"""


@pytest.mark.skipif(stack_dumps.SIGNAL is None, reason="no SIGUSR1 on this system")
def test_a_process_that_outlives_its_timeout_fails_the_test_with_every_threads_stack(tmp_path):
    script = tmp_path / "hangs.py"
    root = os.path.dirname(os.path.dirname(os.path.abspath(processes.__file__)))
    script.write_text(HANGS.format(root=root, child=CHILD.format(root=root)))
    with pytest.raises(pytest.fail.Exception) as failure:
        processes.run([sys.executable, str(script)], timeout=5)
    message = str(failure.value)
    assert "did not end within 5 s" in message and "waiting" in message
    assert "in waits_for_a_lock_nobody_releases" in message  # the main thread, blocked in C (a lock)
    assert "in side_thread_sleeps" in message  # and the other thread
    assert "in child_in_a_session_of_its_own_waits" in message  # and the descendant outside its session
    child = int(message.split("child ", 1)[1].split()[0])
    with pytest.raises(ProcessLookupError):  # killed, and reaped by init
        for _ in range(50):
            os.kill(child, 0)
            time.sleep(0.1)


@pytest.mark.skipif(stack_dumps.SIGNAL is None, reason="no SIGUSR1 on this system")
def test_main_turns_the_stack_dumps_on(tmp_path):
    faulthandler.unregister(stack_dumps.SIGNAL)
    main.main(["--dataset", "glyphs", "--arch", "slimresnet18_normalize", "--not_pretrained", "--kernels", "0",
               "--embed_dim", "16", "--bs", "16", "--device", "cpu", "--save_path", str(tmp_path), "--dry_run"])
    assert faulthandler.unregister(stack_dumps.SIGNAL)  # True: it was registered
