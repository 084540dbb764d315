"""What callers send to chargeback, validated: meters, rate cards, cost pools, usage records
and adjustments (the service turns each into what the repository stores)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from cmdb.chargeback.models import (
    MAX_QUANTITY,
    CostSource,
    Driver,
    PoolAllocation,
    Tier,
)
from cmdb.items.models import CIClass

CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")  # CI attribute: node prop attr_<name>


def check_code(v: str) -> str:
    """Codes of meters and pools: lower case, stable, safe in URLs and file names."""
    if not CODE.match(v):
        raise ValueError("must be lower case letters, digits, '.', '_' or '-', "
                         "starting with a letter")
    return v


Code = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(check_code)]


class MeterInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name: str = Field(min_length=1, max_length=200)
    unit: str = Field(min_length=1, max_length=50)
    description: str | None = Field(None, max_length=2000)


class UsageRecordInput(BaseModel):
    """One usage record as a monitoring or billing source sends it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    record_id: str = Field(alias="recordId", min_length=1, max_length=200)
    ci_id: str = Field(alias="ciId", min_length=1, max_length=200)
    meter: str = Field(min_length=1, max_length=63)
    quantity: Decimal = Field(ge=0, le=MAX_QUANTITY, decimal_places=6)
    at: datetime
    source: str = Field(min_length=1, max_length=100)

    @field_validator("quantity", mode="before")
    @classmethod
    def _no_float(cls, v: object) -> object:
        if isinstance(v, float):
            # A JSON number with a fraction arrives as float: go through its shortest text
            # form, which is what the sender wrote.
            return Decimal(repr(v))
        return v

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a time zone (for example 2026-11-03T10:00:00Z)")
        return v.astimezone(UTC)


def check_tiers(tiers: list[Tier]) -> list[Tier]:
    if not tiers:
        raise ValueError("a rate card needs at least one tier")
    for i, t in enumerate(tiers[:-1]):
        if t.up_to is None:
            raise ValueError(f"tier {i + 1} has no upTo but is not the last tier")
        nxt = tiers[i + 1].up_to
        if nxt is not None and nxt <= t.up_to:
            raise ValueError(f"tier {i + 2} upTo must be above tier {i + 1}'s ({t.up_to})")
    if tiers[-1].up_to is not None:
        raise ValueError("the last tier must have no upTo (it covers everything above)")
    return tiers


class RateCardInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: str = Field(min_length=1, max_length=63)
    effective_from: date
    currency: str
    tiers: list[Tier] = Field(max_length=20)

    @field_validator("tiers")
    @classmethod
    def _tiers(cls, v: list[Tier]) -> list[Tier]:
        return check_tiers(v)


def check_attribute(v: str | None) -> str | None:
    if v is not None and not ATTRIBUTE_NAME.match(v):
        raise ValueError("must be a CI attribute name: a letter, then letters, digits or '_' "
                         "(at most 63)")
    return v


# What each driver needs of the pool's optional fields, and which fields it takes at all.
_NEEDS = {Driver.ATTRIBUTE: "attribute", Driver.METER: "meter", Driver.ROLE_USERS: "role",
          Driver.FIXED: "allocations"}
_ONLY_FOR = {"attribute": {Driver.ATTRIBUTE}, "holder_classes": {Driver.ATTRIBUTE},
             "meter": {Driver.METER}, "role": {Driver.ROLE_USERS},
             "allocations": {Driver.FIXED}}
NO_CAPACITY = {Driver.EQUAL, Driver.FIXED, Driver.ROLE_USERS, Driver.SUBSCRIPTIONS}
NO_ONWARD = {Driver.SESSIONS, Driver.SESSION_HOURS, Driver.ROLE_USERS, Driver.SUBSCRIPTIONS,
             Driver.FIXED}  # their holders are payers: nothing passes on


class CostPoolInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Code
    name: str = Field(min_length=1, max_length=200)
    driver: Driver
    ci_ids: list[str] = Field(min_length=1, max_length=1000)
    capacity: Decimal | None = Field(None, gt=0, le=MAX_QUANTITY, decimal_places=6,
                                     validate_default=True)
    description: str | None = Field(None, max_length=2000)
    cost_source: CostSource = CostSource.MANUAL  # ASSETS: the month's cost from its assets
    # Driver settings (see Driver); each field is checked against the driver given.
    attribute: Annotated[str | None, AfterValidator(check_attribute)] = Field(
        None, validate_default=True)
    holder_classes: list[CIClass] | None = Field(None, max_length=20, validate_default=True)
    meter: str | None = Field(None, min_length=1, max_length=63, validate_default=True)
    role: str | None = Field(None, min_length=1, max_length=200, validate_default=True)
    allocations: list[PoolAllocation] | None = Field(None, max_length=1000,
                                                     validate_default=True)
    onward: Annotated[str | None, AfterValidator(check_attribute)] = Field(
        None, validate_default=True)

    @field_validator("capacity", "attribute", "holder_classes", "meter", "role",
                     "allocations", "onward")
    @classmethod
    def _for_driver(cls, v: Any, info: ValidationInfo) -> Any:
        driver = info.data.get("driver")
        if driver is None:  # the driver itself is wrong: said there
            return v
        name = info.field_name
        if v is None:
            if _NEEDS.get(driver) == name:
                raise ValueError(f"required by the {driver.value} driver")
            return v
        if name == "capacity" and driver in NO_CAPACITY:
            raise ValueError(f"the {driver.value} driver takes no capacity")
        if name == "onward" and driver in NO_ONWARD:
            raise ValueError(f"the {driver.value} driver's holders are payers: nothing "
                             "passes onward")
        if name in _ONLY_FOR and driver not in _ONLY_FOR[name]:
            allowed = " or ".join(sorted(d.value for d in _ONLY_FOR[name]))
            raise ValueError(f"only for the {allowed} driver")
        if name == "allocations":
            if not v:
                raise ValueError("the FIXED driver needs at least one cost centre")
            seen = set()
            for a in v:
                if a.cost_centre in seen:
                    raise ValueError(f"cost centre {a.cost_centre} appears more than once")
                seen.add(a.cost_centre)
            total = sum((a.percent for a in v), Decimal(0))
            if total > 100:
                raise ValueError(f"the percentages add up to {total}, more than 100")
        return v


class AdjustmentInput(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    period: str
    cost_centre: str = Field(min_length=1, max_length=100)
    amount: Decimal = Field(max_digits=14, decimal_places=2)
    reason: str = Field(min_length=1, max_length=2000)
    corrects_line: str | None = Field(None, max_length=200)

    @field_validator("amount")
    @classmethod
    def _nonzero(cls, v: Decimal) -> Decimal:
        if v == 0:
            raise ValueError("an adjustment of zero changes nothing")
        return v
