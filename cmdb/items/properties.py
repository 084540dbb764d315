"""Node properties and org references of item writes, shared by the item use cases (and
the bulk and catalogue paths): built from validated fields, references checked in the
writer's transaction."""

from __future__ import annotations

from typing import Any

from cmdb.core.mapping import camel
from cmdb.core.models import CRITICALITY_RANK, DomainError, FieldError, LifecycleStatus
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx
from cmdb.items.repository import InventoryRepository

_REF_FIELDS = {"owner": "ownerGroupId", "cc": "costCentreId", "loc": "locationId"}
_REF_NAMES = {"owner": "owner group", "cc": "cost centre", "loc": "location"}


def ref_params(data: dict[str, Any]) -> dict[str, Any]:
    """Parameters for re-pointing references; only keys present in ``data`` are touched."""
    return {
        "setOwner": "owner_group_id" in data,
        "owner": data.get("owner_group_id"),
        "setCc": "cost_centre_id" in data,
        "cc": data.get("cost_centre_id"),
        "setLoc": "location_id" in data,
        "loc": data.get("location_id"),
    }


async def check_refs(tx: CountingTx, refs: dict[str, Any], prefix: str = "input") -> None:
    missing = await InventoryRepository.missing_refs(tx, refs["owner"], refs["cc"], refs["loc"])
    if missing:
        raise DomainError([
            FieldError(
                field=f"{prefix}.{_REF_FIELDS[m]}",
                message=f"{_REF_NAMES[m]} {refs[m]!r} not found",
                code="NOT_FOUND",
            )
            for m in missing
        ])


def common_properties(data: dict[str, Any]) -> dict[str, Any]:
    """Node properties for the ItemBase fields present in ``data``."""
    props: dict[str, Any] = {}
    if "name" in data:
        props["name"] = data["name"]
        props["nameLower"] = data["name"].lower()
    if "description" in data:
        props["description"] = data["description"]
    if "lifecycle_status" in data:
        props["lifecycleStatus"] = data["lifecycle_status"].value
    if "operational_state" in data:
        props["operationalState"] = data["operational_state"].value
    if "criticality" in data:
        props["criticality"] = data["criticality"].value
        props["criticalityRank"] = CRITICALITY_RANK[data["criticality"]]
    if "attributes" in data:
        props.update(attribute_properties(data["attributes"], "input.attributes"))
    return props


def changed_properties(spec: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Node properties for the fields an update gives (``data``), as validated (``spec``);
    attributes are a patch, taken as given."""
    props = common_properties({k: getattr(spec, k) for k in data if k in type(spec).model_fields})
    if "attributes" in data:
        props.update(attribute_properties(data["attributes"], "input.attributes"))
    return props


def refuse_in_update(data: dict[str, Any], fixed: str, fixed_message: str,
                     retire_message: str) -> None:
    """Refuse what an update may not do: change ``fixed`` (an item's class or kind), or
    retire the item (that has a mutation of its own)."""
    if fixed in data:
        raise DomainError.single(f"input.{camel(fixed)}", fixed_message)
    if data.get("lifecycle_status") in (LifecycleStatus.RETIRED, "RETIRED"):
        raise DomainError.single("input.lifecycleStatus", retire_message)
