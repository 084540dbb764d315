"""Chargeback: meters, usage, rate cards, cost pools, periods and the charge lines they make.

Money is ``Decimal`` everywhere and is stored in Neo4j as integer minor units (cents) on charge
lines, so that sums in Cypher stay exact; rates and quantities are stored as decimal strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from cmdb.core.models import FrozenModel
from cmdb.items.models import CostRecovery

PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
CENT = Decimal("0.01")
MAX_QUANTITY = Decimal("1e12")


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


@dataclass(frozen=True, order=True, slots=True)
class ChargePeriod:
    """A charge period: a calendar month, parsed once from ``YYYY-MM``, with its bounds (the
    first instant of the month and of the next, UTC). ``str()`` gives ``YYYY-MM`` back."""

    id: str
    start: datetime = field(compare=False)
    end: datetime = field(compare=False)

    @classmethod
    def parse(cls, text: str) -> ChargePeriod:
        m = PERIOD.match(text)
        if not m:
            raise ValueError(f"period {text!r} is not a month written YYYY-MM")
        year, month = int(m.group(1)), int(m.group(2))
        start = datetime(year, month, 1, tzinfo=UTC)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=UTC)
        return cls(text, start, end)

    @classmethod
    def of(cls, at: datetime) -> ChargePeriod:
        """The period an instant falls in."""
        return cls.parse(period_of(at))

    def next(self) -> ChargePeriod:
        return ChargePeriod.of(self.end)

    def previous(self) -> ChargePeriod:
        return ChargePeriod.of(self.start - timedelta(days=1))

    def __str__(self) -> str:
        return self.id


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """First instant of the month and first instant of the next (UTC)."""
    p = ChargePeriod.parse(period)
    return p.start, p.end


def period_of(at: datetime) -> str:
    return f"{at.astimezone(UTC).year:04d}-{at.astimezone(UTC).month:02d}"


def next_period(period: str) -> str:
    return str(ChargePeriod.parse(period).next())


class Period(FrozenModel):
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


class Meter(FrozenModel):
    code: str
    name: str
    unit: str  # the pricing unit: "vCPU-hour", "GB-month", "session", "mailbox", "call"
    description: str | None = None


class UsageRejection(FrozenModel):
    index: int
    record_id: str | None
    reason: str


class UsageIngestResult(FrozenModel):
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


class RateCard(FrozenModel):
    """One version of a meter's price: in force from ``effective_from`` until the next version
    starts (``effective_to``, exclusive)."""

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


class PoolAllocation(BaseModel):
    """A FIXED pool's part for one cost centre."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_centre: str = Field(min_length=1, max_length=100)
    percent: Decimal = Field(gt=0, le=100, decimal_places=2)


class CostPool(FrozenModel):
    """A shared cost (a cluster, a storage array, the VDI platform) with its cost per period.

    ``capacity`` (in driver units) makes unused capacity visible: the share of the pool that
    capacity nobody uses stands for is reported as unallocated idle capacity."""

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


class PoolHolder(FrozenModel):
    """What a line sums for its payer: a pool's driver holder, or a CI whose usage it bills.
    What it holds or used, how much of its cost reaches the line's payer, the exact share of
    the source that makes, and the path it takes; a usage line's CI also has its cents."""

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


class ChargeLine(FrozenModel):
    """One amount charged (or shown) to one consumer, with everything that explains it."""

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


# --- what a calculation reads ----------------------------------------------------------------

# A line's holders are stored as arrays of these fields, in this order (a month has hundreds
# of thousands): the CI (or user), its name and class, its driver or metered quantity, the
# fraction of its cost reaching the payer, its exact share of a pool (None for usage: the
# fraction reaching), its cents and unit price (usage only), and its path.
HOLDER_FIELDS = ("id", "name", "class", "quantity", "reaching", "share", "amountMinor",
                 "unitPrice", "path")


class UsageGroup(NamedTuple):
    """A CI's usage of a meter in a month at one rate card (None: none in force), summed."""

    ci: str
    meter: str
    month: str
    rate_card: str | None
    micros: int
    records: int
    # Late usage: what earlier periods already billed of this CI, meter, month and rate card
    # (its tiers continue from there).
    prior_micros: int = 0


@dataclass(frozen=True)
class CostCentreRow:
    code: str
    name: str
    parent: str | None
    mode: BillingMode


class CalculationResult(FrozenModel):
    period: Period
    changed: bool  # False when the period is closed (its lines stay as they were)
    lines: int
    total: Decimal
    allocated: Decimal
    unallocated: Decimal
    warnings: list[str]


class ReportRow(FrozenModel):
    key: str | None  # cost centre code, user name, service id, item id, meter, kind
    name: str | None
    amount: Decimal  # the row's own lines
    rolled_up: Decimal  # with every descendant cost centre (equal to amount elsewhere)
    invoiced: Decimal
    lines: int
    parent: str | None = None  # cost-centre hierarchy
    billing_mode: BillingMode | None = None


class ServiceRecovery(FrozenModel):
    """A service recovered through the prices of its catalogue items, in one period: the
    cost booked to it (its calculated lines, not invoiced) against the fees its
    subscriptions paid. ``over_under`` = recovered - cost: positive, over-recovered."""

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


class Report(FrozenModel):
    period: Period
    dimension: ReportDimension
    rows: list[ReportRow]
    total: Decimal
    invoiced: Decimal
    currency: str


# --- asset-based pools -----------------------------------------------------------------------


class AssetCostItem(FrozenModel):
    """One asset's part of a pool's month, exact (shown to six places)."""

    ci_id: str
    ci_name: str
    asset_tag: str | None
    depreciation: Decimal
    support: Decimal


class AssetCost(FrozenModel):
    """What a pool's assets cost in a period: the exact sum rounded once to the cent."""

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
