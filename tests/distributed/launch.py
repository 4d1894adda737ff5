"""Start commands under torchrun from the repository root, as the tests of tests/distributed/ do."""
import os
import socket
import subprocess
import sys
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def torchrun(*args: str, nproc: int = 2, env: Optional[dict] = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run --standalone --nproc_per_node nproc args...` (torchrun), with `env` added
    to this process's environment."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                           *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def torchrun_two_machines(*args: str, env: Optional[dict] = None, timeout: int = 300):
    """The README's several-machines command, `torchrun --nnodes 2 --nproc_per_node 1 --rdzv_backend c10d
    --rdzv_endpoint ...`, started twice on this machine as two "machines" of one process each (both have
    LOCAL_RANK 0, as the first process of every machine has); returns both launchers' CompletedProcess."""
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--rdzv_backend", "c10d", "--rdzv_id", "two_machines", "--rdzv_endpoint", f"127.0.0.1:{port}", *args]
    launchers = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, **(env or {})}) for _ in range(2)]
    results = []
    for launcher in launchers:
        stdout, stderr = launcher.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr))
    return results
