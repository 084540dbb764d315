"""Use cases for services."""

from __future__ import annotations

import uuid
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, LifecycleStatus
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx
from cmdb.items import properties, writes
from cmdb.items.kinds import ItemKindService
from cmdb.items.models import SERVICE_LABELS, Service, ServiceWrite
from cmdb.items.repository import service_from_row, sla_properties, value_properties


class ServiceRecordService(ItemKindService[Service]):
    kind, label, what = "SERVICE", "Service", "service"

    def to_model(self, row: dict[str, Any]) -> Service:
        return service_from_row(row)

    def check_sort(self, sort_field: str) -> None:
        if sort_field == "CLASS":
            raise DomainError.single("orderBy.field", "services cannot be sorted by class")

    async def create(self, data: dict[str, Any]) -> Service:
        spec = validate(ServiceWrite, data)
        if spec.lifecycle_status is LifecycleStatus.RETIRED:
            raise DomainError.single("input.lifecycleStatus", "a new service cannot be retired")
        fields = spec.model_dump()
        props = properties.common_properties(fields)
        props.update({k: v for k, v in sla_properties(spec.sla).items() if v is not None})
        props.update(
            {k: v for k, v in value_properties(spec.business_value).items() if v is not None}
        )
        props["serviceKind"] = spec.kind.value
        props["costRecovery"] = spec.cost_recovery.value
        refs = properties.ref_params(fields)
        service_id = str(uuid.uuid4())

        async def work(tx: CountingTx) -> Service:
            await properties.check_refs(tx, refs)
            row = await writes.create_item(tx, service_id, SERVICE_LABELS[spec.kind], props,
                                           refs, utcnow())
            return service_from_row(row)

        return await self.db.write_tx(work)

    async def update(self, service_id: str, data: dict[str, Any]) -> Service:
        properties.refuse_in_update(
            data, "kind", "the kind of a service cannot change; retire it and create another",
            "use retireService to retire it")
        for key, name in (("sla", "sla"), ("business_value", "businessValue")):
            if key in data and data[key] is None:  # null: neither a change nor a value
                raise DomainError.single(
                    f"input.{name}", f"{name} cannot be null: leave it out to keep it, or "
                    "give the fields to change")

        async def work(tx: CountingTx) -> Service:
            _, current = await self._live_in_tx(tx, service_id)
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
            props = properties.changed_properties(spec, data)
            if "sla" in data:
                props.update(sla_properties(spec.sla))
            if "business_value" in data:
                props.update(value_properties(spec.business_value))
            if "cost_recovery" in data:
                props["costRecovery"] = spec.cost_recovery.value
            refs = properties.ref_params(data)
            await properties.check_refs(tx, refs)
            row = await writes.update_item(tx, service_id, "Service", props, refs, utcnow(),
                                           fields=data.keys())
            return service_from_row(row)

        return await self.db.write_tx(work)

