"""Plan changes and ask what they would take down, without touching live state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from cmdb.changes.models import ChangeWrite, PlannedChange
from cmdb.changes.repository import ChangeRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FrozenModel
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.health import periods
from cmdb.health.service import HealthService, Impact
from cmdb.items.models import Service
from cmdb.settings import Settings


class ServiceWindowFit(FrozenModel):
    impact: Impact
    inside_maintenance_window: bool


class Collision(FrozenModel):
    change: PlannedChange
    shared_service_ids: list[str]
    shared_ci_ids: list[str]


class WhatIf(FrozenModel):
    affected: list[ServiceWindowFit]
    users_affected: int
    collisions: list[Collision]


class ChangeService:
    def __init__(self, db: Database, settings: Settings, health: HealthService) -> None:
        self.db = db
        self.settings = settings
        self.health = health
        self.repo = ChangeRepository(db)

    async def plan(self, data: dict[str, Any]) -> PlannedChange:
        spec = validate(ChangeWrite, data)
        ids = list(dict.fromkeys(spec.ci_ids))

        async def work(tx: CountingTx) -> PlannedChange:
            missing = await self.repo.missing_items(tx, ids)
            if missing:
                raise DomainError.single("input.ciIds", "unknown or retired items: "
                                         + ", ".join(missing), "NOT_FOUND")
            return await self.repo.create(tx, str(uuid.uuid4()), spec.title, spec.start,
                                          spec.end, ids, utcnow())

        return await self.db.write_tx(work)

    async def upcoming(self, first: int) -> list[PlannedChange]:
        return await self.repo.upcoming(utcnow(), first)

    async def what_if(
        self, ci_ids: list[str], start: datetime, end: datetime, exclude: str | None = None
    ) -> WhatIf:
        if end <= start:
            raise DomainError.single("end", "end must be after start")
        affected = await self.health.impact(ci_ids, services_only=True, assume_down=True,
                                            at=start)
        hit = [e for e in affected if e.state.value != "UP"]
        fits = []
        for e in hit:
            windows = e.item.sla.maintenance_windows if isinstance(e.item, Service) else []
            # Merged, so that two windows over the same minutes do not add up.
            inside = bool(windows) and periods.overlap_minutes(
                (start, end), periods.merge([iv for w in windows
                                             for iv in periods.window_intervals(w, start, end)])
            ) >= (end - start).total_seconds() / 60 - 1e-9
            fits.append(ServiceWindowFit(impact=e, inside_maintenance_window=inside))
        users = sum(e.item.business_value.users or 0 for e in hit
                    if isinstance(e.item, Service) and e.item.kind.value == "BUSINESS")
        mine = {e.item.id for e in hit}
        collisions = []
        for other in await self.repo.overlapping(start, end, exclude):
            reach = await self.health.impact(other.ci_ids, services_only=True,
                                             assume_down=False)
            shared = sorted(mine & {e.item.id for e in reach} | (mine & set(other.ci_ids)))
            shared_cis = sorted(set(ci_ids) & set(other.ci_ids))
            if shared or shared_cis:
                collisions.append(Collision(change=other, shared_service_ids=shared,
                                            shared_ci_ids=shared_cis))
        return WhatIf(affected=fits, users_affected=users, collisions=collisions)
