"""Staleness: CIs and discovered relationships no source has seen for a while become
stale, and stale ones not seen for longer are retired (never deleted)."""

from __future__ import annotations

from datetime import datetime, timedelta

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery.models import SweepResult
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items import writes
from cmdb.items.history import History
from cmdb.items.models import HistoryKind, RelationType
from cmdb.settings import Settings


class Sweep:
    def __init__(self, db: Database, repo: DiscoveryRepository, settings: Settings) -> None:
        self.db = db
        self.repo = repo
        self.settings = settings

    async def run(
        self, principal: Principal | None, stale_after: timedelta | None = None,
        retire_after: timedelta | None = None, chunk: int = 5000,
    ) -> SweepResult:
        """CIs and discovered relationships no source has seen for ``stale_after`` become
        stale; stale ones not seen for ``retire_after`` are retired (never deleted). Only
        what discovery has seen is swept: items created by hand have no ``lastSeenAt``."""
        require_permission(principal, Permission.DISCOVERY_ADMIN, "sweep stale CIs")
        stale_after = stale_after or timedelta(days=self.settings.discovery_stale_after_days)
        retire_after = retire_after or timedelta(days=self.settings.discovery_retire_after_days)
        if retire_after < stale_after:
            raise DomainError.single("retireAfter", "retire-after must not be shorter than "
                                     "stale-after")
        now = utcnow()
        result = SweepResult()
        stale_before, retire_before = now - stale_after, now - retire_after
        while (n := await self.db.write_tx(
                lambda tx: self._mark(tx, stale_before, now, chunk))) > 0:
            result.stale += n
        while (n := await self.db.write_tx(
                lambda tx: self._retire(tx, retire_before, now, chunk))) > 0:
            result.retired += n
        result.relations_stale, result.relations_retired = await self.db.write_tx(
            lambda tx: self._relations(tx, stale_before, retire_before, now))
        return result

    async def _mark(self, tx: CountingTx, before: datetime, now: datetime, chunk: int) -> int:
        ids = await self.repo.mark_stale(tx, before, now, chunk)
        history = History("sweep")
        for i in ids:
            history.add(i, HistoryKind.STALE, {"staleSince": [None, now.isoformat()]})
        await writes.record_history(tx, history, now)
        return len(ids)

    async def _retire(self, tx: CountingTx, before: datetime, now: datetime,
                      chunk: int) -> int:
        rows = await self.repo.to_retire(tx, before, chunk)
        if not rows:
            return 0
        history = History("sweep")
        for r in rows:
            history.add(r["id"], HistoryKind.RETIRED,
                        {"lifecycleStatus": [r["status"], "RETIRED"]},
                        detail={"lastSeenAt": r["lastSeenAt"]})
        # lastSeenAt as TO_RETIRE gives it: the text the stored reason always had.
        await writes.retire_batch(tx, [
            {"id": r["id"], "reason": "not seen by any source since " + r["lastSeenAt"]}
            for r in rows], now, "retired", history)
        return len(rows)

    async def _relations(self, tx: CountingTx, stale_before: datetime,
                         retire_before: datetime, now: datetime) -> tuple[int, int]:
        stale = retired = 0
        history = History("sweep")
        ends: set[str] = set()
        for rt in RelationType:
            stale += await self.repo.mark_relations_stale(tx, rt, stale_before, now)
            for e in await self.repo.retire_relations(tx, rt, retire_before, now):
                retired += 1
                ends.update((e["s"], e["t"]))
                history.add(e["s"], HistoryKind.RELATION_RETIRED, relationType=rt.value,
                            otherId=e["t"])
        await writes.record_history(tx, history, now)
        if ends:
            await writes.roll_up(tx, sorted(ends), "retired", now)
        return stale, retired
