"""Runs the alarm Cypher and returns alarm models. Writers run inside a caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.alarms import queries as q
from cmdb.alarms.models import Alarm, AlarmQuery, AlarmSeverity
from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.scope import EVERYTHING, Visibility


def alarm_from_row(row: dict[str, Any]) -> Alarm:
    return Alarm(
        id=row["id"],
        source=row["source"],
        dedup_key=row["dedupKey"],
        ci_id=row["ciId"],
        severity=row["severity"],
        status=row["status"],
        message=row["message"],
        count=row["count"],
        first_occurred_at=as_datetime(row["firstOccurredAt"]),
        last_occurred_at=as_datetime(row["lastOccurredAt"]),
        created_at=as_datetime(row["createdAt"]),
        updated_at=as_datetime(row.get("updatedAt") or row["createdAt"]),
        acknowledged_by=row.get("acknowledgedBy"),
        acknowledged_at=as_datetime(row.get("acknowledgedAt")),
        cleared_by=row.get("clearedBy"),
        cleared_at=as_datetime(row.get("clearedAt")),
    )


class AlarmRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def open_counts(self) -> list[tuple[str, str, int]]:
        """(severity, status, count) of the alarms still open, for metrics."""
        rows = await self.db.read(q.OPEN_ALARM_COUNTS)
        return [(r["severity"], r["status"], int(r["n"])) for r in rows]

    async def get(self, alarm_id: str) -> Alarm | None:
        rows = await self.db.read(q.GET_BY_ID, {"id": alarm_id})
        return alarm_from_row(rows[0]["alarm"]) if rows else None

    # --- inside a caller's transaction --------------------------------------------------------

    @staticmethod
    async def lock_items(tx: CountingTx, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Write-lock the items (sorted, so concurrent writers lock in one order)."""
        rows = await tx.rows(q.LOCK_ITEMS, {"ids": sorted(set(ids))})
        return {r["id"]: r for r in rows}

    @staticmethod
    async def upsert(
        tx: CountingTx, rows: list[dict[str, Any]], now: datetime
    ) -> list[dict[str, Any]]:
        found = await tx.rows(q.UPSERT, {"rows": rows, "now": now})
        return [{**r, "alarm": alarm_from_row(r["alarm"])} for r in found]

    @staticmethod
    async def seen_events(tx: CountingTx, keys: list[str]) -> dict[str, tuple[str, Alarm]]:
        """Event key -> (outcome, alarm now) of the raises already counted."""
        if not keys:
            return {}
        rows = await tx.rows(q.SEEN_EVENTS, {"keys": keys})
        return {r["key"]: (r["outcome"], alarm_from_row(r["alarm"])) for r in rows}

    @staticmethod
    async def record_events(tx: CountingTx, events: list[dict[str, str]],
                            now: datetime) -> None:
        if events:
            await tx.rows(q.RECORD_EVENTS, {"events": events, "now": now})

    @staticmethod
    async def open_severities(tx: CountingTx, ids: list[str]) -> dict[str, list[AlarmSeverity]]:
        rows = await tx.rows(q.OPEN_SEVERITIES, {"ids": ids})
        return {r["id"]: [AlarmSeverity(s) for s in r["severities"]] for r in rows}

    @staticmethod
    async def set_baselines(tx: CountingTx, rows: list[tuple[str, str | None]]) -> None:
        if rows:
            await tx.rows(q.SET_BASELINES, {"rows": [{"id": i, "baseline": b} for i, b in rows]})

    @staticmethod
    async def get_in_tx(tx: CountingTx, alarm_id: str) -> Alarm | None:
        return await tx.one_as(q.GET_BY_ID, {"id": alarm_id}, "alarm", alarm_from_row)

    @staticmethod
    async def get_open_by_key(tx: CountingTx, key: str) -> Alarm | None:
        return await tx.one_as(q.GET_OPEN_BY_KEY, {"openKey": key}, "alarm", alarm_from_row)

    @staticmethod
    async def get_latest_by_key(tx: CountingTx, source: str, dedup_key: str) -> Alarm | None:
        return await tx.one_as(
            q.GET_LATEST_BY_KEY, {"source": source, "dedupKey": dedup_key}, "alarm", alarm_from_row)

    @staticmethod
    async def lock_alarm(tx: CountingTx, alarm_id: str) -> str | None:
        row = await tx.one(q.LOCK_ALARM, {"id": alarm_id})
        return row["status"] if row else None

    @staticmethod
    async def acknowledge(
        tx: CountingTx, alarm_id: str, user: str, now: datetime
    ) -> Alarm | None:
        return await tx.one_as(
            q.ACKNOWLEDGE, {"id": alarm_id, "user": user, "now": now}, "alarm", alarm_from_row)

    @staticmethod
    async def clear(
        tx: CountingTx, alarm_id: str, user: str | None, now: datetime
    ) -> tuple[Alarm, bool] | None:
        """The alarm after clearing, and whether this call cleared it."""
        row = await tx.one(q.CLEAR, {"id": alarm_id, "user": user, "now": now})
        return (alarm_from_row(row["alarm"]), bool(row["cleared"])) if row else None

    # --- listing (last: the name shadows the builtin in the class body) ----------------

    async def list(self, f: AlarmQuery, first: int,
                   visible: Visibility = EVERYTHING) -> list[Alarm]:
        query = q.list_alarms(f.ci_id is not None, f.statuses is not None,
                              f.severities is not None, f.source is not None,
                              visible.predicate())
        rows = await self.db.read(query, {
            **visible.params(),
            "ciId": f.ci_id,
            "statuses": [s.value for s in f.statuses or ()],
            "severities": [s.value for s in f.severities or ()],
            "source": f.source,
            "first": first,
        })
        return [alarm_from_row(r["alarm"]) for r in rows]
