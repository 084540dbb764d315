"""GraphQL views of health: state changes, availability, impact and service models."""

from __future__ import annotations

from datetime import datetime

import strawberry

from cmdb.changes.models import PlannedChange as PlannedChangeModel
from cmdb.changes.service import WhatIf as WhatIfModel
from cmdb.health.models import Availability as AvailabilityModel
from cmdb.health.service import Impact as ImpactModel
from cmdb.health.service import ModelEntry as ModelEntryModel
from cmdb.health.service import RankedImpact
from cmdb.items.repository import item_from_row
from cmdb.rollup.models import StateChange as StateChangeModel
from cmdb.schema.enums import OperationalState
from cmdb.schema.types import Item, UserError, item_view


@strawberry.type(description="A change of an item's rolled-up state.")
class StateChange:
    item_id: strawberry.ID
    state: OperationalState
    previous: OperationalState | None
    at: datetime
    cause: str | None

    @classmethod
    def from_model(cls, m: StateChangeModel) -> StateChange:
        return cls(item_id=strawberry.ID(m.item_id), state=m.state, previous=m.previous,
                   at=m.at, cause=m.cause)


@strawberry.type(description="Minutes per state over the counted part of a period: from the "
                 "latest of start, the item's creation and its first recorded state, to the "
                 "earliest of end, now and its retirement. Time before the item existed is not "
                 "counted at all. Minutes inside a service's SLA maintenance windows are counted "
                 "apart and do not count against the SLA. Degraded counts as available; down "
                 "and unknown do not.")
class Availability:
    item_id: strawberry.ID
    start: datetime
    end: datetime
    counted_from: datetime | None = strawberry.field(
        description="Start of the counted part of the period; null when nothing of the "
        "period counts (the item did not exist in it, had no recorded state, or the period "
        "has not begun)."
    )
    counted_until: datetime | None = strawberry.field(
        description="End of the counted part: end, now or the item's retirement, whichever "
        "is first; null when nothing counts."
    )
    minutes_up: float
    minutes_degraded: float
    minutes_down: float
    minutes_unknown: float
    minutes_in_maintenance: float
    availability_percent: float | None = strawberry.field(
        description="(up + degraded) / (up + degraded + down + unknown) minutes, in percent, "
        "rounded to 4 decimals; null when no minute counts (nothing counted, or all of it "
        "inside maintenance windows)."
    )
    target_percent: float | None = strawberry.field(
        description="The service's SLA availability target; null for CIs and services "
        "without one."
    )
    met: bool | None = strawberry.field(
        description="The availability, unrounded, is at least targetPercent; null without "
        "a target or without a figure."
    )

    @classmethod
    def from_model(cls, m: AvailabilityModel) -> Availability:
        return cls(**{**m.model_dump(), "item_id": strawberry.ID(m.item_id)})


@strawberry.type(description="An item that a failure reaches, ranked: state, business-critical "
                 "period now, criticality, SLA time left, revenue per hour, users.")
class ImpactEntry:
    rank: int
    item: Item
    state: OperationalState
    path: list[strawberry.ID] = strawberry.field(
        description="Ids from the failing item up to this one: the explanation."
    )
    path_names: list[str]
    in_critical_period: bool
    minutes_to_sla_breach: float | None = strawberry.field(
        description="A service's SLA downtime left this month: what its availability target "
        "allows over the month since it existed with a recorded state (maintenance windows "
        "left out), less the minutes it has been down or unknown so far. Null for CIs, "
        "services without a target, and services that did not exist yet at that time."
    )
    reasons: list[str]

    @classmethod
    def from_model(cls, m: ImpactModel) -> ImpactEntry:
        return cls(rank=m.rank, item=item_view(m.item), state=m.state,
                   path=[strawberry.ID(p) for p in m.path], path_names=m.path_names,
                   in_critical_period=m.in_critical_period,
                   minutes_to_sla_breach=m.minutes_to_sla_breach, reasons=m.reasons)

    @classmethod
    def from_ranked(cls, r: RankedImpact) -> ImpactEntry:
        return cls(rank=r.rank, item=item_view(item_from_row(r.item)), state=r.state,
                   path=[strawberry.ID(p) for p in r.path], path_names=r.path_names,
                   in_critical_period=r.in_critical_period,
                   minutes_to_sla_breach=r.minutes_to_sla_breach, reasons=r.reasons)


@strawberry.type
class ModelEntry:
    item: Item
    state: OperationalState
    depth: int
    path: list[strawberry.ID]
    path_names: list[str]
    root_cause: bool = strawberry.field(
        description="Fails on its own account (own state down or degraded)."
    )

    @classmethod
    def from_model(cls, m: ModelEntryModel) -> ModelEntry:
        return cls(item=item_view(m.item), state=m.state, depth=m.depth,
                   path=[strawberry.ID(p) for p in m.path], path_names=m.path_names,
                   root_cause=m.root_cause)


@strawberry.type(description="An item's model: everything it rests on, with states.")
class ServiceModel:
    root: Item
    state: OperationalState
    entries: list[ModelEntry]
    root_causes: list[ModelEntry] = strawberry.field(
        description="The deepest failing items that explain the state, deepest first."
    )


@strawberry.type
class SetStatePayload:
    changes: list[StateChange] = strawberry.field(default_factory=list)
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="A planned change: CIs and a time window.")
class PlannedChange:
    id: strawberry.ID
    title: str
    start: datetime
    end: datetime
    ci_ids: list[strawberry.ID]
    created_at: datetime

    @classmethod
    def from_model(cls, m: PlannedChangeModel) -> PlannedChange:
        return cls(id=strawberry.ID(m.id), title=m.title, start=m.start, end=m.end,
                   ci_ids=[strawberry.ID(i) for i in m.ci_ids], created_at=m.created_at)


@strawberry.type
class ServiceWindowFit:
    impact: ImpactEntry
    inside_maintenance_window: bool = strawberry.field(
        description="The whole change window falls inside the service's maintenance "
        "windows (one, or several that adjoin or overlap)."
    )


@strawberry.type(description="Another planned change in an overlapping window that touches "
                 "the same services or CIs.")
class Collision:
    change: PlannedChange
    shared_service_ids: list[strawberry.ID]
    shared_ci_ids: list[strawberry.ID]


@strawberry.type(description="What a change would affect, computed without touching live "
                 "state.")
class WhatIfResult:
    affected: list[ServiceWindowFit]
    users_affected: int
    collisions: list[Collision]

    @classmethod
    def from_model(cls, m: WhatIfModel) -> WhatIfResult:
        return cls(
            affected=[ServiceWindowFit(impact=ImpactEntry.from_model(f.impact),
                                       inside_maintenance_window=f.inside_maintenance_window)
                      for f in m.affected],
            users_affected=m.users_affected,
            collisions=[Collision(change=PlannedChange.from_model(c.change),
                                  shared_service_ids=[strawberry.ID(i)
                                                      for i in c.shared_service_ids],
                                  shared_ci_ids=[strawberry.ID(i) for i in c.shared_ci_ids])
                        for c in m.collisions],
        )


@strawberry.input
class PlanChangeInput:
    title: str
    start: datetime
    end: datetime
    ci_ids: list[strawberry.ID]


@strawberry.type
class PlanChangePayload:
    change: PlannedChange | None = None
    what_if: WhatIfResult | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
