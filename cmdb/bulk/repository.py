"""Runs the bulk Cypher inside a batch's transaction and returns plain rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.bulk import queries as q
from cmdb.core.models import OrgKind
from cmdb.db.driver import CountingTx

Row = dict[str, Any]


class BulkRepository:
    """Stateless: every method works in the transaction it is given."""

    @staticmethod
    async def existing_items(tx: CountingTx, ids: list[str]) -> dict[str, Row]:
        row = await tx.one(q.EXISTING_ITEMS, {"ids": ids})
        return {r["id"]: r for r in (row or {}).get("items", [])}

    @staticmethod
    async def org_labels(tx: CountingTx, ids: list[str]) -> dict[str, list[str]]:
        if not ids:
            return {}
        rows = await tx.rows(q.ORG_REFS, {"ids": ids})
        return {r["id"]: r["labels"] for r in rows}

    @staticmethod
    async def identifier_conflicts(
        tx: CountingTx, checks: dict[str, list[dict[str, str]]]
    ) -> list[Row]:
        """``checks`` maps an identifier property (allow-listed) to ``{id, value}`` pairs."""
        props = tuple(p for p, values in checks.items() if values)
        if not props:
            return []
        return await tx.rows(q.identifier_conflicts(props), {p: checks[p] for p in props})

    @staticmethod
    async def ends(tx: CountingTx, ids: list[str]) -> dict[str, tuple[str, str]]:
        """id -> (class name or SERVICE, lifecycle status) of the items found."""
        rows = await tx.rows(q.ENDS, {"ids": ids})
        return {i: (r["cls"], r["status"]) for r in rows for i in r["ids"]}

    @staticmethod
    async def existing_org(tx: CountingTx, ids: list[str]) -> dict[str, Row]:
        rows = await tx.rows(q.EXISTING_ORG, {"ids": ids})
        return {r["id"]: r for r in rows}

    @staticmethod
    async def org_conflicts(tx: CountingTx, kind: OrgKind, rows: list[Row]) -> list[Row]:
        return await tx.rows(q.ORG_CONFLICTS, {"rows": rows, "label": kind.value})

    @staticmethod
    async def parents(tx: CountingTx, kind: OrgKind, ids: list[str]) -> set[str]:
        if not ids:
            return set()
        rows = await tx.rows(q.PARENTS, {"ids": ids, "label": kind.value})
        return {r["id"] for r in rows}

    @staticmethod
    async def upsert_org(
        tx: CountingTx, kind: OrgKind, rows: list[Row], links: list[Row], now: datetime
    ) -> None:
        await tx.rows(q.upsert_org(kind), {"rows": rows, "now": now})
        if links:
            await tx.rows(q.SET_PARENTS, {"links": links, "label": kind.value})
