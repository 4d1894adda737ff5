"""The one exception type for bad user input.

Anything the user can fix (a missing folder, an unknown name, an impossible flag combination) raises
`UsageError`. `main.main` turns it into one line on stderr and exit status 2, with no traceback.
"""


class UsageError(Exception):
    """Bad input that the user can fix; the message is the whole story and names the flag or file."""
