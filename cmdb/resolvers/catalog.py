"""Root fields of the self-service catalogue: browse, order, approve, fulfil, subscriptions.
Permissions and visibility are decided by ``CatalogService`` from the request's principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry
from strawberry import Info

from cmdb.catalog.models import OrderStatus, SubscriptionStatus, TaskStatus
from cmdb.core.models import DomainError
from cmdb.resolvers.payloads import errors_in
from cmdb.schema.catalog import (
    CatalogueCategory,
    CatalogueCategoryPayload,
    CatalogueItem,
    CatalogueItemPayload,
    FulfilmentTask,
    FulfilmentTaskPayload,
    Order,
    OrderPayload,
    Subscription,
    SubscriptionPayload,
)
from cmdb.schema.catalog_inputs import (
    ApprovalStepInput,
    CatalogueCategoryInput,
    CatalogueItemInput,
    PricePlanInput,
    SubmitOrderInput,
    UpdateCatalogueItemInput,
)
from cmdb.schema.context import Context
from cmdb.schema.inputs import to_dict


def _price(p: PricePlanInput) -> dict[str, Any]:
    return {"currency": p.currency, "one_off": p.one_off, "monthly": p.monthly,
            "usage": [{"meter": u.meter, "unit": u.unit, "rate": u.rate} for u in p.usage]}


def _policy(steps: list[ApprovalStepInput]) -> dict[str, Any]:
    return {"steps": [{"kind": s.kind, "above": s.above, "role": s.role} for s in steps]}


def _item_data(i: CatalogueItemInput | UpdateCatalogueItemInput) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("name", "description", "form_schema", "roles", "recipe"):
        value = getattr(i, name)
        if value is not None:
            out[name] = value
    if i.category_id is not None:
        out["category_id"] = str(i.category_id)
    if i.approval_steps is not None:
        out["approval_policy"] = _policy(i.approval_steps)
    if i.price is not None:
        out["price_plan"] = _price(i.price)
    return out


@strawberry.type
class CatalogQuery:
    @strawberry.field(description="Catalogue categories.")
    async def catalogue_categories(self, info: Info[Context, None]) -> list[CatalogueCategory]:
        found = await info.context.services.catalog.categories(info.context.principal)
        return [CatalogueCategory.from_model(c) for c in found]

    @strawberry.field(description="What the caller may order (catalogue admins: every item), "
                      "with the price an order would pay now; search matches name and "
                      "description.")
    async def catalogue_items(
        self, info: Info[Context, None], search: str | None = None,
        category_id: strawberry.ID | None = None, include_retired: bool = False,
    ) -> list[CatalogueItem]:
        found = await info.context.services.catalog.items(
            info.context.principal, search,
            str(category_id) if category_id is not None else None, include_retired)
        return [CatalogueItem.from_model(i) for i in found]

    @strawberry.field(description="One item the caller may order, with its form schema.")
    async def catalogue_item(self, info: Info[Context, None], id: strawberry.ID
                             ) -> CatalogueItem | None:
        found = await info.context.services.catalog.item(info.context.principal, str(id))
        return CatalogueItem.from_model(found) if found else None

    @strawberry.field(description="An order the caller may read: their own, one they "
                      "approve, or any for catalogue admins. Poll it, or subscribe to "
                      "orderStatus.")
    async def order(self, info: Info[Context, None], id: strawberry.ID) -> Order | None:
        found = await info.context.services.catalog.order(info.context.principal, str(id))
        return Order.from_model(found) if found else None

    @strawberry.field(description="The caller's orders, newest first.")
    async def my_orders(
        self, info: Info[Context, None], status: list[OrderStatus] | None = None,
        first: int | None = None,
    ) -> list[Order]:
        found = await info.context.services.catalog.orders(info.context.principal, status, first)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="Every order, newest first (catalogue admins).")
    async def orders(
        self, info: Info[Context, None], status: list[OrderStatus] | None = None,
        first: int | None = None,
    ) -> list[Order]:
        found = await info.context.services.catalog.orders(
            info.context.principal, status, first, everyone=True)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="Orders waiting for the caller's decision, oldest first "
                      "(never the caller's own).")
    async def approval_queue(self, info: Info[Context, None], first: int | None = None
                             ) -> list[Order]:
        found = await info.context.services.catalog.approval_queue(info.context.principal, first)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="The caller's subscriptions, newest first.")
    async def my_subscriptions(
        self, info: Info[Context, None], status: list[SubscriptionStatus] | None = None,
        first: int | None = None,
    ) -> list[Subscription]:
        found = await info.context.services.catalog.subscriptions(
            info.context.principal, status, first)
        return [Subscription.from_model(s) for s in found]

    @strawberry.field(description="Every subscription, newest first (catalogue admins).")
    async def subscriptions(
        self, info: Info[Context, None], status: list[SubscriptionStatus] | None = None,
        first: int | None = None,
    ) -> list[Subscription]:
        found = await info.context.services.catalog.subscriptions(
            info.context.principal, status, first, everyone=True)
        return [Subscription.from_model(s) for s in found]

    @strawberry.field
    async def subscription(self, info: Info[Context, None], id: strawberry.ID
                           ) -> Subscription | None:
        found = await info.context.services.catalog.readable_subscriptions(
            info.context.principal, [str(id)])
        s = found.get(str(id))
        return Subscription.from_model(s) if s else None

    @strawberry.field(description="Manual fulfilment tasks (catalogue admins).")
    async def fulfilment_tasks(
        self, info: Info[Context, None], status: list[TaskStatus] | None = None,
        first: int | None = None,
    ) -> list[FulfilmentTask]:
        found = await info.context.services.catalog.tasks(info.context.principal, status, first)
        return [FulfilmentTask.from_model(t) for t in found]


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(description="Create a catalogue category (catalogue admins).")
    @errors_in(CatalogueCategoryPayload)
    async def create_catalogue_category(
        self, info: Info[Context, None], input: CatalogueCategoryInput
    ) -> CatalogueCategoryPayload:
        c = await info.context.services.catalog.create_category(to_dict(input),
                                                              info.context.principal)
        return CatalogueCategoryPayload(category=CatalogueCategory.from_model(c))

    @strawberry.mutation(description="Create a catalogue item (catalogue admins).")
    @errors_in(CatalogueItemPayload)
    async def create_catalogue_item(
        self, info: Info[Context, None], input: CatalogueItemInput
    ) -> CatalogueItemPayload:
        item = await info.context.services.catalog.create_item(
            _item_data(input), info.context.principal)
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Change an item: saved as its next version. Orders and "
                         "subscriptions keep the version they were made with.")
    @errors_in(CatalogueItemPayload)
    async def update_catalogue_item(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateCatalogueItemInput
    ) -> CatalogueItemPayload:
        item = await info.context.services.catalog.update_item(
            str(id), _item_data(input), info.context.principal)
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Stop new orders of an item; subscriptions go on.")
    @errors_in(CatalogueItemPayload)
    async def retire_catalogue_item(self, info: Info[Context, None], id: strawberry.ID
                                    ) -> CatalogueItemPayload:
        item = await info.context.services.catalog.retire_item(str(id), info.context.principal)
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Order an item. The form is validated against the "
                         "item's schema (errors name input.form.<field>). The same "
                         "idempotencyKey again returns the first order (created: false).")
    @errors_in(OrderPayload)
    async def submit_order(self, info: Info[Context, None], input: SubmitOrderInput
                           ) -> OrderPayload:
        form = input.form if isinstance(input.form, dict) else None
        if form is None:
            raise DomainError.single("input.form", "the form must be a JSON object")
        order, created = await info.context.services.catalog.submit({
            "item_id": str(input.item_id), "form": form,
            "idempotency_key": input.idempotency_key,
            "cost_centre_code": input.cost_centre_code, "comment": input.comment,
        }, info.context.principal)
        return OrderPayload(order=Order.from_model(order), created=created)

    @strawberry.mutation(description="Approve the step of an order waiting for the caller; "
                         "the last approval starts fulfilment. `step` (optional) is the "
                         "index the caller saw: if another approver moved it meanwhile, "
                         "nothing happens and a CONFLICT error says so.")
    @errors_in(OrderPayload)
    async def approve_order(
        self, info: Info[Context, None], id: strawberry.ID, reason: str | None = None,
        step: int | None = None,
    ) -> OrderPayload:
        order = await info.context.services.catalog.approve(
            str(id), info.context.principal, reason, step)
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Reject an order waiting for the caller (reason needed).")
    @errors_in(OrderPayload)
    async def reject_order(
        self, info: Info[Context, None], id: strawberry.ID, reason: str, step: int | None = None,
    ) -> OrderPayload:
        order = await info.context.services.catalog.reject(
            str(id), info.context.principal, reason, step)
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Withdraw an order before fulfilment (its requester).")
    @errors_in(OrderPayload)
    async def cancel_order(
        self, info: Info[Context, None], id: strawberry.ID, reason: str | None = None
    ) -> OrderPayload:
        order = await info.context.services.catalog.cancel(str(id), info.context.principal, reason)
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Run the fulfilment of a FAILED order again.")
    @errors_in(OrderPayload)
    async def retry_fulfilment(self, info: Info[Context, None], id: strawberry.ID) -> OrderPayload:
        order = await info.context.services.catalog.retry(str(id), info.context.principal)
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Mark a manual fulfilment task done; when the last one "
                         "is, the recipe runs (catalogue admins).")
    @errors_in(FulfilmentTaskPayload)
    async def complete_fulfilment_task(
        self, info: Info[Context, None], id: strawberry.ID, note: str | None = None
    ) -> FulfilmentTaskPayload:
        task = await info.context.services.catalog.finish_task(
            str(id), info.context.principal, True, note)
        return FulfilmentTaskPayload(task=FulfilmentTask.from_model(task))

    @strawberry.mutation(description="Mark a manual fulfilment task failed: the order fails "
                         "and can be retried (catalogue admins).")
    @errors_in(FulfilmentTaskPayload)
    async def fail_fulfilment_task(
        self, info: Info[Context, None], id: strawberry.ID, note: str
    ) -> FulfilmentTaskPayload:
        task = await info.context.services.catalog.finish_task(
            str(id), info.context.principal, False, note)
        return FulfilmentTaskPayload(task=FulfilmentTask.from_model(task))

    @strawberry.mutation(description="End a subscription now (its consumer or a catalogue "
                         "admin): its CIs retire and billing stops.")
    @errors_in(SubscriptionPayload)
    async def decommission_subscription(
        self, info: Info[Context, None], id: strawberry.ID, reason: str | None = None
    ) -> SubscriptionPayload:
        sub = await info.context.services.catalog.decommission(
            str(id), info.context.principal, reason)
        return SubscriptionPayload(subscription=Subscription.from_model(sub))


@strawberry.type
class CatalogSubscription:
    @strawberry.subscription(description="An order now and after each change of its status "
                             "or approval step, until it is fulfilled, rejected, cancelled "
                             "or decommissioned.")
    async def order_status(self, info: Info[Context, None], id: strawberry.ID
                           ) -> AsyncIterator[Order]:
        orders = info.context.services.catalog.watch_order(info.context.principal, str(id))
        async for order in orders:
            yield Order.from_model(order)
