"""Root fields of the self-service catalogue: browse, order, approve, fulfil, subscriptions.
Permissions and visibility are decided by ``CatalogService`` from the request's principal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import strawberry

from cmdb.catalog.models import OrderStatus, SubscriptionStatus, TaskStatus
from cmdb.catalog.service import CatalogService
from cmdb.core.models import DomainError
from cmdb.schema.catalog import (
    ApprovalStepInput,
    CatalogueCategory,
    CatalogueCategoryInput,
    CatalogueCategoryPayload,
    CatalogueItem,
    CatalogueItemInput,
    CatalogueItemPayload,
    FulfilmentTask,
    FulfilmentTaskPayload,
    Order,
    OrderPayload,
    PricePlanInput,
    SubmitOrderInput,
    Subscription,
    SubscriptionPayload,
    UpdateCatalogueItemInput,
)
from cmdb.schema.payloads import user_errors


def _catalog(info: strawberry.Info) -> CatalogService:
    service: CatalogService = info.context.services.catalog
    return service


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
    async def catalogue_categories(self, info: strawberry.Info) -> list[CatalogueCategory]:
        found = await _catalog(info).categories(info.context.principal)
        return [CatalogueCategory.from_model(c) for c in found]

    @strawberry.field(description="What the caller may order (catalogue admins: every item), "
                      "with the price an order would pay now; search matches name and "
                      "description.")
    async def catalogue_items(
        self, info: strawberry.Info, search: str | None = None,
        category_id: strawberry.ID | None = None, include_retired: bool = False,
    ) -> list[CatalogueItem]:
        found = await _catalog(info).items(
            info.context.principal, search,
            str(category_id) if category_id is not None else None, include_retired)
        return [CatalogueItem.from_model(i) for i in found]

    @strawberry.field(description="One item the caller may order, with its form schema.")
    async def catalogue_item(self, info: strawberry.Info, id: strawberry.ID
                             ) -> CatalogueItem | None:
        found = await _catalog(info).item(info.context.principal, str(id))
        return CatalogueItem.from_model(found) if found else None

    @strawberry.field(description="An order the caller may read: their own, one they "
                      "approve, or any for catalogue admins. Poll it, or subscribe to "
                      "orderStatus.")
    async def order(self, info: strawberry.Info, id: strawberry.ID) -> Order | None:
        found = await _catalog(info).order(info.context.principal, str(id))
        return Order.from_model(found) if found else None

    @strawberry.field(description="The caller's orders, newest first.")
    async def my_orders(
        self, info: strawberry.Info, status: list[OrderStatus] | None = None,
        first: int | None = None,
    ) -> list[Order]:
        found = await _catalog(info).orders(info.context.principal, status, first)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="Every order, newest first (catalogue admins).")
    async def orders(
        self, info: strawberry.Info, status: list[OrderStatus] | None = None,
        first: int | None = None,
    ) -> list[Order]:
        found = await _catalog(info).orders(info.context.principal, status, first,
                                            everyone=True)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="Orders waiting for the caller's decision, oldest first "
                      "(never the caller's own).")
    async def approval_queue(self, info: strawberry.Info, first: int | None = None
                             ) -> list[Order]:
        found = await _catalog(info).approval_queue(info.context.principal, first)
        return [Order.from_model(o) for o in found]

    @strawberry.field(description="The caller's subscriptions, newest first.")
    async def my_subscriptions(
        self, info: strawberry.Info, status: list[SubscriptionStatus] | None = None,
        first: int | None = None,
    ) -> list[Subscription]:
        found = await _catalog(info).subscriptions(info.context.principal, status, first)
        return [Subscription.from_model(s) for s in found]

    @strawberry.field(description="Every subscription, newest first (catalogue admins).")
    async def subscriptions(
        self, info: strawberry.Info, status: list[SubscriptionStatus] | None = None,
        first: int | None = None,
    ) -> list[Subscription]:
        found = await _catalog(info).subscriptions(info.context.principal, status, first,
                                                   everyone=True)
        return [Subscription.from_model(s) for s in found]

    @strawberry.field
    async def subscription(self, info: strawberry.Info, id: strawberry.ID
                           ) -> Subscription | None:
        found = await _catalog(info).readable_subscriptions(info.context.principal, [str(id)])
        s = found.get(str(id))
        return Subscription.from_model(s) if s else None

    @strawberry.field(description="Manual fulfilment tasks (catalogue admins).")
    async def fulfilment_tasks(
        self, info: strawberry.Info, status: list[TaskStatus] | None = None,
        first: int | None = None,
    ) -> list[FulfilmentTask]:
        found = await _catalog(info).tasks(info.context.principal, status, first)
        return [FulfilmentTask.from_model(t) for t in found]


@strawberry.type
class CatalogMutation:
    @strawberry.mutation(description="Create a catalogue category (catalogue admins).")
    async def create_catalogue_category(
        self, info: strawberry.Info, input: CatalogueCategoryInput
    ) -> CatalogueCategoryPayload:
        try:
            c = await _catalog(info).create_category(
                {"name": input.name, "description": input.description},
                info.context.principal)
        except DomainError as e:
            return CatalogueCategoryPayload(errors=user_errors(e))
        return CatalogueCategoryPayload(category=CatalogueCategory.from_model(c))

    @strawberry.mutation(description="Create a catalogue item (catalogue admins).")
    async def create_catalogue_item(
        self, info: strawberry.Info, input: CatalogueItemInput
    ) -> CatalogueItemPayload:
        try:
            item = await _catalog(info).create_item(_item_data(input), info.context.principal)
        except DomainError as e:
            return CatalogueItemPayload(errors=user_errors(e))
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Change an item: saved as its next version. Orders and "
                         "subscriptions keep the version they were made with.")
    async def update_catalogue_item(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateCatalogueItemInput
    ) -> CatalogueItemPayload:
        try:
            item = await _catalog(info).update_item(str(id), _item_data(input),
                                                    info.context.principal)
        except DomainError as e:
            return CatalogueItemPayload(errors=user_errors(e))
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Stop new orders of an item; subscriptions go on.")
    async def retire_catalogue_item(self, info: strawberry.Info, id: strawberry.ID
                                    ) -> CatalogueItemPayload:
        try:
            item = await _catalog(info).retire_item(str(id), info.context.principal)
        except DomainError as e:
            return CatalogueItemPayload(errors=user_errors(e))
        return CatalogueItemPayload(item=CatalogueItem.from_model(item))

    @strawberry.mutation(description="Order an item. The form is validated against the "
                         "item's schema (errors name input.form.<field>). The same "
                         "idempotencyKey again returns the first order (created: false).")
    async def submit_order(self, info: strawberry.Info, input: SubmitOrderInput
                           ) -> OrderPayload:
        form = input.form if isinstance(input.form, dict) else None
        if form is None:
            return OrderPayload(errors=user_errors(DomainError.single(
                "input.form", "the form must be a JSON object")))
        try:
            order, created = await _catalog(info).submit({
                "item_id": str(input.item_id), "form": form,
                "idempotency_key": input.idempotency_key,
                "cost_centre_code": input.cost_centre_code, "comment": input.comment,
            }, info.context.principal)
        except DomainError as e:
            return OrderPayload(errors=user_errors(e))
        return OrderPayload(order=Order.from_model(order), created=created)

    @strawberry.mutation(description="Approve the step of an order waiting for the caller; "
                         "the last approval starts fulfilment. `step` (optional) is the "
                         "index the caller saw: if another approver moved it meanwhile, "
                         "nothing happens and a CONFLICT error says so.")
    async def approve_order(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None,
        step: int | None = None,
    ) -> OrderPayload:
        try:
            order = await _catalog(info).approve(str(id), info.context.principal, reason, step)
        except DomainError as e:
            return OrderPayload(errors=user_errors(e))
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Reject an order waiting for the caller (reason needed).")
    async def reject_order(
        self, info: strawberry.Info, id: strawberry.ID, reason: str, step: int | None = None,
    ) -> OrderPayload:
        try:
            order = await _catalog(info).reject(str(id), info.context.principal, reason, step)
        except DomainError as e:
            return OrderPayload(errors=user_errors(e))
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Withdraw an order before fulfilment (its requester).")
    async def cancel_order(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None
    ) -> OrderPayload:
        try:
            order = await _catalog(info).cancel(str(id), info.context.principal, reason)
        except DomainError as e:
            return OrderPayload(errors=user_errors(e))
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Run the fulfilment of a FAILED order again.")
    async def retry_fulfilment(self, info: strawberry.Info, id: strawberry.ID) -> OrderPayload:
        try:
            order = await _catalog(info).retry(str(id), info.context.principal)
        except DomainError as e:
            return OrderPayload(errors=user_errors(e))
        return OrderPayload(order=Order.from_model(order))

    @strawberry.mutation(description="Mark a manual fulfilment task done; when the last one "
                         "is, the recipe runs (catalogue admins).")
    async def complete_fulfilment_task(
        self, info: strawberry.Info, id: strawberry.ID, note: str | None = None
    ) -> FulfilmentTaskPayload:
        try:
            task = await _catalog(info).finish_task(str(id), info.context.principal, True, note)
        except DomainError as e:
            return FulfilmentTaskPayload(errors=user_errors(e))
        return FulfilmentTaskPayload(task=FulfilmentTask.from_model(task))

    @strawberry.mutation(description="Mark a manual fulfilment task failed: the order fails "
                         "and can be retried (catalogue admins).")
    async def fail_fulfilment_task(
        self, info: strawberry.Info, id: strawberry.ID, note: str
    ) -> FulfilmentTaskPayload:
        try:
            task = await _catalog(info).finish_task(str(id), info.context.principal, False,
                                                    note)
        except DomainError as e:
            return FulfilmentTaskPayload(errors=user_errors(e))
        return FulfilmentTaskPayload(task=FulfilmentTask.from_model(task))

    @strawberry.mutation(description="End a subscription now (its consumer or a catalogue "
                         "admin): its CIs retire and billing stops.")
    async def decommission_subscription(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None
    ) -> SubscriptionPayload:
        try:
            sub = await _catalog(info).decommission(str(id), info.context.principal, reason)
        except DomainError as e:
            return SubscriptionPayload(errors=user_errors(e))
        return SubscriptionPayload(subscription=Subscription.from_model(sub))


@strawberry.type
class CatalogSubscription:
    @strawberry.subscription(description="An order now and after each change of its status "
                             "or approval step, until it is fulfilled, rejected, cancelled "
                             "or decommissioned.")
    async def order_status(self, info: strawberry.Info, id: strawberry.ID
                           ) -> AsyncIterator[Order]:
        async for order in _catalog(info).watch_order(info.context.principal, str(id)):
            yield Order.from_model(order)
