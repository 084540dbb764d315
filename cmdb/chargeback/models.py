"""Chargeback: meters, usage, rate cards, cost pools, periods and the charge lines they make.

Money is ``Decimal`` everywhere and is stored in Neo4j as integer minor units (cents) on charge
lines, so that sums in Cypher stay exact; rates and quantities are stored as decimal strings.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from cmdb.items.models import CIClass, CostRecovery

CODE = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")  # CI attribute: node prop attr_<name>
PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CENT = Decimal("0.01")
MAX_QUANTITY = Decimal("1e12")


def check_code(v: str) -> str:
    """Codes of meters and pools: lower case, stable, safe in URLs and file names."""
    if not CODE.match(v):
        raise ValueError("must be lower case letters, digits, '.', '_' or '-', "
                         "starting with a letter")
    return v


Code = Annotated[str, Field(min_length=1, max_length=63), AfterValidator(check_code)]


class Driver(StrEnum):
    """How a cost pool is shared among what sits under it."""

    VCPU = "VCPU"  # virtual CPUs of the VMs and desktops under the pool's CIs
    STORAGE_GB = "STORAGE_GB"  # sizeGb of the storage volumes among and under the pool's CIs
    SESSIONS = "SESSIONS"  # desktop sessions of users on the pool's desktops in the period
    EQUAL = "EQUAL"  # equal shares among the direct consumers of the pool's CIs
    ATTRIBUTE = "ATTRIBUTE"  # a CI attribute's value, first holder on each path
    METER = "METER"  # the month's usage of a meter by the CIs among and under the pool's
    SESSION_HOURS = "SESSION_HOURS"  # hours of users' desktop sessions within the month
    ROLE_USERS = "ROLE_USERS"  # the users holding a role, one share each
    SUBSCRIPTIONS = "SUBSCRIPTIONS"  # active days of the subscriptions to what is under it
    FIXED = "FIXED"  # fixed percentages per cost centre


class LineKind(StrEnum):
    RECURRING_FEE = "RECURRING_FEE"  # a subscription's monthly fee, pro-rated
    ONE_OFF_FEE = "ONE_OFF_FEE"  # a subscription's one-off fee, in the month it started
    USAGE = "USAGE"  # metered usage times the rate card
    POOL = "POOL"  # a share of a shared cost pool
    UNALLOCATED = "UNALLOCATED"  # cost with no consumer (idle capacity, nobody using it)
    ADJUSTMENT = "ADJUSTMENT"  # a correction of a closed period, booked in an open one


class PeriodStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


class BillingMode(StrEnum):
    """Whether a cost centre is invoiced (chargeback) or only shown its cost (showback)."""

    CHARGEBACK = "CHARGEBACK"
    SHOWBACK = "SHOWBACK"


class ReportDimension(StrEnum):
    COST_CENTRE = "COST_CENTRE"
    USER = "USER"
    SERVICE = "SERVICE"
    CATALOGUE_ITEM = "CATALOGUE_ITEM"
    METER = "METER"
    KIND = "KIND"


class CostSource(StrEnum):
    """Where a cost pool's cost in a period comes from."""

    MANUAL = "MANUAL"  # the amount set for the period (setCostPoolAmount)
    ASSETS = "ASSETS"  # the depreciation and support of its CIs' and their members' assets


# --- periods ---------------------------------------------------------------------------------


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """First instant of the month and first instant of the next (UTC)."""
    m = PERIOD.match(period)
    if not m:
        raise ValueError(f"period {period!r} is not a month written YYYY-MM")
    year, month = int(m.group(1)), int(m.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def period_of(at: datetime) -> str:
    return f"{at.astimezone(UTC).year:04d}-{at.astimezone(UTC).month:02d}"


def next_period(period: str) -> str:
    return period_of(period_bounds(period)[1])


class Period(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str  # YYYY-MM
    start: datetime
    end: datetime
    status: PeriodStatus
    currency: str
    calculated_at: datetime | None = None
    closed_at: datetime | None = None
    closed_by: str | None = None
    total: Decimal | None = None
    line_count: int | None = None
    checksum: str | None = None  # sha256 of the frozen lines, set when the period closes
    warnings: list[str] = []


# --- meters and usage ------------------------------------------------------------------------


class Meter(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    unit: str  # the pricing unit: "vCPU-hour", "GB-month", "session", "mailbox", "call"
    description: str | None = None


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


class UsageRejection(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    record_id: str | None
    reason: str


class UsageIngestResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    received: int
    created: int
    duplicates: int  # the same record id with the same content: counted once
    rejected: list[UsageRejection]
    late: int  # records for a closed period, billed as adjustments in the next open one


# --- rate cards ------------------------------------------------------------------------------


class Tier(BaseModel):
    """Up to ``up_to`` units (cumulative, per CI and meter in a period) cost ``rate`` each;
    the last tier has no ``up_to``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    up_to: Decimal | None = Field(None, alias="upTo", gt=0, le=MAX_QUANTITY, decimal_places=6)
    rate: Decimal = Field(ge=0, max_digits=18, decimal_places=6)


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


class RateCard(BaseModel):
    """One version of a meter's price: in force from ``effective_from`` until the next version
    starts (``effective_to``, exclusive)."""

    model_config = ConfigDict(frozen=True)

    id: str
    meter: str
    version: int
    effective_from: date
    effective_to: date | None
    currency: str
    tiers: list[Tier]
    created_at: datetime
    created_by: str | None = None

    @property
    def tiered(self) -> bool:
        return len(self.tiers) > 1


# --- cost pools ------------------------------------------------------------------------------


def check_attribute(v: str | None) -> str | None:
    if v is not None and not ATTRIBUTE_NAME.match(v):
        raise ValueError("must be a CI attribute name: a letter, then letters, digits or '_' "
                         "(at most 63)")
    return v


class PoolAllocation(BaseModel):
    """A FIXED pool's part for one cost centre."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_centre: str = Field(min_length=1, max_length=100)
    percent: Decimal = Field(gt=0, le=100, decimal_places=2)


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


class CostPool(BaseModel):
    """A shared cost (a cluster, a storage array, the VDI platform) with its cost per period.

    ``capacity`` (in driver units) makes unused capacity visible: the share of the pool that
    capacity nobody uses stands for is reported as unallocated idle capacity."""

    model_config = ConfigDict(frozen=True)

    id: str
    code: str
    name: str
    driver: Driver
    ci_ids: list[str]
    capacity: Decimal | None
    description: str | None
    amounts: dict[str, Decimal]  # period -> cost of the pool in that period
    currency: str
    # Driver settings (see CostPoolInput); allocations: cost centre code -> percent.
    attribute: str | None = None
    holder_classes: list[str] = []
    meter: str | None = None
    role: str | None = None
    allocations: list[PoolAllocation] = []
    onward: str | None = None
    cost_source: CostSource = CostSource.MANUAL
    # ASSETS pools, periods whose amount came from assets: how many assets it sums.
    asset_counts: dict[str, int] = {}


# --- charge lines ----------------------------------------------------------------------------


class PoolHolder(BaseModel):
    """What a line sums for its payer: a pool's driver holder, or a CI whose usage it bills.
    What it holds or used, how much of its cost reaches the line's payer, the exact share of
    the source that makes, and the path it takes; a usage line's CI also has its cents."""

    model_config = ConfigDict(frozen=True)

    id: str  # the CI (or user, for desktop sessions) holding the driver, or the metered CI
    name: str
    ci_class: str | None = None
    quantity: Decimal  # its driver quantity (vCPUs, GB, sessions, 1 for an equal split),
    # or its metered quantity
    reaching: str  # the fraction of its cost that reaches the payer, "a/b"
    share: str  # the exact fraction of the pool (or of the CI's usage) it adds, "a/b"
    path: list[str] = []
    amount: Decimal | None = None  # usage lines: its part of the line, exact to the cent
    unit_price: Decimal | None = None  # usage lines: its rate, or amount / quantity (tiered)


class ChargeLine(BaseModel):
    """One amount charged (or shown) to one consumer, with everything that explains it."""

    model_config = ConfigDict(frozen=True)

    id: str
    period: str
    seq: int  # order of the line within its period's calculation
    kind: LineKind
    amount: Decimal  # exact to the cent
    currency: str
    # What the cost came from: "subscription:<id>", "order:<id>",
    # "usage:<meter>:<month>:<rate card id>" (the usage of the line's CIs), "pool:<code>".
    source: str
    description: str
    cost_centre: str | None  # code; None for unallocated cost
    invoiced: bool  # False for showback cost centres and unallocated cost
    user: str | None = None
    service_id: str | None = None
    service_name: str | None = None
    item_id: str | None = None  # catalogue item
    item_name: str | None = None
    subscription_id: str | None = None
    ci_id: str | None = None  # the resource the cost is about (metered CI, pool's driver holder)
    ci_name: str | None = None
    ci_class: str | None = None
    meter: str | None = None
    unit: str | None = None
    quantity: Decimal | None = None  # usage quantity, driver quantity or active days
    rate_card_id: str | None = None
    rate_version: int | None = None
    unit_price: Decimal | None = None  # the rate (flat) or amount / quantity (tiered)
    pool: str | None = None
    driver: Driver | None = None
    share: str | None = None  # the exact fraction of the source this line carries, "a/b"
    path: list[str] = []  # names from the cost's origin to the consumer
    # A pool's line for a payer reached through several driver holders, or a usage line
    # summing several CIs: each of them.
    holders: list[PoolHolder] = []
    adjusts: str | None = None  # the closed period a late record or correction belongs to
    corrects_line: str | None = None
    # PRICES: the line's payer is a service recovered through the prices of its catalogue
    # items, so the line is not invoiced (its subscriptions' fees recover it).
    recovery: CostRecovery | None = None
    charge_start: datetime
    charge_end: datetime


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


class CalculationResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: Period
    changed: bool  # False when the period is closed (its lines stay as they were)
    lines: int
    total: Decimal
    allocated: Decimal
    unallocated: Decimal
    warnings: list[str]


class ReportRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    key: str | None  # cost centre code, user name, service id, item id, meter, kind
    name: str | None
    amount: Decimal  # the row's own lines
    rolled_up: Decimal  # with every descendant cost centre (equal to amount elsewhere)
    invoiced: Decimal
    lines: int
    parent: str | None = None  # cost-centre hierarchy
    billing_mode: BillingMode | None = None


class ServiceRecovery(BaseModel):
    """A service recovered through the prices of its catalogue items, in one period: the
    cost booked to it (its calculated lines, not invoiced) against the fees its
    subscriptions paid. ``over_under`` = recovered - cost: positive, over-recovered."""

    model_config = ConfigDict(frozen=True)

    service_id: str
    service_name: str | None
    cost_centre: str | None
    rule: CostRecovery
    cost: Decimal
    recovered: Decimal
    over_under: Decimal
    currency: str
    lines: int  # the service's cost lines
    fee_lines: int  # its subscriptions' fee lines


class Report(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: Period
    dimension: ReportDimension
    rows: list[ReportRow]
    total: Decimal
    invoiced: Decimal
    currency: str


# --- asset-based pools -----------------------------------------------------------------------


class AssetCostItem(BaseModel):
    """One asset's part of a pool's month, exact (shown to six places)."""

    model_config = ConfigDict(frozen=True)

    ci_id: str
    ci_name: str
    asset_tag: str | None
    depreciation: Decimal
    support: Decimal


class AssetCost(BaseModel):
    """What a pool's assets cost in a period: the exact sum rounded once to the cent."""

    model_config = ConfigDict(frozen=True)

    period: str
    amount: Decimal
    currency: str
    assets: int  # assets with a cost in the period
    items: list[AssetCostItem]
    overridden_by: Decimal | None = None  # the manual amount set for the period, which wins


# ------------------------------------------------------------------------------ price plans

MONTHS_PER_YEAR = 12
_MONEY = Field(default=Decimal("0"), ge=0, max_digits=14, decimal_places=2)


class UsageRate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    meter: str = Field(min_length=1, max_length=100)
    unit: str = Field(min_length=1, max_length=50)
    rate: Decimal = Field(ge=0, max_digits=18, decimal_places=6)


class PricePlan(BaseModel):
    """One-off fee, recurring monthly fee and usage rates per meter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = "EUR"
    one_off: Decimal = _MONEY
    monthly: Decimal = _MONEY
    usage: list[UsageRate] = []

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        v = v.strip().upper()
        if not re.fullmatch(r"[A-Z]{3}", v):
            raise ValueError("currency must be a three-letter ISO 4217 code")
        return v

    @field_validator("usage")
    @classmethod
    def _meters(cls, v: list[UsageRate]) -> list[UsageRate]:
        if len({u.meter for u in v}) != len(v):
            raise ValueError("each meter may have one rate")
        return v

    @property
    def first_year(self) -> Decimal:
        """One-off fee plus twelve monthly fees: what approval thresholds compare with."""
        return self.one_off + MONTHS_PER_YEAR * self.monthly
