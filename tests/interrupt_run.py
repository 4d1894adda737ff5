"""Run main.py in this process and kill or signal it at a chosen point (for the tests of --checkpoint).

    python tests/interrupt_run.py --after-steps N -- <main.py flags>
        SIGKILL right after the N-th optimizer step (the middle of an epoch unless N is a multiple of its steps).
        Checkpoints are written before the run goes on (as the background writer has long done in a real
        run by then: a write takes far less than an epoch), so the kill finds the last epoch's on disk.
    python tests/interrupt_run.py --during-save N -- <main.py flags>
        on the N-th write of checkpoint_last.pth.tar, write the first half of its bytes to the temporary file,
        flush them to disk, then SIGKILL: a kill in the middle of a checkpoint write.
    python tests/interrupt_run.py --signal-after-steps N [--signal INT] [--to-group] -- <main.py flags>
        send SIGTERM (or the signal named) during the N-th optimizer step, to this process or, with
        --to-group, to its whole process group (its DataLoader workers too, as Ctrl-C and SLURM do).
    python tests/interrupt_run.py --signal-during-save -- ...
        with --signal-after-steps: send SIGTERM and SIGINT again in the middle of writing the checkpoint
        that the first signal causes.

Under torchrun, `--only-rank R` limits the kill or signal to the process of rank R (the others run on).

Nothing is mocked: the run is main.main; only the moment of the signal is chosen.
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


def checkpoints_written_at_once() -> None:
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


def signal_during_step(n: int, signum: int, to_group: bool) -> None:
    step = torch.optim.Adam.step
    count = [0]

    def counted(self, *args, **kwargs):
        count[0] += 1
        if count[0] == n:
            os.killpg(os.getpgid(0), signum) if to_group else os.kill(os.getpid(), signum)
        return step(self, *args, **kwargs)

    torch.optim.Adam.step = counted


def signal_again_during_save() -> None:
    save = torch.save

    def interrupted_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("progress"):  # the checkpoint a stop signal writes mid-epoch
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            f.write(data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            f.write(data[len(data) // 2:])
            return None
        return save(obj, f, *args, **kwargs)

    torch.save = interrupted_save


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--after-steps", type=int)
    parser.add_argument("--during-save", type=int)
    parser.add_argument("--signal-after-steps", type=int)
    parser.add_argument("--signal", default="TERM", choices=["TERM", "INT"])
    parser.add_argument("--to-group", action="store_true")
    parser.add_argument("--signal-during-save", action="store_true")
    parser.add_argument("--only-rank", type=int)
    args, rest = parser.parse_known_args()
    if args.after_steps:
        checkpoints_written_at_once()  # on every process: the killed one may not be the writer
    if args.only_rank is not None and int(os.environ.get("RANK", 0)) != args.only_rank:
        args.after_steps = args.during_save = args.signal_after_steps = None
        args.signal_during_save = False
    if args.after_steps:
        kill_after_steps(args.after_steps)
    if args.during_save:
        kill_during_save(args.during_save)
    if args.signal_after_steps:
        signal_during_step(args.signal_after_steps, getattr(signal, f"SIG{args.signal}"), args.to_group)
    if args.signal_during_save:
        signal_again_during_save()
    import main

    main.main(rest[1:] if rest[:1] == ["--"] else rest)
