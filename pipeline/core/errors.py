"""The one exception type for bad input: the CLI prints it as a single line and exits 2."""


class UserError(Exception):
    """Bad input from the user (params, files, arguments): message is one line naming the problem."""

    exit_code = 2
