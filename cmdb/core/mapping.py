"""Rows from Neo4j to the fields of domain models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from neo4j.time import DateTime

from cmdb.core.cypher import ATTRIBUTE_PREFIX
from cmdb.core.models import OrgKind, OrgUnit


def native(value: Any) -> Any:
    if isinstance(value, DateTime):
        return value.to_native()
    if isinstance(value, list):
        return [native(v) for v in value]
    return value


def as_datetime(value: Any) -> datetime | None:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    v = native(value)
    return v if isinstance(v, datetime) else None


def org_unit(kind: OrgKind, row: dict[str, Any] | None) -> OrgUnit | None:
    if not row:
        return None
    return OrgUnit(
        id=row["id"], kind=kind, name=row["name"], code=row.get("code"),
        email=row.get("email"), parent_id=row.get("parentId"),
        description=row.get("description"),
    )


def item_fields(row: dict[str, Any]) -> dict[str, Any]:
    """The ``ItemBase`` fields of a projected item row."""
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row.get("description"),
        "lifecycle_status": row["lifecycleStatus"],
        "operational_state": row["operationalState"],
        "criticality": row["criticality"],
        "owner_group": org_unit(OrgKind.OWNER_GROUP, row.get("ownerGroup")),
        "cost_centre": org_unit(OrgKind.COST_CENTRE, row.get("costCentre")),
        "location": org_unit(OrgKind.LOCATION, row.get("location")),
        "attributes": {
            k[len(ATTRIBUTE_PREFIX) :]: native(v)
            for k, v in row.items()
            if k.startswith(ATTRIBUTE_PREFIX)
        },
        "health_state": row.get("healthState") or "UNKNOWN",
        "created_at": as_datetime(row["createdAt"]),
        "updated_at": as_datetime(row["updatedAt"]),
        "retired_at": as_datetime(row.get("retiredAt")),
        "retired_reason": row.get("retiredReason"),
    }
