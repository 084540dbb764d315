from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cmdb.core.models import Criticality, ItemBase, LifecycleStatus, OperationalState


class ServiceKind(StrEnum):
    BUSINESS = "BUSINESS"
    TECHNICAL = "TECHNICAL"


class CostRecovery(StrEnum):
    """Who pays a service's own cost (what reaches it from the CIs and services below it):
    its owning cost centre (the default: showback to its owner); its consumers (the
    subscriptions for it, in proportion to the days each was active in the month); or
    nobody directly: the fees of its catalogue items recover it (PRICES: the service keeps
    its cost, not invoiced, and chargeRecovery compares it with those fees)."""

    OWNER = "OWNER"
    CONSUMERS = "CONSUMERS"
    PRICES = "PRICES"


SERVICE_LABELS = {ServiceKind.BUSINESS: ":Item:Service:BusinessService",
                  ServiceKind.TECHNICAL: ":Item:Service:TechnicalService"}

# "Sun 02:00-04:00" or "Daily 23:00-01:00", UTC.
_WINDOW = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) ([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$"
)


class SLA(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    availability_target: Decimal | None = Field(None, ge=0, le=100, decimal_places=4)
    response_target_minutes: int | None = Field(None, ge=0)
    restore_target_minutes: int | None = Field(None, ge=0)
    maintenance_windows: list[str] = []

    @field_validator("maintenance_windows")
    @classmethod
    def _windows(cls, v: list[str]) -> list[str]:
        for w in v:
            if not _WINDOW.match(w):
                raise ValueError(
                    f"maintenance window {w!r} must look like 'Sun 02:00-04:00' (UTC)"
                )
        return v


class BusinessValue(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    revenue_per_hour: Decimal | None = Field(None, ge=0, decimal_places=2)
    users: int | None = Field(None, ge=0)


class Service(ItemBase):
    kind: ServiceKind
    sla: SLA = SLA()
    business_value: BusinessValue = BusinessValue()
    cost_recovery: CostRecovery = CostRecovery.OWNER


class ServiceWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    kind: ServiceKind
    description: str | None = Field(None, max_length=4000)
    lifecycle_status: LifecycleStatus = LifecycleStatus.IN_SERVICE
    operational_state: OperationalState = OperationalState.UNKNOWN
    criticality: Criticality = Criticality.MEDIUM
    owner_group_id: str | None = None
    cost_centre_id: str | None = None
    location_id: str | None = None
    sla: SLA = SLA()
    business_value: BusinessValue = BusinessValue()
    cost_recovery: CostRecovery = CostRecovery.OWNER
    attributes: dict[str, object] = {}

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("name must not be blank")
        return v
