"""Root fields for alarms: list, raise, clear, acknowledge. Permissions are checked by the
service with the request's principal (see cmdb/identity/principal.py)."""

from __future__ import annotations

import strawberry
from strawberry import Info

from cmdb.alarms.models import AlarmQuery as AlarmQueryModel
from cmdb.alarms.models import RaiseOutcome
from cmdb.alarms.service import AlarmService
from cmdb.resolvers.payloads import errors_in
from cmdb.schema.alarms import (
    Alarm,
    AlarmFilter,
    AlarmPayload,
    ClearAlarmInput,
    RaiseAlarmInput,
    RaiseAlarmPayload,
)
from cmdb.schema.context import Context
from cmdb.schema.inputs import to_dict


def _alarms(info: Info[Context, None]) -> AlarmService:
    services = info.context.services
    return AlarmService(services.db, services.settings)


def _filter(f: AlarmFilter | None) -> AlarmQueryModel:
    if f is None:
        return AlarmQueryModel()
    return AlarmQueryModel(
        ci_id=str(f.ci_id) if f.ci_id is not None else None,
        statuses=tuple(f.status) if f.status is not None else None,
        severities=tuple(f.severity) if f.severity is not None else None,
        source=f.source,
    )


@strawberry.type
class AlarmQuery:
    @strawberry.field(description="Alarms, newest (last occurrence) first, at most `first`.")
    async def alarms(
        self, info: Info[Context, None], filter: AlarmFilter | None = None, first: int | None = None
    ) -> list[Alarm]:
        found = await _alarms(info).list(_filter(filter), first, info.context.visible)
        return [Alarm.from_model(a) for a in found]


@strawberry.type
class AlarmMutation:
    @strawberry.mutation(description="Raise an alarm on a CI (needs alarm:write). While an "
                         "alarm with the same source and dedupKey is open, it is updated "
                         "instead. The CI's state follows its open alarms and is rolled up.")
    @errors_in(RaiseAlarmPayload)
    async def raise_alarm(
        self, info: Info[Context, None], input: RaiseAlarmInput
    ) -> RaiseAlarmPayload:
        result = await _alarms(info).raise_alarm(to_dict(input), info.context.principal)
        assert result.alarm is not None
        return RaiseAlarmPayload(alarm=Alarm.from_model(result.alarm),
                                 deduplicated=result.outcome is RaiseOutcome.DEDUPLICATED,
                                 replayed=result.replayed)

    @strawberry.mutation(description="Clear an alarm (needs alarm:write); the CI goes back to "
                         "the state it had before its alarms when none is left open. "
                         "Clearing a cleared alarm changes nothing.")
    @errors_in(AlarmPayload)
    async def clear_alarm(self, info: Info[Context, None], input: ClearAlarmInput) -> AlarmPayload:
        alarm = await _alarms(info).clear(
            info.context.principal,
            alarm_id=str(input.id) if input.id is not None else None,
            source=input.source, dedup_key=input.dedup_key,
        )
        return AlarmPayload(alarm=Alarm.from_model(alarm))

    @strawberry.mutation(description="Acknowledge an open alarm (needs alarm:acknowledge); "
                         "who and when are recorded.")
    @errors_in(AlarmPayload)
    async def acknowledge_alarm(self, info: Info[Context, None], id: strawberry.ID) -> AlarmPayload:
        alarm = await _alarms(info).acknowledge(str(id), info.context.principal)
        return AlarmPayload(alarm=Alarm.from_model(alarm))
