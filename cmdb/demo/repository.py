"""Reads what of the demo enterprise is present (the loader writes through the services)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cmdb.db.driver import Database
from cmdb.demo import queries as q

Row = dict[str, Any]


class DemoRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def org_units(self, names: list[str], codes: list[str]) -> list[Row]:
        """Org units with one of the names (lower case) or cost-centre codes, oldest first."""
        return await self.db.read(q.EXISTING_ORG, {"names": names, "codes": codes})

    async def items(self, names: Iterable[str]) -> list[Row]:
        """Items with one of the names (any case): live ones first, then oldest first."""
        return await self.db.read(q.EXISTING_ITEMS, {"names": sorted({n.lower() for n in names})})

    async def live_relations(self, ids: Iterable[str]) -> set[tuple[str, str, str]]:
        """(source, type, target) of the live relationships among the items."""
        rows = await self.db.read(q.EXISTING_RELATIONS, {"ids": sorted(set(ids))})
        return {(r["source"], r["type"], r["target"]) for r in rows}

    async def catalogue(self) -> tuple[dict[str, str], set[str]]:
        """Catalogue categories (lower-case name -> id) and item names (lower case)."""
        [row] = await self.db.read(q.EXISTING_CATALOGUE)
        return {c["nameLower"]: c["id"] for c in row["categories"]}, set(row["items"])
