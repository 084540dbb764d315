"""Discovery use cases behind one face: register sources (``sources``), ingest batches
(``ingest``), merge duplicates (``merge``), sweep stale CIs (``sweep``), and answer history
and as-of questions (``history``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from cmdb.db.driver import Database
from cmdb.discovery.batch import Plan
from cmdb.discovery.history import HistoryReads
from cmdb.discovery.ingest import Ingest
from cmdb.discovery.merge import Merge
from cmdb.discovery.models import (
    CIAsOf,
    IngestResult,
    Source,
    SweepResult,
    provenance_of,
    sightings_of,
)
from cmdb.discovery.records import Prepared
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.discovery.sources import Sources
from cmdb.discovery.sweep import Sweep
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items.models import HistoryEntry
from cmdb.settings import Settings

__all__ = ["DiscoveryService", "SweepResult", "provenance_of", "sightings_of"]


class DiscoveryService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = DiscoveryRepository(db)  # shared by every use case
        resolution = timedelta(seconds=settings.discovery_sighting_resolution_s)
        self._sources = Sources(self.repo)
        self._ingest = Ingest(db, self.repo, resolution)
        self._merge = Merge(db, self.repo)
        self._sweep = Sweep(db, self.repo, settings)
        self._reads = HistoryReads(db, self.repo)

    async def register_source(
        self, principal: Principal | None, data: Mapping[str, Any]
    ) -> Source:
        return await self._sources.register(principal, data)

    async def sources(self) -> list[Source]:
        return await self._sources.all()

    async def ingest(
        self,
        principal: Principal | None,
        source_name: str,
        items: Iterable[Any] = (),
        relations: Iterable[Any] = (),
        *,
        merge_duplicates: bool = True,
        batch_size: int | None = None,
        progress: Any = None,
    ) -> IngestResult:
        """Reconcile items, then relationships, one transaction per batch (see
        ``cmdb.discovery.ingest``). ``progress(done, total)`` is called after each batch
        when given."""
        require_permission(principal, Permission.DISCOVERY_WRITE, "send discovery data")
        return await self._ingest.run(source_name, items, relations,
                                      merge_duplicates=merge_duplicates,
                                      batch_size=batch_size, progress=progress,
                                      plan_ahead=self._plan)

    async def _plan(self, source: Source, sources: Mapping[str, Source], prepared: Prepared,
                    result: IngestResult) -> Plan | None:
        """A batch reconciled ahead of its transaction, or None (see ``Ingest.plan``)."""
        return await self._ingest.plan(source, sources, prepared, result)

    async def merge(
        self, principal: Principal | None, survivor_id: str, duplicate_ids: list[str],
        reason: str | None = None,
    ) -> int:
        """Merge duplicates into a survivor: relationships and history carried over, gaps
        filled, the duplicates retired (never deleted) and the merge recorded on both."""
        return await self._merge.run(principal, survivor_id, duplicate_ids, reason)

    async def sweep(
        self, principal: Principal | None, stale_after: timedelta | None = None,
        retire_after: timedelta | None = None, chunk: int = 5000,
    ) -> SweepResult:
        """Mark unseen CIs and relationships stale, retire long-stale ones (see ``Sweep``)."""
        return await self._sweep.run(principal, stale_after, retire_after, chunk)

    async def history(
        self, item_id: str, since: datetime | None = None, until: datetime | None = None,
        first: int = 100,
    ) -> list[HistoryEntry]:
        return await self._reads.history(item_id, since, until, first)

    async def as_of(self, item_id: str, at: datetime) -> CIAsOf:
        """The CI as it was at ``at``: today's values with every later change undone."""
        return await self._reads.as_of(item_id, at)
