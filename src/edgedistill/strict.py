"""The base of every config section: an unknown key is refused, so a typo costs seconds instead of a silently
ignored setting, and so is a float that is inf or NaN (a learning rate of .inf passes `gt=0`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


def error_location(error: dict) -> str:
    """Where one of pydantic's errors is, as a dotted key ("teacher.train.lr", "inputs.0.kind")."""
    return ".".join(str(part) for part in error["loc"]) or "(top level)"


def format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = error_location(first)
    kind = first["type"]
    if kind == "extra_forbidden":
        return f"{source}: unknown key '{loc}'; remove it or check its spelling"
    if kind == "missing":
        return f"{source}: missing key '{loc}'; add it"
    more = f" (and {len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    got = first.get("input")
    words = str(first.get("ctx", {}).get("expected", ""))
    if kind == "literal_error" and isinstance(got, bool) and "'" in words:
        return (f"{source}: key '{loc}': YAML reads an unquoted yes/no/on/off/true/false as {str(got).lower()}, but "
                f"this key takes a word: {words}; quote it, e.g. '{loc.split('.')[-1]}: \"...\"'{more}")
    got_txt = "" if isinstance(got, (dict, list)) else f", got {got!r}"
    if not first["loc"] and kind == "value_error":  # a check across keys names its keys in its own message
        return f"{source}: {first['msg'].removeprefix('Value error, ')}{more}"
    return f"{source}: key '{loc}': {first['msg']}{got_txt}{more}"
