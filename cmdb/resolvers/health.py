"""Root fields for health: impact, service models, history, availability, state changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import strawberry
from strawberry import Info

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, OperationalState
from cmdb.core.pagination import check_page_size
from cmdb.items.models import ConfigurationItem
from cmdb.items.models import Service as ServiceDomain
from cmdb.resolvers.payloads import errors_in
from cmdb.rollup.models import PRECEDENCE
from cmdb.schema.context import Context
from cmdb.schema.health import (
    Availability,
    ImpactEntry,
    ModelEntry,
    PlanChangeInput,
    PlanChangePayload,
    PlannedChange,
    ServiceModel,
    SetStatePayload,
    StateChange,
    WhatIfResult,
)
from cmdb.schema.inputs import to_dict
from cmdb.schema.types import item_view


async def _item(info: Info[Context, None], item_id: str) -> ConfigurationItem | ServiceDomain:
    found = await info.context.loaders.items.load(item_id)
    if found is None:
        raise DomainError.single("id", f"item {item_id!r} not found", "NOT_FOUND")
    return found


@strawberry.type
class HealthQuery:
    @strawberry.field(description="State changes committed but not yet rolled up into "
                      "healthState (0: health is settled). Each API process rolls up what "
                      "is pending within CMDB_ROLLUP_DELAY_MS; a client that must read "
                      "settled health after a write polls this until it is 0.")
    async def pending_roll_ups(self, info: Info[Context, None]) -> int:
        return await info.context.services.rollup.pending()

    @strawberry.field(description="Bottom-up impact: what the given items hold up, ranked, "
                      "each with the path that explains it. assumeDown treats the items as "
                      "down without storing anything (what-if).")
    async def impact(
        self, info: Info[Context, None], ids: list[strawberry.ID], services_only: bool = True,
        assume_down: bool = False, at: datetime | None = None, affected_only: bool = True,
    ) -> list[ImpactEntry]:
        entries = await info.context.services.health.ranked_impact(
            [str(i) for i in ids], services_only, assume_down, at)
        if affected_only:
            entries = [e for e in entries if e.state is not OperationalState.UP]
        narrowed = await info.context.services.health.narrowed(entries, info.context.visible)
        return [ImpactEntry.from_ranked(e) for e in narrowed]

    @strawberry.field(description="Top-down: an item's model with states and root-cause "
                      "candidates.")
    async def service_model(
        self, info: Info[Context, None], id: strawberry.ID, services_only: bool = False
    ) -> ServiceModel:
        root = await _item(info, str(id))
        entries = await info.context.services.health.narrowed(
            await info.context.services.health.model(str(id)), info.context.visible)
        if services_only:  # the executive view: services and their states, no infrastructure
            entries = [e for e in entries if isinstance(e.item, ServiceDomain)]
        causes = sorted((e for e in entries if e.root_cause),
                        key=lambda e: (-e.depth, -PRECEDENCE[e.state], e.item.name))
        return ServiceModel(
            root=item_view(root), state=root.health_state,
            entries=[ModelEntry.from_model(e) for e in entries],
            root_causes=[ModelEntry.from_model(e) for e in causes],
        )

    @strawberry.field(description="Rolled-up state changes of an item in [start, end).")
    async def state_history(
        self, info: Info[Context, None], id: strawberry.ID, start: datetime, end: datetime
    ) -> list[StateChange]:
        await _item(info, str(id))
        changes = await info.context.services.health.history(str(id), start, end)
        return [StateChange.from_model(c) for c in changes]

    @strawberry.field(description="Rolled-up state of items as of a past time "
                      "(null: no state recorded by then).")
    async def states_as_of(
        self, info: Info[Context, None], ids: list[strawberry.ID], at: datetime
    ) -> list[OperationalState | None]:
        health = info.context.services.health
        found = await health.states_as_of(
            await health.visible_ids([str(i) for i in ids], info.context.visible), at)
        return [OperationalState(found[str(i)]["state"]) if found.get(str(i), {}).get("state")
                else None for i in ids]

    @strawberry.field(description="Availability of an item over [start, end): minutes per "
                      "state and SLA attainment (services with an availability target).")
    async def availability(
        self, info: Info[Context, None], id: strawberry.ID, start: datetime, end: datetime
    ) -> Availability:
        item = await _item(info, str(id))
        return Availability.from_model(
            await info.context.services.health.availability(item, start, end))


    @strawberry.field(description="What-if: the services and users a change on these CIs in "
                      "this window would affect, whether it fits their maintenance windows, "
                      "and which planned changes it collides with. Nothing is stored.")
    async def what_if(
        self, info: Info[Context, None], ci_ids: list[strawberry.ID], start: datetime,
        end: datetime,
    ) -> WhatIfResult:
        # An item the caller may not see is treated as unknown, like everywhere else.
        seen = await info.context.services.health.visible_ids(
            [str(i) for i in ci_ids], info.context.visible)
        result = await info.context.services.changes.what_if(seen, start, end)
        return WhatIfResult.from_model(result)

    @strawberry.field(description="Planned changes that have not ended, soonest first.")
    async def planned_changes(
        self, info: Info[Context, None], first: int = 50
    ) -> list[PlannedChange]:
        check_page_size(first, info.context.services.settings.max_page_size)
        return [PlannedChange.from_model(c)
                for c in await info.context.services.changes.upcoming(first)]


@strawberry.type
class HealthMutation:
    @strawberry.mutation(description="Record a planned change, and return its what-if.")
    @errors_in(PlanChangePayload)
    async def plan_change(
        self, info: Info[Context, None], input: PlanChangeInput
    ) -> PlanChangePayload:
        changes = info.context.services.changes
        change = await changes.plan(to_dict(input))
        result = await changes.what_if(change.ci_ids, change.start, change.end,
                                       exclude=change.id)
        return PlanChangePayload(change=PlannedChange.from_model(change),
                                 what_if=WhatIfResult.from_model(result))

    @strawberry.mutation(description="Set the own operational state of items and roll it up.")
    @errors_in(SetStatePayload)
    async def set_operational_state(
        self, info: Info[Context, None], ids: list[strawberry.ID], state: OperationalState,
        cause: str | None = None,
    ) -> SetStatePayload:
        changes = await info.context.services.health.set_states(
            [(str(i), state) for i in ids], cause)
        return SetStatePayload(changes=[StateChange.from_model(c) for c in changes])


@strawberry.type
class HealthSubscription:
    @strawberry.subscription(description="Rolled-up state changes as they happen: of the "
                             "given items, of everything a user's environment rests on "
                             "(userName: their desktops, hosts, pools and the services their "
                             "software needs, as of subscribing), or of all items (neither).")
    async def state_changes(
        self, info: Info[Context, None], ids: list[strawberry.ID] | None = None,
        user_name: str | None = None,
    ) -> AsyncIterator[StateChange]:
        # "From now on" is from subscribing: a change made while the watched set is worked
        # out is not missed.
        since = utcnow()
        ctx = info.context
        watched = await ctx.services.health.watched(
            None if ids is None else [str(i) for i in ids], user_name, ctx.principal,
            ctx.visible, ctx.services.identity)
        async for change in info.context.services.health.watch(watched, since=since):
            yield StateChange.from_model(change)
