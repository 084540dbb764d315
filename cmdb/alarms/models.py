"""Alarms, how they map to operational state, and what raising many of them reports.

An alarm is *open* while its status is OPEN or ACKNOWLEDGED. At most one alarm is open per
(source, dedupKey): a new raise while one is open updates it (count + 1) instead of creating
another. In the graph that is enforced by ``openKey`` (source + NUL + dedupKey), set while the
alarm is open, removed when it clears, and unique (migration 3).

A raise may carry an ``eventId`` (the monitoring tool's id of the occurrence): a raise whose
(source, eventId) was counted before is not counted again, it answers what the first one did
(``replayed``), so a client may send a raise again after a timeout or a 503. In the graph:
``(:AlarmEvent {key: source + NUL + eventId, alarmId, outcome, at})``, unique (migration 11).

A CI's own operational state follows its open alarms: the worst state its open alarms map to
(CRITICAL -> DOWN, MAJOR/MINOR -> DEGRADED, WARNING/INFO -> no effect), else its *baseline*:
the state it had before its first open alarm, kept as ``baselineState`` while alarms are open
and restored when the last one clears.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from cmdb.core.models import FieldError, FrozenModel, OperationalState, count_outcomes
from cmdb.core.validation import stripped_non_blank
from cmdb.rollup.models import PRECEDENCE

OPEN_KEY_SEPARATOR = "\u0000"


class AlarmSeverity(StrEnum):
    CRITICAL = "CRITICAL"
    MAJOR = "MAJOR"
    MINOR = "MINOR"
    WARNING = "WARNING"
    INFO = "INFO"


class AlarmStatus(StrEnum):
    OPEN = "OPEN"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    CLEARED = "CLEARED"


OPEN_STATUSES: tuple[AlarmStatus, ...] = (AlarmStatus.OPEN, AlarmStatus.ACKNOWLEDGED)

# Severity -> the operational state it drives; severities not listed have no effect.
SEVERITY_STATE: dict[AlarmSeverity, OperationalState] = {
    AlarmSeverity.CRITICAL: OperationalState.DOWN,
    AlarmSeverity.MAJOR: OperationalState.DEGRADED,
    AlarmSeverity.MINOR: OperationalState.DEGRADED,
}


def open_key(source: str, dedup_key: str) -> str:
    return source + OPEN_KEY_SEPARATOR + dedup_key


def alarm_state(
    severities: list[AlarmSeverity], baseline: OperationalState
) -> OperationalState:
    """A CI's own state from the severities of its open alarms and its baseline state."""
    mapped = [SEVERITY_STATE[s] for s in severities if s in SEVERITY_STATE]
    return max(mapped, key=PRECEDENCE.__getitem__) if mapped else baseline


def _no_nul(v: str) -> str:
    if OPEN_KEY_SEPARATOR in v:
        raise ValueError("must not contain NUL characters")
    return v


# Keys of a raise: no NUL (it separates them in ``openKey``), stripped, not blank.
_Key = Annotated[str, AfterValidator(_no_nul), stripped_non_blank("must not be blank")]
# Bounded before it is cleaned, as the other keys are (their bounds are on their fields).
_EventId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_no_nul),
                     stripped_non_blank("must not be blank")]


class AlarmRaise(BaseModel):
    """One raise from a monitoring source. Accepts camelCase (``ciId``) or snake_case keys."""

    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
    )

    source: _Key = Field(min_length=1, max_length=200)
    ci_id: _Key = Field(min_length=1, max_length=200)
    severity: AlarmSeverity
    dedup_key: _Key = Field(min_length=1, max_length=1000)
    message: str = Field(min_length=1, max_length=4000)
    occurred_at: datetime | None = None
    event_id: _EventId | None = None

    @field_validator("occurred_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        """A time without an offset is taken as UTC."""
        if v is None:
            return None
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v

    @property
    def key(self) -> str:
        return open_key(self.source, self.dedup_key)

    @property
    def event_key(self) -> str | None:
        """source + NUL + eventId: the raise's identity for counting it once."""
        return None if self.event_id is None else open_key(self.source, self.event_id)


class Alarm(FrozenModel):
    id: str
    source: str
    dedup_key: str
    ci_id: str
    severity: AlarmSeverity
    status: AlarmStatus
    message: str
    count: int
    first_occurred_at: datetime
    last_occurred_at: datetime
    created_at: datetime
    updated_at: datetime
    acknowledged_by: str | None = None
    acknowledged_at: datetime | None = None
    cleared_by: str | None = None
    cleared_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class RaiseOutcome(StrEnum):
    CREATED = "created"
    DEDUPLICATED = "deduplicated"
    REJECTED = "rejected"


class RaiseResult(FrozenModel):
    """What became of one item of a raise: the alarm, or why it was rejected."""

    index: int
    outcome: RaiseOutcome
    alarm: Alarm | None = None
    errors: list[FieldError] = []
    # The event was counted before: nothing changed, ``outcome`` is the first raise's.
    replayed: bool = False


class BatchResult(FrozenModel):
    results: list[RaiseResult]

    @property
    def counts(self) -> dict[str, int]:
        return count_outcomes((r.outcome for r in self.results), RaiseOutcome)


class AlarmQuery(FrozenModel):
    """Filters of a list of alarms (all optional); newest first."""

    ci_id: str | None = None
    statuses: tuple[AlarmStatus, ...] | None = None
    severities: tuple[AlarmSeverity, ...] | None = None
    source: str | None = None
