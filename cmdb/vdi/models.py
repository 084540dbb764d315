"""Desktop sessions and the VDI broker's session feed.

A session is stored against the **user**, with the desktop, host and pool names copied onto
it, so a user's history survives every desktop being torn down; while those CIs exist the
session also links to them:

    (u:User)-[:HAD_SESSION]->(s:DesktopSession {id, sessionKey, userName, desktopName,
        desktopId, hostName, hostId, poolName, poolId, start, end, logonSeconds,
        profileLoadSeconds, groupPolicySeconds, protocol, clientName, clientAddress, broker,
        sampleCount, roundTripMsAvg, roundTripMsMax, cpuPercentAvg, createdAt, updatedAt})
    (s)-[:ON_DESKTOP]->(:VirtualDesktop)   (s)-[:ON_HOST]->(:HypervisorHost)
    (s)-[:IN_POOL]->(:DesktopPool)
    (:BrokerEvent {eventId, type, sessionKey, at, receivedAt})-[:OF_SESSION]->(s)

``sessionKey`` is the broker name and its session id. Every event is kept by its
``eventId`` (unique): an event seen before changes nothing, so the feed can be replayed.
Events may arrive in any order: a logoff before its logon leaves a session with an end and
no start yet; the logon fills it in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cmdb.core.models import FrozenModel, count_outcomes

DEFAULT_BROKER = "horizon"


class EventType(StrEnum):
    LOGON = "LOGON"
    LOGOFF = "LOGOFF"
    SAMPLE = "SAMPLE"  # a performance sample during the session


# Broker spellings of the event types (Horizon and Citrix exports), upper-cased.
EVENT_TYPE_ALIASES: dict[str, EventType] = {
    "LOGON": EventType.LOGON, "LOGIN": EventType.LOGON, "SESSION_START": EventType.LOGON,
    "AGENT_CONNECTED": EventType.LOGON, "BROKER_USERLOGGEDIN": EventType.LOGON,
    "LOGOFF": EventType.LOGOFF, "LOGOUT": EventType.LOGOFF, "SESSION_END": EventType.LOGOFF,
    "AGENT_ENDED": EventType.LOGOFF, "BROKER_USERLOGGEDOUT": EventType.LOGOFF,
    "SAMPLE": EventType.SAMPLE, "PERFORMANCE": EventType.SAMPLE, "METRICS": EventType.SAMPLE,
}


def normalise_user(raw: str) -> str:
    """``CORP\\johnW`` and ``johnW@corp.example`` are ``johnW``."""
    v = raw.strip()
    if "\\" in v:
        v = v.rsplit("\\", 1)[1]
    if "@" in v:
        v = v.split("@", 1)[0]
    return v


def _opt_text(v: object) -> object:
    if isinstance(v, str):
        v = v.strip()
        return v or None
    return v


class BrokerEvent(BaseModel):
    """One record of the broker feed. Keys in camelCase (or snake_case); CSV headers too."""

    model_config = ConfigDict(
        extra="ignore", alias_generator=to_camel, validate_by_name=True, validate_by_alias=True,
    )

    event_id: str = Field(min_length=1, max_length=200)
    event_type: EventType
    timestamp: datetime
    session_id: str = Field(min_length=1, max_length=200)
    user: str = Field(min_length=1, max_length=300)
    broker: str = Field(DEFAULT_BROKER, min_length=1, max_length=100)
    desktop: str | None = Field(None, max_length=200)
    desktop_id: str | None = Field(None, max_length=200)
    host: str | None = Field(None, max_length=200)
    pool: str | None = Field(None, max_length=200)
    logon_duration_ms: int | None = Field(None, ge=0, le=86_400_000)
    profile_load_ms: int | None = Field(None, ge=0, le=86_400_000)
    group_policy_ms: int | None = Field(None, ge=0, le=86_400_000)
    round_trip_ms: float | None = Field(None, ge=0, le=600_000)
    cpu_percent: float | None = Field(None, ge=0, le=100)
    protocol: str | None = Field(None, max_length=40)
    client_name: str | None = Field(None, max_length=200)
    client_address: str | None = Field(None, max_length=100)

    @field_validator("event_type", mode="before")
    @classmethod
    def _type(cls, v: object) -> object:
        if isinstance(v, str):
            found = EVENT_TYPE_ALIASES.get(v.strip().upper().replace("-", "_"))
            if found is None:
                raise ValueError(f"unknown event type {v!r}; expected LOGON, LOGOFF or SAMPLE")
            return found
        return v

    @field_validator("event_id", "session_id", "user", "broker", mode="before")
    @classmethod
    def _required_text(cls, v: object) -> object:
        return v.strip() if isinstance(v, str) else v

    @field_validator("desktop", "desktop_id", "host", "pool", "protocol", "client_name",
                     "client_address", "logon_duration_ms", "profile_load_ms",
                     "group_policy_ms", "round_trip_ms", "cpu_percent", mode="before")
    @classmethod
    def _optional(cls, v: object) -> object:
        return _opt_text(v)

    @field_validator("user")
    @classmethod
    def _user(cls, v: str) -> str:
        v = normalise_user(v)
        if not v:
            raise ValueError("user must not be blank")
        return v

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)

    @model_validator(mode="after")
    def _desktop_on_logon(self) -> BrokerEvent:
        if self.event_type is EventType.LOGON and not self.desktop:
            raise ValueError("a LOGON event needs the desktop")
        return self

    @property
    def session_key(self) -> str:
        return f"{self.broker}:{self.session_id}"


class DesktopSession(FrozenModel):
    id: str
    session_key: str
    user_name: str
    desktop_name: str | None = None
    desktop_id: str | None = None
    host_name: str | None = None
    host_id: str | None = None
    pool_name: str | None = None
    pool_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    logon_seconds: float | None = None
    profile_load_seconds: float | None = None
    group_policy_seconds: float | None = None
    protocol: str | None = None
    client_name: str | None = None
    client_address: str | None = None
    broker: str | None = None
    sample_count: int = 0
    round_trip_ms_avg: float | None = None
    round_trip_ms_max: float | None = None
    cpu_percent_avg: float | None = None

    @property
    def active(self) -> bool:
        return self.start is not None and self.end is None


class Outcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class EventResult(FrozenModel):
    index: int  # position in the feed (0-based); a CSV's first data row is 0
    outcome: Outcome
    event_id: str | None = None
    session_id: str | None = None  # our session id
    reason: str | None = None
    field: str | None = None


class IngestReport(FrozenModel):
    results: list[EventResult]

    @property
    def counts(self) -> dict[str, int]:
        return count_outcomes((r.outcome for r in self.results), Outcome)

    @property
    def rejections(self) -> list[EventResult]:
        return [r for r in self.results if r.outcome is Outcome.REJECTED]
