"""The base of every config section: an unknown key is refused, so a typo costs seconds instead of a silently
ignored setting."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
