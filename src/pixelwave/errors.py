"""Errors a user can cause and fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a flag, a checkpoint). The message is one line naming the problem."""
