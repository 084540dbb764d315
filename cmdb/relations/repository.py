from __future__ import annotations

from datetime import datetime
from typing import Any

from cmdb.core.cypher import ATTRIBUTE_PREFIX
from cmdb.core.mapping import as_datetime, native
from cmdb.db.driver import CountingTx, Database
from cmdb.inventory.models import ConfigurationItem
from cmdb.inventory.repository import ci_from_row
from cmdb.relations import queries as q
from cmdb.relations.models import Direction, Relation, RelationQuery, RelationType
from cmdb.servicemodel.models import Service
from cmdb.servicemodel.repository import service_from_row


def item_from_row(row: dict[str, Any]) -> ConfigurationItem | Service:
    return service_from_row(row) if row["kind"] == "SERVICE" else ci_from_row(row)


def relation_from_row(row: dict[str, Any]) -> Relation:
    props = row["props"]
    return Relation(
        type=RelationType(row["type"]),
        direction=Direction(row["direction"]),
        depth=row["depth"],
        source_id=row["startId"],
        target_id=row["endId"],
        properties={
            k[len(ATTRIBUTE_PREFIX):]: native(v)
            for k, v in props.items() if k.startswith(ATTRIBUTE_PREFIX)
        },
        created_at=as_datetime(props.get("createdAt")),
        retired_at=as_datetime(props.get("retiredAt")),
        path=row["path"],
        item=item_from_row(row["item"]),
    )


class RelationRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def neighbours(self, ids: list[str], rq: RelationQuery) -> dict[str, list[Relation]]:
        vis = rq.visibility
        query = q.neighbours(rq.direction, rq.types, rq.depth, rq.include_retired,
                             rq.with_org, vis.predicate("n"), vis.predicate("x"))
        rows = await self.db.read(query, {"ids": ids, "first": rq.first, **vis.params()})
        return {r["id"]: [relation_from_row(x) for x in r["rels"]] for r in rows}

    @staticmethod
    async def ends(
        tx: CountingTx, source_id: str, target_id: str, now: datetime
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        row = await tx.one(q.GET_ENDS, {"sourceId": source_id, "targetId": target_id,
                                        "now": now})
        if row is None:
            return None, None
        return row["source"], row["target"]

    @staticmethod
    async def upsert(
        tx: CountingTx, rel_type: RelationType, source_id: str, target_id: str,
        props: dict[str, Any], now: datetime,
    ) -> Relation:
        row = await tx.one(q.upsert(rel_type), {"sourceId": source_id, "targetId": target_id,
                                                "props": props, "now": now})
        assert row is not None
        if rel_type is RelationType.MEMBER_OF:
            await tx.rows(q.SYNC_MIRRORS, {"rows": [{"s": source_id, "t": target_id}]})
        return relation_from_row(row["rel"])

    @staticmethod
    async def retire(
        tx: CountingTx, rel_type: RelationType, source_id: str, target_id: str,
        reason: str | None, now: datetime,
    ) -> Relation | None:
        row = await tx.one(q.retire(rel_type), {"sourceId": source_id, "targetId": target_id,
                                                "reason": reason, "now": now})
        if row and rel_type is RelationType.MEMBER_OF:
            await tx.rows(q.RETIRE_MIRROR, {"sourceId": source_id, "targetId": target_id,
                                            "now": now})
        return relation_from_row(row["rel"]) if row else None
