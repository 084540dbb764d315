"""Use cases for configuration items: validation, reference checks, one transaction each."""

from __future__ import annotations

import builtins
import uuid
from decimal import Decimal
from typing import Any

from neo4j.exceptions import ConstraintError

from cmdb.core.clock import utcnow
from cmdb.core.mapping import camel
from cmdb.core.models import DomainError, FieldError, LifecycleStatus, NotFound
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.items import writes
from cmdb.items.kinds import ItemKindService
from cmdb.items.models import (
    Asset,
    AssetInput,
    CIWrite,
    ConfigurationItem,
    Identifiers,
    class_labels,
)
from cmdb.items.properties import (
    changed_properties,
    check_refs,
    common_properties,
    ref_params,
    refuse_in_update,
)
from cmdb.items.repository import AssetRepository, ci_from_row, identifier_properties
from cmdb.settings import Settings

# The catalogue imports these from here (until it writes through ``writes``).
__all__ = ["InventoryService"]


class InventoryService(ItemKindService[ConfigurationItem]):
    kind, label, what = "CI", "CI", "CI"

    def __init__(self, db: Database, settings: Settings) -> None:
        super().__init__(db, settings)
        self.assets = AssetRepository(db)

    def to_model(self, row: dict[str, Any]) -> ConfigurationItem:
        return ci_from_row(row)

    async def create(self, data: dict[str, Any]) -> ConfigurationItem:
        spec = validate(CIWrite, data)
        if spec.lifecycle_status is LifecycleStatus.RETIRED:
            raise DomainError.single("input.lifecycleStatus", "a new CI cannot be retired")
        fields = spec.model_dump(exclude_unset=False)
        props = common_properties(fields)
        props.update({k: v for k, v in identifier_properties(spec.identifiers).items() if v})
        props["ciClass"] = spec.ci_class.value
        refs = ref_params(fields)
        ci_id = str(uuid.uuid4())

        async def work(tx: CountingTx) -> ConfigurationItem:
            await self._check_identifiers(tx, ci_id, spec.identifiers)
            await check_refs(tx, refs)
            row = await writes.create_item(tx, ci_id, class_labels(spec.ci_class), props, refs,
                                           utcnow())
            return ci_from_row(row)

        return await self.db.write_tx(work)

    async def update(self, ci_id: str, data: dict[str, Any]) -> ConfigurationItem:
        refuse_in_update(data, "ci_class", "the class of a CI cannot change; retire it and "
                         "create another", "use retireCI to retire a CI")

        async def work(tx: CountingTx) -> ConfigurationItem:
            row, current = await self._live_in_tx(tx, ci_id)
            merged = current.model_dump(
                include={"name", "description", "lifecycle_status", "operational_state",
                         "criticality", "identifiers", "attributes"}
            ) | {"ci_class": current.ci_class}
            merged.update(data)
            if "identifiers" in data:  # identifiers given are merged field by field
                # (null changes none)
                merged["identifiers"] = (current.identifiers.model_dump()
                                         | (data["identifiers"] or {}))
            merged["attributes"] = {}  # attributes validated below, as a patch
            spec = validate(CIWrite, merged)
            props = changed_properties(spec, data)
            if "identifiers" in data:
                await self._check_identifiers(tx, ci_id, spec.identifiers)
                props.update(identifier_properties(spec.identifiers))
            refs = ref_params(data)
            await check_refs(tx, refs)
            updated = await writes.update_item(
                tx, ci_id, "CI", props, refs, utcnow(),
                fields=data.keys(), stored=row)
            return ci_from_row(updated)

        return await self.db.write_tx(work)


    # --- asset records -----------------------------------------------------------------------

    async def assets_of(self, ci_ids: builtins.list[str]) -> builtins.list[Asset | None]:
        found = await self.assets.by_ci(ci_ids)
        return [found.get(i) for i in ci_ids]

    async def set_asset(self, ci_id: str, data: dict[str, Any], by: str | None = None
                        ) -> Asset:
        """Replace the CI's asset record with ``data`` (fields left out take their defaults).
        Money is kept in the chargeback currency; a retired CI's record stays as it was."""
        spec = validate(AssetInput, data)
        currency = self.settings.chargeback_currency
        problems = [FieldError(field=f"input.{camel(f)}", message=m)
                    for f, m in spec.conflicts()]
        if spec.currency is not None and spec.currency != currency:
            problems.append(FieldError(
                field="input.currency", message=f"asset values are kept in {currency}, the "
                f"chargeback currency; {spec.currency} is not accepted (convert the amounts)"))
        if problems:
            raise DomainError(problems)
        cent = Decimal("0.01")
        props = {  # money as decimal text, to the cent
            "purchasePrice": str(spec.purchase_price.quantize(cent)), "currency": currency,
            "purchaseDate": spec.purchase_date, "depreciationMonths": spec.depreciation_months,
            "residualValue": str(spec.residual_value.quantize(cent)),
            "supportMonthly": str(spec.support_monthly.quantize(cent)),
            "supportStart": spec.support_start or spec.purchase_date,
            "supportEnd": spec.support_end, "warrantyEnd": spec.warranty_end,
            "assetTag": spec.asset_tag, "serialNumber": spec.serial_number,
            "vendor": spec.vendor,
        }

        async def work(tx: CountingTx) -> Asset:
            await self._asset_target(tx, ci_id, spec.asset_tag)
            return await self.assets.put(tx, ci_id, props, utcnow(), by)

        try:
            return await self.db.write_tx(work)
        except ConstraintError:  # the same tag written for another CI at the same time
            raise DomainError.single("input.assetTag", f"{spec.asset_tag!r} was just given "
                                     "to another CI's asset record", code="CONFLICT") from None

    async def clear_asset(self, ci_id: str) -> bool:
        """Remove the CI's asset record; False when it had none."""

        async def work(tx: CountingTx) -> bool:
            await self._asset_target(tx, ci_id, None)
            return await self.assets.clear(tx, ci_id)

        return await self.db.write_tx(work)

    async def _asset_target(self, tx: CountingTx, ci_id: str, tag: str | None) -> None:
        found = await self.assets.target(tx, ci_id, tag)
        if found is None:
            raise NotFound("CI", ci_id, "ciId")
        if found["status"] == LifecycleStatus.RETIRED.value:
            raise DomainError.single("ciId", f"CI {ci_id!r} is retired: its asset record is "
                                     "kept as it was", code="CONFLICT")
        if found["tagHeldBy"] is not None:
            raise DomainError.single("input.assetTag", f"{tag!r} is the asset tag of CI "
                                     f"{found['tagHeldBy']!r}", code="CONFLICT")

    async def _check_identifiers(self, tx: CountingTx, ci_id: str, ids: Identifiers) -> None:
        conflicts = await self.repo.identifier_conflicts(tx, ci_id, ids)
        if conflicts:
            raise DomainError([
                FieldError(
                    field=f"input.identifiers.{camel(f)}",
                    message=f"{value!r} already identifies CI {held_by!r}",
                    code="CONFLICT",
                )
                for f, value, held_by in conflicts
            ])
