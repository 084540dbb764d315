"""Runs the catalogue Cypher and turns its rows into models."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from typing import Any

from cmdb.catalog import queries as q
from cmdb.catalog.models import (
    ApprovalPolicy,
    ApprovalStep,
    CatalogueItem,
    Category,
    FulfilmentTask,
    ItemVersion,
    Order,
    OrderChange,
    OrderStatus,
    Quote,
    Recipe,
    StepOrigin,
    Subscription,
    Transition,
)
from cmdb.chargeback.models import PricePlan
from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database


def _dt(v: Any) -> datetime:
    out = as_datetime(v)
    assert out is not None
    return out


def version_content(
    name: str, description: str, form_schema: dict[str, Any], roles: list[str],
    policy: ApprovalPolicy, price: PricePlan, recipe: Recipe,
) -> dict[str, Any]:
    """Node properties of a version: nested documents as JSON text, money as strings."""
    return {
        "name": name,
        "description": description,
        "formSchema": json.dumps(form_schema, sort_keys=True),
        "roles": roles,
        "approvalPolicy": policy.model_dump_json(),
        "pricePlan": price.model_dump_json(),
        "recipe": recipe.model_dump_json(),
    }


def version_from_row(v: dict[str, Any]) -> ItemVersion:
    return ItemVersion(
        id=v["id"], item_id=v["itemId"], version=v["version"], name=v["name"],
        description=v.get("description") or "",
        form_schema=json.loads(v["formSchema"]), roles=list(v.get("roles") or []),
        approval_policy=ApprovalPolicy.model_validate_json(v["approvalPolicy"]),
        price_plan=PricePlan.model_validate_json(v["pricePlan"]),
        recipe=Recipe.model_validate_json(v["recipe"]),
        created_at=_dt(v["createdAt"]), created_by=v.get("createdBy"),
    )


def category_from_row(c: dict[str, Any] | None) -> Category | None:
    if not c:
        return None
    return Category(id=c["id"], name=c["name"], description=c.get("description") or "")


def item_from_row(row: dict[str, Any]) -> CatalogueItem:
    i = row["item"]
    return CatalogueItem(
        id=i["id"], status=i["status"], category=category_from_row(row.get("category")),
        current=version_from_row(row["version"]), created_at=_dt(i["createdAt"]),
        updated_at=_dt(i["updatedAt"]), retired_at=as_datetime(i.get("retiredAt")),
    )


def order_from_row(o: dict[str, Any]) -> Order:
    return Order(
        id=o["id"], item_id=o["itemId"], version_id=o["versionId"],
        item_version=o["itemVersion"], item_name=o["itemName"], requester=o["requester"],
        cost_centre_code=o["costCentreCode"], form=json.loads(o["form"]), status=o["status"],
        currency=o["currency"], one_off_fee=Decimal(o["oneOffFee"]),
        monthly_fee=Decimal(o["monthlyFee"]), comment=o.get("comment"),
        submitted_at=_dt(o["submittedAt"]), updated_at=_dt(o["updatedAt"]),
        revision=o["revision"], step_index=o["stepIndex"], attempts=o["attempts"],
        last_error=o.get("lastError"), subscription_id=o.get("subscriptionId"),
        quote=Quote.model_validate_json(o["quote"]) if o.get("quote") else None,
    )


def as_moved(order: Order, moved: dict[str, Any], at: Any) -> Order:
    """The order as a transition left it: ``order`` (read later) with the status, revision,
    step, attempts and error the transition recorded. A transition recorded without them
    gives the order as read."""
    if moved.get("revision") is None:
        return order
    status = OrderStatus(moved["toStatus"])
    return order.model_copy(update={
        "status": status, "revision": moved["revision"], "step_index": moved["stepIndex"],
        "attempts": moved["attempts"], "last_error": moved.get("lastError"),
        "updated_at": _dt(at),
        # The subscription is made in the move to FULFILLED.
        "subscription_id": order.subscription_id if status in (
            OrderStatus.FULFILLED, OrderStatus.DECOMMISSIONED) else None})


def step_from_row(s: dict[str, Any]) -> ApprovalStep:
    return ApprovalStep(
        id=s["id"], index=s["index"], kind=s["kind"], role=s.get("role"),
        above=Decimal(s["above"]) if s.get("above") is not None else None,
        approvers=list(s.get("approvers") or []), status=s["status"],
        decided_by=s.get("decidedBy"), decided_at=as_datetime(s.get("decidedAt")),
        reason=s.get("reason"), origin=s.get("origin") or StepOrigin.POLICY,
        why=s.get("why"), approvers_only=bool(s.get("approversOnly")),
    )


def transition_from_row(t: dict[str, Any]) -> Transition:
    return Transition(seq=t["seq"], from_status=t.get("fromStatus"), to_status=t["toStatus"],
                      by=t["by"], at=_dt(t["at"]), reason=t.get("reason"))


def task_from_row(t: dict[str, Any]) -> FulfilmentTask:
    return FulfilmentTask(
        id=t["id"], order_id=t["orderId"], index=t["index"], name=t["name"],
        description=t.get("description"), group=t.get("group"), status=t["status"],
        done_by=t.get("doneBy"), done_at=as_datetime(t.get("doneAt")), note=t.get("note"),
    )


def subscription_from_row(s: dict[str, Any]) -> Subscription:
    return Subscription(
        id=s["id"], order_id=s["orderId"], item_id=s["itemId"], version_id=s["versionId"],
        item_version=s["itemVersion"], item_name=s["itemName"], consumer=s["consumer"],
        cost_centre_code=s["costCentreCode"], service_id=s.get("serviceId"),
        ci_ids=list(s.get("ciIds") or []), status=s["status"], start_at=_dt(s["startAt"]),
        end_at=as_datetime(s.get("endAt")), ended_by=s.get("endedBy"),
        end_reason=s.get("endReason"),
    )


class CatalogRepository:
    """Reads outside transactions; the write steps are static and take the caller's ``tx``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- reads ---

    async def waiting_order_counts(self) -> dict[str, int]:
        """Status -> number of orders waiting in it (approval or fulfilment), for metrics."""
        rows = await self.db.read(q.WAITING_ORDER_COUNTS)
        return {r["status"]: int(r["n"]) for r in rows}

    async def categories(self) -> list[Category]:
        rows = await self.db.read(q.LIST_CATEGORIES)
        return [c for r in rows if (c := category_from_row(r["category"])) is not None]

    async def categories_by_id(self, ids: list[str]) -> dict[str, Category]:
        rows = await self.db.read(q.GET_CATEGORIES, {"ids": ids})
        return {r["category"]["id"]: c for r in rows
                if (c := category_from_row(r["category"])) is not None}

    async def items(self, params: dict[str, Any]) -> list[CatalogueItem]:
        return [item_from_row(r) for r in await self.db.read(q.LIST_ITEMS, params)]

    async def item(self, params: dict[str, Any]) -> CatalogueItem | None:
        rows = await self.db.read(q.GET_ITEM, params)
        return item_from_row(rows[0]) if rows else None

    async def items_by_id(self, ids: list[str]) -> dict[str, CatalogueItem]:
        rows = await self.db.read(q.GET_ITEMS, {"ids": ids})
        return {r["item"]["id"]: item_from_row(r) for r in rows}

    async def versions_of_items(self, ids: list[str]) -> dict[str, list[ItemVersion]]:
        rows = await self.db.read(q.VERSIONS_OF_ITEMS, {"ids": ids})
        return {r["id"]: [version_from_row(v) for v in r["versions"]] for r in rows}

    async def versions_by_id(self, ids: list[str]) -> dict[str, ItemVersion]:
        rows = await self.db.read(q.GET_VERSIONS, {"ids": ids})
        return {r["version"]["id"]: version_from_row(r["version"]) for r in rows}

    async def orders_by_id(self, ids: list[str]) -> dict[str, Order]:
        rows = await self.db.read(q.GET_ORDERS, {"ids": ids})
        return {r["order"]["id"]: order_from_row(r["order"]) for r in rows}

    async def order_changes_window(self, since: datetime, seen: list[str], limit: int
                                   ) -> list[OrderChange]:
        """Transitions stamped at or after ``since`` whose ids are not in ``seen``, oldest
        first, each with its order as it is now: one statement, whoever is watching."""
        rows = await self.db.read(q.ORDER_CHANGES_WINDOW,
                                  {"from": since, "seen": seen, "limit": limit})
        return [OrderChange(id=r["id"], at=_dt(r["at"]),
                            order=as_moved(order_from_row(r["order"]), r["moved"], r["at"]))
                for r in rows]

    async def orders(self, user: str | None, statuses: list[str] | None,
                     first: int) -> list[Order]:
        rows = await self.db.read(q.MY_ORDERS,
                                  {"user": user, "statuses": statuses, "first": first})
        return [order_from_row(r["order"]) for r in rows]

    async def approval_queue(self, user: str, roles: list[str], all_: bool,
                             first: int) -> list[Order]:
        rows = await self.db.read(q.APPROVAL_QUEUE, {"user": user, "roles": roles,
                                                     "all": all_, "first": first})
        return [order_from_row(r["order"]) for r in rows]

    async def named_approver(self, ids: list[str], user: str, roles: list[str]) -> set[str]:
        rows = await self.db.read(q.NAMED_APPROVER, {"ids": ids, "user": user, "roles": roles})
        return {r["id"] for r in rows}

    async def steps(self, ids: list[str]) -> dict[str, list[ApprovalStep]]:
        rows = await self.db.read(q.STEPS, {"ids": ids})
        return {r["id"]: [step_from_row(s) for s in r["steps"]] for r in rows}

    async def transitions(self, ids: list[str]) -> dict[str, list[Transition]]:
        rows = await self.db.read(q.TRANSITIONS, {"ids": ids})
        return {r["id"]: [transition_from_row(t) for t in r["transitions"]] for r in rows}

    async def tasks_of(self, ids: list[str]) -> dict[str, list[FulfilmentTask]]:
        rows = await self.db.read(q.TASKS_OF, {"ids": ids})
        return {r["id"]: [task_from_row(t) for t in r["tasks"]] for r in rows}

    async def tasks(self, statuses: list[str] | None, first: int) -> list[FulfilmentTask]:
        rows = await self.db.read(q.LIST_TASKS, {"statuses": statuses, "first": first})
        return [task_from_row(r["task"]) for r in rows]

    async def subscriptions_by_id(self, ids: list[str]) -> dict[str, Subscription]:
        rows = await self.db.read(q.GET_SUBSCRIPTIONS, {"ids": ids})
        return {r["subscription"]["id"]: subscription_from_row(r["subscription"]) for r in rows}

    async def subscriptions(self, user: str | None, statuses: list[str] | None,
                            first: int) -> list[Subscription]:
        rows = await self.db.read(q.LIST_SUBSCRIPTIONS,
                                  {"user": user, "statuses": statuses, "first": first})
        return [subscription_from_row(r["subscription"]) for r in rows]

    # --- steps of write transactions ---

    @staticmethod
    async def lock_order(tx: CountingTx, order_id: str, now: datetime) -> Order | None:
        return await tx.one_as(q.LOCK_ORDER, {"id": order_id, "now": now}, "order", order_from_row)

    @staticmethod
    async def version_in_tx(tx: CountingTx, version_id: str) -> ItemVersion:
        return await tx.expect_one_as(
            q.GET_VERSIONS, {"ids": [version_id]}, "version", version_from_row)

    @staticmethod
    async def steps_in_tx(tx: CountingTx, order_id: str) -> list[ApprovalStep]:
        row = await tx.one(q.STEPS, {"ids": [order_id]})
        return [step_from_row(s) for s in row["steps"]] if row else []

    @staticmethod
    async def tasks_in_tx(tx: CountingTx, order_id: str) -> list[FulfilmentTask]:
        row = await tx.one(q.TASKS_OF, {"ids": [order_id]})
        return [task_from_row(t) for t in row["tasks"]] if row else []

    # --- writes of their own (one statement each) ---

    async def create_category(self, category_id: str, name: str, description: str,
                              now: datetime) -> Category:
        """Raises ``ConstraintError`` when the name is taken."""
        rows = await self.db.write(q.CREATE_CATEGORY, {
            "id": category_id, "name": name, "description": description, "now": now})
        category = category_from_row(rows[0]["category"])
        assert category is not None
        return category

    async def create_item(self, params: dict[str, Any]) -> CatalogueItem:
        """Raises ``ConstraintError`` when the name is taken."""
        rows = await self.db.write(q.CREATE_ITEM, {**params, "version": 1})
        return item_from_row(rows[0])

    async def retire_item(self, item_id: str, now: datetime) -> CatalogueItem | None:
        """None when there is no ACTIVE item of that id."""
        rows = await self.db.write(q.RETIRE_ITEM, {"id": item_id, "now": now})
        return item_from_row(rows[0]) if rows else None

    # --- items, in the caller's transaction ---

    @staticmethod
    async def lock_item(tx: CountingTx, item_id: str, now: datetime
                        ) -> tuple[int, str] | None:
        """The item's current version number and status, under its write lock."""
        row = await tx.one(q.LOCK_ITEM, {"id": item_id, "now": now})
        return (row["currentVersion"], row["status"]) if row else None

    @staticmethod
    async def new_version(tx: CountingTx, params: dict[str, Any]) -> CatalogueItem:
        row = await tx.one(q.NEW_VERSION, params)
        assert row is not None
        return item_from_row(row)

    # --- orders, in the caller's transaction ---

    @staticmethod
    async def move_order(tx: CountingTx, params: dict[str, Any]) -> Order | None:
        """None when the order is not in an allowed status at the revision read."""
        return await tx.one_as(q.MOVE_ORDER, params, "order", order_from_row)

    @staticmethod
    async def find_order(tx: CountingTx, scope: str) -> tuple[Order, str | None] | None:
        """The order of an idempotency scope and its request's fingerprint."""
        row = await tx.one(q.FIND_ORDER, {"scope": scope})
        return (order_from_row(row["order"]), row["order"].get("fingerprint")) if row else None

    @staticmethod
    async def merge_order(tx: CountingTx, scope: str, order_id: str, now: datetime,
                          props: dict[str, Any]) -> tuple[Order, str | None, bool]:
        """The order of the scope, its fingerprint, and whether this call made it."""
        row = await tx.one(q.MERGE_ORDER, {"scope": scope, "id": order_id, "now": now,
                                           "props": props})
        assert row is not None
        return order_from_row(row["order"]), row["order"].get("fingerprint"), row["created"]

    @staticmethod
    async def link_order(tx: CountingTx, order_id: str, steps: list[dict[str, Any]],
                         step_index: int) -> None:
        await tx.rows(q.LINK_ORDER, {"id": order_id, "steps": steps, "stepIndex": step_index})

    @staticmethod
    async def first_transition(tx: CountingTx, order_id: str, by: str, now: datetime,
                               transition_id: str, reason: str) -> None:
        await tx.rows(q.FIRST_TRANSITION, {"id": order_id, "by": by, "now": now,
                                           "transitionId": transition_id, "reason": reason})

    @staticmethod
    async def person(tx: CountingTx, user: str) -> tuple[list[str], list[str]]:
        """The user's active managers and the codes of their cost centres."""
        row = await tx.one(q.PERSON, {"user": user})
        assert row is not None
        return list(row["managers"]), [str(c) for c in row["costCentres"]]

    @staticmethod
    async def cost_centre_owners(tx: CountingTx, code: str) -> list[str] | None:
        """The active owners of a cost centre, by name; None when there is no such one."""
        row = await tx.one(q.COST_CENTRE_OWNERS, {"code": code})
        assert row is not None
        return sorted(str(o) for o in row["owners"]) if row["exists"] else None

    # --- approval steps, in the caller's transaction ---

    @staticmethod
    async def decide_step(tx: CountingTx, params: dict[str, Any]) -> bool:
        """False when the step was no longer pending at the revision read."""
        return await tx.one(q.DECIDE_STEP, params) is not None

    @staticmethod
    async def open_step(tx: CountingTx, order_id: str, index: int) -> None:
        await tx.rows(q.OPEN_STEP, {"id": order_id, "index": index})

    @staticmethod
    async def cancel_steps(tx: CountingTx, order_id: str) -> None:
        await tx.rows(q.CANCEL_STEPS, {"id": order_id})

    # --- fulfilment, in the caller's transaction ---

    @staticmethod
    async def create_tasks(tx: CountingTx, order_id: str, now: datetime,
                           tasks: list[dict[str, Any]]) -> None:
        """The order's manual tasks, unless it has them from an earlier attempt."""
        await tx.rows(q.CREATE_TASKS, {"id": order_id, "now": now, "tasks": tasks})

    @staticmethod
    async def reopen_tasks(tx: CountingTx, order_id: str) -> None:
        await tx.rows(q.REOPEN_TASKS, {"id": order_id})

    @staticmethod
    async def task_in_tx(tx: CountingTx, task_id: str) -> FulfilmentTask | None:
        return await tx.one_as(q.GET_TASK, {"id": task_id}, "task", task_from_row)

    @staticmethod
    async def finish_task(tx: CountingTx, params: dict[str, Any]) -> FulfilmentTask | None:
        """None when the task is no longer OPEN."""
        return await tx.one_as(q.FINISH_TASK, params, "task", task_from_row)

    @staticmethod
    async def resolve_names(tx: CountingTx, refs: list[dict[str, str]]
                            ) -> dict[str, tuple[str, str]]:
        """``kind:name`` -> (id, class) of the live services and CIs found."""
        rows = await tx.rows(q.RESOLVE_NAMES, {"refs": refs})
        return {r["ref"]: (r["id"], r["cls"]) for r in rows if r["id"] is not None}

    @staticmethod
    async def cost_centre_id(tx: CountingTx, code: str) -> str | None:
        row = await tx.one(q.COST_CENTRE_ID, {"code": code})
        return row["id"] if row else None

    @staticmethod
    async def create_subscription(tx: CountingTx, subscription_id: str, order_id: str,
                                  service_id: str, ci_ids: list[str], now: datetime) -> None:
        await tx.rows(q.CREATE_SUBSCRIPTION, {
            "id": subscription_id, "orderId": order_id, "serviceId": service_id,
            "ciIds": ci_ids, "now": now})

    # --- subscriptions, in the caller's transaction ---

    @staticmethod
    async def lock_subscription(tx: CountingTx, subscription_id: str, now: datetime
                                ) -> Subscription | None:
        return await tx.one_as(
            q.LOCK_SUBSCRIPTION, {"id": subscription_id, "now": now}, "subscription",
            subscription_from_row)

    @staticmethod
    async def live_items(tx: CountingTx, ids: list[str]) -> list[str]:
        """The ids among ``ids`` of items not retired."""
        return [r["id"] for r in await tx.rows(q.LIVE_ITEMS, {"ids": ids})]

    @staticmethod
    async def end_subscription(tx: CountingTx, subscription_id: str, by: str, reason: str,
                               now: datetime) -> Subscription:
        return await tx.expect_one_as(
            q.END_SUBSCRIPTION, {"id": subscription_id, "by": by, "reason": reason, "now": now},
            "subscription", subscription_from_row)
