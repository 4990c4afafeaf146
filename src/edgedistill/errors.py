"""One exception type for problems the user can fix; the CLI prints it as one line and exits 2."""


class UserError(Exception):
    """Bad input: the message names the field or file and how to fix it."""


def first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message, for one-line errors and records."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
