"""Categories, catalogue items and their versions, and the estimates of a catalogue page."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from neo4j.exceptions import ConstraintError

from cmdb.catalog import estimate as pricing
from cmdb.catalog.base import CatalogBase, conflict
from cmdb.catalog.forms import check_form_schema, unknown_placeholders
from cmdb.catalog.models import (
    CatalogueItem,
    Category,
    CategoryWrite,
    Estimate,
    EstimateRequest,
    ItemStatus,
    ItemVersion,
    ItemWrite,
    Quote,
)
from cmdb.catalog.repository import CatalogRepository, version_content
from cmdb.chargeback.models import PricePlan, RateCard
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError, NotFound
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.rollup.models import rule_property_errors


def recipe_errors(spec: ItemWrite) -> list[FieldError]:
    """What is wrong with an item's recipe beyond its own model's checks."""
    errors: list[FieldError] = []
    unknown = unknown_placeholders(spec.recipe.placeholders(), spec.form_schema)
    if unknown:
        errors.append(FieldError(
            field="input.recipe.cis",
            message="placeholders that are neither form fields nor order, user, "
                    "costCentre: " + ", ".join(unknown)))
    for i, r in enumerate(spec.recipe.relationships):
        for key, msg in rule_property_errors(dict(r.properties)).items():
            errors.append(FieldError(
                field=f"input.recipe.relationships[{i}].properties.{key}", message=msg))
        errors.extend(_attribute_errors(r.properties,
                                        f"input.recipe.relationships[{i}].properties"))
    for i, c in enumerate(spec.recipe.cis):
        errors.extend(_attribute_errors(c.attributes, f"input.recipe.cis[{i}].attributes"))
    return errors


def _attribute_errors(values: dict[str, Any], field: str) -> list[FieldError]:
    try:
        attribute_properties(dict(values), field)
    except DomainError as e:
        return list(e.errors)
    return []


def _content(spec: ItemWrite) -> dict[str, Any]:
    return version_content(spec.name, spec.description, spec.form_schema, spec.roles,
                           spec.approval_policy, spec.price_plan, spec.recipe)


def _current_content(item: CatalogueItem) -> dict[str, Any]:
    """An item's current version as ``ItemWrite`` input, for a change to merge into."""
    v = item.current
    return {
        "name": v.name, "description": v.description,
        "category_id": item.category.id if item.category else None,
        "form_schema": v.form_schema, "roles": v.roles,
        "approval_policy": v.approval_policy.model_dump(),
        "price_plan": v.price_plan.model_dump(), "recipe": v.recipe.model_dump(),
    }


class CatalogItems(CatalogBase):
    """Browsing and managing the catalogue."""

    # --- categories ---

    async def create_category(self, data: dict[str, Any], principal: Principal | None
                              ) -> Category:
        require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        spec = validate(CategoryWrite, data)
        try:
            return await self.repo.create_category(str(uuid.uuid4()), spec.name.strip(),
                                                   spec.description, utcnow())
        except ConstraintError:
            raise conflict("input.name", f"a category named {spec.name!r} exists") from None

    async def categories(self, principal: Principal | None) -> list[Category]:
        require_permission(principal, Permission.CATALOGUE_READ, "browse the catalogue")
        return await self.repo.categories()

    # --- reading items ---

    async def items(
        self, principal: Principal | None, search: str | None = None,
        category_id: str | None = None, include_retired: bool = False,
    ) -> list[CatalogueItem]:
        """What the caller may order (catalogue admins: everything), by name."""
        p = require_permission(principal, Permission.CATALOGUE_READ, "browse the catalogue")
        text = search.strip().lower() if search and search.strip() else None
        return await self.repo.items({**self._visibility(p), "search": text,
                                      "categoryId": category_id,
                                      "includeRetired": include_retired})

    async def item(self, principal: Principal | None, item_id: str) -> CatalogueItem | None:
        p = require_permission(principal, Permission.CATALOGUE_READ, "browse the catalogue")
        return await self.repo.item({**self._visibility(p), "id": item_id})

    async def versions_of_items(self, ids: list[str]) -> list[list[ItemVersion]]:
        """Versions of items the caller was already allowed to see (nested fields)."""
        found = await self.repo.versions_of_items(ids)
        return [found.get(i, []) for i in ids]

    # --- prices ---

    async def estimates(
        self, principal: Principal | None,
        asks: Sequence[tuple[PricePlan, list[dict[str, Any]] | None]],
    ) -> list[Estimate | DomainError]:
        """What an order of each item (its price plan, as the caller was allowed to read it)
        would be billed for a month of the quantities asked ({meter, quantity}), by the rate
        cards in force today: the estimates of a catalogue page, the rate cards read once.
        Each answer is its estimate or the error of its quantities."""
        require_permission(principal, Permission.CATALOGUE_READ, "browse the catalogue")
        today = utcnow().astimezone(UTC).date()
        cards, units = await self._pricing([u.meter for plan, _ in asks for u in plan.usage],
                                           today)
        out: list[Estimate | DomainError] = []
        for plan, quantities in asks:
            try:
                request = validate(EstimateRequest, {"quantities": quantities or []},
                                   prefix="")
                out.append(pricing.estimate(plan, cards, units, self.chargeback.currency,
                                            request.quantities, today))
            except DomainError as e:
                out.append(e)
        return out

    async def _pricing(self, meters: Sequence[str], on: date
                       ) -> tuple[dict[str, RateCard], dict[str, str]]:
        if not meters:  # a plan without usage reads nothing
            return {}, {}
        return await self.chargeback.pricing_on(meters, on)

    async def _quote(self, plan: PricePlan, at: datetime) -> Quote:
        """The quote of an order submitted at ``at``: its fees and the rate cards in force."""
        cards, units = await self._pricing([u.meter for u in plan.usage],
                                           at.astimezone(UTC).date())
        return pricing.quote(plan, cards, units, self.chargeback.currency, at)

    # --- managing items ---

    async def _checked(self, data: dict[str, Any]) -> ItemWrite:
        spec = validate(ItemWrite, data)
        check_form_schema(spec.form_schema)
        errors = recipe_errors(spec)
        if errors:
            raise DomainError(errors)
        if spec.category_id is not None \
                and not await self.repo.categories_by_id([spec.category_id]):
            raise NotFound("category", spec.category_id, "input.categoryId")
        return spec

    async def create_item(self, data: dict[str, Any], principal: Principal | None
                          ) -> CatalogueItem:
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        spec = await self._checked(data)
        try:
            return await self.repo.create_item({
                "id": str(uuid.uuid4()), "versionId": str(uuid.uuid4()), "name": spec.name,
                "description": spec.description, "categoryId": spec.category_id,
                "roles": spec.roles, "content": _content(spec), "by": p.user,
                "now": utcnow()})
        except ConstraintError:
            raise conflict("input.name", f"an item named {spec.name!r} exists") from None

    async def update_item(self, item_id: str, data: dict[str, Any],
                          principal: Principal | None) -> CatalogueItem:
        """Store the changed content as the next version; orders keep the version they
        were made with."""
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        current = (await self.repo.items_by_id([item_id])).get(item_id)
        if current is None:
            raise NotFound("catalogue item", item_id)
        spec = await self._checked({**_current_content(current), **data})

        async def work(tx: CountingTx) -> CatalogueItem:
            now = utcnow()
            locked = await CatalogRepository.lock_item(tx, item_id, now)
            if locked is None:
                raise NotFound("catalogue item", item_id)
            version, status = locked
            if status == ItemStatus.RETIRED.value:
                raise conflict("id", f"catalogue item {item_id!r} is retired")
            return await CatalogRepository.new_version(tx, {
                "id": item_id, "version": version + 1,
                "versionId": str(uuid.uuid4()), "name": spec.name,
                "description": spec.description, "categoryId": spec.category_id,
                "roles": spec.roles, "content": _content(spec), "by": p.user,
                "now": now})

        try:
            return await self.db.write_tx(work)
        except ConstraintError:
            raise conflict("input.name", "another item has this name, or the item was "
                           "changed at the same time; try again") from None

    async def retire_item(self, item_id: str, principal: Principal | None) -> CatalogueItem:
        """No new orders; existing orders and subscriptions go on."""
        require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        retired = await self.repo.retire_item(item_id, utcnow())
        if retired is None:
            if item_id in await self.repo.items_by_id([item_id]):
                raise conflict("id", f"catalogue item {item_id!r} is already retired")
            raise NotFound("catalogue item", item_id)
        return retired
