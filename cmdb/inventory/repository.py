"""Runs the inventory Cypher and returns configuration-item models."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cmdb.core.mapping import as_datetime, item_fields
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.scope import EVERYTHING, Visibility
from cmdb.inventory import queries as q
from cmdb.inventory.models import (
    Asset,
    CIClass,
    ConfigurationItem,
    Identifiers,
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
    async def create(
        tx: CountingTx,
        ci_id: str,
        ci_class: CIClass,
        props: dict[str, Any],
        refs: dict[str, Any],
        now: datetime,
    ) -> ConfigurationItem:
        row = await tx.one(
            q.create_ci(class_labels(ci_class)), {"id": ci_id, "props": props, "now": now, **refs}
        )
        assert row is not None
        return ci_from_row(row["item"])

    @staticmethod
    async def update(
        tx: CountingTx, ci_id: str, props: dict[str, Any], refs: dict[str, Any], now: datetime
    ) -> ConfigurationItem:
        row = await tx.one(q.UPDATE_CI, {"id": ci_id, "props": props, "now": now, **refs})
        assert row is not None
        return ci_from_row(row["item"])

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
        row = await tx.one(q.SET_ASSET, {"id": ci_id, "props": props, "now": now, "by": by})
        assert row is not None
        return asset_from_row(row["asset"])

    @staticmethod
    async def clear(tx: CountingTx, ci_id: str) -> bool:
        row = await tx.one(q.CLEAR_ASSET, {"id": ci_id})
        return bool(row and row["deleted"])
