"""Use cases for configuration items: validation, reference checks, one transaction each."""

from __future__ import annotations

import builtins
import uuid
from decimal import Decimal
from typing import Any

from neo4j.exceptions import ConstraintError

from cmdb.core.clock import utcnow
from cmdb.core.cypher import ItemFilter, sort_spec
from cmdb.core.models import (
    CRITICALITY_RANK,
    DomainError,
    FieldError,
    LifecycleStatus,
    NotFound,
    SortDirection,
)
from cmdb.core.pagination import Page, page_request
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx, Database
from cmdb.items.history import record_manual_change
from cmdb.items.models import Asset, AssetInput, CIWrite, ConfigurationItem, Identifiers
from cmdb.items.repository import (
    AssetRepository,
    InventoryRepository,
    ci_from_row,
    identifier_properties,
    list_items,
)
from cmdb.rollup.repository import propagate, recompute, upward_closure
from cmdb.settings import Settings

# Changes to these fields change health, so they are rolled up at once.
STATE_FIELDS = {"operational_state", "lifecycle_status"}
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


class InventoryService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = InventoryRepository(db)
        self.assets = AssetRepository(db)

    async def get_many(self, ids: list[str]) -> list[ConfigurationItem | None]:
        rows = await self.repo.get_rows(ids)
        return [
            ci_from_row(rows[i]) if i in rows and rows[i]["kind"] == "CI" else None for i in ids
        ]

    async def get(self, ci_id: str) -> ConfigurationItem | None:
        return (await self.get_many([ci_id]))[0]

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
    ) -> Page[ConfigurationItem]:
        page = page_request(
            first, after, last, before, self.settings.default_page_size,
            self.settings.max_page_size,
        )
        return await list_items(
            self.db, "CI", f, sort_spec(sort_field, direction), page, want_total, ci_from_row
        )

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
            now = utcnow()
            ci = await self.repo.create(tx, ci_id, spec.ci_class, props, refs, now)
            await propagate(tx, [ci_id], "created", now)
            return ci

        return await self.db.write_tx(work)

    async def update(self, ci_id: str, data: dict[str, Any]) -> ConfigurationItem:
        if "ci_class" in data:
            raise DomainError.single(
                "input.ciClass", "the class of a CI cannot change; retire it and create another"
            )
        if data.get("lifecycle_status") in (LifecycleStatus.RETIRED, "RETIRED"):
            raise DomainError.single("input.lifecycleStatus", "use retireCI to retire a CI")

        async def work(tx: CountingTx) -> ConfigurationItem:
            row = await self.repo.get_in_tx(tx, ci_id)
            if row is None or row["kind"] != "CI":
                raise NotFound("CI", ci_id)
            current = ci_from_row(row)
            if current.lifecycle_status is LifecycleStatus.RETIRED:
                raise DomainError.single("id", f"CI {ci_id!r} is retired", code="CONFLICT")
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
            changed = {k: getattr(spec, k) for k in data if k in CIWrite.model_fields}
            props = common_properties(changed)
            if "attributes" in data:
                props.update(attribute_properties(data["attributes"], "input.attributes"))
            if "identifiers" in data:
                await self._check_identifiers(tx, ci_id, spec.identifiers)
                props.update(identifier_properties(spec.identifiers))
            refs = ref_params(data)
            await check_refs(tx, refs)
            now = utcnow()
            await record_manual_change(tx, ci_id, row, props, now)
            ci = await self.repo.update(tx, ci_id, props, refs, now)
            if STATE_FIELDS & data.keys():
                await propagate(tx, [ci_id], "updated", now)
            return ci

        return await self.db.write_tx(work)

    async def retire(self, ci_id: str, reason: str | None) -> ConfigurationItem:
        row = await retire_item(self.db, ci_id, "CI", reason)
        return ci_from_row(row)

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
        problems = [FieldError(field=f"input.{_camel(f)}", message=m)
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
                    field=f"input.identifiers.{_camel(f)}",
                    message=f"{value!r} already identifies CI {held_by!r}",
                    code="CONFLICT",
                )
                for f, value, held_by in conflicts
            ])


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


async def retire_item(db: Database, item_id: str, kind: str, reason: str | None) -> dict[str, Any]:
    """Retire instead of delete: the item and its history stay, its relationships end."""
    what = "CI" if kind == "CI" else "service"

    async def work(tx: CountingTx) -> dict[str, Any]:
        row = await InventoryRepository.get_in_tx(tx, item_id)
        if row is None or row["kind"] != kind:
            raise NotFound(what, item_id)
        if row["lifecycleStatus"] == LifecycleStatus.RETIRED.value:
            raise DomainError.single("id", f"{what} {item_id!r} is already retired", "CONFLICT")
        now = utcnow()
        # Consumers are found before the relationships end, then re-rolled without the item.
        consumers = [i for i in await upward_closure(tx, [item_id]) if i != item_id]
        retired = await InventoryRepository.retire(tx, item_id, reason, now)
        await recompute(tx, consumers, "retired", now)
        return retired

    return await db.write_tx(work)
