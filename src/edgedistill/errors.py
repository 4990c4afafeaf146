"""One exception type for problems the user can fix; the CLI prints it as one line and exits 2."""
import inspect
import re
from typing import Mapping

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class UserError(Exception):
    """Bad input: the message names the field or file and how to fix it."""


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def first_line(exc: BaseException) -> str:
    """The exception's type and the first line of its message (colour codes removed), for one-line errors and
    records."""
    text = strip_ansi(str(exc)).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def environment_error(exc: OSError) -> str:
    """An OSError as one line a user can act on: what failed, on which file, and why (a full disk, a read-only
    place, a missing folder)."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    why = exc.strerror or first_line(exc)
    hint = {errno.ENOSPC: "free some space", errno.EDQUOT: "free some space", errno.EROFS: "choose a writable place",
            errno.EACCES: "check the permissions", errno.EPERM: "check the permissions",
            errno.ENOTDIR: "a part of that path is a file, not a folder",
            errno.EISDIR: "a folder has that file's name; move or remove it"}.get(exc.errno, "")
    return f"cannot use{where}: {why}" + (f"; {hint}" if hint else "")


def accepted_args(params: Mapping[str, inspect.Parameter], field: str, skip: tuple[str, ...] = ()) -> str:
    """What a factory or loader takes, said so that a user who switched models (`--set teacher.model=gru` keeps
    the old model's args) or misspelt an option sees what to give instead."""
    named = {name: p for name, p in params.items() if name not in skip
             and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    if not named:
        return f"it takes none: set {field} to {{}}"
    required = [name for name, p in named.items() if p.default is inspect.Parameter.empty]
    if required:
        return f"it takes {', '.join(named)} ({', '.join(required)} required): set {field} to those"
    return f"it takes {', '.join(named)}: set {field} to those, or to {{}} for its defaults"
