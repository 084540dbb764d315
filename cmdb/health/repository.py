"""Reads of health: states, their history, impact and the service model. The roll-up that
writes states is ``cmdb.rollup.repository``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database
from cmdb.health import queries as q
from cmdb.rollup.models import StateChange


def impacted_params(ids: list[str], services_only: bool, start: datetime,
                     end: datetime) -> dict[str, Any]:
    """Parameters of ``IMPACTED``; times as ISO strings (see the statement)."""
    return {"ids": ids, "servicesOnly": services_only, "start": start.isoformat(),
            "end": end.isoformat()}


class HealthRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def services_down(self) -> int:
        """Services in service whose rolled-up health is DOWN, for metrics."""
        rows = await self.db.read(q.SERVICES_DOWN_COUNT)
        return int(rows[0]["n"]) if rows else 0

    async def states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        rows = await self.db.read(q.STATES, {"ids": ids})
        return {r["id"]: {**r, "since": as_datetime(r["since"])} for r in rows}

    async def states_as_of(self, ids: list[str], at: datetime) -> dict[str, dict[str, Any]]:
        rows = await self.db.read(q.STATE_AS_OF, {"ids": ids, "at": at})
        return {r["id"]: {**r, "since": as_datetime(r["since"])} for r in rows}

    async def history(self, item_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        rows = await self.db.read(q.HISTORY, {"id": item_id, "start": start, "end": end})
        changes: list[dict[str, Any]] = rows[0]["changes"] if rows else []
        return [{**c, "at": as_datetime(c["at"])} for c in changes]

    async def impacted(self, ids: list[str], services_only: bool, start: datetime,
                       end: datetime) -> list[dict[str, Any]]:
        """What ``ids`` hold up, each service with its state changes in [start, end) and
        the last one before (``history``)."""
        return await self.db.read(q.IMPACTED, impacted_params(ids, services_only, start, end))

    @staticmethod
    async def impacted_in_tx(tx: CountingTx, ids: list[str], services_only: bool,
                             start: datetime, end: datetime) -> list[dict[str, Any]]:
        """``impacted`` inside a caller's transaction (which may have changed states)."""
        return await tx.rows(q.IMPACTED, impacted_params(ids, services_only, start, end))

    async def model(self, item_id: str) -> list[dict[str, Any]]:
        return await self.db.read(q.MODEL, {"id": item_id})

    async def changes_since(
        self, ids: list[str] | None, since: datetime, limit: int = 500
    ) -> list[StateChange]:
        rows = await self.db.read(q.CHANGES_SINCE, {"ids": ids, "since": since, "limit": limit})
        return [
            StateChange(item_id=c["itemId"], state=c["state"], previous=c["previous"],
                        at=as_datetime(c["at"]), cause=c["cause"])
            for c in (r["change"] for r in rows)
        ]

    async def changes_window(
        self, since: datetime, seen: list[str], limit: int
    ) -> list[StateChange]:
        """Changes stamped at or after ``since`` whose ids are not in ``seen``, oldest
        first: one statement, whoever is watching."""
        rows = await self.db.read(q.CHANGES_WINDOW,
                                  {"from": since, "seen": seen, "limit": limit})
        return [
            StateChange(item_id=c["itemId"], state=c["state"], previous=c["previous"],
                        at=as_datetime(c["at"]), cause=c["cause"], id=r["key"])
            for r in rows for c in (r["change"],)
        ]

    async def histories(
        self, ids: list[str], start: datetime, end: datetime
    ) -> dict[str, list[dict[str, Any]]]:
        """Each item's changes in [start, end) and the last one before: one round trip."""
        rows = await self.db.read(q.HISTORIES, {"ids": ids, "start": start, "end": end})
        return {r["id"]: [{**c, "at": as_datetime(c["at"])} for c in r["changes"]]
                for r in rows}
