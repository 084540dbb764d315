"""Use cases for services."""

from __future__ import annotations

import uuid
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.cypher import ItemFilter, sort_spec
from cmdb.core.models import DomainError, LifecycleStatus, NotFound, SortDirection
from cmdb.core.pagination import Page, page_request
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx, Database
from cmdb.items.inventory import (
    STATE_FIELDS,
    check_refs,
    common_properties,
    ref_params,
    retire_item,
)
from cmdb.items.models import Service, ServiceWrite
from cmdb.items.repository import (
    InventoryRepository,
    ServiceRepository,
    list_items,
    service_from_row,
    sla_properties,
    value_properties,
)
from cmdb.rollup.repository import propagate
from cmdb.settings import Settings


class ServiceModelService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.items = InventoryRepository(db)

    async def get_many(self, ids: list[str]) -> list[Service | None]:
        rows = await self.items.get_rows(ids)
        return [
            service_from_row(rows[i]) if i in rows and rows[i]["kind"] == "SERVICE" else None
            for i in ids
        ]

    async def get(self, service_id: str) -> Service | None:
        return (await self.get_many([service_id]))[0]

    async def list(
        self,
        f: ItemFilter,
        sort_field: str = "NAME",
        direction: SortDirection = SortDirection.ASC,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        want_total: bool = False,
    ) -> Page[Service]:
        if sort_field == "CLASS":
            raise DomainError.single("orderBy.field", "services cannot be sorted by class")
        page = page_request(
            first, after, last, before, self.settings.default_page_size,
            self.settings.max_page_size,
        )
        return await list_items(
            self.db, "Service", f, sort_spec(sort_field, direction), page, want_total,
            service_from_row,
        )

    async def create(self, data: dict[str, Any]) -> Service:
        spec = validate(ServiceWrite, data)
        if spec.lifecycle_status is LifecycleStatus.RETIRED:
            raise DomainError.single("input.lifecycleStatus", "a new service cannot be retired")
        fields = spec.model_dump()
        props = common_properties(fields)
        props.update({k: v for k, v in sla_properties(spec.sla).items() if v is not None})
        props.update(
            {k: v for k, v in value_properties(spec.business_value).items() if v is not None}
        )
        props["serviceKind"] = spec.kind.value
        props["costRecovery"] = spec.cost_recovery.value
        refs = ref_params(fields)
        service_id = str(uuid.uuid4())

        async def work(tx: CountingTx) -> Service:
            await check_refs(tx, refs)
            now = utcnow()
            svc = await ServiceRepository.create(tx, service_id, spec.kind, props, refs, now)
            await propagate(tx, [service_id], "created", now)
            return svc

        return await self.db.write_tx(work)

    async def update(self, service_id: str, data: dict[str, Any]) -> Service:
        if "kind" in data:
            raise DomainError.single(
                "input.kind", "the kind of a service cannot change; retire it and create another"
            )
        if data.get("lifecycle_status") in (LifecycleStatus.RETIRED, "RETIRED"):
            raise DomainError.single("input.lifecycleStatus", "use retireService to retire it")
        for key, name in (("sla", "sla"), ("business_value", "businessValue")):
            if key in data and data[key] is None:  # null: neither a change nor a value
                raise DomainError.single(
                    f"input.{name}", f"{name} cannot be null: leave it out to keep it, or "
                    "give the fields to change")

        async def work(tx: CountingTx) -> Service:
            row = await self.items.get_in_tx(tx, service_id)
            if row is None or row["kind"] != "SERVICE":
                raise NotFound("service", service_id)
            current = service_from_row(row)
            if current.lifecycle_status is LifecycleStatus.RETIRED:
                raise DomainError.single("id", f"service {service_id!r} is retired", "CONFLICT")
            merged = current.model_dump(
                include={"name", "kind", "description", "lifecycle_status",
                         "operational_state", "criticality", "cost_recovery"}
            )
            merged["sla"] = current.sla.model_dump() | data.get("sla", {})
            merged["business_value"] = (
                current.business_value.model_dump() | data.get("business_value", {})
            )
            merged.update({k: v for k, v in data.items() if k not in ("sla", "business_value")})
            merged["attributes"] = {}
            spec = validate(ServiceWrite, merged)
            changed = {k: getattr(spec, k) for k in data if k in ServiceWrite.model_fields}
            props = common_properties(changed)
            if "attributes" in data:
                props.update(attribute_properties(data["attributes"], "input.attributes"))
            if "sla" in data:
                props.update(sla_properties(spec.sla))
            if "business_value" in data:
                props.update(value_properties(spec.business_value))
            if "cost_recovery" in data:
                props["costRecovery"] = spec.cost_recovery.value
            refs = ref_params(data)
            await check_refs(tx, refs)
            now = utcnow()
            svc = await ServiceRepository.update(tx, service_id, props, refs, now)
            if STATE_FIELDS & data.keys():
                await propagate(tx, [service_id], "updated", now)
            return svc

        return await self.db.write_tx(work)

    async def retire(self, service_id: str, reason: str | None) -> Service:
        return service_from_row(await retire_item(self.db, service_id, "SERVICE", reason))
