"""GraphQL views of alarms: the alarm, its enums, inputs, filters and mutation payloads."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry import Info

from cmdb.alarms.models import Alarm as AlarmModel
from cmdb.alarms.models import AlarmSeverity, AlarmStatus
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.schema.context import Context
from cmdb.schema.types import ConfigurationItem, UserError

# Registered in place, like the enums in enums.py: the domain classes are the GraphQL enums.
strawberry.enum(
    AlarmSeverity,
    description="How bad an alarm is. CRITICAL takes its CI down, MAJOR and MINOR degrade "
    "it, WARNING and INFO do not change its state.",
)
strawberry.enum(
    AlarmStatus,
    description="OPEN and ACKNOWLEDGED alarms are open (they set state and de-duplicate); "
    "CLEARED ones are history.",
)

__all__ = [
    "Alarm",
    "AlarmFilter",
    "AlarmPayload",
    "AlarmSeverity",
    "AlarmStatus",
    "ClearAlarmInput",
    "RaiseAlarmInput",
    "RaiseAlarmPayload",
]


@strawberry.type(description="An alarm raised by monitoring on a configuration item. One "
                 "alarm is open per (source, dedupKey); raising it again counts it.")
class Alarm:
    id: strawberry.ID
    source: str
    dedup_key: str
    ci_id: strawberry.ID
    severity: AlarmSeverity
    status: AlarmStatus
    message: str
    count: int = strawberry.field(description="How many times it was raised while open.")
    first_occurred_at: datetime
    last_occurred_at: datetime
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    cleared_by: str | None
    cleared_at: datetime | None

    @strawberry.field(description="The configuration item the alarm is raised on.")
    async def configuration_item(self, info: Info[Context, None]) -> ConfigurationItem | None:
        found = await info.context.loaders.items.load(str(self.ci_id))
        return ConfigurationItem.from_model(found) if isinstance(found, CIModel) else None

    @classmethod
    def from_model(cls, m: AlarmModel) -> Alarm:
        return cls(
            id=strawberry.ID(m.id), source=m.source, dedup_key=m.dedup_key,
            ci_id=strawberry.ID(m.ci_id), severity=m.severity, status=m.status,
            message=m.message, count=m.count, first_occurred_at=m.first_occurred_at,
            last_occurred_at=m.last_occurred_at, created_at=m.created_at,
            updated_at=m.updated_at, acknowledged_by=m.acknowledged_by,
            acknowledged_at=m.acknowledged_at, cleared_by=m.cleared_by,
            cleared_at=m.cleared_at,
        )


@strawberry.input(description="Filters of alarms; all given must match.")
class AlarmFilter:
    ci_id: strawberry.ID | None = None
    status: list[AlarmStatus] | None = strawberry.field(
        default=None, description="Any of these; [OPEN, ACKNOWLEDGED] is every open alarm.")
    severity: list[AlarmSeverity] | None = None
    source: str | None = None


@strawberry.input
class RaiseAlarmInput:
    source: str = strawberry.field(description="The monitoring system, e.g. 'zabbix'.")
    ci_id: strawberry.ID
    severity: AlarmSeverity
    dedup_key: str = strawberry.field(
        description="Identifies the condition within its source; a raise with the key of an "
        "open alarm updates that alarm.")
    message: str
    occurred_at: datetime | None = strawberry.field(
        default=None, description="When it happened (default: now; no offset means UTC).")
    event_id: str | None = strawberry.field(
        default=None, description="The occurrence's id at its source: a raise sent again with "
        "the same source and eventId (e.g. a client retrying) is not counted again.")


@strawberry.input(description="Which alarm to clear: its id, or the source and dedup key of "
                  "the open one.")
class ClearAlarmInput:
    id: strawberry.ID | None = None
    source: str | None = None
    dedup_key: str | None = None


@strawberry.type
class RaiseAlarmPayload:
    alarm: Alarm | None = None
    deduplicated: bool = strawberry.field(
        default=False, description="The raise updated an open alarm instead of creating one.")
    replayed: bool = strawberry.field(
        default=False, description="This eventId was counted before: nothing changed; "
        "deduplicated and alarm are the first raise's outcome and the alarm now.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AlarmPayload:
    alarm: Alarm | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
