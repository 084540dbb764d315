"""Ordering: submitting an order at a quoted price, reading and watching orders, cancelling."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from cmdb.catalog.approvals import route
from cmdb.catalog.base import SYSTEM, conflict, manages, page_size
from cmdb.catalog.forms import validate_form, with_defaults
from cmdb.catalog.fulfilment import Fulfilment
from cmdb.catalog.items import CatalogItems
from cmdb.catalog.models import (
    CatalogueItem,
    ItemStatus,
    Order,
    OrderStatus,
    OrderSubmit,
    Quote,
    StepStatus,
    Transition,
)
from cmdb.catalog.repository import CatalogRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import NotFound
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, has_permission, require_permission

# A watch of an order ends when nothing more is expected of it.
WATCH_ENDS = frozenset({OrderStatus.REJECTED, OrderStatus.CANCELLED, OrderStatus.FULFILLED,
                        OrderStatus.DECOMMISSIONED})


def _repeat(order: Order, fingerprint: str | None, expected: str) -> tuple[Order, bool]:
    """The order an idempotency key made before, if it was made for the same request."""
    if fingerprint != expected:
        raise conflict("input.idempotencyKey", "this idempotency key was used for a "
                       "different order; use a new key for a new order")
    return order, False


class Ordering(Fulfilment, CatalogItems):
    """Orders from the requester's side; a submitted order needing no approval is fulfilled
    at once."""

    async def submit(self, data: dict[str, Any], principal: Principal | None
                     ) -> tuple[Order, bool]:
        """Place an order; returns it and whether it was made now (False: the same
        idempotency key was used before by this requester, and that order is returned)."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "order from the catalogue")
        spec = validate(OrderSubmit, data)
        item = await self.repo.item({**self._visibility(p), "id": spec.item_id})
        if item is None:
            raise NotFound("catalogue item", spec.item_id, "input.itemId")
        # The price agreed to: the plan's fees and the rate cards in force at submission.
        quoted = await self._quote(item.current.price_plan, utcnow())
        order, created = await self.db.write_tx(
            lambda tx: self._place(tx, p, spec, item, quoted))
        # Also for an order sent again: its fulfilment may have been cut off before (the
        # database gone between the transactions); sending it again carries it on.
        if order.status is OrderStatus.APPROVED:
            order = await self._fulfil_quietly(order.id)
        elif not created and order.status is OrderStatus.FULFILLING:
            order = await self._resume_recipe(order)
        return order, created

    async def _place(self, tx: CountingTx, p: Principal, spec: OrderSubmit,
                     item: CatalogueItem, quoted: Quote) -> tuple[Order, bool]:
        """The order of the requester's idempotency key: made now, or the one made before."""
        fingerprint = hashlib.sha256(json.dumps(
            {"item": spec.item_id, "form": spec.form, "cc": spec.cost_centre_code},
            sort_keys=True, default=str).encode()).hexdigest()
        scope = f"{p.user}\u0000{spec.idempotency_key}"
        existing = await CatalogRepository.find_order(tx, scope)
        if existing is not None:
            return _repeat(*existing, fingerprint)
        # Only a new request goes on: checks that may fail come before the MERGE below.
        version = item.current
        if item.status is ItemStatus.RETIRED:
            raise conflict("input.itemId", f"{version.name!r} is retired and cannot be "
                           "ordered")
        form = with_defaults(version.form_schema, spec.form)
        validate_form(version.form_schema, form)
        cc, steps = await route(tx, p.user, spec.cost_centre_code, version)
        price = version.price_plan
        order_id = str(uuid.uuid4())
        now = quoted.quoted_at
        order, stored, created = await CatalogRepository.merge_order(tx, scope, order_id, now, {
            "requester": p.user, "itemId": item.id, "versionId": version.id,
            "itemVersion": version.version, "itemName": version.name,
            "costCentreCode": cc, "form": json.dumps(form, sort_keys=True),
            "status": OrderStatus.SUBMITTED.value, "currency": price.currency,
            "oneOffFee": str(price.one_off), "monthlyFee": str(price.monthly),
            "comment": spec.comment, "fingerprint": fingerprint,
            "idempotencyKey": spec.idempotency_key, "quote": quoted.model_dump_json()})
        if not created:  # a twin committed between the two statements
            return _repeat(order, stored, fingerprint)
        pending = next((s for s in steps if s["status"] == StepStatus.PENDING.value), None)
        await CatalogRepository.link_order(tx, order_id, steps,
                                           pending["index"] if pending else -1)
        await CatalogRepository.first_transition(tx, order_id, p.user, now, str(uuid.uuid4()),
                                                 spec.comment or "submitted")
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

    async def cancel(self, order_id: str, principal: Principal | None,
                     reason: str | None = None) -> Order:
        """The requester (or a catalogue admin) withdraws an order before fulfilment."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "cancel orders")

        async def work(tx: CountingTx) -> Order:
            order = await self._locked(tx, order_id)
            if order.requester != p.user and not manages(p):
                raise NotFound("order", order_id)
            moved = await self._move(tx, order, OrderStatus.CANCELLED, p.user,
                                     reason or "cancelled")
            await CatalogRepository.cancel_steps(tx, order_id)
            return moved

        return await self.db.write_tx(work)

    # --- reading ---

    async def readable_orders(self, principal: Principal | None, ids: list[str]
                              ) -> dict[str, Order]:
        """The orders among ``ids`` the caller may read: their own, those they approve (or
        may approve), every one for catalogue admins."""
        p = require_permission(principal, Permission.CATALOGUE_READ, "read orders")
        found = await self.repo.orders_by_id(ids)
        if manages(p):
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
                                      page_size(first))

    async def transitions(self, ids: list[str]) -> list[list[Transition]]:
        found = await self.repo.transitions(ids)
        return [found.get(i, []) for i in ids]

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
