"""GraphQL views of the catalogue: items and their versions, orders with their approval steps,
transitions and tasks, subscriptions; mutation payloads (inputs: schema/catalog_inputs.py)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import strawberry
from strawberry import Info
from strawberry.scalars import JSON

from cmdb.catalog import models as m
from cmdb.catalog.models import (
    ItemStatus,
    OrderStatus,
    StepKind,
    StepOrigin,
    StepStatus,
    SubscriptionStatus,
    TaskStatus,
)
from cmdb.chargeback.models import PricePlan as PricePlanModel
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.items.models import Service as ServiceModel
from cmdb.schema.chargeback import RateTier
from cmdb.schema.context import Context
from cmdb.schema.types import ConfigurationItem, Service, UserError

strawberry.enum(OrderStatus, description="Where an order is in its life; see the README for "
                "the allowed moves.")
strawberry.enum(StepKind, description="Who decides an approval step: the requester's manager, "
                "the owner of the order's cost centre, or anyone with a role.")
strawberry.enum(StepStatus)
strawberry.enum(StepOrigin, description="Why an order has an approval step: POLICY, the item's "
                "approval policy; CROSS_CHARGE, the order is charged to a cost centre that is "
                "not the requester's own, whose owner must agree.")
strawberry.enum(ItemStatus, description="RETIRED items cannot be ordered; their subscriptions "
                "go on.")
strawberry.enum(SubscriptionStatus)
strawberry.enum(TaskStatus)

__all__ = [
    "CatalogueItem",
    "ItemStatus",
    "Order",
    "OrderStatus",
    "StepKind",
    "StepOrigin",
    "StepStatus",
    "Subscription",
    "SubscriptionStatus",
    "TaskStatus",
]


@strawberry.type(description="A usage rate: price per unit of a meter.")
class UsageRate:
    meter: str
    unit: str
    rate: Decimal


@strawberry.type
class _Fees:
    """The fees every price view starts with; not a GraphQL type of its own."""

    currency: str
    one_off: Decimal
    monthly: Decimal


def _fees(price: PricePlanModel | m.Quote | m.Estimate) -> dict[str, Any]:
    """The ``_Fees`` fields of a model that has them."""
    return {"currency": price.currency, "one_off": price.one_off, "monthly": price.monthly}


@strawberry.type(description="What an item costs (decimal amounts, exact).")
class PricePlan(_Fees):
    usage: list[UsageRate]
    first_year: Decimal = strawberry.field(
        description="One-off fee plus twelve monthly fees: what approval thresholds compare.")

    @classmethod
    def from_model(cls, p: PricePlanModel) -> PricePlan:
        return cls(**_fees(p),
                   usage=[UsageRate(meter=u.meter, unit=u.unit, rate=u.rate) for u in p.usage],
                   first_year=p.first_year)


@strawberry.type(description="One step of an item's approval policy.")
class ApprovalPolicyStep:
    kind: StepKind
    above: Decimal | None = strawberry.field(
        description="Only when the first-year cost is above this amount.")
    role: str | None


@strawberry.type
class CatalogueCategory:
    id: strawberry.ID
    name: str
    description: str

    @classmethod
    def from_model(cls, c: m.Category) -> CatalogueCategory:
        return cls(id=strawberry.ID(c.id), name=c.name, description=c.description)


@strawberry.type(description="One version of a catalogue item: what an order made with it "
                 "gets and pays, whatever changes later.")
class CatalogueItemVersion:
    id: strawberry.ID
    item_id: strawberry.ID
    version: int
    name: str
    description: str
    form_schema: JSON = strawberry.field(
        description="JSON Schema (draft 2020-12) of the order form; render it, the API "
        "validates against it.")
    roles: list[str] = strawberry.field(description="Roles that may order it.")
    price: PricePlan
    approval_steps: list[ApprovalPolicyStep] = strawberry.field(
        description="Decided in order; none is automatic approval.")
    recipe: JSON = strawberry.field(description="What fulfilment creates.")
    created_at: datetime
    created_by: str | None

    @classmethod
    def from_model(cls, v: m.ItemVersion) -> CatalogueItemVersion:
        return cls(
            id=strawberry.ID(v.id), item_id=strawberry.ID(v.item_id), version=v.version,
            name=v.name, description=v.description, form_schema=cast(JSON, v.form_schema),
            roles=v.roles, price=PricePlan.from_model(v.price_plan),
            approval_steps=[ApprovalPolicyStep(kind=s.kind, above=s.above, role=s.role)
                            for s in v.approval_policy.steps],
            recipe=cast(JSON, v.recipe.model_dump(mode="json")), created_at=v.created_at,
            created_by=v.created_by)


def _rate_card(u: m.EstimateLine | m.QuotedRate) -> dict[str, Any]:
    """The rate card a meter is billed at, as estimates and quotes show it."""
    return {"rate_card_id": strawberry.ID(u.rate_card_id) if u.rate_card_id else None,
            "rate_card_version": u.rate_card_version,
            "tiers": [RateTier(up_to=t.up_to, rate=t.rate) for t in u.tiers]}


@strawberry.input(description="A quantity of a meter of the item's price plan, for a month.")
class EstimateQuantityInput:
    meter: str
    quantity: Decimal


@strawberry.type(description="A meter of the price plan in an estimate: the rate card it is "
                 "billed at today and, given a quantity, what that quantity costs.")
class EstimateUsage:
    meter: str
    unit: str
    quantity: Decimal | None = strawberry.field(description="Null: none was given.")
    rate_card_id: strawberry.ID | None = strawberry.field(
        description="The rate card version in force today; null: none is (not charged).")
    rate_card_version: int | None
    tiers: list[RateTier] = strawberry.field(
        description="The rate card's tiers, graduated as the bill applies them (per CI, "
        "meter and month).")
    amount: Decimal | None = strawberry.field(
        description="The quantity priced by the tiers, rounded once to the cent; null "
        "without a quantity or a rate card.")


@strawberry.type(description="What an order of the item made now would be billed, by the "
                 "bill's own rules: fees from the price plan, usage at the rate cards in force "
                 "today (not the rates the plan lists; notes say where those differ).")
class CatalogueEstimate(_Fees):
    usage: list[EstimateUsage]
    monthly_total: Decimal = strawberry.field(
        description="A full month: the monthly fee plus the usage amounts.")
    first_month: Decimal = strawberry.field(
        description="The one-off fee plus a full month. A subscription starting part-way "
        "through a month pays the monthly fee for its active days only.")
    notes: list[str] = strawberry.field(
        description="Where the plan's listed usage rates are not what is billed, meters "
        "without a rate card, a plan priced in another currency than the bills.")
    rates_on: date = strawberry.field(description="The day whose rate cards price the usage.")

    @classmethod
    def from_model(cls, e: m.Estimate) -> CatalogueEstimate:
        return cls(
            **_fees(e),
            usage=[EstimateUsage(meter=u.meter, unit=u.unit, quantity=u.quantity,
                                 amount=u.amount, **_rate_card(u)) for u in e.usage],
            monthly_total=e.monthly_total, first_month=e.first_month, notes=e.notes,
            rates_on=e.rates_on)


@strawberry.type(description="A standard offering of the self-service catalogue.")
class CatalogueItem:
    id: strawberry.ID
    status: ItemStatus
    category: CatalogueCategory | None
    name: str
    description: str
    form_schema: JSON = strawberry.field(description="The current version's order form.")
    price: PricePlan = strawberry.field(description="What an order made now would pay.")
    current_version: CatalogueItemVersion
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    plan: strawberry.Private[PricePlanModel]

    @strawberry.field(description="What an order made now would be billed for a month of "
                      "the given usage (a quantity per meter of the price plan; none: the "
                      "rates alone), by the rate cards in force today. A meter the plan does "
                      "not have is an error naming quantities[i].meter.")
    async def estimate(self, info: Info[Context, None],
                       quantities: list[EstimateQuantityInput] | None = None
                       ) -> CatalogueEstimate:
        found = await info.context.loaders.catalog.estimates(info.context.principal).load(
            (self.plan.model_dump_json(), tuple((q.meter, q.quantity) for q in quantities or [])))
        return CatalogueEstimate.from_model(found)

    @strawberry.field(description="Every version, oldest first.")
    async def versions(self, info: Info[Context, None]) -> list[CatalogueItemVersion]:
        found = await info.context.loaders.catalog.item_versions.load(str(self.id))
        return [CatalogueItemVersion.from_model(v) for v in found]

    @classmethod
    def from_model(cls, i: m.CatalogueItem) -> CatalogueItem:
        v = i.current
        return cls(
            id=strawberry.ID(i.id), status=i.status,
            category=CatalogueCategory.from_model(i.category) if i.category else None,
            name=v.name, description=v.description, form_schema=cast(JSON, v.form_schema),
            price=PricePlan.from_model(v.price_plan),
            current_version=CatalogueItemVersion.from_model(v), created_at=i.created_at,
            updated_at=i.updated_at, retired_at=i.retired_at, plan=v.price_plan)


@strawberry.type
class ApprovalStep:
    id: strawberry.ID
    index: int
    kind: StepKind
    role: str | None
    above: Decimal | None
    approvers: list[str] = strawberry.field(
        description="User names who may decide it (empty for a ROLE step).")
    status: StepStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None = strawberry.field(description="What the approver said.")
    origin: StepOrigin = strawberry.field(
        description="From the item's policy, or added for a cross-charge.")
    why: str | None = strawberry.field(
        description="Why the order has this step, in words (none on old orders).")
    approvers_only: bool = strawberry.field(
        description="Only the approvers named may decide it; a catalogue admin cannot stand "
        "in. True for a cost centre owner's consent to an order charged from outside it.")

    @classmethod
    def from_model(cls, s: m.ApprovalStep) -> ApprovalStep:
        return cls(id=strawberry.ID(s.id), index=s.index, kind=s.kind, role=s.role,
                   above=s.above, approvers=s.approvers, status=s.status,
                   decided_by=s.decided_by, decided_at=s.decided_at, reason=s.reason,
                   origin=s.origin, why=s.why, approvers_only=s.approvers_only)


@strawberry.type(description="One recorded move of an order: who, when, why.")
class OrderTransition:
    seq: int
    from_status: OrderStatus | None
    to_status: OrderStatus
    by: str
    at: datetime
    reason: str | None


@strawberry.type(description="A manual fulfilment step; the recipe runs when all are done.")
class FulfilmentTask:
    id: strawberry.ID
    order_id: strawberry.ID
    index: int
    name: str
    description: str | None
    group: str | None
    status: TaskStatus
    done_by: str | None
    done_at: datetime | None
    note: str | None

    @classmethod
    def from_model(cls, t: m.FulfilmentTask) -> FulfilmentTask:
        return cls(id=strawberry.ID(t.id), order_id=strawberry.ID(t.order_id), index=t.index,
                   name=t.name, description=t.description, group=t.group, status=t.status,
                   done_by=t.done_by, done_at=t.done_at, note=t.note)


@strawberry.type(description="The price an order was placed at (from its item version).")
class OrderPrice(_Fees):
    pass


@strawberry.type(description="A meter of the price plan as quoted: the rate card version in "
                 "force when the order was submitted (usage is billed at the version in force "
                 "when it is used).")
class QuotedUsageRate:
    meter: str
    unit: str
    listed_rate: Decimal = strawberry.field(
        description="The rate the price plan lists (not what usage is billed at).")
    rate_card_id: strawberry.ID | None = strawberry.field(
        description="Null: no rate card was in force (the usage is not charged).")
    rate_card_version: int | None
    tiers: list[RateTier]
    note: str | None = strawberry.field(
        description="Why the listed rate is not what is billed, or why nothing is.")


@strawberry.type(description="The price agreed to when the order was submitted: the fees its "
                 "subscription is billed, and the rate cards in force for the plan's meters.")
class OrderQuote(_Fees):
    usage: list[QuotedUsageRate]
    notes: list[str]
    quoted_at: datetime

    @classmethod
    def from_model(cls, q: m.Quote) -> OrderQuote:
        return cls(
            **_fees(q),
            usage=[QuotedUsageRate(meter=u.meter, unit=u.unit, listed_rate=u.listed_rate,
                                   note=u.note, **_rate_card(u)) for u in q.usage],
            notes=q.notes, quoted_at=q.quoted_at)


@strawberry.type(description="An order for a catalogue item.")
class Order:
    id: strawberry.ID
    status: OrderStatus
    item_id: strawberry.ID
    item_name: str
    item_version: int
    version_id: strawberry.ID
    requester: str
    cost_centre_code: str
    form: JSON
    price: OrderPrice
    quote: OrderQuote | None = strawberry.field(
        description="The price agreed to at submission (null for orders placed before "
        "quotes were recorded).")
    comment: str | None
    submitted_at: datetime
    updated_at: datetime
    revision: int = strawberry.field(description="Counts the order's moves.")
    current_step: int | None = strawberry.field(
        description="Index of the approval step that decides now.")
    attempts: int = strawberry.field(description="Fulfilment attempts so far.")
    last_error: str | None
    subscription_id: strawberry.ID | None

    @strawberry.field(description="Approval steps in order, with their decisions.")
    async def approval_steps(self, info: Info[Context, None]) -> list[ApprovalStep]:
        found = await info.context.loaders.catalog.steps.load(str(self.id))
        return [ApprovalStep.from_model(s) for s in found]

    @strawberry.field(description="Every move of the order, oldest first.")
    async def transitions(self, info: Info[Context, None]) -> list[OrderTransition]:
        found = await info.context.loaders.catalog.transitions.load(str(self.id))
        return [OrderTransition(seq=t.seq, from_status=t.from_status, to_status=t.to_status,
                                by=t.by, at=t.at, reason=t.reason) for t in found]

    @strawberry.field
    async def tasks(self, info: Info[Context, None]) -> list[FulfilmentTask]:
        found = await info.context.loaders.catalog.tasks.load(str(self.id))
        return [FulfilmentTask.from_model(t) for t in found]

    @strawberry.field(description="The item version the order was made with.")
    async def version(self, info: Info[Context, None]) -> CatalogueItemVersion | None:
        found = await info.context.loaders.catalog.versions.load(str(self.version_id))
        return CatalogueItemVersion.from_model(found) if found else None

    @strawberry.field
    async def subscription(self, info: Info[Context, None]) -> Subscription | None:
        if self.subscription_id is None:
            return None
        found = await info.context.loaders.catalog.subscriptions.load(str(self.subscription_id))
        return Subscription.from_model(found) if found else None

    @classmethod
    def from_model(cls, o: m.Order) -> Order:
        return cls(
            id=strawberry.ID(o.id), status=o.status, item_id=strawberry.ID(o.item_id),
            item_name=o.item_name, item_version=o.item_version,
            version_id=strawberry.ID(o.version_id), requester=o.requester,
            cost_centre_code=o.cost_centre_code, form=cast(JSON, o.form),
            price=OrderPrice(currency=o.currency, one_off=o.one_off_fee,
                             monthly=o.monthly_fee),
            quote=OrderQuote.from_model(o.quote) if o.quote else None,
            comment=o.comment, submitted_at=o.submitted_at, updated_at=o.updated_at,
            revision=o.revision,
            current_step=o.step_index if o.status is OrderStatus.AWAITING_APPROVAL else None,
            attempts=o.attempts, last_error=o.last_error,
            subscription_id=strawberry.ID(o.subscription_id) if o.subscription_id else None)


@strawberry.type(name="CatalogueSubscription",
                 description="A fulfilled order: the consumer's service instance, what "
                 "chargeback bills from its start to its end.")
class Subscription:  # named CatalogueSubscription: the root Subscription type has the name
    id: strawberry.ID
    status: SubscriptionStatus
    consumer: str
    cost_centre_code: str
    order_id: strawberry.ID
    item_id: strawberry.ID
    item_name: str
    item_version: int
    version_id: strawberry.ID
    service_id: strawberry.ID | None
    configuration_item_ids: list[strawberry.ID]
    start_at: datetime
    end_at: datetime | None
    ended_by: str | None
    end_reason: str | None

    @strawberry.field(description="The service the subscription is an instance of.")
    async def service(self, info: Info[Context, None]) -> Service | None:
        if self.service_id is None:
            return None
        found = await info.context.loaders.items.load(str(self.service_id))
        return Service.from_model(found) if isinstance(found, ServiceModel) else None

    @strawberry.field(description="The CIs fulfilment made for it (retired once it ends).")
    async def configuration_items(self, info: Info[Context, None]) -> list[ConfigurationItem]:
        found = await info.context.loaders.items.load_many(
            [str(i) for i in self.configuration_item_ids])
        return [ConfigurationItem.from_model(f) for f in found
                if isinstance(f, CIModel)]

    @strawberry.field(description="The item version it was ordered with (its price plan).")
    async def version(self, info: Info[Context, None]) -> CatalogueItemVersion | None:
        found = await info.context.loaders.catalog.versions.load(str(self.version_id))
        return CatalogueItemVersion.from_model(found) if found else None

    @classmethod
    def from_model(cls, s: m.Subscription) -> Subscription:
        return cls(
            id=strawberry.ID(s.id), status=s.status, consumer=s.consumer,
            cost_centre_code=s.cost_centre_code, order_id=strawberry.ID(s.order_id),
            item_id=strawberry.ID(s.item_id), item_name=s.item_name,
            item_version=s.item_version, version_id=strawberry.ID(s.version_id),
            service_id=strawberry.ID(s.service_id) if s.service_id else None,
            configuration_item_ids=[strawberry.ID(i) for i in s.ci_ids],
            start_at=s.start_at, end_at=s.end_at, ended_by=s.ended_by,
            end_reason=s.end_reason)


# --- payloads --------------------------------------------------------------------------------


@strawberry.type
class CatalogueCategoryPayload:
    category: CatalogueCategory | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CatalogueItemPayload:
    item: CatalogueItem | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class OrderPayload:
    order: Order | None = None
    created: bool = strawberry.field(
        default=False, description="False when the idempotency key returned an earlier order.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(name="CatalogueSubscriptionPayload")
class SubscriptionPayload:
    subscription: Subscription | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class FulfilmentTaskPayload:
    task: FulfilmentTask | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)
