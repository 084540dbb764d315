"""Use cases for desktop sessions: ingest the broker feed, read a user's history.

Ingest is idempotent per event id and tolerates any arrival order. Each batch of
``batch_size`` records is one transaction; a record is rejected on its own, with the reason
and the field, and nothing of a rejected record is stored (so a corrected resend is taken).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.mapping import as_datetime
from cmdb.core.models import DomainError
from cmdb.core.pagination import check_page_size
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.settings import Settings
from cmdb.vdi.models import (
    BrokerEvent,
    DesktopSession,
    EventResult,
    EventType,
    IngestReport,
    Outcome,
)
from cmdb.vdi.repository import VdiRepository

DEFAULT_BATCH_SIZE = 500
MAX_CLOCK_SKEW = timedelta(minutes=5)
_ORDER = {EventType.LOGON: 0, EventType.SAMPLE: 1, EventType.LOGOFF: 2}

# Session properties written from the fold (all of them each time; None removes).
_PROPS = ("userName", "broker", "desktopName", "desktopId", "brokerDesktopId", "hostName",
          "hostId", "poolName", "poolId", "start", "end", "logonSeconds",
          "profileLoadSeconds", "groupPolicySeconds", "protocol", "clientName",
          "clientAddress", "sampleCount", "roundTripSamples", "roundTripMsSum",
          "roundTripMsMax", "cpuSamples", "cpuPercentSum")


def _rejected(index: int, reason: str, field: str | None, event_id: str | None = None
              ) -> EventResult:
    return EventResult(index=index, outcome=Outcome.REJECTED, reason=reason, field=field,
                       event_id=event_id)


def _seconds(ms: int | None) -> float | None:
    return round(ms / 1000, 3) if ms is not None else None


class _Resolved:
    """Users and CIs named by a batch, looked up once."""

    def __init__(self, users: dict[str, dict[str, Any]], desktops: dict[str, dict[str, Any]],
                 hosts: dict[str, dict[str, Any]], pools: dict[str, dict[str, Any]]) -> None:
        self.users, self.desktops, self.hosts, self.pools = users, desktops, hosts, pools


class VdiService:
    def __init__(
        self, db: Database, settings: Settings, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.db, self.settings, self.batch_size = db, settings, batch_size
        self.repo = VdiRepository(db)

    # --- reading ----------------------------------------------------------------------------

    async def user_sessions(
        self, user_ids: list[str], start: datetime, end: datetime, limit: int
    ) -> dict[str, list[DesktopSession]]:
        return await self.repo.user_sessions(user_ids, start, end, limit, utcnow())

    def check_period(self, start: datetime, end: datetime, first: int | None) -> int:
        if end <= start:
            raise DomainError.single("end", "end must be after start")
        limit = first if first is not None else self.settings.max_page_size
        return check_page_size(limit, self.settings.max_page_size)

    # --- ingest -----------------------------------------------------------------------------

    async def ingest(self, items: Sequence[Any], principal: Principal | None) -> IngestReport:
        """Ingest broker events (dicts, as parsed from JSON or CSV); see the module docstring.
        """
        require_permission(principal, Permission.VDI_INGEST, "ingest desktop sessions")
        now = utcnow()
        results: dict[int, EventResult] = {}
        valid: list[tuple[int, BrokerEvent]] = []
        seen: dict[str, int] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                results[index] = _rejected(index, "a record must be an object", None)
                continue
            try:
                event = validate(BrokerEvent, item, prefix="")
            except DomainError as e:
                first = e.errors[0]
                event_id = item.get("eventId") or item.get("event_id")
                results[index] = _rejected(
                    index, "; ".join(f"{x.field}: {x.message}" if x.field else x.message
                                     for x in e.errors),
                    first.field or None, str(event_id) if event_id is not None else None)
                continue
            if event.timestamp > now + MAX_CLOCK_SKEW:
                results[index] = _rejected(index, "timestamp is in the future", "timestamp",
                                           event.event_id)
                continue
            if event.event_id in seen:
                results[index] = EventResult(
                    index=index, outcome=Outcome.DUPLICATE, event_id=event.event_id,
                    reason=f"same event id as record {seen[event.event_id]}")
                continue
            seen[event.event_id] = index
            valid.append((index, event))
        for start in range(0, len(valid), self.batch_size):
            chunk = valid[start : start + self.batch_size]
            done = await self.db.write_tx(functools.partial(self._ingest_in_tx, events=chunk))
            results.update((r.index, r) for r in done)
        # Duplicates inside the feed point at the session of their first occurrence.
        for index, r in list(results.items()):
            if r.outcome is Outcome.DUPLICATE and r.session_id is None and r.event_id in seen:
                original = results.get(seen[r.event_id])
                if original is not None and original.session_id is not None:
                    results[index] = r.model_copy(update={"session_id": original.session_id})
        return IngestReport(results=[results[i] for i in range(len(items))])

    async def _ingest_in_tx(
        self, tx: CountingTx, events: list[tuple[int, BrokerEvent]]
    ) -> list[EventResult]:
        now = utcnow()
        batch_id = str(uuid.uuid4())
        out: dict[int, EventResult] = {}
        resolved = await self._resolve(tx, [e for _, e in events])
        candidates: list[tuple[int, BrokerEvent]] = []
        for index, e in events:
            if e.user.lower() not in resolved.users:
                out[index] = _rejected(index, f"user {e.user!r} not found", "user", e.event_id)
            else:
                candidates.append((index, e))
        claimed = await self.repo.claim_events(tx, [e.event_id for _, e in candidates],
                                               batch_id)
        fresh = []
        for index, e in candidates:
            if claimed.get(e.event_id):
                fresh.append((index, e))
            else:
                out[index] = EventResult(index=index, outcome=Outcome.DUPLICATE,
                                         event_id=e.event_id, reason="event seen before")
        keys = sorted({e.session_key for _, e in fresh})
        sessions = await self.repo.lock_sessions(tx, keys, now) if keys else {}
        to_write: list[dict[str, Any]] = []
        attach: list[dict[str, Any]] = []
        released: list[str] = []
        by_key: dict[str, list[tuple[int, BrokerEvent]]] = {}
        for index, e in fresh:
            by_key.setdefault(e.session_key, []).append((index, e))
        for key, group in by_key.items():
            state = self._state(sessions[key])
            user = resolved.users[group[0][1].user.lower()]
            accepted = 0
            # Logons first: they say when the session began, what the others are checked
            # against; then samples and logoffs, each in time order.
            for index, e in sorted(group, key=lambda g: (_ORDER[g[1].event_type],
                                                          g[1].timestamp, g[0])):
                owner = resolved.users[e.user.lower()]
                problem = self._apply(state, e, owner, resolved)
                if problem is not None:
                    field, reason = problem
                    out[index] = _rejected(index, reason, field, e.event_id)
                    released.append(e.event_id)
                    continue
                accepted += 1
                user = owner
                out[index] = EventResult(index=index, outcome=Outcome.STORED,
                                         event_id=e.event_id, session_id=sessions[key]["id"])
                attach.append({"eventId": e.event_id, "sessionKey": key, "props": {
                    "type": e.event_type.value, "at": e.timestamp, "sessionKey": key,
                    "userName": owner["userName"], "desktop": e.desktop, "host": e.host,
                    "pool": e.pool,
                }})
            if accepted:
                to_write.append({"sessionKey": key, "userId": user["id"],
                                 "props": {k: state.get(k) for k in _PROPS}})
        await self.repo.write(tx, to_write, attach, released, keys, batch_id, now)
        return [out[i] for i, _ in events]

    async def _resolve(self, tx: CountingTx, events: list[BrokerEvent]) -> _Resolved:
        users = await self.repo.resolve(tx, "user", {e.user for e in events})
        desktops = await self.repo.resolve(
            tx, "desktop", {e.desktop.lower() for e in events if e.desktop})
        hosts = await self.repo.resolve(tx, "host", {e.host.lower() for e in events if e.host})
        pools = await self.repo.resolve(tx, "pool", {e.pool.lower() for e in events if e.pool})
        return _Resolved({k.lower(): v for k, v in users.items()}, desktops, hosts, pools)

    @staticmethod
    def _state(stored: dict[str, Any]) -> dict[str, Any]:
        state = {k: stored.get(k) for k in _PROPS}
        state["start"] = as_datetime(state["start"])
        state["end"] = as_datetime(state["end"])
        return state

    @staticmethod
    def _apply(
        state: dict[str, Any], e: BrokerEvent, owner: dict[str, Any], resolved: _Resolved
    ) -> tuple[str, str] | None:
        """Fold one event into a session's state; a (field, reason) when it cannot be."""
        if state.get("userName") and state["userName"] != owner["userName"]:
            return "sessionId", (f"session {e.session_id!r} belongs to user "
                                 f"{state['userName']!r}")
        start: datetime | None = state.get("start")
        end: datetime | None = state.get("end")
        if e.event_type is EventType.LOGON and end is not None and e.timestamp > end:
            return "timestamp", (f"logon at {e.timestamp.isoformat()} is after the session's "
                                 f"logoff at {end.isoformat()}")
        if e.event_type is EventType.LOGOFF and start is not None and e.timestamp < start:
            return "timestamp", (f"logoff at {e.timestamp.isoformat()} is before the "
                                 f"session's logon at {start.isoformat()}")
        state["userName"] = owner["userName"]
        state["broker"] = e.broker
        # The logon says where the session ran; other events only fill in what is missing.
        defines = e.event_type is EventType.LOGON and (start is None or e.timestamp <= start)
        desktop = resolved.desktops.get(e.desktop.lower()) if e.desktop else None
        host = resolved.hosts.get(e.host.lower()) if e.host else None
        pool = resolved.pools.get(e.pool.lower()) if e.pool else None
        where: dict[str, Any] = {
            "desktopName": desktop["displayName"] if desktop else e.desktop,
            "desktopId": desktop["id"] if desktop else None,
            "brokerDesktopId": e.desktop_id,
            "hostName": host["displayName"] if host else (
                e.host or (desktop["host"]["name"] if desktop and desktop["host"] else None)),
            "hostId": host["id"] if host else (
                desktop["host"]["id"] if desktop and desktop["host"] and not e.host else None),
            "poolName": pool["displayName"] if pool else (
                e.pool or (desktop["pool"]["name"] if desktop and desktop["pool"] else None)),
            "poolId": pool["id"] if pool else (
                desktop["pool"]["id"] if desktop and desktop["pool"] and not e.pool else None),
            "protocol": e.protocol, "clientName": e.client_name,
            "clientAddress": e.client_address,
        }
        if e.desktop is None:  # no desktop named: nothing to say about where
            where = {k: v for k, v in where.items()
                     if k in ("protocol", "clientName", "clientAddress")}
        for k, v in where.items():
            if v is not None and (defines or state.get(k) is None):
                state[k] = v
        if e.event_type is EventType.LOGON:
            if defines:
                state["start"] = e.timestamp
                for k, ms in (("logonSeconds", e.logon_duration_ms),
                              ("profileLoadSeconds", e.profile_load_ms),
                              ("groupPolicySeconds", e.group_policy_ms)):
                    if ms is not None:
                        state[k] = _seconds(ms)
        elif e.event_type is EventType.LOGOFF:
            state["end"] = e.timestamp if end is None else max(end, e.timestamp)
        state["sampleCount"] = int(state.get("sampleCount") or 0) + (
            1 if e.event_type is EventType.SAMPLE else 0)
        if e.round_trip_ms is not None:
            state["roundTripSamples"] = int(state.get("roundTripSamples") or 0) + 1
            state["roundTripMsSum"] = float(state.get("roundTripMsSum") or 0) + e.round_trip_ms
            state["roundTripMsMax"] = max(float(state.get("roundTripMsMax") or 0),
                                          e.round_trip_ms)
        if e.cpu_percent is not None:
            state["cpuSamples"] = int(state.get("cpuSamples") or 0) + 1
            state["cpuPercentSum"] = float(state.get("cpuPercentSum") or 0) + e.cpu_percent
        return None
