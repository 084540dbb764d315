"""Rows from Neo4j to the fields of domain models."""

from __future__ import annotations

import json
from collections.abc import Mapping
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


# JSON kept in a node property (provenance, sightings, history changes).
def load_json(text: Any) -> dict[str, Any]:
    if not isinstance(text, str) or not text:
        return {}
    loaded = json.loads(text)
    return loaded if isinstance(loaded, dict) else {}


def _plain(value: Any) -> Any:
    iso = getattr(value, "iso_format", None) or getattr(value, "isoformat", None)
    if iso is not None:
        return iso()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dump_json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_plain)


def camel(name: str) -> str:
    """A Python field name as the API spells it (``cost_centre_id`` -> ``costCentreId``)."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
