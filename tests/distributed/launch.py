"""Start commands under torchrun from the repository root, as the tests of tests/distributed/ do."""
import os
import socket
import subprocess
import sys
from typing import Optional

from tests import processes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torchrun(*args: str, nproc: int = 2, env: Optional[dict] = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node nproc args...` (torchrun), with `env` added
    to this process's environment; a hang fails the test with the processes' stacks (tests/processes.py)."""
    return processes.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                          *args], timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def torchrun_two_machines(*args: str, env: Optional[dict] = None, timeout: int = 300):
    """The README's several-machines command, `torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d
    --rdzv_endpoint ...`, started twice on this machine as two "machines" of one process each (both have
    LOCAL_RANK 0, as the first process of every machine has); returns both launchers' CompletedProcess."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv_backend", "c10d", "--rdzv_id", "two_machines", "--rdzv_endpoint", f"127.0.0.1:{port}", *args]
    launchers = [processes.start(command, cwd=ROOT, env={**os.environ, **(env or {})}) for _ in range(2)]
    try:
        return [processes.finish(launcher, timeout) for launcher in launchers]
    finally:
        for launcher in launchers:
            processes.kill(launcher)
