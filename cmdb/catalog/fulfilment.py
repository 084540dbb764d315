"""Fulfilment: an approved order's manual tasks, then its recipe run in one transaction.

The recipe's CIs, relationships, health roll-up, the subscription and the move to FULFILLED
commit together or not at all. When the run fails, a second transaction records FAILED with
the reason; ``retry`` runs it again."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any

from neo4j.exceptions import Neo4jError
from pydantic import ValidationError

from cmdb.catalog.base import SYSTEM, CatalogBase, conflict, manages, page_size
from cmdb.catalog.forms import render
from cmdb.catalog.models import (
    FulfilmentTask,
    Order,
    OrderStatus,
    Recipe,
    RecipeCI,
    TaskStatus,
)
from cmdb.catalog.repository import CatalogRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, LifecycleStatus, NotFound
from cmdb.core.values import attribute_properties
from cmdb.db.availability import is_unavailable
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items import writes
from cmdb.items.models import SERVICE, Identifiers, RelationType, class_labels, rule_violation
from cmdb.items.properties import common_properties, ref_params
from cmdb.items.repository import InventoryRepository, identifier_properties

log = logging.getLogger("cmdb.catalog")

# Where a recipe's names resolve: kind:name or ci:key -> (id, class).
Resolved = dict[str, tuple[str, str]]


async def create_recipe_items(tx: CountingTx, order: Order, recipe: Recipe,
                              resolved: Resolved, cost_centre_id: str | None,
                              now: datetime) -> list[str]:
    """Create the recipe's CIs and relationships and roll health up from the new CIs, in the
    caller's transaction; returns the new CIs' ids. ``resolved`` holds the existing services
    and CIs the recipe names."""
    values = {**order.form, "order": order.id[:8], "user": order.requester,
              "costCentre": order.cost_centre_code}
    ends = dict(resolved)
    for i, c in enumerate(recipe.cis):
        ci_id = str(uuid.uuid4())
        ids = _identifiers(c, values, f"recipe.cis[{i}]")
        conflicts = await InventoryRepository.identifier_conflicts(tx, ci_id, ids)
        if conflicts:
            f, value, held = conflicts[0]
            raise DomainError.single(f"recipe.cis[{i}].{f}", f"{value!r} already identifies "
                                     f"CI {held!r}", "CONFLICT")
        props = _ci_properties(c, values, order, ids)
        await writes.create_item(tx, ci_id, class_labels(c.ci_class), props,
                                 ref_params({"cost_centre_id": cost_centre_id}), now, cause=None)
        ends[f"ci:{c.key}"] = (ci_id, c.ci_class.value)
    for i, r in enumerate(recipe.relationships):
        (s_id, s_cls), (t_id, t_cls) = ends[r.source], ends[r.target]
        why = rule_violation(r.type, s_cls, t_cls)
        if why:
            raise DomainError.single(f"recipe.relationships[{i}]", why)
        await writes.relate(tx, RelationType(r.type), s_id, t_id,
                            attribute_properties(dict(r.properties)), now, cause=None)
    ci_ids = [ends[f"ci:{c.key}"][0] for c in recipe.cis]
    if ci_ids:
        await writes.roll_up(tx, ci_ids, f"catalogue order {order.id} fulfilled", now)
    return ci_ids


def _identifiers(c: RecipeCI, values: dict[str, Any], field: str) -> Identifiers:
    try:
        return Identifiers(host_name=render(c.host_name, values) if c.host_name else None,
                           domain=c.domain)
    except ValidationError as e:
        raise DomainError.single(f"{field}.hostName", str(e.errors()[0]["msg"])) from None


def _ci_properties(c: RecipeCI, values: dict[str, Any], order: Order, ids: Identifiers
                   ) -> dict[str, Any]:
    """Node properties of a recipe's CI, its placeholders filled from ``values``."""
    attributes: dict[str, Any] = {
        k: render(v, values) if isinstance(v, str) else v for k, v in c.attributes.items()}
    attributes.update({"catalogueOrderId": order.id, "consumer": order.requester})
    props = common_properties({
        "name": render(c.name, values),
        "description": render(c.description, values) if c.description else None,
        "lifecycle_status": LifecycleStatus.IN_SERVICE,
        "operational_state": c.operational_state, "criticality": c.criticality,
        "attributes": attributes})
    props.update({k: v for k, v in identifier_properties(ids).items() if v})
    props["ciClass"] = c.ci_class.value
    props["source"] = "catalogue"
    return props


async def _resolve(tx: CountingTx, recipe: Recipe) -> Resolved:
    """The live services and CIs the recipe names; refused when one is missing."""
    names = {ref for r in recipe.relationships for ref in (r.source, r.target)
             if not ref.startswith("ci:")} | {f"service:{recipe.service}"}
    resolved = await CatalogRepository.resolve_names(tx, [
        {"kind": n.split(":", 1)[0], "name": n.split(":", 1)[1]} for n in names])
    missing = sorted(names - resolved.keys())
    if missing:
        raise DomainError.single("recipe", "not found (or retired): " + ", ".join(missing),
                                 "NOT_FOUND")
    return resolved


def _failure(e: DomainError | Neo4jError) -> str:
    """What a failed run records as the order's error."""
    message = (e.errors[0].message if isinstance(e, DomainError) and e.errors
               else f"the database refused the fulfilment ({getattr(e, 'code', e)})")
    if isinstance(e, DomainError) and e.errors and e.errors[0].field:
        message = f"{e.errors[0].field}: {message}"
    return message


class Fulfilment(CatalogBase):
    """Starting, resuming and retrying fulfilment; manual tasks."""

    async def retry(self, order_id: str, principal: Principal | None) -> Order:
        """Run the fulfilment of a FAILED order again, or start that of an APPROVED one whose
        start was interrupted (its requester or a catalogue admin)."""
        p = require_permission(principal, Permission.CATALOGUE_ORDER, "retry fulfilment")
        found = await self.repo.orders_by_id([order_id])
        order = found.get(order_id)
        if order is None or (order.requester != p.user and not manages(p)):
            raise NotFound("order", order_id)
        if order.status not in (OrderStatus.FAILED, OrderStatus.APPROVED):
            raise conflict("id", f"order {order_id!r} is {order.status.value}; only a "
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
            await CatalogRepository.create_tasks(tx, order_id, utcnow(), [
                {"id": str(uuid.uuid4()), "index": i, "name": t.name,
                 "description": t.description, "group": t.group}
                for i, t in enumerate(version.recipe.tasks)])
            await CatalogRepository.reopen_tasks(tx, order_id)
            tasks = await CatalogRepository.tasks_in_tx(tx, order_id)
            return order, any(t.status is not TaskStatus.DONE for t in tasks)

        order, waiting = await self.db.write_tx(start)
        if waiting:
            return order
        return await self._run_recipe(order_id, by)

    async def _resume_recipe(self, order: Order) -> Order:
        """Run the recipe of a FULFILLING order with no manual task open (its run was cut
        off). Safe beside a run in progress: ``_provision`` locks the order and does nothing
        once it has left FULFILLING."""
        tasks = (await self.repo.tasks_of([order.id])).get(order.id, [])
        if any(t.status is not TaskStatus.DONE for t in tasks):
            return order
        return await self._run_recipe(order.id, SYSTEM)

    async def _run_recipe(self, order_id: str, by: str) -> Order:
        try:
            return await self.db.write_tx(lambda tx: self._provision(tx, order_id, by))
        except (DomainError, Neo4jError) as e:
            if is_unavailable(e):  # not the order's fault: it stays FULFILLING, to carry on
                raise
            message = _failure(e)
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
        resolved = await _resolve(tx, recipe)
        cc_id = await CatalogRepository.cost_centre_id(tx, order.cost_centre_code)
        now = utcnow()
        ci_ids = await create_recipe_items(tx, order, recipe, resolved, cc_id, now)
        service_id, service_cls = resolved[f"service:{recipe.service}"]
        assert service_cls == SERVICE
        subscription_id = str(uuid.uuid4())
        await CatalogRepository.create_subscription(tx, subscription_id, order.id, service_id,
                                                    ci_ids, now)
        return await self._move(tx, order, OrderStatus.FULFILLED, by,
                                f"provisioned {len(ci_ids)} CI(s); subscription "
                                f"{subscription_id}")

    # --- manual tasks ---

    async def tasks_of(self, ids: list[str]) -> list[list[FulfilmentTask]]:
        found = await self.repo.tasks_of(ids)
        return [found.get(i, []) for i in ids]

    async def tasks(self, principal: Principal | None, statuses: list[TaskStatus] | None,
                    first: int | None) -> list[FulfilmentTask]:
        require_permission(principal, Permission.CATALOGUE_MANAGE, "see fulfilment tasks")
        return await self.repo.tasks([s.value for s in statuses] if statuses else None,
                                     page_size(first))

    async def finish_task(self, task_id: str, principal: Principal | None, done: bool,
                          note: str | None = None) -> FulfilmentTask:
        """Mark a manual task done (the recipe runs when the last one is) or failed (the
        order fails; a retry reopens failed tasks)."""
        p = require_permission(principal, Permission.CATALOGUE_MANAGE, "work fulfilment tasks")
        if not done and not (note and note.strip()):
            raise DomainError.single("note", "say why the task failed")

        async def work(tx: CountingTx) -> tuple[FulfilmentTask, bool]:
            found = await CatalogRepository.task_in_tx(tx, task_id)
            if found is None:
                raise NotFound("fulfilment task", task_id)
            order = await self._locked(tx, found.order_id)
            if order.status is not OrderStatus.FULFILLING:
                raise conflict("id", f"its order is {order.status.value}, not FULFILLING")
            task = await CatalogRepository.finish_task(tx, {
                "id": task_id, "status": (TaskStatus.DONE if done else TaskStatus.FAILED).value,
                "by": p.user, "note": note, "now": utcnow()})
            if task is None:
                raise conflict("id", f"task {task_id!r} is {found.status.value}, not OPEN")
            if not done:
                why = f"task {task.name!r} failed: {note}"
                await self._move(tx, order, OrderStatus.FAILED, p.user, why, error=why)
                return task, False
            tasks = await CatalogRepository.tasks_in_tx(tx, order.id)
            return task, all(t.status is TaskStatus.DONE for t in tasks)

        task, ready = await self.db.write_tx(work)
        if ready:
            await self._run_recipe(task.order_id, p.user)
        return task
