"""Ingest: batches of discovered items and relationships reconciled with the graph.

Batch policy (documented in the README): every record is validated on its own; a malformed
or conflicting record is rejected with its index and reason and the others go ahead. The
accepted records of one batch are written in ONE transaction: all of them or none. A batch
is one REST request, one GraphQL call, or one chunk of ``batch_size`` records of a CLI
import (items first, then relationships, so relations may name items of earlier chunks by
their key). A batch killed half way is rolled back by Neo4j: the graph is as before it.

An import of several batches is a pipeline: while batch k is written, batch k+1 is validated
and, when its transaction would not read anything it depends on, reconciled (``plan``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from neo4j.exceptions import ClientError

from cmdb.core.chunks import numbered_chunks
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, RejectCode
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery.batch import Outcome, Plan, Raced
from cmdb.discovery.ingest_items import ItemWriter, identifier_values
from cmdb.discovery.ingest_relations import RelationWriter, plan_relations
from cmdb.discovery.models import (
    DEFAULT_BATCH_SIZE,
    IngestResult,
    Rejection,
    Source,
)
from cmdb.discovery.reconcile import Candidate
from cmdb.discovery.records import Prepared, RelationRecord, prepare
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.items.history import History

log = logging.getLogger("cmdb.discovery")
_ATTEMPTS = 3
# One batch's records, each with its index in the import: (items, relationships).
Batch = tuple[list[tuple[int, Any]], list[tuple[int, Any]]]
PlanAhead = Callable[[Source, Mapping[str, Source], Prepared, IngestResult],
                     Awaitable[Plan | None]]


def _batches(items: Sequence[Any], relations: Sequence[Any], size: int) -> list[Batch]:
    if len(items) + len(relations) <= size:  # one batch, one transaction: both together
        return [(list(enumerate(items)), list(enumerate(relations)))]
    return ([(chunk, []) for chunk in numbered_chunks(items, size)]
            + [([], chunk) for chunk in numbered_chunks(relations, size)])


def _joined(earlier: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    return {**earlier, **own} if own else earlier


class _Pipeline:
    """While batch k is written, batch k+1 is validated (in a worker thread) and, where it
    can be, planned; batch k+2's validation follows."""

    def __init__(self, batches: list[Batch],
                 plan: Callable[[Prepared], Awaitable[Plan | None]]) -> None:
        self.batches = batches
        self.plan = plan
        self.prepares: dict[int, asyncio.Future[Prepared]] = {}
        self.step: asyncio.Future[tuple[Prepared, Plan | None]] | None = None

    async def take(self, k: int) -> tuple[Prepared, Plan | None]:
        """Batch k validated (and planned, when it could be); batch k+1's turn begins."""
        step = self.step or asyncio.ensure_future(self._ahead(0))
        taken = await step
        self.step = None
        if k + 1 < len(self.batches):
            self.step = asyncio.ensure_future(self._ahead(k + 1))
        return taken

    def cancel(self) -> None:
        if self.step is not None:
            self.step.cancel()
        for f in self.prepares.values():
            f.cancel()

    def _prepare(self, k: int) -> asyncio.Future[Prepared]:
        if k not in self.prepares:
            self.prepares[k] = asyncio.ensure_future(asyncio.to_thread(prepare,
                                                                       *self.batches[k]))
        return self.prepares[k]

    async def _ahead(self, k: int) -> tuple[Prepared, Plan | None]:
        prepared = await self._prepare(k)
        del self.prepares[k]  # an import's batches are not kept once they are written
        if k + 1 < len(self.batches):
            self._prepare(k + 1)
        # Relationships are planned once every item batch is written (their ends).
        if k == 0 or (self.batches[k][1] and self.batches[k - 1][0]):
            return prepared, None
        try:
            return prepared, await self.plan(prepared)
        except Exception:  # a plan saves time only: the batch is reconciled as usual
            log.warning("batch %d of an import not planned ahead", k, exc_info=True)
            return prepared, None


class Ingest:
    def __init__(self, db: Database, repo: DiscoveryRepository, resolution: timedelta) -> None:
        self.db = db
        self.repo = repo
        self.items = ItemWriter(repo, resolution)
        self.relations = RelationWriter(repo, resolution)

    async def run(
        self, source_name: str, items: Iterable[Any], relations: Iterable[Any], *,
        merge_duplicates: bool, batch_size: int | None, progress: Any, plan_ahead: PlanAhead,
    ) -> IngestResult:
        """Reconcile items, then relationships, one transaction per batch (see module doc);
        ``plan_ahead`` plans a batch while the one before it is written (``plan``)."""
        sources = await self.repo.sources()
        source = sources.get(source_name)
        if source is None:
            raise DomainError.single("source", f"discovery source {source_name!r} is not "
                                     "registered", "NOT_FOUND")
        size = batch_size or DEFAULT_BATCH_SIZE
        if size < 1:
            raise DomainError.single("batchSize", "batch size must be at least 1")
        item_list = items if isinstance(items, Sequence) else list(items)
        rel_list = relations if isinstance(relations, Sequence) else list(relations)
        result = IngestResult(items=len(item_list), relations=len(rel_list))
        batches = _batches(item_list, rel_list, size)

        def plan(prepared: Prepared) -> Awaitable[Plan | None]:
            return plan_ahead(source, sources, prepared, result)

        pipeline = _Pipeline(batches, plan)
        try:
            await self._write_all(source, sources, pipeline, merge_duplicates, result,
                                  progress)
        except BaseException:
            pipeline.cancel()
            raise
        result.rejected.sort(key=lambda r: (r.record, r.index))
        return result

    async def _write_all(
        self, source: Source, sources: Mapping[str, Source], pipeline: _Pipeline,
        merge_duplicates: bool, result: IngestResult, progress: Any,
    ) -> None:
        total, done = result.items + result.relations, 0
        claimed: set[tuple[str, str]] = set()  # the identifier values of the last batch
        for k, (chunk_items, chunk_rels) in enumerate(pipeline.batches):
            prepared, plan = await pipeline.take(k)
            # Planned before the last batch was written: valid only if none of its
            # records shares an identifier value with that batch's (which may have
            # created or changed a CI holding it); otherwise reconciled again.
            if plan is not None and plan.items is not None and claimed and \
                    not claimed.isdisjoint(identifier_values(prepared[0])):
                plan = None
            await self.batch(source, sources, prepared, merge_duplicates, result, plan)
            claimed = identifier_values(prepared[0])
            result.batches += 1
            done += len(chunk_items) + len(chunk_rels)
            if progress:
                progress(done, total)

    async def plan(
        self, source: Source, sources: Mapping[str, Source], prepared: Prepared,
        result: IngestResult,
    ) -> Plan | None:
        """Reconcile a batch before its transaction (while the batch before it is written)
        when what its transaction writes does not depend on what that transaction reads:

        - items, when none of their identifier values is held by a stored CI (one read, in
          a transaction of its own): each record makes a new CI. The caller drops the plan
          if the batch written meanwhile gave any of these values; a CI made meanwhile by
          someone else holding one is caught at the write (the ``MERGE`` on the leading
          identifier, the uniqueness constraints), which then reconciles the batch again
          in its transaction;
        - relationships, when both ends of each are CIs this ingest identified: resolved
          and checked ahead; written ahead too when each source end is one it created (no
          live relationship to look for first), else looked for in the transaction.

        None when the batch is to be reconciled in its transaction, as usual."""
        cands, rels, _ = prepared
        now = utcnow()
        out = Outcome()
        history = History(source.name)
        if cands and not rels:
            values: dict[str, list[str]] = defaultdict(list)
            for c in cands:
                for p, v in c.unique.items():
                    values[p].append(v)
            if await self.db.read_tx(lambda tx: self.repo.identifiers_held(tx, values)):
                return None
            writes = await asyncio.to_thread(self.items.reconcile, source, sources, cands,
                                             {}, False, now, out, history)
            return Plan(now, out, history, items=writes)
        if rels and not cands:
            planned = await asyncio.to_thread(plan_relations, rels, result.ids,
                                              result.fresh, result.classes, out, history)
            if planned is not None:
                return Plan(now, out, history, relations=planned[1], accepted=planned[0])
        return None

    async def batch(
        self, source: Source, sources: Mapping[str, Source], prepared: Prepared,
        merge_duplicates: bool, result: IngestResult, plan: Plan | None = None,
    ) -> None:
        cands, rels, rejected = prepared
        result.rejected.extend(rejected)
        if not cands and not rels:
            return

        async def work(tx: CountingTx) -> Outcome:
            nonlocal plan
            if plan is not None:  # used once: run again, the batch is reconciled here
                p, plan = plan, None
                return await self._write_plan(tx, source, p, result.fresh)
            return await self._reconcile(tx, source, sources, prepared, merge_duplicates,
                                         result)

        result.add(await self._retrying(work, cands, rels))

    async def _write_plan(self, tx: CountingTx, source: Source, p: Plan,
                          fresh: Mapping[str, str]) -> Outcome:
        if p.items is not None:
            await self.items.write_changes(tx, p.items, p.now)
        if p.relations is not None:
            await self.relations.write_changes(tx, source, p.relations, p.now)
        elif p.accepted is not None:
            await self.relations.write_seen(tx, source, p.accepted, fresh, p.now, p.out,
                                            p.history)
        await self.repo.write_history(tx, p.history, p.now)
        return p.out

    async def _reconcile(
        self, tx: CountingTx, source: Source, sources: Mapping[str, Source],
        prepared: Prepared, merge_duplicates: bool, result: IngestResult,
    ) -> Outcome:
        """The batch reconciled in its transaction. Earlier batches' outcomes (only updated
        once this batch has committed) and this batch's own are joined; copied only when
        this batch has both items and relations (an import's maps grow to every CI it
        names, its relation batches have no items)."""
        cands, rels, _ = prepared
        now = utcnow()
        out = Outcome()
        history = History(source.name)
        if cands:
            await self.items.write(tx, source, sources, cands, merge_duplicates, now, out,
                                   history)
        if rels:
            await self.relations.write(tx, source, rels, _joined(result.ids, out.ids),
                                       _joined(result.fresh, out.fresh),
                                       _joined(result.classes, out.classes), now, out,
                                       history)
        await self.repo.write_history(tx, history, now)
        return out

    async def _retrying(
        self, work: Callable[[CountingTx], Awaitable[Outcome]], cands: list[Candidate],
        rels: list[RelationRecord],
    ) -> Outcome:
        """Run the batch; a race with a concurrent batch (a CI created meanwhile, a unique
        identifier taken meanwhile) runs it again from a fresh read. Should Neo4j still
        refuse it, every record of the batch is rejected and nothing of it is written."""
        error: str = ""
        for _ in range(_ATTEMPTS):
            try:
                return await self.db.write_tx(work)
            except Raced:
                error = "a concurrent batch kept creating the same CIs"
                continue
            except ClientError as e:
                code = e.code or ""
                if code.startswith(("Neo.ClientError.Security", "Neo.ClientError.Database")):
                    raise
                error = e.message or str(e)
                if "ConstraintValidationFailed" not in code:
                    break
        reason = f"Neo4j refused the batch, nothing of it was written: {error}"
        out = Outcome()
        out.rejected = [Rejection(index=c.index, record="item", code=RejectCode.BATCH_FAILED,
                                  reason=reason) for c in cands]
        out.rejected += [Rejection(index=i, record="relation", code=RejectCode.BATCH_FAILED,
                                   reason=reason) for i, _, _ in rels]
        return out
