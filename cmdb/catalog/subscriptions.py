"""Subscriptions: what a fulfilled order became, read by its consumer, and decommissioned."""

from __future__ import annotations

from cmdb.catalog.base import CatalogBase, conflict, manages, page_size
from cmdb.catalog.models import OrderStatus, Subscription, SubscriptionStatus
from cmdb.catalog.repository import CatalogRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import NotFound
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items import writes


class Subscriptions(CatalogBase):
    async def subscriptions(self, principal: Principal | None,
                            statuses: list[SubscriptionStatus] | None, first: int | None,
                            everyone: bool = False) -> list[Subscription]:
        p = require_permission(principal, Permission.CATALOGUE_READ, "read subscriptions")
        if everyone:
            require_permission(p, Permission.CATALOGUE_MANAGE, "read every subscription")
        return await self.repo.subscriptions(
            None if everyone else p.user, [s.value for s in statuses] if statuses else None,
            page_size(first))

    async def readable_subscriptions(self, principal: Principal | None, ids: list[str]
                                     ) -> dict[str, Subscription]:
        p = require_permission(principal, Permission.CATALOGUE_READ, "read subscriptions")
        found = await self.repo.subscriptions_by_id(ids)
        if manages(p):
            return found
        return {i: s for i, s in found.items() if s.consumer == p.user}

    async def decommission(self, subscription_id: str, principal: Principal | None,
                           reason: str | None = None) -> Subscription:
        """End a subscription now: billing stops, its CIs retire (health re-rolled), and
        its order becomes DECOMMISSIONED, in one transaction."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "decommission")

        async def work(tx: CountingTx) -> Subscription:
            now = utcnow()
            sub = await CatalogRepository.lock_subscription(tx, subscription_id, now)
            if sub is None or (sub.consumer != p.user and not manages(p)):
                raise NotFound("subscription", subscription_id)
            if sub.status is SubscriptionStatus.ENDED:
                raise conflict("id", f"subscription {subscription_id!r} has ended")
            text = reason or "decommissioned"
            live = await CatalogRepository.live_items(tx, sub.ci_ids)
            await writes.retire_items(
                tx, live, f"subscription {sub.id} decommissioned: {text}", now,
                cause=f"subscription {sub.id} decommissioned")
            ended = await CatalogRepository.end_subscription(tx, sub.id, p.user, text, now)
            order = await self._locked(tx, sub.order_id)
            await self._move(tx, order, OrderStatus.DECOMMISSIONED, p.user, text)
            return ended

        return await self.db.write_tx(work)
