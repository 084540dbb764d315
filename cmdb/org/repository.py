from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.core.mapping import org_unit
from cmdb.db.driver import CountingTx, Database
from cmdb.org import queries as q
from cmdb.org.models import OrgKind, OrgUnit


def unit_from_row(labels: list[str], row: dict[str, Any]) -> OrgUnit:
    kind = next(k for k in OrgKind if k.value in labels)
    unit = org_unit(kind, row)
    assert unit is not None
    return unit


class OrgRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_many(self, ids: list[str]) -> dict[str, OrgUnit]:
        rows = await self.db.read(q.GET_UNITS, {"ids": ids})
        return {r["unit"]["id"]: unit_from_row(r["labels"], r["unit"]) for r in rows}

    async def list(self, kind: OrgKind, name: str | None, limit: int) -> list[OrgUnit]:
        rows = await self.db.read(
            q.list_units(kind.value), {"name": name.lower() if name else None, "limit": limit}
        )
        return [unit_from_row(r["labels"], r["unit"]) for r in rows]

    @staticmethod
    async def conflicts(
        tx: CountingTx, kind: OrgKind, name: str, code: str | None, parent_id: str | None
    ) -> dict[str, Any]:
        row = await tx.one(q.FIND_CONFLICT, {
            "label": kind.value, "nameLower": name.lower(), "code": code, "parentId": parent_id,
        })
        assert row is not None
        return row

    @staticmethod
    async def create(
        tx: CountingTx, kind: OrgKind, unit_id: str, props: dict[str, Any],
        parent_id: str | None, now: datetime,
    ) -> OrgUnit:
        row = await tx.one(q.create_unit(kind.value), {
            "id": unit_id, "props": props, "parentId": parent_id, "label": kind.value,
            "now": now,
        })
        assert row is not None
        return unit_from_row(row["labels"], row["unit"])
