"""The exception types the command line prints as one line: bad input (exit 2) and an invalid attack (exit 1)."""


class UserError(Exception):
    """Bad input from the user (params, files, arguments): message is one line naming the problem."""

    exit_code = 2


class InvalidAdversarial(RuntimeError):
    """An attack produced an example outside [0, 1], outside its budget, or with NaN."""
