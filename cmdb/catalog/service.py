"""Use cases of the catalogue: authorisation, validation and transaction boundaries.

Concurrency: every change of an order starts by taking the order's write lock
(``LOCK_ORDER``), so two callers acting on one order run one after the other, and the second
sees what the first committed. The status change itself is conditional (allowed source
status and the revision read), and an approval decision is a node with a unique step key: two
approvers deciding the same step at once cannot both succeed, whatever the timing.

Fulfilment runs the recipe in one transaction: CIs, relationships, health roll-up, the
subscription and the move to FULFILLED commit together or not at all. When it fails, a second
transaction records FAILED with the reason; ``retry`` runs it again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from neo4j.exceptions import ConstraintError, Neo4jError
from pydantic import ValidationError

from cmdb.catalog import estimate as pricing
from cmdb.catalog import queries as q
from cmdb.catalog.forms import (
    check_form_schema,
    render,
    unknown_placeholders,
    validate_form,
    with_defaults,
)
from cmdb.catalog.models import (
    TRANSITIONS,
    ApprovalStep,
    CatalogueItem,
    Category,
    CategoryWrite,
    Estimate,
    EstimateRequest,
    FulfilmentTask,
    ItemStatus,
    ItemVersion,
    ItemWrite,
    Order,
    OrderChange,
    OrderStatus,
    OrderSubmit,
    Quote,
    StepKind,
    StepOrigin,
    StepStatus,
    Subscription,
    SubscriptionStatus,
    TaskStatus,
    Transition,
    sources_of,
)
from cmdb.catalog.repository import (
    CatalogRepository,
    category_from_row,
    item_from_row,
    order_from_row,
    subscription_from_row,
    task_from_row,
    version_content,
)
from cmdb.chargeback.models import PricePlan, RateCard
from cmdb.chargeback.service import ChargebackService
from cmdb.core.clock import utcnow
from cmdb.core.feed import Feed
from cmdb.core.models import DomainError, FieldError, LifecycleStatus, NotFound
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.db.availability import is_unavailable
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Permission, Principal, has_permission, require_permission
from cmdb.items.inventory import common_properties, ref_params
from cmdb.items.models import SERVICE, Identifiers, RelationType, rule_violation
from cmdb.items.repository import InventoryRepository, RelationRepository, identifier_properties
from cmdb.rollup.models import rule_property_errors
from cmdb.rollup.repository import propagate, recompute, upward_closure
from cmdb.settings import Settings

log = logging.getLogger("cmdb.catalog")

SYSTEM = "system:fulfilment"
# A watch of an order ends when nothing more is expected of it.
WATCH_ENDS = frozenset({OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FULFILLED,
                        OrderStatus.DECOMMISSIONED})
MAX_LIST = 500


def _conflict(field: str | None, message: str) -> DomainError:
    return DomainError.single(field, message, "CONFLICT")


def _forbidden(message: str) -> DomainError:
    return DomainError.single(None, message, "FORBIDDEN")


def _first(first: int | None) -> int:
    size = 50 if first is None else first
    if not 0 <= size <= MAX_LIST:
        raise DomainError.single("first", f"first must be between 0 and {MAX_LIST}")
    return size


def _manages(p: Principal) -> bool:
    return has_permission(p, Permission.CATALOGUE_MANAGE)


class CatalogService:
    def __init__(self, db: Database, settings: Settings,
                 chargeback: ChargebackService | None = None) -> None:
        self.db = db
        self.settings = settings
        self.repo = CatalogRepository(db)
        # Rate cards, read for quotes and estimates (usage is priced as the bill prices it).
        self.chargeback = chargeback or ChargebackService(db, settings)
        # Order transitions for every orderStatus subscriber of this process: one read per
        # tick, whoever watches (see cmdb/core/feed.py).
        self.feed: Feed[OrderChange] = Feed(
            "order-changes", self.repo.order_changes_window, lambda c: c.id, lambda c: c.at,
            interval_s=settings.subscription_interval_s,
            overlap_s=settings.subscription_overlap_s,
            queue_size=settings.subscription_queue_size)

    async def close(self) -> None:
        """Stop the change feed; open streams end."""
        await self.feed.close()

    # --- categories ---------------------------------------------------------------------------

    async def create_category(self, data: dict[str, Any], principal: Principal | None
                              ) -> Category:
        require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        spec = validate(CategoryWrite, data)
        try:
            rows = await self.db.write(q.CREATE_CATEGORY, {
                "id": str(uuid.uuid4()), "name": spec.name.strip(),
                "description": spec.description, "now": utcnow()})
        except ConstraintError:
            raise _conflict("input.name", f"a category named {spec.name!r} exists") from None
        category = category_from_row(rows[0]["category"])
        assert category is not None
        return category

    async def categories(self, principal: Principal | None) -> list[Category]:
        require_permission(principal, Permission.CATALOGUE_READ, "browse the catalogue")
        return await self.repo.categories()

    # --- items --------------------------------------------------------------------------------

    def _visibility(self, p: Principal) -> dict[str, Any]:
        return {"all": _manages(p), "roles": sorted(p.roles), "user": p.user,
                "nowText": utcnow().strftime("%Y-%m-%dT%H:%M:%S")}

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

    def _check_item(self, spec: ItemWrite) -> None:
        check_form_schema(spec.form_schema)
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
            try:
                attribute_properties(dict(r.properties),
                                     f"input.recipe.relationships[{i}].properties")
            except DomainError as e:
                errors.extend(e.errors)
        for i, c in enumerate(spec.recipe.cis):
            try:
                attribute_properties(dict(c.attributes), f"input.recipe.cis[{i}].attributes")
            except DomainError as e:
                errors.extend(e.errors)
        if errors:
            raise DomainError(errors)

    async def _check_category(self, category_id: str | None) -> None:
        if category_id is not None and not await self.repo.categories_by_id([category_id]):
            raise NotFound("category", category_id, "input.categoryId")

    @staticmethod
    def _content(spec: ItemWrite) -> dict[str, Any]:
        return version_content(spec.name, spec.description, spec.form_schema, spec.roles,
                               spec.approval_policy, spec.price_plan, spec.recipe)

    async def create_item(self, data: dict[str, Any], principal: Principal | None
                          ) -> CatalogueItem:
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        spec = validate(ItemWrite, data)
        self._check_item(spec)
        await self._check_category(spec.category_id)
        try:
            rows = await self.db.write(q.CREATE_ITEM, {
                "id": str(uuid.uuid4()), "versionId": str(uuid.uuid4()), "name": spec.name,
                "description": spec.description, "categoryId": spec.category_id,
                "roles": spec.roles, "content": self._content(spec), "by": p.user,
                "now": utcnow()})
        except ConstraintError:
            raise _conflict("input.name", f"an item named {spec.name!r} exists") from None
        return item_from_row(rows[0])

    async def update_item(self, item_id: str, data: dict[str, Any],
                          principal: Principal | None) -> CatalogueItem:
        """Store the changed content as the next version; orders keep the version they
        were made with."""
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        current = (await self.repo.items_by_id([item_id])).get(item_id)
        if current is None:
            raise NotFound("catalogue item", item_id)
        v = current.current
        merged: dict[str, Any] = {
            "name": v.name, "description": v.description,
            "category_id": current.category.id if current.category else None,
            "form_schema": v.form_schema, "roles": v.roles,
            "approval_policy": v.approval_policy.model_dump(),
            "price_plan": v.price_plan.model_dump(), "recipe": v.recipe.model_dump(),
        }
        merged.update(data)
        spec = validate(ItemWrite, merged)
        self._check_item(spec)
        await self._check_category(spec.category_id)

        async def work(tx: CountingTx) -> CatalogueItem:
            now = utcnow()
            row = await tx.one(q.LOCK_ITEM, {"id": item_id, "now": now})
            if row is None:
                raise NotFound("catalogue item", item_id)
            if row["status"] == ItemStatus.RETIRED.value:
                raise _conflict("id", f"catalogue item {item_id!r} is retired")
            out = await tx.one(q.NEW_VERSION, {
                "id": item_id, "version": row["currentVersion"] + 1,
                "versionId": str(uuid.uuid4()), "name": spec.name,
                "description": spec.description, "categoryId": spec.category_id,
                "roles": spec.roles, "content": self._content(spec), "by": p.user,
                "now": now})
            assert out is not None
            return item_from_row(out)

        try:
            return await self.db.write_tx(work)
        except ConstraintError:
            raise _conflict("input.name", "another item has this name, or the item was "
                            "changed at the same time; try again") from None

    async def retire_item(self, item_id: str, principal: Principal | None) -> CatalogueItem:
        """No new orders; existing orders and subscriptions go on."""
        require_permission(principal, Permission.CATALOGUE_MANAGE, "manage the catalogue")
        rows = await self.db.write(q.RETIRE_ITEM, {"id": item_id, "now": utcnow()})
        if not rows:
            if item_id in await self.repo.items_by_id([item_id]):
                raise _conflict("id", f"catalogue item {item_id!r} is already retired")
            raise NotFound("catalogue item", item_id)
        return item_from_row(rows[0])

    # --- reading orders -------------------------------------------------------------------

    async def readable_orders(self, principal: Principal | None, ids: list[str]
                              ) -> dict[str, Order]:
        """The orders among ``ids`` the caller may read: their own, those they approve (or
        may approve), every one for catalogue admins."""
        p = require_permission(principal, Permission.CATALOGUE_READ, "read orders")
        found = await self.repo.orders_by_id(ids)
        if _manages(p):
            return found
        others = [i for i, o in found.items() if o.requester != p.user]
        approver = (await self.repo.named_approver(others, p.user, sorted(p.roles))
                    if others and has_permission(p, Permission.CATALOGUE_APPROVE) else set())
        return {i: o for i, o in found.items() if o.requester == p.user or i in approver}

    async def order(self, principal: Principal | None, order_id: str) -> Order | None:
        return (await self.readable_orders(principal, [order_id])).get(order_id)

    async def orders(self, principal: Principal | None, statuses: list[OrderStatus] | None,
                     first: int | None, everyone: bool = False) -> list[Order]:
        """The caller's orders, newest first; ``everyone`` (catalogue admins) all orders."""
        p = require_permission(principal, Permission.CATALOGUE_READ, "read orders")
        if everyone:
            require_permission(p, Permission.CATALOGUE_MANAGE, "read every order")
        return await self.repo.orders(None if everyone else p.user,
                                      [s.value for s in statuses] if statuses else None,
                                      _first(first))

    async def approval_queue(self, principal: Principal | None, first: int | None
                             ) -> list[Order]:
        p = require_permission(principal, Permission.CATALOGUE_APPROVE, "approve orders")
        return await self.repo.approval_queue(p.user, sorted(p.roles), _manages(p),
                                              _first(first))

    async def steps(self, ids: list[str]) -> list[list[ApprovalStep]]:
        found = await self.repo.steps(ids)
        return [found.get(i, []) for i in ids]

    async def transitions(self, ids: list[str]) -> list[list[Transition]]:
        found = await self.repo.transitions(ids)
        return [found.get(i, []) for i in ids]

    async def tasks_of(self, ids: list[str]) -> list[list[FulfilmentTask]]:
        found = await self.repo.tasks_of(ids)
        return [found.get(i, []) for i in ids]

    async def tasks(self, principal: Principal | None, statuses: list[TaskStatus] | None,
                    first: int | None) -> list[FulfilmentTask]:
        require_permission(principal, Permission.CATALOGUE_MANAGE, "see fulfilment tasks")
        return await self.repo.tasks([s.value for s in statuses] if statuses else None,
                                     _first(first))

    async def watch_order(self, principal: Principal | None, order_id: str,
                          interval_s: float = 1.0) -> AsyncIterator[Order]:
        """The order now and after each change, until it is fulfilled or ends otherwise.

        Changes come from the shared feed (or, with ``subscription_shared_feed`` off, from
        polling the order every ``interval_s``). The feed is joined before the order is read,
        so a change committed in between is not lost; changes the first read already shows
        are passed over by the order's revision."""
        if not self.settings.subscription_shared_feed:
            async for order in self._poll_order(principal, order_id, interval_s):
                yield order
            return
        async with self.feed.subscribe(lambda c: c.order.id == order_id,
                                       since=datetime.min.replace(tzinfo=UTC)) as changes:
            found = await self.order(principal, order_id)
            if found is None:
                raise NotFound("order", order_id)
            last = found.revision
            yield found
            if found.status in WATCH_ENDS:
                return
            async for change in changes:
                if change.order.revision <= last:
                    continue
                last = change.order.revision
                yield change.order
                if change.order.status in WATCH_ENDS:
                    return

    async def _poll_order(self, principal: Principal | None, order_id: str,
                          interval_s: float) -> AsyncIterator[Order]:
        """The former design, one read per subscriber per ``interval_s``."""
        last: int | None = None
        while True:
            found = await self.order(principal, order_id)
            if found is None:
                raise NotFound("order", order_id)
            if found.revision != last:
                last = found.revision
                yield found
            if found.status in WATCH_ENDS:
                return
            await asyncio.sleep(interval_s)

    # --- moving orders --------------------------------------------------------------------

    @staticmethod
    async def _move(
        tx: CountingTx, order: Order, to: OrderStatus, by: str, reason: str | None,
        step_index: int | None = None, attempt: bool = False, error: str | None = None,
    ) -> Order:
        if to not in _allowed(order.status):
            raise _conflict("id", f"order {order.id!r} is {order.status.value}; it cannot "
                            f"become {to.value}")
        row = await tx.one(q.MOVE_ORDER, {
            "id": order.id, "from": sources_of(to), "revision": order.revision,
            "to": to.value, "by": by, "reason": reason, "now": utcnow(),
            "stepIndex": step_index, "attempt": 1 if attempt else 0, "error": error,
            "clearError": attempt, "transitionId": str(uuid.uuid4())})
        if row is None:
            raise _conflict("id", f"order {order.id!r} changed meanwhile; read it again")
        return order_from_row(row["order"])

    async def _locked(self, tx: CountingTx, order_id: str, field: str = "id") -> Order:
        order = await CatalogRepository.lock_order(tx, order_id, utcnow())
        if order is None:
            raise NotFound("order", order_id, field)
        return order

    # --- submitting -----------------------------------------------------------------------

    async def submit(self, data: dict[str, Any], principal: Principal | None
                     ) -> tuple[Order, bool]:
        """Place an order; returns it and whether it was made now (False: the same
        idempotency key was used before by this requester, and that order is returned)."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "order from the catalogue")
        spec = validate(OrderSubmit, data)
        item = await self.repo.item({**self._visibility(p), "id": spec.item_id})
        if item is None:
            raise NotFound("catalogue item", spec.item_id, "input.itemId")
        fingerprint = hashlib.sha256(json.dumps(
            {"item": spec.item_id, "form": spec.form, "cc": spec.cost_centre_code},
            sort_keys=True, default=str).encode()).hexdigest()
        scope = f"{p.user}\u0000{spec.idempotency_key}"
        version = item.current
        form = with_defaults(version.form_schema, spec.form)
        # The price agreed to: the plan's fees and the rate cards in force at submission.
        quoted = await self._quote(version.price_plan, utcnow())

        async def work(tx: CountingTx) -> tuple[Order, bool]:
            existing = await tx.one(q.FIND_ORDER, {"scope": scope})
            if existing is not None:
                return self._repeat(existing["order"], fingerprint)
            # Only a new request goes on: checks that may fail come before the MERGE below.
            if item.status is ItemStatus.RETIRED:
                raise _conflict("input.itemId", f"{version.name!r} is retired and cannot be "
                                "ordered")
            validate_form(version.form_schema, form)
            cc, steps = await self._route(tx, p.user, spec.cost_centre_code, version)
            price = version.price_plan
            order_id = str(uuid.uuid4())
            now = quoted.quoted_at
            row = await tx.one(q.MERGE_ORDER, {"scope": scope, "id": order_id, "now": now,
                "props": {
                    "requester": p.user, "itemId": item.id, "versionId": version.id,
                    "itemVersion": version.version, "itemName": version.name,
                    "costCentreCode": cc, "form": json.dumps(form, sort_keys=True),
                    "status": OrderStatus.SUBMITTED.value, "currency": price.currency,
                    "oneOffFee": str(price.one_off), "monthlyFee": str(price.monthly),
                    "comment": spec.comment, "fingerprint": fingerprint,
                    "idempotencyKey": spec.idempotency_key,
                    "quote": quoted.model_dump_json()}})
            assert row is not None
            if not row["created"]:  # a twin committed between the two statements
                return self._repeat(row["order"], fingerprint)
            pending = next((s for s in steps if s["status"] == StepStatus.PENDING.value), None)
            await tx.rows(q.LINK_ORDER, {"id": order_id, "steps": steps,
                                         "stepIndex": pending["index"] if pending else -1})
            await tx.rows(q.FIRST_TRANSITION, {"id": order_id, "by": p.user, "now": now,
                                               "transitionId": str(uuid.uuid4()),
                                               "reason": spec.comment or "submitted"})
            order = order_from_row(row["order"])
            if pending is not None:
                who = pending["role"] or ", ".join(pending["approvers"])
                order = await self._move(
                    tx, order, OrderStatus.AWAITING_APPROVAL, p.user,
                    f"waiting for step {pending['index'] + 1}: {pending['kind']} ({who})",
                    step_index=pending["index"])
            else:
                why = ("no approval needed" if not steps
                       else "every approval step is below its price threshold")
                order = await self._move(tx, order, OrderStatus.APPROVED, SYSTEM,
                                         f"approved automatically: {why}")
            return order, True

        order, created = await self.db.write_tx(work)
        # Also for an order sent again: its fulfilment may have been cut off before (the
        # database gone between the transactions); sending it again carries it on.
        if order.status is OrderStatus.APPROVED:
            order = await self._fulfil_quietly(order.id)
        elif not created and order.status is OrderStatus.FULFILLING:
            order = await self._resume_recipe(order)
        return order, created

    async def _resume_recipe(self, order: Order) -> Order:
        """Run the recipe of a FULFILLING order with no manual task open (its run was cut
        off). Safe beside a run in progress: ``_provision`` locks the order and does nothing
        once it has left FULFILLING."""
        tasks = (await self.repo.tasks_of([order.id])).get(order.id, [])
        if any(t.status is not TaskStatus.DONE for t in tasks):
            return order
        return await self._run_recipe(order.id, SYSTEM)

    @staticmethod
    def _repeat(row: dict[str, Any], fingerprint: str) -> tuple[Order, bool]:
        if row.get("fingerprint") != fingerprint:
            raise _conflict("input.idempotencyKey", "this idempotency key was used for a "
                            "different order; use a new key for a new order")
        return order_from_row(row), False

    async def _route(
        self, tx: CountingTx, user: str, cost_centre: str | None, version: ItemVersion
    ) -> tuple[str, list[dict[str, Any]]]:
        """The order's cost centre and its approval steps with their approvers.

        The item's policy gives the steps. An order charged to a cost centre that is not the
        requester's own (one they are in, or own) also needs the consent of that cost
        centre's owner: an unskippable COST_CENTRE_OWNER step only its owners may decide,
        added after the policy's steps unless the policy already has one that is not
        skipped (that step is then the consent). With no owner there, nobody could consent:
        the order is refused."""
        person = await tx.one(q.PERSON, {"user": user})
        assert person is not None
        own = [str(c) for c in person["costCentres"]]
        if cost_centre is None:
            if len(own) != 1:
                raise DomainError.single(
                    "input.costCentreCode", "no cost centre is recorded for you; give one"
                    if not own else "you belong to several cost centres; give one")
            cost_centre = own[0]
        owners = await tx.one(q.COST_CENTRE_OWNERS, {"code": cost_centre})
        assert owners is not None
        if not owners["exists"]:
            raise NotFound("cost centre", cost_centre, "input.costCentreCode")
        owner_names = sorted(str(o) for o in owners["owners"])
        cross_charge = cost_centre not in own and user not in owner_names
        if cross_charge and not owner_names:
            raise DomainError.single(
                "input.costCentreCode", f"{cost_centre} is not your cost centre and has no "
                "owner who could agree to be charged; order on your own cost centre, or ask "
                f"for an owner of {cost_centre} to be recorded", "FORBIDDEN")
        consent = (f"the order is charged to {cost_centre}, which is not {user}'s cost "
                   "centre: its owner must agree")
        first_year: Decimal = version.price_plan.first_year
        steps: list[dict[str, Any]] = []
        opened = False
        consented = False
        for index, s in enumerate(version.approval_policy.steps):
            approvers: list[str] = []
            if s.kind is StepKind.MANAGER:
                approvers = list(person["managers"])
            elif s.kind is StepKind.COST_CENTRE_OWNER:
                approvers = owner_names
            skipped = s.above is not None and first_year <= s.above
            if not skipped and s.kind is not StepKind.ROLE and not approvers:
                who = ("no manager is recorded for you" if s.kind is StepKind.MANAGER
                       else f"cost centre {cost_centre} has no owner")
                raise DomainError.single("input", f"this item needs approval by "
                                         f"{s.kind.value}, but {who}", "INVALID")
            why = "the item's approval policy"
            if s.above is not None:
                why += (f": the first-year cost {first_year} is "
                        f"{'not above' if skipped else 'above'} {s.above}")
            only = False
            if cross_charge and not skipped and not consented \
                    and s.kind is StepKind.COST_CENTRE_OWNER:
                consented = only = True
                why += f"; also, {consent}"
            status = (StepStatus.SKIPPED if skipped else
                      StepStatus.WAITING if opened else StepStatus.PENDING)
            opened = opened or status is StepStatus.PENDING
            steps.append(self._step(index, s.kind, s.role, s.above, approvers, status,
                                    StepOrigin.POLICY, why, only))
        if cross_charge and not consented:
            steps.append(self._step(
                len(steps), StepKind.COST_CENTRE_OWNER, None, None, owner_names,
                StepStatus.WAITING if opened else StepStatus.PENDING,
                StepOrigin.CROSS_CHARGE, consent, True))
        return cost_centre, steps

    @staticmethod
    def _step(index: int, kind: StepKind, role: str | None, above: Decimal | None,
              approvers: list[str], status: StepStatus, origin: StepOrigin, why: str,
              approvers_only: bool) -> dict[str, Any]:
        return {"id": str(uuid.uuid4()), "index": index, "kind": kind.value, "role": role,
                "above": str(above) if above is not None else None, "approvers": approvers,
                "status": status.value, "origin": origin.value, "why": why,
                "approversOnly": approvers_only}

    # --- approving ------------------------------------------------------------------------

    async def approve(self, order_id: str, principal: Principal | None,
                      reason: str | None = None, step: int | None = None) -> Order:
        order = await self._decide(order_id, principal, True, reason, step)
        if order.status is OrderStatus.APPROVED:
            order = await self._fulfil_quietly(order.id)
        return order

    async def reject(self, order_id: str, principal: Principal | None,
                     reason: str | None = None, step: int | None = None) -> Order:
        if not reason or not reason.strip():
            raise DomainError.single("reason", "say why the order is rejected")
        return await self._decide(order_id, principal, False, reason, step)

    async def _decide(self, order_id: str, principal: Principal | None, approve: bool,
                      reason: str | None, step: int | None) -> Order:
        p = require_permission(principal, Permission.CATALOGUE_APPROVE, "approve orders")

        async def work(tx: CountingTx) -> Order:
            order = await self._locked(tx, order_id)
            if order.requester == p.user:
                raise _forbidden("you cannot approve or reject your own order")
            if order.status is not OrderStatus.AWAITING_APPROVAL:
                raise _conflict("id", f"order {order_id!r} is {order.status.value}; it is "
                                "not waiting for approval")
            steps = await CatalogRepository.steps_in_tx(tx, order_id)
            current = next(s for s in steps if s.index == order.step_index)
            if step is not None and step != current.index:
                raise _conflict("step", f"step {step} is no longer the one waiting "
                                f"(step {current.index} is)")
            # A catalogue admin may stand in for any approver, except on a step only its
            # approvers may decide (a cost centre owner's consent to be charged).
            may = (p.user in current.approvers
                   or (_manages(p) and not current.approvers_only)
                   or (current.kind is StepKind.ROLE and current.role in p.roles))
            if not may:
                who = current.role if current.kind is StepKind.ROLE else \
                    ", ".join(current.approvers)
                raise _forbidden(f"step {current.index + 1} ({current.kind.value}) waits "
                                 f"for {who}, not you" + (
                                     f" (only an owner of {order.cost_centre_code} may agree "
                                     "to charge it)" if current.approvers_only else ""))
            decision = StepStatus.APPROVED if approve else StepStatus.REJECTED
            decided = await tx.one(q.DECIDE_STEP, {
                "id": order_id, "index": current.index, "revision": order.revision,
                "decision": decision.value, "by": p.user, "reason": reason, "now": utcnow()})
            if decided is None:
                raise _conflict("id", "this approval step was decided meanwhile")
            label = f"step {current.index + 1} ({current.kind.value})"
            if not approve:
                await tx.rows(q.CANCEL_STEPS, {"id": order_id})
                return await self._move(tx, order, OrderStatus.REJECTED, p.user,
                                        f"{label} rejected: {reason}")
            nxt = next((s for s in steps if s.index > current.index
                        and s.status is StepStatus.WAITING), None)
            text = f"{label} approved" + (f": {reason}" if reason else "")
            if nxt is None:
                return await self._move(tx, order, OrderStatus.APPROVED, p.user, text)
            await tx.rows(q.OPEN_STEP, {"id": order_id, "index": nxt.index})
            return await self._move(tx, order, OrderStatus.AWAITING_APPROVAL, p.user,
                                    f"{text}; waiting for step {nxt.index + 1} "
                                    f"({nxt.kind.value})", step_index=nxt.index)

        try:
            return await self.db.write_tx(work)
        except ConstraintError:
            raise _conflict("id", "this approval step was decided meanwhile") from None

    async def cancel(self, order_id: str, principal: Principal | None,
                     reason: str | None = None) -> Order:
        """The requester (or a catalogue admin) withdraws an order before fulfilment."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "cancel orders")

        async def work(tx: CountingTx) -> Order:
            order = await self._locked(tx, order_id)
            if order.requester != p.user and not _manages(p):
                raise NotFound("order", order_id)
            moved = await self._move(tx, order, OrderStatus.CANCELLED, p.user,
                                     reason or "cancelled")
            await tx.rows(q.CANCEL_STEPS, {"id": order_id})
            return moved

        return await self.db.write_tx(work)

    # --- fulfilment -----------------------------------------------------------------------

    async def retry(self, order_id: str, principal: Principal | None) -> Order:
        """Run the fulfilment of a FAILED order again, or start that of an APPROVED one whose
        start was interrupted (its requester or a catalogue admin)."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "retry fulfilment")
        found = await self.repo.orders_by_id([order_id])
        order = found.get(order_id)
        if order is None or (order.requester != p.user and not _manages(p)):
            raise NotFound("order", order_id)
        if order.status not in (OrderStatus.FAILED, OrderStatus.APPROVED):
            raise _conflict("id", f"order {order_id!r} is {order.status.value}; only a "
                            "FAILED (or APPROVED, not yet started) order can be retried")
        return await self._fulfil(order_id, p.user)

    async def _fulfil_quietly(self, order_id: str) -> Order:
        """Fulfil an order just approved; a concurrent start is not an error here."""
        try:
            return await self._fulfil(order_id, SYSTEM)
        except DomainError:
            found = await self.repo.orders_by_id([order_id])
            return found[order_id]

    async def _fulfil(self, order_id: str, by: str) -> Order:
        async def start(tx: CountingTx) -> tuple[Order, bool]:
            order = await self._locked(tx, order_id)
            version = await CatalogRepository.version_in_tx(tx, order.version_id)
            order = await self._move(tx, order, OrderStatus.FULFILLING, by,
                                     f"fulfilment attempt {order.attempts + 1}", attempt=True)
            if not version.recipe.tasks:
                return order, False
            await tx.rows(q.CREATE_TASKS, {"id": order_id, "now": utcnow(), "tasks": [
                {"id": str(uuid.uuid4()), "index": i, "name": t.name,
                 "description": t.description, "group": t.group}
                for i, t in enumerate(version.recipe.tasks)]})
            await tx.rows(q.REOPEN_TASKS, {"id": order_id})
            tasks = await CatalogRepository.tasks_in_tx(tx, order_id)
            return order, any(t.status is not TaskStatus.DONE for t in tasks)

        order, waiting = await self.db.write_tx(start)
        if waiting:
            return order
        return await self._run_recipe(order_id, by)

    async def _run_recipe(self, order_id: str, by: str) -> Order:
        try:
            return await self.db.write_tx(lambda tx: self._provision(tx, order_id, by))
        except (DomainError, Neo4jError) as e:
            if is_unavailable(e):  # not the order's fault: it stays FULFILLING, to carry on
                raise
            message = (e.errors[0].message if isinstance(e, DomainError) and e.errors
                       else f"the database refused the fulfilment ({getattr(e, 'code', e)})")
            if isinstance(e, DomainError) and e.errors and e.errors[0].field:
                message = f"{e.errors[0].field}: {message}"
            log.warning("fulfilment of order %s failed: %s", order_id, message)

            async def fail(tx: CountingTx) -> Order:
                order = await self._locked(tx, order_id)
                if order.status is not OrderStatus.FULFILLING:
                    return order
                return await self._move(tx, order, OrderStatus.FAILED, by,
                                        f"fulfilment failed: {message}", error=message)

            return await self.db.write_tx(fail)

    async def _provision(self, tx: CountingTx, order_id: str, by: str) -> Order:
        """Everything the recipe makes, in the caller's one transaction."""
        order = await self._locked(tx, order_id)
        if order.status is not OrderStatus.FULFILLING:
            return order
        recipe = (await CatalogRepository.version_in_tx(tx, order.version_id)).recipe
        values = {**order.form, "order": order.id[:8], "user": order.requester,
                  "costCentre": order.cost_centre_code}
        names = {recipe_ref for r in recipe.relationships for recipe_ref in (r.source, r.target)
                 if not recipe_ref.startswith("ci:")} | {f"service:{recipe.service}"}
        resolved: dict[str, tuple[str, str]] = {}
        if names:
            rows = await tx.rows(q.RESOLVE_NAMES, {"refs": [
                {"kind": n.split(":", 1)[0], "name": n.split(":", 1)[1]} for n in names]})
            resolved = {r["ref"]: (r["id"], r["cls"]) for r in rows if r["id"] is not None}
        missing = sorted(names - resolved.keys())
        if missing:
            raise DomainError.single("recipe", "not found (or retired): " + ", ".join(missing),
                                     "NOT_FOUND")
        cc_row = await tx.one(q.COST_CENTRE_ID, {"code": order.cost_centre_code})
        cc_id = cc_row["id"] if cc_row else None
        now = utcnow()
        for i, c in enumerate(recipe.cis):
            ci_id = str(uuid.uuid4())
            field = f"recipe.cis[{i}]"
            try:
                ids = Identifiers(host_name=render(c.host_name, values) if c.host_name else None,
                                  domain=c.domain)
            except ValidationError as e:
                raise DomainError.single(f"{field}.hostName",
                                         str(e.errors()[0]["msg"])) from None
            conflicts = await InventoryRepository.identifier_conflicts(tx, ci_id, ids)
            if conflicts:
                f, value, held = conflicts[0]
                raise DomainError.single(f"{field}.{f}", f"{value!r} already identifies CI "
                                         f"{held!r}", "CONFLICT")
            attributes: dict[str, Any] = {
                k: render(v, values) if isinstance(v, str) else v
                for k, v in c.attributes.items()}
            attributes.update({"catalogueOrderId": order.id, "consumer": order.requester})
            name = render(c.name, values)
            props = common_properties({
                "name": name, "description": render(c.description, values)
                if c.description else None,
                "lifecycle_status": LifecycleStatus.IN_SERVICE,
                "operational_state": c.operational_state, "criticality": c.criticality,
                "attributes": attributes})
            props.update({k: v for k, v in identifier_properties(ids).items() if v})
            props["ciClass"] = c.ci_class.value
            props["source"] = "catalogue"
            await InventoryRepository.create(tx, ci_id, c.ci_class, props,
                                             ref_params({"cost_centre_id": cc_id}), now)
            resolved[f"ci:{c.key}"] = (ci_id, c.ci_class.value)
        for i, r in enumerate(recipe.relationships):
            (s_id, s_cls), (t_id, t_cls) = resolved[r.source], resolved[r.target]
            why = rule_violation(r.type, s_cls, t_cls)
            if why:
                raise DomainError.single(f"recipe.relationships[{i}]", why)
            await RelationRepository.upsert(tx, RelationType(r.type), s_id, t_id,
                                            attribute_properties(dict(r.properties)), now)
        ci_ids = [resolved[f"ci:{c.key}"][0] for c in recipe.cis]
        if ci_ids:
            await propagate(tx, ci_ids, f"catalogue order {order.id} fulfilled", now)
        service_id, service_cls = resolved[f"service:{recipe.service}"]
        assert service_cls == SERVICE
        subscription_id = str(uuid.uuid4())
        await tx.rows(q.CREATE_SUBSCRIPTION, {
            "id": subscription_id, "orderId": order.id, "serviceId": service_id,
            "ciIds": ci_ids, "now": now})
        return await self._move(tx, order, OrderStatus.FULFILLED, by,
                                f"provisioned {len(ci_ids)} CI(s); subscription "
                                f"{subscription_id}")

    async def finish_task(self, task_id: str, principal: Principal | None, done: bool,
                          note: str | None = None) -> FulfilmentTask:
        """Mark a manual task done (the recipe runs when the last one is) or failed (the
        order fails; a retry reopens failed tasks)."""
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "work fulfilment tasks")
        if not done and not (note and note.strip()):
            raise DomainError.single("note", "say why the task failed")

        async def work(tx: CountingTx) -> tuple[FulfilmentTask, bool]:
            row = await tx.one(q.GET_TASK, {"id": task_id})
            if row is None:
                raise NotFound("fulfilment task", task_id)
            order = await self._locked(tx, row["task"]["orderId"])
            if order.status is not OrderStatus.FULFILLING:
                raise _conflict("id", f"its order is {order.status.value}, not FULFILLING")
            out = await tx.one(q.FINISH_TASK, {
                "id": task_id, "status": (TaskStatus.DONE if done else TaskStatus.FAILED).value,
                "by": p.user, "note": note, "now": utcnow()})
            if out is None:
                raise _conflict("id", f"task {task_id!r} is {row['task']['status']}, not OPEN")
            task = task_from_row(out["task"])
            if not done:
                await self._move(tx, order, OrderStatus.FAILED, p.user,
                                 f"task {task.name!r} failed: {note}",
                                 error=f"task {task.name!r} failed: {note}")
                return task, False
            tasks = await CatalogRepository.tasks_in_tx(tx, order.id)
            return task, all(t.status is TaskStatus.DONE for t in tasks)

        task, ready = await self.db.write_tx(work)
        if ready:
            await self._run_recipe(task.order_id, p.user)
        return task

    # --- subscriptions --------------------------------------------------------------------

    async def subscriptions(self, principal: Principal | None,
                            statuses: list[SubscriptionStatus] | None, first: int | None,
                            everyone: bool = False) -> list[Subscription]:
        p = require_permission(principal, Permission.CATALOGUE_READ, "read subscriptions")
        if everyone:
            require_permission(p, Permission.CATALOGUE_MANAGE, "read every subscription")
        return await self.repo.subscriptions(
            None if everyone else p.user, [s.value for s in statuses] if statuses else None,
            _first(first))

    async def readable_subscriptions(self, principal: Principal | None, ids: list[str]
                                     ) -> dict[str, Subscription]:
        p = require_permission(principal, Permission.CATALOGUE_READ, "read subscriptions")
        found = await self.repo.subscriptions_by_id(ids)
        if _manages(p):
            return found
        return {i: s for i, s in found.items() if s.consumer == p.user}

    async def decommission(self, subscription_id: str, principal: Principal | None,
                           reason: str | None = None) -> Subscription:
        """End a subscription now: billing stops, its CIs retire (health re-rolled), and
        its order becomes DECOMMISSIONED, in one transaction."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "decommission")

        async def work(tx: CountingTx) -> Subscription:
            now = utcnow()
            row = await tx.one(q.LOCK_SUBSCRIPTION, {"id": subscription_id, "now": now})
            if row is None:
                raise NotFound("subscription", subscription_id)
            sub = subscription_from_row(row["subscription"])
            if sub.consumer != p.user and not _manages(p):
                raise NotFound("subscription", subscription_id)
            if sub.status is SubscriptionStatus.ENDED:
                raise _conflict("id", f"subscription {subscription_id!r} has ended")
            text = reason or "decommissioned"
            live = [r["id"] for r in await tx.rows(q.LIVE_ITEMS, {"ids": sub.ci_ids})]
            consumers = [i for i in await upward_closure(tx, live) if i not in live]
            for ci_id in live:
                await InventoryRepository.retire(
                    tx, ci_id, f"subscription {sub.id} decommissioned: {text}", now)
            await recompute(tx, consumers, f"subscription {sub.id} decommissioned", now)
            ended = await tx.one(q.END_SUBSCRIPTION, {"id": sub.id, "by": p.user,
                                                      "reason": text, "now": now})
            assert ended is not None
            order = await self._locked(tx, sub.order_id)
            await self._move(tx, order, OrderStatus.DECOMMISSIONED, p.user, text)
            return subscription_from_row(ended["subscription"])

        return await self.db.write_tx(work)


def _allowed(status: OrderStatus) -> frozenset[OrderStatus]:
    return TRANSITIONS[status]
