from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cmdb.core.models import OrgKind, OrgUnit
from cmdb.core.validation import NonBlankName

__all__ = ["OrgKind", "OrgUnit", "OrgWrite"]


class OrgWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: NonBlankName = Field(min_length=1, max_length=200)
    code: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    email: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+$")
    parent_id: str | None = None
    description: str | None = Field(None, max_length=4000)
