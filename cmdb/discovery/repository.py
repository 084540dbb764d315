"""Runs the discovery Cypher in the transaction it is given and returns plain rows."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery import queries as q
from cmdb.discovery.models import MANUAL_TRUST, UNIQUE_KEYS, Source, SourceKind
from cmdb.items.history import History
from cmdb.items.models import RelationType
from cmdb.items.writes import record_history

Row = dict[str, Any]


def source_from_row(row: Row) -> Source:
    return Source(
        name=row["name"], kind=SourceKind(row.get("kind") or "OTHER"), trust=row["trust"],
        attribute_trust=json.loads(row.get("attributeTrust") or "{}"),
        description=row.get("description"), registered_at=as_datetime(row.get("registeredAt")),
    )


class DiscoveryRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert_source(self, params: dict[str, Any]) -> Source:
        rows = await self.db.write(q.UPSERT_SOURCE, params)
        return source_from_row(rows[0]["source"])

    async def sources(self) -> dict[str, Source]:
        rows = await self.db.read(q.LIST_SOURCES)
        return {r["source"]["name"]: source_from_row(r["source"]) for r in rows}

    @staticmethod
    async def lookup(tx: CountingTx, values: dict[str, list[str]]) -> dict[tuple[str, str], Row]:
        """(identifier, value) -> {id, props} of the stored CI holding it."""
        props = tuple(p for p in UNIQUE_KEYS if values.get(p))
        if not props:
            return {}
        row = await tx.one(q.lookup_identifiers(props), {p: values[p] for p in props})
        if not row:
            return {}
        nodes = {n["id"]: n for n in row["nodes"]}  # each node's properties sent once
        return {(h["prop"], h["value"]): nodes[h["id"]] for h in row["hits"]}

    @staticmethod
    async def identifiers_held(tx: CountingTx, values: dict[str, list[str]]) -> bool:
        """Whether a stored CI holds any of these (identifier -> values)."""
        props = tuple(p for p in UNIQUE_KEYS if values.get(p))
        if not props:
            return False
        row = await tx.one(q.identifiers_held(props), {p: values[p] for p in props})
        return bool(row and row["held"])

    @staticmethod
    async def create_items(
        tx: CountingTx, labels: str, merge_prop: str, rows: list[Row], now: datetime
    ) -> int:
        row = await tx.one(q.create_items(labels, merge_prop), {"rows": rows, "now": now})
        return int(row["raced"]) if row else 0

    @staticmethod
    async def update_items(tx: CountingTx, rows: list[Row], now: datetime) -> None:
        if rows:
            await tx.rows(q.UPDATE_ITEMS, {"rows": rows, "now": now})

    @staticmethod
    async def write_history(tx: CountingTx, history: History, now: datetime) -> None:
        """A batch's history, kept by the items core in the batch's transaction: the one
        path an ingest's history takes (a test cuts a batch short here)."""
        await record_history(tx, history, now)

    @staticmethod
    async def ends(tx: CountingTx, ids: list[str]) -> dict[str, tuple[str, str]]:
        if not ids:
            return {}
        rows = await tx.rows(q.ENDS, {"ids": ids})
        return {r["id"]: (r["cls"], r["status"]) for r in rows}

    @staticmethod
    async def create_relations(
        tx: CountingTx, rel_type: RelationType, rows: list[Row], source: Source,
        now: datetime,
    ) -> int:
        row = await tx.one(q.create_relations(rel_type), {
            "rows": rows, "source": source.name, "trust": source.trust, "now": now})
        return int(row["created"]) if row else 0

    @staticmethod
    async def touch_relations(
        tx: CountingTx, rel_type: RelationType, rows: list[Row], source: Source,
        now: datetime, fresh_after: datetime,
    ) -> tuple[set[int], dict[int, Row], int]:
        """(rows found live, old properties of those whose properties changed, how many
        differences a more trusted source's properties kept out)."""
        row = await tx.one(q.touch_relations(rel_type), {
            "rows": rows, "source": source.name, "trust": source.trust,
            "manualTrust": MANUAL_TRUST, "now": now, "freshAfter": fresh_after})
        if not row:
            return set(), {}, 0
        return (set(row["found"]), {c["i"]: c["old"] for c in row["changed"]},
                int(row["suppressed"]))

    @staticmethod
    async def sync_mirrors(tx: CountingTx, rows: list[Row]) -> None:
        from cmdb.items.queries import SYNC_MIRRORS

        if rows:
            await tx.rows(SYNC_MIRRORS, {"rows": rows})

    @staticmethod
    async def merge(tx: CountingTx, pairs: list[Row], now: datetime) -> None:
        """Carry relationships over, then retire the duplicates (freeing their identifiers)
        and hand their history to the survivors."""
        await tx.rows(q.MATERIALIZE_CREATION, {"pairs": pairs})
        for rel_type in q.MERGEABLE_TYPES:
            for outgoing in (True, False):
                await tx.rows(q.move_relations(rel_type, outgoing),
                              {"pairs": pairs, "now": now})
        await tx.rows(q.MOVE_ORG_REFS, {"pairs": pairs})
        await tx.rows(q.RETIRE_DUPLICATES, {"pairs": pairs, "now": now})

    @staticmethod
    async def item_props(tx: CountingTx, ids: list[str]) -> dict[str, Row]:
        rows = await tx.rows(q.GET_ITEM_PROPS, {"ids": ids})
        return {r["id"]: r["props"] for r in rows}

    @staticmethod
    async def relations_as_of(tx: CountingTx, item_id: str, at: datetime) -> list[Row]:
        return await tx.rows(q.RELATIONS_AS_OF, {"id": item_id, "at": at})

    # ------------------------------------------------------------------------ staleness

    @staticmethod
    async def mark_stale(tx: CountingTx, before: datetime, now: datetime,
                         limit: int) -> list[str]:
        """Up to ``limit`` live CIs not seen since ``before`` marked stale: their ids."""
        row = await tx.one(q.MARK_STALE, {"before": before, "now": now, "limit": limit})
        return list(row["ids"]) if row else []

    @staticmethod
    async def to_retire(tx: CountingTx, before: datetime, limit: int) -> list[Row]:
        """Up to ``limit`` stale CIs not seen since ``before``: {id, status, lastSeenAt}."""
        return await tx.rows(q.TO_RETIRE, {"before": before, "limit": limit})

    @staticmethod
    async def mark_relations_stale(tx: CountingTx, rel_type: RelationType, before: datetime,
                                   now: datetime) -> int:
        row = await tx.one(q.stale_relations(rel_type), {"before": before, "now": now})
        return int(row["n"]) if row else 0

    @staticmethod
    async def retire_relations(tx: CountingTx, rel_type: RelationType, before: datetime,
                               now: datetime) -> list[Row]:
        """The stale relationships of one type not seen since ``before`` retired: {s, t}."""
        row = await tx.one(q.retire_relations(rel_type), {"before": before, "now": now})
        return list(row["retired"]) if row else []
