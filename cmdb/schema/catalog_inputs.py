"""GraphQL inputs of the catalogue's mutations: categories, items with their price plans and
approval steps, orders."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from cmdb.schema.catalog import StepKind


@strawberry.input
class CatalogueCategoryInput:
    name: str
    description: str = ""


@strawberry.input
class UsageRateInput:
    meter: str
    unit: str
    rate: Decimal


@strawberry.input
class PricePlanInput:
    currency: str = "EUR"
    one_off: Decimal = Decimal("0")
    monthly: Decimal = Decimal("0")
    usage: list[UsageRateInput] = strawberry.field(default_factory=list)


@strawberry.input
class ApprovalStepInput:
    kind: StepKind
    above: Decimal | None = None
    role: str | None = None


@strawberry.input(description="A new catalogue item (its version 1).")
class CatalogueItemInput:
    name: str
    description: str = ""
    category_id: strawberry.ID | None = None
    form_schema: JSON = strawberry.field(description="JSON Schema of the order form.")
    roles: list[str] = strawberry.field(description="Roles that may order it.")
    approval_steps: list[ApprovalStepInput] = strawberry.field(default_factory=list)
    price: PricePlanInput = strawberry.field(default_factory=PricePlanInput)
    recipe: JSON = strawberry.field(
        description="{service, cis: [{key, ciClass, name, hostName, domain, attributes}], "
        "relationships: [{source, type, target, properties}], tasks: [{name, group}]}")


@strawberry.input(description="Changes to an item; saved as its next version.")
class UpdateCatalogueItemInput:
    name: str | None = None
    description: str | None = None
    category_id: strawberry.ID | None = None
    form_schema: JSON | None = None
    roles: list[str] | None = None
    approval_steps: list[ApprovalStepInput] | None = None
    price: PricePlanInput | None = None
    recipe: JSON | None = None


@strawberry.input
class SubmitOrderInput:
    item_id: strawberry.ID
    form: JSON = strawberry.field(description="Answers to the item's form schema.")
    idempotency_key: str = strawberry.field(
        description="Chosen by the client per order (e.g. a UUID): sending the same request "
        "again returns the same order instead of making another.")
    cost_centre_code: str | None = strawberry.field(
        default=None, description="Default: the requester's cost centre.")
    comment: str | None = None
