"""What every catalogue use case shares: its dependencies, the order's write lock and the one
place an order's status changes.

Concurrency: every change of an order starts by taking the order's write lock
(``lock_order``), so two callers acting on one order run one after the other, and the second
sees what the first committed. The status change itself is conditional (allowed source
status and the revision read), so a move from a stale read is refused."""

from __future__ import annotations

import uuid
from typing import Any

from cmdb.catalog.models import TRANSITIONS, Order, OrderChange, OrderStatus, sources_of
from cmdb.catalog.repository import CatalogRepository
from cmdb.chargeback.service import ChargebackService
from cmdb.core.clock import utcnow
from cmdb.core.feed import Feed
from cmdb.core.models import DomainError, NotFound
from cmdb.core.pagination import check_page_size
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Permission, Principal, has_permission
from cmdb.settings import Settings

# Who moves an order when no person does (automatic approval, fulfilment after approval).
SYSTEM = "system:fulfilment"
MAX_LIST = 500


def conflict(field: str | None, message: str) -> DomainError:
    return DomainError.single(field, message, "CONFLICT")


def forbidden(message: str) -> DomainError:
    return DomainError.single(None, message, "FORBIDDEN")


def page_size(first: int | None) -> int:
    return check_page_size(50 if first is None else first, MAX_LIST)


def manages(p: Principal) -> bool:
    return has_permission(p, Permission.CATALOGUE_MANAGE)


class CatalogBase:
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

    @staticmethod
    def _visibility(p: Principal) -> dict[str, Any]:
        """Parameters of the statements that read only the items ``p`` may order."""
        return {"all": manages(p), "roles": sorted(p.roles), "user": p.user,
                "nowText": utcnow().strftime("%Y-%m-%dT%H:%M:%S")}

    @staticmethod
    async def _move(
        tx: CountingTx, order: Order, to: OrderStatus, by: str, reason: str | None,
        step_index: int | None = None, attempt: bool = False, error: str | None = None,
    ) -> Order:
        if to not in TRANSITIONS[order.status]:
            raise conflict("id", f"order {order.id!r} is {order.status.value}; it cannot "
                           f"become {to.value}")
        moved = await CatalogRepository.move_order(tx, {
            "id": order.id, "from": sources_of(to), "revision": order.revision,
            "to": to.value, "by": by, "reason": reason, "now": utcnow(),
            "stepIndex": step_index, "attempt": 1 if attempt else 0, "error": error,
            "clearError": attempt, "transitionId": str(uuid.uuid4())})
        if moved is None:
            raise conflict("id", f"order {order.id!r} changed meanwhile; read it again")
        return moved

    @staticmethod
    async def _locked(tx: CountingTx, order_id: str, field: str = "id") -> Order:
        order = await CatalogRepository.lock_order(tx, order_id, utcnow())
        if order is None:
            raise NotFound("order", order_id, field)
        return order
