from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from cmdb.core.models import FrozenModel


class PlannedChange(FrozenModel):
    id: str
    title: str
    start: datetime
    end: datetime
    ci_ids: list[str]
    created_at: datetime


class ChangeWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200)
    start: datetime
    end: datetime
    ci_ids: list[str] = Field(min_length=1, max_length=500)

    @field_validator("start", "end")
    @classmethod
    def _zoned(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone, e.g. 2026-12-01T02:00:00Z")
        return v

    @field_validator("end")
    @classmethod
    def _after_start(cls, v: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("start")
        if start is not None and v <= start:
            raise ValueError("end must be after start")
        return v
