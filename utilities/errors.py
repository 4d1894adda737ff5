"""The exceptions a run ends with, and the exit status of each.

Anything the user can fix (a missing folder, an unknown name, an impossible flag combination) raises
`UsageError`; a loss that became NaN or infinite raises `TrainingDiverged`. `main.main` turns either into
one line on stderr (`main.py: error: ...`), no traceback, and the exit status below, so a sweep script can
tell a typo from a diverged run.
"""

#: Exit statuses of `python main.py` (README.md "Exit statuses", docs/runs.md).
EXIT_DONE = 0
#: Bad input: a flag, a file or a combination the user can fix (argparse uses 2 too).
EXIT_USAGE = 2
#: The loss became NaN or infinite; the run folder keeps the last good epoch's checkpoint.
EXIT_DIVERGED = 3


class UsageError(Exception):
    """Bad input that the user can fix; the message is the whole story and names the flag or file."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the message names the epoch, the step and the loss terms.

    Not a `UsageError`: the input was valid, training failed, and the run exits with `EXIT_DIVERGED`.
    """
