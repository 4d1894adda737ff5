"""The exceptions a run ends with, and the exit status of each.

Anything the user can fix (a missing folder, an unknown name, an impossible flag combination) raises
`UsageError`; a loss that became NaN or infinite raises `TrainingDiverged`; SIGTERM or SIGINT ends a run
with `Interrupted` (utilities/preemption.py). `main.main` turns each into one line on stderr (`main.py: ...`), no
traceback, and the exit status below, so a sweep or requeue script can tell a typo from a diverged run from
a preempted one.
"""
from __future__ import annotations

import signal
from typing import Optional

#: Exit statuses of `python main.py` (README.md "Exit statuses", docs/runs.md).
EXIT_DONE = 0
#: Bad input: a flag, a file or a combination the user can fix (argparse uses 2 too).
EXIT_USAGE = 2
#: The loss became NaN or infinite; the run folder keeps the last good epoch's checkpoint.
EXIT_DIVERGED = 3
#: Stopped by SIGTERM or SIGINT after saving a resumable `last` checkpoint: run `--checkpoint <run>` again
#: (EX_TEMPFAIL of sysexits.h, "try again", which requeue scripts test for). Stopped before anything
#: resumable existed (while setting up a new run), the status is 128 + the signal number, as the shell's:
#: 130 for SIGINT, 143 for SIGTERM (utilities/preemption.py).
EXIT_INTERRUPTED = 75
#: Under torchrun: another process died, or a collective waited longer than --dist_timeout; the run folder
#: keeps its last checkpoint (utilities/distributed.py).
EXIT_LOST_PROCESS = 4


class UsageError(Exception):
    """Bad input that the user can fix; the message is the whole story and names the flag or file."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message names the epoch, the step and the loss terms.

    Not a `UsageError`: the input was valid, training failed, and the run exits with `EXIT_DIVERGED`.
    """


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


class Interrupted(BaseException):
    """The run stopped on signal `signum` `where` ("at epoch 2, step 5/8"); `checkpoint` is the `last`
    checkpoint it can resume from, None if there is none (exit status `EXIT_INTERRUPTED`, else 128 + signum).

    A BaseException, as KeyboardInterrupt: raised by a signal handler in the middle of any code, it must not
    be taken for that code's own failure by an `except Exception`."""

    def __init__(self, signum: int, where: str, checkpoint: Optional[str] = None):
        super().__init__(f"interrupted by {signal_name(signum)} {where}")
        self.signum = signum
        self.where = where
        self.checkpoint = checkpoint

    @property
    def exit_status(self) -> int:
        return EXIT_INTERRUPTED if self.checkpoint else 128 + self.signum
