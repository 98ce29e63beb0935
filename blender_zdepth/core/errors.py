"""Errors that carry a message for the user and an exit code for scripts.

Every error the project raises on purpose for bad input is a :class:`ZDepthError`: its message
says what is wrong and what to do, and the command line prints it as one line on stderr and exits
with :attr:`ZDepthError.exit_code`.
"""


class ZDepthError(Exception):
    """A processing error (bad file, bad data): exit code 1."""

    exit_code = 1


class UsageError(ZDepthError):
    """The command was asked for something impossible (bad option values): exit code 2."""

    exit_code = 2
