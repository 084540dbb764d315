"""Runs the items' Cypher and maps rows to item models."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, LiteralString, TypeVar

from cmdb.core.cypher import ATTRIBUTE_PREFIX, ItemFilter, SortSpec, build_list_query, cursor_value
from cmdb.core.mapping import as_datetime, item_fields, native
from cmdb.core.pagination import Page, PageRequest, encode_cursor
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.scope import EVERYTHING, Visibility
from cmdb.items import queries as q
from cmdb.items.models import (
    SLA,
    Asset,
    BusinessValue,
    CIClass,
    ConfigurationItem,
    CostRecovery,
    Direction,
    Identifiers,
    Relation,
    RelationQuery,
    RelationType,
    Service,
    class_labels,
)

# Identifier field -> node property; each is unique among CIs (see migrations).
IDENTIFIER_PROPERTIES = {
    "serial_number": "serialNumber",
    "host_name": "hostName",
    "mac_address": "macAddress",
    "cloud_instance_id": "cloudInstanceId",
    "fqdn": "fqdn",
}
UNIQUE_IDENTIFIERS = ("serial_number", "mac_address", "cloud_instance_id", "fqdn")


def ci_from_row(row: dict[str, Any]) -> ConfigurationItem:
    return ConfigurationItem(
        **item_fields(row),
        ci_class=row["ciClass"],
        identifiers=Identifiers(
            serial_number=row.get("serialNumber"),
            host_name=row.get("hostName"),
            domain=row.get("domain"),
            mac_address=row.get("macAddress"),
            cloud_instance_id=row.get("cloudInstanceId"),
        ),
        source=row.get("source"),
        last_seen_at=as_datetime(row.get("lastSeenAt")),
        provenance_json=row.get("provenance"),
        seen_by_json=row.get("seenBy"),
        stale_since=as_datetime(row.get("staleSince")),
        merged_into=row.get("mergedInto"),
    )


def identifier_properties(ids: Identifiers) -> dict[str, Any]:
    return {
        "serialNumber": ids.serial_number,
        "hostName": ids.host_name,
        "domain": ids.domain,
        "fqdn": ids.fqdn,
        "macAddress": ids.mac_address,
        "cloudInstanceId": ids.cloud_instance_id,
    }


class InventoryRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_rows(
        self, ids: list[str], with_org: bool = True, visible: Visibility = EVERYTHING
    ) -> dict[str, dict[str, Any]]:
        """Items by id; those outside ``visible`` are absent, as if they did not exist."""
        rows = await self.db.read(q.get_items(with_org, visible.predicate()),
                                  {"ids": ids, **visible.params()})
        return {r["item"]["id"]: r["item"] for r in rows}

    async def visible_ids(self, ids: list[str], visible: Visibility) -> set[str]:
        if visible.everything:
            return set(ids)
        rows = await self.db.read(q.visible_ids(visible.predicate()),
                                  {"ids": ids, **visible.params()})
        return {r["id"] for r in rows}

    @staticmethod
    async def identifier_conflicts(
        tx: CountingTx, ci_id: str, ids: Identifiers
    ) -> list[tuple[str, str, str]]:
        checks = {f: getattr(ids, f) for f in UNIQUE_IDENTIFIERS}
        if all(v is None for v in checks.values()):
            return []
        rows = await tx.rows(q.IDENTIFIER_CONFLICTS, {**checks, "id": ci_id})
        return [(r["field"], r["value"], r["heldBy"]) for r in rows]

    @staticmethod
    async def missing_refs(
        tx: CountingTx, owner: str | None, cc: str | None, loc: str | None
    ) -> list[str]:
        row = await tx.one(q.REFS_EXIST, {"owner": owner, "cc": cc, "loc": loc})
        assert row is not None
        return [name for name in ("owner", "cc", "loc") if not row[name]]

    @staticmethod
    async def create_item(tx: CountingTx, item_id: str, labels: str, props: dict[str, Any],
                          refs: dict[str, Any], now: datetime) -> dict[str, Any]:
        """A CI or service (``labels`` from ``class_labels``/``SERVICE_LABELS``)."""
        return await _item(tx, q.create_item(labels), item_id, props, refs, now)

    @staticmethod
    async def update_item(tx: CountingTx, item_id: str, label: str, props: dict[str, Any],
                          refs: dict[str, Any], now: datetime,
                          pending: dict[str, Any] | None = None) -> dict[str, Any]:
        """Set properties (and re-point references) of a CI or service (``label``), marked
        for the roll-up when ``pending`` (``{state, cause}``) is given."""
        return await _item(tx, q.update_item(label), item_id, props,
                           {**refs, "pending": pending}, now)

    @staticmethod
    async def create(tx: CountingTx, ci_id: str, ci_class: CIClass, props: dict[str, Any],
                     refs: dict[str, Any], now: datetime) -> ConfigurationItem:
        """A CI; for callers not yet writing through ``cmdb.items.writes``."""
        row = await InventoryRepository.create_item(tx, ci_id, class_labels(ci_class), props,
                                                    refs, now)
        return ci_from_row(row)

    @staticmethod
    async def get_in_tx(tx: CountingTx, item_id: str) -> dict[str, Any] | None:
        row = await tx.one(q.GET_ITEMS, {"ids": [item_id]})
        return row["item"] if row else None

    @staticmethod
    async def retire(
        tx: CountingTx, item_id: str, reason: str | None, now: datetime
    ) -> dict[str, Any]:
        row = await tx.one(q.RETIRE_ITEM, {"id": item_id, "reason": reason, "now": now})
        assert row is not None
        item: dict[str, Any] = row["item"]
        return item

    @staticmethod
    async def retire_many(tx: CountingTx, rows: list[dict[str, Any]], now: datetime) -> int:
        """Retire the items of ``rows`` (``{id, reason}``); returns how many were found."""
        row = await tx.one(q.RETIRE_ITEMS, {"rows": rows, "now": now})
        return int(row["retired"]) if row else 0


def asset_from_row(a: dict[str, Any]) -> Asset:
    def day(v: Any) -> date | None:
        return None if v is None else date.fromisoformat(v)

    purchase = day(a["purchaseDate"])
    assert purchase is not None
    return Asset(
        ci_id=a["ciId"], purchase_price=Decimal(a["purchasePrice"]), currency=a["currency"],
        purchase_date=purchase, depreciation_months=a["depreciationMonths"],
        residual_value=Decimal(a.get("residualValue") or "0"),
        support_monthly=Decimal(a.get("supportMonthly") or "0"),
        support_start=day(a.get("supportStart")) or purchase,
        support_end=day(a.get("supportEnd")), warranty_end=day(a.get("warrantyEnd")),
        asset_tag=a.get("assetTag"), serial_number=a.get("serialNumber"),
        vendor=a.get("vendor"), updated_at=as_datetime(a.get("updatedAt")),
        updated_by=a.get("updatedBy"),
    )


class AssetRepository:
    """Asset records of CIs (one per CI, on a node of its own linked to the CI)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def by_ci(self, ids: list[str]) -> dict[str, Asset]:
        rows = await self.db.read(q.GET_ASSETS, {"ids": ids})
        return {r["asset"]["ciId"]: asset_from_row(r["asset"]) for r in rows}

    @staticmethod
    async def target(tx: CountingTx, ci_id: str, tag: str | None) -> dict[str, Any] | None:
        return await tx.one(q.ASSET_TARGET, {"id": ci_id, "tag": tag})

    @staticmethod
    async def put(tx: CountingTx, ci_id: str, props: dict[str, Any], now: datetime,
                  by: str | None) -> Asset:
        return await tx.expect_one_as(
            q.SET_ASSET, {"id": ci_id, "props": props, "now": now, "by": by}, "asset",
            asset_from_row)

    @staticmethod
    async def clear(tx: CountingTx, ci_id: str) -> bool:
        row = await tx.one(q.CLEAR_ASSET, {"id": ci_id})
        return bool(row and row["deleted"])


def decimal_or_none(v: Any) -> Decimal | None:
    return Decimal(v) if v is not None else None


def service_from_row(row: dict[str, Any]) -> Service:
    return Service(
        **item_fields(row),
        kind=row["serviceKind"],
        sla=SLA(
            availability_target=decimal_or_none(row.get("slaAvailabilityTarget")),
            response_target_minutes=row.get("slaResponseTargetMinutes"),
            restore_target_minutes=row.get("slaRestoreTargetMinutes"),
            maintenance_windows=row.get("slaMaintenanceWindows") or [],
        ),
        business_value=BusinessValue(
            revenue_per_hour=decimal_or_none(row.get("revenuePerHour")),
            users=row.get("users"),
        ),
        cost_recovery=row.get("costRecovery") or CostRecovery.OWNER,
    )


def sla_properties(sla: SLA) -> dict[str, Any]:
    # Decimals are stored as strings: exact, and comparable as written.
    return {
        "slaAvailabilityTarget": (
            str(sla.availability_target) if sla.availability_target is not None else None
        ),
        "slaResponseTargetMinutes": sla.response_target_minutes,
        "slaRestoreTargetMinutes": sla.restore_target_minutes,
        "slaMaintenanceWindows": sla.maintenance_windows or None,
    }


def value_properties(value: BusinessValue) -> dict[str, Any]:
    return {
        "revenuePerHour": (
            str(value.revenue_per_hour) if value.revenue_per_hour is not None else None
        ),
        "users": value.users,
    }


async def _item(tx: CountingTx, query: LiteralString, item_id: str,
                props: dict[str, Any], refs: dict[str, Any], now: datetime) -> dict[str, Any]:
    row = await tx.one(query, {"id": item_id, "props": props, "now": now, **refs})
    assert row is not None
    item: dict[str, Any] = row["item"]
    return item


class ItemBatchRepository:
    """Many items or relationships written by one statement (bulk loads)."""

    @staticmethod
    async def create(tx: CountingTx, labels: str, rows: list[dict[str, Any]], now: datetime
                     ) -> None:
        await tx.rows(q.create_items(labels), {"rows": rows, "now": now})

    @staticmethod
    async def update(tx: CountingTx, rows: list[dict[str, Any]], now: datetime) -> None:
        await tx.rows(q.UPDATE_ITEMS, {"rows": rows, "now": now})

    @staticmethod
    async def relate(
        tx: CountingTx, rel_type: RelationType, rows: list[dict[str, Any]], now: datetime
    ) -> dict[str, int]:
        found = await tx.rows(q.upsert_relations(rel_type), {"rows": rows, "now": now})
        if rel_type is RelationType.MEMBER_OF:
            await tx.rows(q.SYNC_MIRRORS, {"rows": rows})
        return {r["outcome"]: r["n"] for r in found}


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


class HistoryRepository:
    """Changes of items and relationships: written in the caller's transaction, read back."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def write(tx: CountingTx, records: list[dict[str, Any]], now: datetime) -> None:
        if records:
            await tx.rows(q.WRITE_HISTORY, {"records": records, "now": now})

    async def read(self, item_id: str, since: datetime, until: datetime, first: int
                   ) -> list[dict[str, Any]]:
        rows = await self.db.read(q.HISTORY, {"id": item_id, "since": since, "until": until,
                                              "first": first})
        return [r["record"] for r in rows]

    @staticmethod
    async def after(tx: CountingTx, item_id: str, at: datetime) -> list[dict[str, Any]]:
        rows = await tx.rows(q.HISTORY_AFTER, {"id": item_id, "at": at})
        return [r["record"] for r in rows]


# ------------------------------------------------------------------------------ listing

T = TypeVar("T")


async def list_items(
    db: Database,
    label: str,
    f: ItemFilter,
    sort: SortSpec,
    page: PageRequest,
    want_total: bool,
    to_model: Callable[[dict[str, Any]], T],
) -> Page[T]:
    query, params = build_list_query(label, f, sort, page, want_total)
    (row,) = await db.read(query, params)
    rows: list[dict[str, Any]] = row["rows"]
    has_more = len(rows) > page.size
    rows = rows[: page.size]
    if not page.forward:
        rows.reverse()
    items = [
        (encode_cursor(cursor_value(native(r["sortValue"])), r["item"]["id"]), to_model(r["item"]))
        for r in rows
    ]
    return Page(
        items=items,
        has_next_page=has_more if page.forward else page.cursor is not None,
        has_previous_page=page.cursor is not None if page.forward else has_more,
        total_count=row["total"],
    )

