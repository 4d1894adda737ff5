"""Run main.py in this process and kill it with SIGKILL at a chosen point (for the tests of --checkpoint).

    python tests/interrupt_run.py --after-steps N -- <main.py flags>
        SIGKILL right after the N-th optimizer step (the middle of an epoch unless N is a multiple of its steps).
        Checkpoints are written before the run goes on (as the background writer has long done in a real
        run by then: a write takes far less than an epoch), so the kill finds the last epoch's on disk.
    python tests/interrupt_run.py --during-save N -- <main.py flags>
        on the N-th write of checkpoint_last.pth.tar, write the first half of its bytes to the temporary file,
        flush them to disk, then SIGKILL: a kill in the middle of a checkpoint write.

Nothing is mocked: the run is main.main; only the moment of death is chosen.
"""
from __future__ import annotations

import argparse
import io
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402


def kill_after_steps(n: int) -> None:
    step = torch.optim.Adam.step
    count = [0]

    def counted(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        count[0] += 1
        if count[0] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    torch.optim.Adam.step = counted

    from utilities.async_checkpoint import CheckpointWriter

    save = CheckpointWriter.save

    def written_at_once(self, *args, **kwargs):
        save(self, *args, **kwargs)
        self.wait()

    CheckpointWriter.save = written_at_once


def kill_during_save(n: int) -> None:
    save = torch.save
    count = [0]

    def half_then_die(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and "optimizer" in obj:  # a `last` checkpoint
            count[0] += 1
            if count[0] == n:
                buffer = io.BytesIO()
                save(obj, buffer, *args, **kwargs)
                data = buffer.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
        return save(obj, f, *args, **kwargs)

    torch.save = half_then_die


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--after-steps", type=int)
    parser.add_argument("--during-save", type=int)
    args, rest = parser.parse_known_args()
    if args.after_steps:
        kill_after_steps(args.after_steps)
    if args.during_save:
        kill_during_save(args.during_save)
    import main

    main.main(rest[1:] if rest[:1] == ["--"] else rest)
