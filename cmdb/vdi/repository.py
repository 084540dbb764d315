"""Runs the VDI Cypher and returns session models."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, LiteralString

from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database
from cmdb.vdi import queries as q
from cmdb.vdi.models import DesktopSession


def session_from_row(row: dict[str, Any]) -> DesktopSession:
    samples = int(row.get("sampleCount") or 0)
    rtt_n = int(row.get("roundTripSamples") or 0)
    cpu_n = int(row.get("cpuSamples") or 0)
    return DesktopSession(
        id=row["id"], session_key=row["sessionKey"], user_name=row.get("userName") or "",
        desktop_name=row.get("desktopName"), desktop_id=row.get("desktopId"),
        host_name=row.get("hostName"), host_id=row.get("hostId"),
        pool_name=row.get("poolName"), pool_id=row.get("poolId"),
        start=as_datetime(row.get("start")), end=as_datetime(row.get("end")),
        logon_seconds=row.get("logonSeconds"),
        profile_load_seconds=row.get("profileLoadSeconds"),
        group_policy_seconds=row.get("groupPolicySeconds"),
        protocol=row.get("protocol"), client_name=row.get("clientName"),
        client_address=row.get("clientAddress"), broker=row.get("broker"),
        sample_count=samples,
        round_trip_ms_avg=round(row["roundTripMsSum"] / rtt_n, 1) if rtt_n else None,
        round_trip_ms_max=row.get("roundTripMsMax"),
        cpu_percent_avg=round(row["cpuPercentSum"] / cpu_n, 1) if cpu_n else None,
    )


Named = Literal["user", "desktop", "host", "pool"]
_RESOLVE: dict[Named, LiteralString] = {
    "user": q.RESOLVE_USERS, "desktop": q.RESOLVE_DESKTOPS, "host": q.RESOLVE_HOSTS,
    "pool": q.RESOLVE_POOLS,
}


class VdiRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def user_sessions(
        self, user_ids: list[str], start: datetime, end: datetime, limit: int, now: datetime
    ) -> dict[str, list[DesktopSession]]:
        rows = await self.db.read(q.USER_SESSIONS, {
            "ids": user_ids, "start": start, "end": end, "limit": limit, "now": now})
        return {r["id"]: [session_from_row(s) for s in r["sessions"]] for r in rows}

    async def sessions_by_id(self, ids: list[str]) -> dict[str, DesktopSession]:
        rows = await self.db.read(q.SESSIONS_BY_ID, {"ids": ids})
        return {r["session"]["id"]: session_from_row(r["session"]) for r in rows}

    # --- inside the ingest transaction ------------------------------------------------------

    @staticmethod
    async def resolve(tx: CountingTx, kind: Named, names: set[str]) -> dict[str, dict[str, Any]]:
        """Users, desktops, hosts or pools by name (lower case but for users), by that name."""
        if not names:
            return {}
        rows = await tx.rows(_RESOLVE[kind], {"names": sorted(names)})
        return {r["name"]: r for r in rows if r.get("id") is not None}

    @staticmethod
    async def claim_events(
        tx: CountingTx, event_ids: list[str], batch_id: str
    ) -> dict[str, bool]:
        rows = await tx.rows(q.CLAIM_EVENTS, {
            "events": [{"eventId": i} for i in event_ids], "batchId": batch_id})
        return {r["eventId"]: bool(r["created"]) for r in rows}

    @staticmethod
    async def lock_sessions(
        tx: CountingTx, keys: list[str], now: datetime
    ) -> dict[str, dict[str, Any]]:
        rows = await tx.rows(q.LOCK_SESSIONS, {"keys": sorted(keys), "now": now})
        return {r["key"]: {**r["session"], "_new": r["new"]} for r in rows}

    @staticmethod
    async def write(
        tx: CountingTx, sessions: list[dict[str, Any]], events: list[dict[str, Any]],
        released: list[str], touched_keys: list[str], batch_id: str, now: datetime,
    ) -> None:
        if sessions:
            await tx.rows(q.WRITE_SESSIONS, {"sessions": sessions, "now": now})
        if events:
            await tx.rows(q.ATTACH_EVENTS, {"events": events, "now": now})
        if released:
            await tx.rows(q.RELEASE_EVENTS, {"ids": released, "batchId": batch_id})
        if touched_keys:
            await tx.rows(q.DROP_EMPTY_SESSIONS, {"keys": touched_keys})
