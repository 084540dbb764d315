"""GraphQL views of chargeback: meters, rate cards, pools, periods, reports and lines."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import cast

import strawberry
from strawberry import Info

from cmdb.chargeback import models as m
from cmdb.schema.context import Context
from cmdb.schema.enums import CIClass, CostRecovery
from cmdb.schema.types import UserError

CostDriver = strawberry.enum(cast(type[Enum], m.Driver), name="CostDriver",
                             description="How a cost pool is shared among what sits under it.")
ChargeKind = strawberry.enum(cast(type[Enum], m.LineKind), name="ChargeKind")
ChargePeriodStatus = strawberry.enum(cast(type[Enum], m.PeriodStatus), name="ChargePeriodStatus")
BillingMode = strawberry.enum(cast(type[Enum], m.BillingMode), name="BillingMode",
                              description="CHARGEBACK: invoiced; SHOWBACK: cost shown only.")
CostReportDimension = strawberry.enum(cast(type[Enum], m.ReportDimension),
                                      name="CostReportDimension")
CostSource = strawberry.enum(cast(type[Enum], m.CostSource), name="CostSource",
                             description="Where a pool's cost in a period comes from: the "
                             "amount set for it (MANUAL), or the depreciation and support of "
                             "the assets of its CIs and their members (ASSETS).")


@strawberry.type(description="Something metered: vCPU-hours, GB-months, sessions, calls.")
class Meter:
    code: str
    name: str
    unit: str
    description: str | None

    @classmethod
    def from_model(cls, x: m.Meter) -> Meter:
        return cls(code=x.code, name=x.name, unit=x.unit, description=x.description)


@strawberry.type(description="Up to upTo units (per CI and meter in a period) cost rate each.")
class RateTier:
    up_to: Decimal | None
    rate: Decimal


@strawberry.type(description="One version of a meter's price, in force from effectiveFrom "
                 "until effectiveTo (exclusive; null: still in force).")
class RateCard:
    id: strawberry.ID
    meter: str
    version: int
    effective_from: date
    effective_to: date | None
    currency: str
    tiers: list[RateTier]
    tiered: bool
    created_at: datetime
    created_by: str | None

    @classmethod
    def from_model(cls, x: m.RateCard) -> RateCard:
        return cls(id=strawberry.ID(x.id), meter=x.meter, version=x.version,
                   effective_from=x.effective_from, effective_to=x.effective_to,
                   currency=x.currency, tiers=[RateTier(up_to=t.up_to, rate=t.rate)
                                               for t in x.tiers],
                   tiered=x.tiered, created_at=x.created_at, created_by=x.created_by)


@strawberry.type
class PoolCost:
    period: str
    amount: Decimal


@strawberry.type(description="A FIXED pool's percentage for one cost centre.")
class PoolAllocation:
    cost_centre: str
    percent: Decimal

@strawberry.type(description="One asset's part of a pool's month (exact, to six places).")
class PoolAssetCostItem:
    ci_id: strawberry.ID
    ci_name: str
    asset_tag: str | None
    depreciation: Decimal
    support: Decimal


@strawberry.type(description="What a pool's assets cost in a period: the exact sum of their "
                 "depreciation and support, rounded once to the cent.")
class PoolAssetCost:
    period: str
    amount: Decimal
    currency: str
    assets: int = strawberry.field(description="Assets with a cost in the period.")
    items: list[PoolAssetCostItem]
    overridden_by: Decimal | None = strawberry.field(
        description="The amount set for the period by hand, which the calculation takes "
        "instead (null: none).")

    @classmethod
    def from_model(cls, x: m.AssetCost) -> PoolAssetCost:
        return cls(period=x.period, amount=x.amount, currency=x.currency, assets=x.assets,
                   items=[PoolAssetCostItem(ci_id=strawberry.ID(i.ci_id), ci_name=i.ci_name,
                                            asset_tag=i.asset_tag,
                                            depreciation=i.depreciation, support=i.support)
                          for i in x.items], overridden_by=x.overridden_by)


@strawberry.type(description="A shared cost (a cluster, a storage array, the VDI platform) "
                 "allocated down the graph by a driver.")
class CostPool:
    code: str
    name: str
    driver: CostDriver  # type: ignore[valid-type]
    ci_ids: list[strawberry.ID]
    capacity: Decimal | None = strawberry.field(
        description="In driver units; unused capacity is reported as unallocated idle cost.")
    description: str | None
    currency: str
    attribute: str | None = strawberry.field(
        description="ATTRIBUTE: the CI attribute whose value is each holder's weight.")
    holder_classes: list[CIClass] = strawberry.field(
        description="ATTRIBUTE: the CI classes that can hold it (empty: any).")
    meter: str | None = strawberry.field(
        description="METER: the meter whose usage in the month is each CI's weight.")
    role: str | None = strawberry.field(
        description="ROLE_USERS: the role whose users share the pool.")
    allocations: list[PoolAllocation] = strawberry.field(
        description="FIXED: each cost centre's percentage; what they leave is unallocated.")
    onward: str | None = strawberry.field(
        description="A CI attribute by which a holder's share passes on to its consumers, "
        "level by level (null: equally).")
    costs: list[PoolCost] = strawberry.field(description="Amounts set by hand, per period (an "
                                             "ASSETS pool's override its assets there).")
    cost_source: CostSource = strawberry.field(  # type: ignore[valid-type]
        description="MANUAL: the amount set for each period; ASSETS: what the assets of its "
        "CIs and their members cost in the period, unless an amount is set for it.")
    model: strawberry.Private[m.CostPool]

    @strawberry.field(description="What the assets of the pool's CIs and their members cost "
                      "in the period (YYYY-MM), as a calculation would take it.")
    async def asset_cost(self, info: Info[Context, None], period: str) -> PoolAssetCost:
        cost = await info.context.services.chargeback.asset_cost(self.model, period)
        return PoolAssetCost.from_model(cost)

    @classmethod
    def from_model(cls, x: m.CostPool) -> CostPool:
        return cls(code=x.code, name=x.name, driver=x.driver,
                   ci_ids=[strawberry.ID(i) for i in x.ci_ids], capacity=x.capacity,
                   description=x.description, currency=x.currency,
                   costs=[PoolCost(period=k, amount=v) for k, v in sorted(x.amounts.items())],
                   attribute=x.attribute,
                   holder_classes=[CIClass(c) for c in x.holder_classes],
                   meter=x.meter, role=x.role, onward=x.onward,
                   allocations=[PoolAllocation(cost_centre=a.cost_centre, percent=a.percent)
                                for a in x.allocations],
                   cost_source=x.cost_source, model=x)


@strawberry.type(description="A month of charges: OPEN (recalculable) or CLOSED (frozen).")
class ChargePeriod:
    id: str
    start: datetime
    end: datetime
    status: ChargePeriodStatus  # type: ignore[valid-type]
    currency: str
    calculated_at: datetime | None
    closed_at: datetime | None
    closed_by: str | None
    total: Decimal | None
    line_count: int | None
    checksum: str | None = strawberry.field(
        description="SHA-256 of the frozen lines (ids, amounts, cost centres), set on closing.")
    warnings: list[str]

    @classmethod
    def from_model(cls, x: m.Period) -> ChargePeriod:
        return cls(id=x.id, start=x.start, end=x.end, status=x.status, currency=x.currency,
                   calculated_at=x.calculated_at, closed_at=x.closed_at, closed_by=x.closed_by,
                   total=x.total, line_count=x.line_count, checksum=x.checksum,
                   warnings=list(x.warnings))


@strawberry.type(description="What a line sums for its payer: a cost pool's driver holder "
                 "(what it holds), or a CI whose usage the line bills (what it used, and "
                 "its part of the amount); how much of its cost reaches the line's payer, "
                 "and the way there.")
class ChargeLineHolder:
    id: strawberry.ID = strawberry.field(description="The CI (or user) holding the driver, "
                                         "or the metered CI.")
    name: str
    ci_class: str | None
    quantity: Decimal = strawberry.field(description="Its driver quantity, or its metered "
                                         "quantity.")
    reaching: str = strawberry.field(description="Exact fraction of its cost that reaches "
                                     "the payer, a/b.")
    share: str = strawberry.field(description="Exact fraction of the pool (or of the CI's "
                                  "usage) it adds to the line, a/b.")
    path: list[str] = strawberry.field(description="From the pool (or the CI) to the payer.")
    amount: Decimal | None = strawberry.field(description="Usage lines: its part of the "
                                              "line's amount, exact to the cent.")
    unit_price: Decimal | None = strawberry.field(description="Usage lines: its rate, or "
                                                  "its amount / quantity under tiers.")


@strawberry.type(description="One amount charged (or shown) to one consumer, and why.")
class ChargeLine:
    id: strawberry.ID
    period: str
    kind: ChargeKind  # type: ignore[valid-type]
    amount: Decimal
    currency: str
    description: str
    source: str = strawberry.field(description="subscription:<id>, order:<id>, "
                                   "usage:<meter>:<month>:<rate card> (the usage of the line's "
                                   "CIs), pool:<code>, "
                                   "adjustment:<user>.")
    cost_centre: str | None
    invoiced: bool
    user: str | None
    service_id: strawberry.ID | None
    service_name: str | None
    catalogue_item_id: strawberry.ID | None
    catalogue_item_name: str | None
    subscription_id: strawberry.ID | None
    ci_id: strawberry.ID | None
    ci_name: str | None
    ci_class: str | None
    meter: str | None
    unit: str | None
    quantity: Decimal | None = strawberry.field(description="What reaches the payer: usage "
                                                "quantity, driver quantity or active days.")
    rate_card_id: strawberry.ID | None
    rate_version: int | None
    unit_price: Decimal | None
    pool: str | None
    driver: CostDriver | None  # type: ignore[valid-type]
    share: str | None = strawberry.field(description="Exact fraction of the source, a/b "
                                         "(a usage line of several CIs: see holders).")
    path: list[str] = strawberry.field(description="From the cost's origin to the consumer "
                                       "(several holders: the first one's).")
    holders: list[ChargeLineHolder] = strawberry.field(
        description="A pool's line for a payer its cost reaches through several driver "
        "holders (VMs, volumes, ...), or a usage line summing several CIs' usage for its "
        "payer: each of them; empty otherwise (the line's CI is the one).")
    adjusts: str | None = strawberry.field(description="The closed period this corrects.")
    corrects_line: strawberry.ID | None
    recovery: CostRecovery | None = strawberry.field(
        description="PRICES: the payer is a service recovered through the prices of its "
        "catalogue items; the line is not invoiced, its subscriptions' fees recover it (see "
        "chargeRecovery). Null otherwise.")
    charge_start: datetime
    charge_end: datetime

    @classmethod
    def from_model(cls, x: m.ChargeLine) -> ChargeLine:
        def opt(v: str | None) -> strawberry.ID | None:
            return None if v is None else strawberry.ID(v)

        return cls(
            id=strawberry.ID(x.id), period=x.period, kind=x.kind, amount=x.amount,
            currency=x.currency, description=x.description, source=x.source,
            cost_centre=x.cost_centre, invoiced=x.invoiced, user=x.user,
            service_id=opt(x.service_id), service_name=x.service_name,
            catalogue_item_id=opt(x.item_id), catalogue_item_name=x.item_name,
            subscription_id=opt(x.subscription_id), ci_id=opt(x.ci_id), ci_name=x.ci_name,
            ci_class=x.ci_class, meter=x.meter, unit=x.unit, quantity=x.quantity,
            rate_card_id=opt(x.rate_card_id), rate_version=x.rate_version,
            unit_price=x.unit_price, pool=x.pool, driver=x.driver, share=x.share,
            path=list(x.path), holders=[ChargeLineHolder(
                id=strawberry.ID(h.id), name=h.name, ci_class=h.ci_class, quantity=h.quantity,
                reaching=h.reaching, share=h.share, path=list(h.path), amount=h.amount,
                unit_price=h.unit_price) for h in x.holders],
            adjusts=x.adjusts, corrects_line=opt(x.corrects_line), recovery=x.recovery,
            charge_start=x.charge_start, charge_end=x.charge_end)


@strawberry.type
class ChargeLinePage:
    lines: list[ChargeLine]
    end_cursor: str | None
    has_next_page: bool


@strawberry.type(description="Total of one key of a report (a cost centre, user, service, "
                 "catalogue item, meter or kind).")
class CostReportRow:
    key: str | None = strawberry.field(description="null: unallocated cost (cost centre) or "
                                       "lines without this key.")
    name: str | None
    amount: Decimal = strawberry.field(description="This key's own lines.")
    rolled_up: Decimal = strawberry.field(description="With every cost centre below it "
                                          "(equal to amount for other dimensions).")
    invoiced: Decimal
    lines: int
    parent: str | None
    billing_mode: BillingMode | None  # type: ignore[valid-type]


@strawberry.type
class CostReport:
    period: ChargePeriod
    dimension: CostReportDimension  # type: ignore[valid-type]
    rows: list[CostReportRow]
    total: Decimal
    invoiced: Decimal
    currency: str

    @classmethod
    def from_model(cls, x: m.Report) -> CostReport:
        return cls(period=ChargePeriod.from_model(x.period), dimension=x.dimension,
                   rows=[CostReportRow(key=r.key, name=r.name, amount=r.amount,
                                       rolled_up=r.rolled_up, invoiced=r.invoiced,
                                       lines=r.lines, parent=r.parent,
                                       billing_mode=r.billing_mode) for r in x.rows],
                   total=x.total, invoiced=x.invoiced, currency=x.currency)


@strawberry.type(description="A service recovered through the prices of its catalogue items "
                 "(costRecovery PRICES) in one period: the cost booked to it against the fees "
                 "of the subscriptions for it. Computed from the period's lines, never booked.")
class ServiceRecovery:
    service_id: strawberry.ID
    service_name: str | None
    cost_centre: str | None = strawberry.field(description="The service's own cost centre "
                                               "(the one on its cost lines).")
    rule: CostRecovery
    cost: Decimal = strawberry.field(description="The period's calculated lines booked to the "
                                     "service (not invoiced), manual adjustments aside.")
    recovered: Decimal = strawberry.field(description="The period's recurring and one-off fee "
                                          "lines of the subscriptions for the service.")
    over_under: Decimal = strawberry.field(description="recovered - cost: positive when the "
                                           "prices recovered more than the cost, negative "
                                           "when less.")
    currency: str
    lines: int = strawberry.field(description="The service's cost lines.")
    fee_lines: int = strawberry.field(description="Its subscriptions' fee lines.")

    @classmethod
    def from_model(cls, x: m.ServiceRecovery) -> ServiceRecovery:
        return cls(service_id=strawberry.ID(x.service_id), service_name=x.service_name,
                   cost_centre=x.cost_centre, rule=x.rule, cost=x.cost,
                   recovered=x.recovered, over_under=x.over_under, currency=x.currency,
                   lines=x.lines, fee_lines=x.fee_lines)


@strawberry.type
class CalculationResult:
    period: ChargePeriod
    changed: bool = strawberry.field(description="false: the period is closed and kept as is.")
    lines: int
    total: Decimal
    allocated: Decimal
    unallocated: Decimal
    warnings: list[str]

    @classmethod
    def from_model(cls, x: m.CalculationResult) -> CalculationResult:
        return cls(period=ChargePeriod.from_model(x.period), changed=x.changed, lines=x.lines,
                   total=x.total, allocated=x.allocated, unallocated=x.unallocated,
                   warnings=list(x.warnings))


@strawberry.type
class UsageRejection:
    index: int
    record_id: str | None
    reason: str


@strawberry.type
class UsageIngestPayload:
    received: int = 0
    created: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: list[UsageRejection] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)

    @classmethod
    def from_model(cls, x: m.UsageIngestResult) -> UsageIngestPayload:
        return cls(received=x.received, created=x.created, duplicates=x.duplicates,
                   late=x.late, rejected=[UsageRejection(index=r.index, record_id=r.record_id,
                                                         reason=r.reason) for r in x.rejected])


# --- inputs ----------------------------------------------------------------------------------


@strawberry.input
class DefineMeterInput:
    code: str
    name: str
    unit: str
    description: str | None = None


@strawberry.input
class RateTierInput:
    up_to: Decimal | None = None
    rate: Decimal


@strawberry.input
class PublishRateCardInput:
    meter: str
    effective_from: date
    currency: str
    tiers: list[RateTierInput]


@strawberry.input
class PoolAllocationInput:
    cost_centre: str
    percent: Decimal


@strawberry.input
class DefineCostPoolInput:
    code: str
    name: str
    driver: CostDriver  # type: ignore[valid-type]
    ci_ids: list[strawberry.ID]
    capacity: Decimal | None = None
    description: str | None = None
    attribute: str | None = strawberry.field(
        default=None, description="ATTRIBUTE (required): a CI attribute name.")
    holder_classes: list[CIClass] | None = strawberry.field(
        default=None, description="ATTRIBUTE: only CIs of these classes hold it.")
    meter: str | None = strawberry.field(default=None,
                                         description="METER (required): a meter code.")
    role: str | None = strawberry.field(default=None,
                                        description="ROLE_USERS (required): a role name.")
    allocations: list[PoolAllocationInput] | None = strawberry.field(
        default=None, description="FIXED (required): percentages (up to 2 places) per cost "
        "centre, at most 100 in all.")
    onward: str | None = strawberry.field(
        default=None, description="A CI attribute by which shares pass on to consumers.")
    cost_source: CostSource = m.CostSource.MANUAL  # type: ignore[valid-type]


@strawberry.input
class UsageRecordInput:
    record_id: str
    ci_id: strawberry.ID
    meter: str
    quantity: Decimal
    at: datetime
    source: str


@strawberry.input
class AdjustmentInput:
    period: str
    cost_centre: str
    amount: Decimal
    reason: str
    corrects_line: strawberry.ID | None = None


@strawberry.input
class ChargeLineFilter:
    cost_centres: list[str] | None = None
    user: str | None = None
    service_id: strawberry.ID | None = None
    catalogue_item_id: strawberry.ID | None = None
    meter: str | None = None
    kind: ChargeKind | None = None  # type: ignore[valid-type]


# --- payloads --------------------------------------------------------------------------------


@strawberry.type
class MeterPayload:
    meter: Meter | None = None
    created: bool = False
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RateCardPayload:
    rate_card: RateCard | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CostPoolPayload:
    pool: CostPool | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CalculationPayload:
    result: CalculationResult | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AdjustmentPayload:
    line: ChargeLine | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class BillingModePayload:
    cost_centre: str | None = None
    billing_mode: BillingMode | None = None  # type: ignore[valid-type]
    errors: list[UserError] = strawberry.field(default_factory=list)
