"""The base of every config section: an unknown key is refused, so a typo costs seconds instead of a silently
ignored setting, and so is a float that is inf or NaN (a learning rate of .inf passes `gt=0`)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
