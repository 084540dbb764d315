"""Runs the planned-change Cypher and returns models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.changes import queries as q
from cmdb.changes.models import PlannedChange
from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database


def change_from_row(row: dict[str, Any]) -> PlannedChange:
    c = row["change"]
    return PlannedChange(id=c["id"], title=c["title"], start=as_datetime(c["start"]),
                         end=as_datetime(c["end"]), ci_ids=c["ciIds"],
                         created_at=as_datetime(c["createdAt"]))


class ChangeRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def missing_items(tx: CountingTx, ids: list[str]) -> list[str]:
        """The ids among ``ids`` of items that do not exist or are retired."""
        row = await tx.one(q.MISSING_ITEMS, {"ids": ids})
        return list(row["missing"]) if row else []

    @staticmethod
    async def create(tx: CountingTx, change_id: str, title: str, start: datetime,
                     end: datetime, ci_ids: list[str], now: datetime) -> PlannedChange:
        row = await tx.one(q.CREATE, {"id": change_id, "title": title, "start": start,
                                      "end": end, "ciIds": ci_ids, "now": now})
        assert row is not None
        return change_from_row(row)

    async def upcoming(self, after: datetime, limit: int) -> list[PlannedChange]:
        rows = await self.db.read(q.LIST, {"after": after, "limit": limit})
        return [change_from_row(r) for r in rows]

    async def overlapping(self, start: datetime, end: datetime,
                          exclude: str | None) -> list[PlannedChange]:
        rows = await self.db.read(q.OVERLAPPING, {"start": start, "end": end,
                                                  "exclude": exclude})
        return [change_from_row(r) for r in rows]
