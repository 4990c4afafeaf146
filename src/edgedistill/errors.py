"""One exception type for problems the user can fix; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input: the message names the field or file and how to fix it."""
