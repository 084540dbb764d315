"""Use cases: set states and roll them up, impact (bottom-up, top-down, what-if), history."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from cmdb.core.clock import utcnow
from cmdb.core.cypher import ATTRIBUTE_PREFIX
from cmdb.core.feed import Feed
from cmdb.core.mapping import as_datetime, native
from cmdb.core.models import (
    CRITICALITY_RANK,
    Criticality,
    DomainError,
    FrozenModel,
    OperationalState,
)
from cmdb.db.driver import CountingTx, Database
from cmdb.health import periods
from cmdb.health.models import Availability
from cmdb.health.repository import HealthRepository
from cmdb.identity.principal import Principal
from cmdb.identity.scope import Visibility
from cmdb.identity.service import IdentityService
from cmdb.items.models import ConfigurationItem, Service
from cmdb.items.repository import InventoryRepository, decimal_or_none, item_from_row
from cmdb.items.writes import set_known_states
from cmdb.rollup.models import PRECEDENCE, StateChange
from cmdb.settings import Settings

CRITICAL_PERIODS_ATTRIBUTE = "criticalPeriods"


class Impact(FrozenModel):
    """One affected item, with why it is affected and how urgent it is."""

    item: ConfigurationItem | Service
    state: OperationalState
    path: list[str]
    path_names: list[str]
    in_critical_period: bool = False
    minutes_to_sla_breach: float | None = None
    rank: int = 0
    reasons: list[str] = []


@dataclass(slots=True)
class RankedImpact:
    """One affected item ranked, its item still the row the impact statement projected:
    GraphQL builds its view from it straight away; ``to_model`` gives the ``Impact``."""

    item: dict[str, Any]
    state: OperationalState
    path: list[str]
    path_names: list[str]
    in_critical_period: bool
    minutes_to_sla_breach: float | None
    reasons: list[str]
    rank: int = 0

    @property
    def item_id(self) -> str:
        item_id: str = self.item["id"]
        return item_id

    def to_model(self) -> Impact:
        return Impact(item=item_from_row(self.item), state=self.state, path=self.path,
                      path_names=self.path_names, in_critical_period=self.in_critical_period,
                      minutes_to_sla_breach=self.minutes_to_sla_breach, rank=self.rank,
                      reasons=self.reasons)


class ModelEntry(FrozenModel):
    item: ConfigurationItem | Service
    state: OperationalState
    depth: int
    path: list[str]
    path_names: list[str]
    root_cause: bool


def _change_key(c: StateChange) -> str:
    return c.id or f"{c.item_id}@{c.at.isoformat()}"


def month_of(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


E = TypeVar("E", RankedImpact, ModelEntry)


def _item_id(e: RankedImpact | ModelEntry) -> str:
    return e.item_id if isinstance(e, RankedImpact) else e.item.id


class HealthService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = HealthRepository(db)
        self.items = InventoryRepository(db)
        # State changes for every stateChanges subscriber of this process: one read per
        # tick, whoever watches (see cmdb/core/feed.py).
        self.feed: Feed[StateChange] = Feed(
            "state-changes", self.repo.changes_window, _change_key, lambda c: c.at,
            interval_s=settings.subscription_interval_s,
            overlap_s=settings.subscription_overlap_s,
            queue_size=settings.subscription_queue_size)

    async def close(self) -> None:
        """Stop the change feed; open streams end."""
        await self.feed.close()

    # --- writing states ---------------------------------------------------------------------

    async def set_states(
        self, rows: list[tuple[str, OperationalState]], cause: str | None
    ) -> list[StateChange]:
        """Set own states of items and roll the result up, in one transaction."""
        now = utcnow()

        return await self.db.write_tx(lambda tx: set_known_states(tx, rows, now, cause))

    # --- what a caller may see ---------------------------------------------------------------

    async def visible_ids(self, ids: list[str], visible: Visibility) -> list[str]:
        """``ids`` without those the caller's scope hides, in their order."""
        seen = await self.items.visible_ids(ids, visible)
        return [i for i in ids if i in seen]

    async def narrowed(self, entries: list[E], visible: Visibility) -> list[E]:
        """Only entries whose item the caller may see, their paths without unseen steps."""
        if visible.everything or not entries:
            return entries
        ids = sorted({_item_id(e) for e in entries} | {p for e in entries for p in e.path})
        seen = await self.items.visible_ids(ids, visible)
        out: list[E] = []
        for e in entries:
            if _item_id(e) not in seen:
                continue
            steps = [(p, n) for p, n in zip(e.path, e.path_names, strict=False) if p in seen]
            path, names = [p for p, _ in steps], [n for _, n in steps]
            out.append(replace(e, path=path, path_names=names) if isinstance(e, RankedImpact)
                       else e.model_copy(update={"path": path, "path_names": names}))
        return out

    async def watched(
        self, ids: list[str] | None, user_name: str | None, principal: Principal | None,
        visible: Visibility, identity: IdentityService,
    ) -> list[str] | None:
        """What a watch of state changes covers, within what the caller may see: the items
        named, and a user's environment (their desktops, hosts, pools and the services their
        software needs); None: every item."""
        if user_name is not None:
            # The identity service decides who may look at whom (oneself, or identity:read);
            # a user the caller may not see answers like one that does not exist.
            user = await identity.user(user_name, principal)
            if user is None:
                raise DomainError.single("userName", f"user {user_name!r} not found",
                                         "NOT_FOUND")
            [env] = await identity.environment_health([user.id])
            components = {c.item_id for c in env.components}
            named = set(ids or [])
            # One's own environment is watched whole; someone else's, and ids named
            # besides, only as far as the caller may see them.
            own = principal is not None and user.user_name.lower() == principal.user.lower()
            vetted = named if own else named | components
            seen = await self.items.visible_ids(sorted(vetted), visible)
            return sorted((components if own else set()) | (vetted & seen))
        if ids is None:
            if not visible.everything:
                raise DomainError.single(None, "your roles may not watch every item; name "
                                         "ids or a userName", "FORBIDDEN")
            return None
        seen = await self.items.visible_ids(ids, visible)
        return [i for i in ids if i in seen]

    # --- reading states and history ---------------------------------------------------------

    async def states(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        return await self.repo.states(ids)

    async def states_as_of(self, ids: list[str], at: datetime) -> dict[str, dict[str, Any]]:
        return await self.repo.states_as_of(ids, at)

    async def history(self, item_id: str, start: datetime, end: datetime) -> list[StateChange]:
        return [
            StateChange(item_id=item_id, state=c["state"], previous=c.get("previous"),
                        at=c["at"], cause=c.get("cause"))
            for c in await self.repo.history(item_id, start, end) if c["at"] >= start
        ]

    async def availability(
        self, item: ConfigurationItem | Service, start: datetime, end: datetime
    ) -> Availability:
        """Minutes per state and SLA attainment over [start, end), counting only the time
        the item existed with a recorded state, up to now (see ``periods.counted_interval``)."""
        if end <= start:
            raise DomainError.single("end", "end must be after start")
        changes = await self.repo.history(item.id, start, end)
        until = min(end, utcnow())
        if item.retired_at is not None:
            until = min(until, item.retired_at)
        windows = (
            [iv for w in item.sla.maintenance_windows
             for iv in periods.window_intervals(w, start, end)]
            if isinstance(item, Service) else []
        )
        counted, minutes = periods.counted_minutes(
            [(c["at"], OperationalState(c["state"])) for c in changes], start, until,
            item.created_at, windows)
        total = sum(minutes[s.value] for s in OperationalState)
        available = minutes["UP"] + minutes["DEGRADED"]
        pct = 100.0 * available / total if total else None
        target = (
            float(item.sla.availability_target)
            if isinstance(item, Service) and item.sla.availability_target is not None else None
        )
        return Availability(
            item_id=item.id, start=start, end=end,
            counted_from=counted[0] if counted else None,
            counted_until=counted[1] if counted else None,
            minutes_up=minutes["UP"], minutes_degraded=minutes["DEGRADED"],
            minutes_down=minutes["DOWN"], minutes_unknown=minutes["UNKNOWN"],
            minutes_in_maintenance=minutes["MAINTENANCE"],
            availability_percent=round(pct, 4) if pct is not None else None,
            target_percent=target,
            met=(pct >= target) if target is not None and pct is not None else None,
        )

    async def watch(
        self, ids: list[str] | None, since: datetime | None = None,
    ) -> AsyncIterator[StateChange]:
        """State changes from now on (or after ``since``), for the given items (None: all),
        as they are recorded. The caller has narrowed ``ids`` to what its caller may see
        (None only for callers who see everything).

        Reads the stored history, so changes made by any API process are seen: through the
        shared feed, or (``subscription_shared_feed`` off) by polling on its own."""
        since = since or utcnow()
        if not self.settings.subscription_shared_feed:
            async for change in self.poll(ids, since):
                yield change
            return
        wanted = None if ids is None else frozenset(ids)
        if wanted is not None and not wanted:
            # Nothing the caller may see: the stream stays open and quiet, reading nothing.
            await asyncio.Event().wait()
        async with self.feed.subscribe(
                lambda c: wanted is None or c.item_id in wanted, since) as changes:
            async for change in changes:
                yield change

    async def poll(
        self, ids: list[str] | None, since: datetime, interval_s: float = 1.0,
    ) -> AsyncIterator[StateChange]:
        """The former design, one poll of Neo4j per subscriber per second: kept as the
        baseline the subscription benchmark compares the shared feed with."""
        while True:
            changes = await self.repo.changes_since(ids, since)
            for change in changes:
                yield change
            if changes:
                since = changes[-1].at
            else:
                await asyncio.sleep(interval_s)

    # --- impact -----------------------------------------------------------------------------

    async def impact(
        self, ids: list[str], services_only: bool = True, assume_down: bool = False,
        at: datetime | None = None,
    ) -> list[Impact]:
        """What the given items hold up, ranked. With ``assume_down`` the items are treated
        as down in a transaction that is rolled back (nothing stored changes)."""
        ranked = await self.ranked_impact(ids, services_only, assume_down, at)
        return [r.to_model() for r in ranked]

    async def ranked_impact(
        self, ids: list[str], services_only: bool = True, assume_down: bool = False,
        at: datetime | None = None,
    ) -> list[RankedImpact]:
        """``impact`` with each item left as its row (no model per entry)."""
        if not ids:
            raise DomainError.single("ids", "give at least one item id")
        at = at or utcnow()
        month_start, _ = month_of(at)
        if assume_down:
            rows = await self.db.rolled_back(
                lambda tx: self._simulate(tx, ids, OperationalState.DOWN, services_only,
                                          month_start, at))
        else:
            rows = await self.repo.impacted(ids, services_only, month_start, at)
        return self._rank(rows, at)

    async def _simulate(
        self, tx: CountingTx, ids: list[str], state: OperationalState, services_only: bool,
        start: datetime, end: datetime,
    ) -> list[dict[str, Any]]:
        await set_known_states(tx, [(i, state) for i in ids], utcnow(), "what-if", "ids")
        return await self.repo.impacted_in_tx(tx, ids, services_only, start, end)

    def _rank(self, rows: list[dict[str, Any]], at: datetime) -> list[RankedImpact]:
        """Rank on the rows as read: the fields ranking needs are read from the projected
        item directly (building a model per entry cost more than the ranking itself)."""
        entries: list[tuple[tuple[Any, ...], RankedImpact]] = []
        for r in rows:
            item = r["item"]
            state = OperationalState(r["state"] or "UNKNOWN")
            critical = False
            to_breach: float | None = None
            reasons = [f"{state.value.lower()} via {' -> '.join(r['pathNames'])}"]
            revenue = Decimal(0)
            users = 0
            if item["kind"] == "SERVICE":
                specs = native(item.get(ATTRIBUTE_PREFIX + CRITICAL_PERIODS_ATTRIBUTE)) or []
                specs = [specs] if isinstance(specs, str) else list(specs)
                critical = any(periods.is_valid_period(s) for s in specs) and periods.within(
                    [s for s in specs if periods.is_valid_period(s)], at)
                if critical:
                    reasons.append("in a business-critical period now")
                history = [{**c, "at": as_datetime(c["at"])} for c in r["history"]]
                to_breach = self._minutes_to_breach(
                    decimal_or_none(item.get("slaAvailabilityTarget")),
                    item.get("slaMaintenanceWindows") or [], at, history,
                    as_datetime(item.get("createdAt")))
                if to_breach is not None:
                    reasons.append(f"{to_breach:.0f} min of SLA downtime left this month")
                windows = item.get("slaMaintenanceWindows") or []
                if windows and periods.within(list(windows), at):
                    reasons.append("inside its SLA maintenance window now: not counted "
                                   "against its SLA")
                revenue = decimal_or_none(item.get("revenuePerHour")) or Decimal(0)
                users = item.get("users") or 0
                if revenue:
                    reasons.append(f"{revenue} revenue per hour")
                if users:
                    reasons.append(f"{users} users")
            key = (
                -PRECEDENCE[state], not critical,
                CRITICALITY_RANK[Criticality(item["criticality"])],
                to_breach if to_breach is not None else float("inf"), -revenue, -users,
                item["name"].lower(),
            )
            entries.append((key, RankedImpact(
                item=item, state=state, path=r["path"], path_names=r["pathNames"],
                in_critical_period=critical, minutes_to_sla_breach=to_breach,
                reasons=reasons,
            )))
        entries.sort(key=lambda e: e[0])
        for i, (_, e) in enumerate(entries):
            e.rank = i + 1
        return [e for _, e in entries]

    @staticmethod
    def _minutes_to_breach(
        target: Decimal | None, maintenance_windows: list[str], at: datetime,
        changes: list[dict[str, Any]], created: datetime | None,
    ) -> float | None:
        """SLA minutes left this month: what the target allows over the counted part of the
        month (from the latest of its start, the service's creation and its first recorded
        state, to its end; maintenance windows left out), less the minutes already
        unavailable (down or unknown, as ``availability`` counts them) up to ``at``. None
        without a target, or when the service did not exist with a recorded state at ``at``."""
        if target is None:
            return None
        start, end = month_of(at)
        counted = periods.counted_interval(start, end, created,
                                           changes[0]["at"] if changes else None)
        if counted is None or counted[0] > at:
            return None
        lo, hi = counted
        # Merged: where two windows overlap, their common minutes are left out once.
        windows = periods.merge([iv for w in maintenance_windows
                                 for iv in periods.window_intervals(w, start, end)])
        period = (hi - lo).total_seconds() / 60 - periods.overlap_minutes((lo, hi), windows)
        allowed = period * (1 - float(target) / 100)
        minutes = periods.minutes_by_state(
            [(c["at"], OperationalState(c["state"])) for c in changes], lo, at, windows
        )
        used = minutes["DOWN"] + minutes["UNKNOWN"]
        return round(max(allowed - used, 0.0), 1)

    # --- top-down ---------------------------------------------------------------------------

    async def model(self, item_id: str) -> list[ModelEntry]:
        rows = await self.repo.model(item_id)
        entries = []
        for r in rows:
            item = item_from_row(r["item"])
            own = item.operational_state
            entries.append(ModelEntry(
                item=item, state=OperationalState(r["state"] or "UNKNOWN"), depth=r["depth"],
                path=r["path"], path_names=r["pathNames"],
                # A root-cause candidate fails on its own account, not through a provider.
                root_cause=isinstance(item, ConfigurationItem)
                and own in (OperationalState.DOWN, OperationalState.DEGRADED),
            ))
        return entries
