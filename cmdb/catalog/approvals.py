"""Approval: the steps an order needs (its route), and deciding them.

An approval decision is a node with a unique step key: two approvers deciding the same step
at once cannot both succeed, whatever the timing."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from neo4j.exceptions import ConstraintError

from cmdb.catalog.base import conflict, forbidden, manages, page_size
from cmdb.catalog.fulfilment import Fulfilment
from cmdb.catalog.models import (
    ApprovalStep,
    ItemVersion,
    Order,
    OrderStatus,
    StepKind,
    StepOrigin,
    StepStatus,
)
from cmdb.catalog.repository import CatalogRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, NotFound
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, require_permission


async def route(tx: CountingTx, user: str, cost_centre: str | None, version: ItemVersion
                ) -> tuple[str, list[dict[str, Any]]]:
    """The order's cost centre and its approval steps with their approvers.

    The item's policy gives the steps. An order charged to a cost centre that is not the
    requester's own (one they are in, or own) also needs the consent of that cost
    centre's owner: an unskippable COST_CENTRE_OWNER step only its owners may decide,
    added after the policy's steps unless the policy already has one that is not
    skipped (that step is then the consent). With no owner there, nobody could consent:
    the order is refused."""
    managers, own = await CatalogRepository.person(tx, user)
    if cost_centre is None:
        if len(own) != 1:
            raise DomainError.single(
                "input.costCentreCode", "no cost centre is recorded for you; give one"
                if not own else "you belong to several cost centres; give one")
        cost_centre = own[0]
    owners = await CatalogRepository.cost_centre_owners(tx, cost_centre)
    if owners is None:
        raise NotFound("cost centre", cost_centre, "input.costCentreCode")
    cross_charge = cost_centre not in own and user not in owners
    if cross_charge and not owners:
        raise DomainError.single(
            "input.costCentreCode", f"{cost_centre} is not your cost centre and has no "
            "owner who could agree to be charged; order on your own cost centre, or ask "
            f"for an owner of {cost_centre} to be recorded", "FORBIDDEN")
    consent = (f"the order is charged to {cost_centre}, which is not {user}'s cost "
               "centre: its owner must agree") if cross_charge else None
    return cost_centre, _steps(version, cost_centre, managers, owners, consent)


def _steps(version: ItemVersion, cost_centre: str, managers: list[str], owners: list[str],
           consent: str | None) -> list[dict[str, Any]]:
    """The policy's steps, and the cost centre owner's ``consent`` when it is needed."""
    first_year: Decimal = version.price_plan.first_year
    steps: list[dict[str, Any]] = []
    opened = False
    consented = False
    for index, s in enumerate(version.approval_policy.steps):
        approvers: list[str] = []
        if s.kind is StepKind.MANAGER:
            approvers = list(managers)
        elif s.kind is StepKind.COST_CENTRE_OWNER:
            approvers = owners
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
        if consent and not skipped and not consented and s.kind is StepKind.COST_CENTRE_OWNER:
            consented = only = True
            why += f"; also, {consent}"
        status = (StepStatus.SKIPPED if skipped else
                  StepStatus.WAITING if opened else StepStatus.PENDING)
        opened = opened or status is StepStatus.PENDING
        steps.append(_step(index, s.kind, s.role, s.above, approvers, status,
                           StepOrigin.POLICY, why, only))
    if consent and not consented:
        steps.append(_step(
            len(steps), StepKind.COST_CENTRE_OWNER, None, None, owners,
            StepStatus.WAITING if opened else StepStatus.PENDING,
            StepOrigin.CROSS_CHARGE, consent, True))
    return steps


def _step(index: int, kind: StepKind, role: str | None, above: Decimal | None,
          approvers: list[str], status: StepStatus, origin: StepOrigin, why: str,
          approvers_only: bool) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "index": index, "kind": kind.value, "role": role,
            "above": str(above) if above is not None else None, "approvers": approvers,
            "status": status.value, "origin": origin.value, "why": why,
            "approversOnly": approvers_only}


def _check_may_decide(p: Principal, order: Order, current: ApprovalStep) -> None:
    """A catalogue admin may stand in for any approver, except on a step only its
    approvers may decide (a cost centre owner's consent to be charged)."""
    may = (p.user in current.approvers
           or (manages(p) and not current.approvers_only)
           or (current.kind is StepKind.ROLE and current.role in p.roles))
    if not may:
        who = current.role if current.kind is StepKind.ROLE else ", ".join(current.approvers)
        raise forbidden(f"step {current.index + 1} ({current.kind.value}) waits "
                        f"for {who}, not you" + (
                            f" (only an owner of {order.cost_centre_code} may agree "
                            "to charge it)" if current.approvers_only else ""))


class Approvals(Fulfilment):
    """Deciding approval steps; the last approval starts fulfilment."""

    async def approval_queue(self, principal: Principal | None, first: int | None
                             ) -> list[Order]:
        p = require_permission(principal, Permission.CATALOGUE_APPROVE, "approve orders")
        return await self.repo.approval_queue(p.user, sorted(p.roles), manages(p),
                                              page_size(first))

    async def steps(self, ids: list[str]) -> list[list[ApprovalStep]]:
        found = await self.repo.steps(ids)
        return [found.get(i, []) for i in ids]

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
                raise forbidden("you cannot approve or reject your own order")
            if order.status is not OrderStatus.AWAITING_APPROVAL:
                raise conflict("id", f"order {order_id!r} is {order.status.value}; it is "
                               "not waiting for approval")
            steps = await CatalogRepository.steps_in_tx(tx, order_id)
            current = next(s for s in steps if s.index == order.step_index)
            if step is not None and step != current.index:
                raise conflict("step", f"step {step} is no longer the one waiting "
                               f"(step {current.index} is)")
            _check_may_decide(p, order, current)
            decision = StepStatus.APPROVED if approve else StepStatus.REJECTED
            if not await CatalogRepository.decide_step(tx, {
                    "id": order_id, "index": current.index, "revision": order.revision,
                    "decision": decision.value, "by": p.user, "reason": reason,
                    "now": utcnow()}):
                raise conflict("id", "this approval step was decided meanwhile")
            return await self._after_decision(tx, order, steps, current, approve, reason,
                                              p.user)

        try:
            return await self.db.write_tx(work)
        except ConstraintError:
            raise conflict("id", "this approval step was decided meanwhile") from None

    async def _after_decision(self, tx: CountingTx, order: Order, steps: list[ApprovalStep],
                              current: ApprovalStep, approve: bool, reason: str | None,
                              by: str) -> Order:
        """Move the order on: rejected, approved, or waiting for its next step."""
        label = f"step {current.index + 1} ({current.kind.value})"
        if not approve:
            await CatalogRepository.cancel_steps(tx, order.id)
            return await self._move(tx, order, OrderStatus.REJECTED, by,
                                    f"{label} rejected: {reason}")
        nxt = next((s for s in steps if s.index > current.index
                    and s.status is StepStatus.WAITING), None)
        text = f"{label} approved" + (f": {reason}" if reason else "")
        if nxt is None:
            return await self._move(tx, order, OrderStatus.APPROVED, by, text)
        await CatalogRepository.open_step(tx, order.id, nxt.index)
        return await self._move(tx, order, OrderStatus.AWAITING_APPROVAL, by,
                                f"{text}; waiting for step {nxt.index + 1} "
                                f"({nxt.kind.value})", step_index=nxt.index)
