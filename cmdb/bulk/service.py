"""Bulk upserts of org units, items and relationships, one write transaction per batch.

Rows are validated like the single-item path (the same pydantic models and property
builders), then written in batches: one managed transaction per batch reads what is stored,
rejects the rows that cannot be written (with a reason each), skips the rows that would
change nothing, and writes the rest with one ``UNWIND`` statement per label set or type.
When Neo4j refuses a batch (e.g. two rows of it claim one serial number) the transaction is
rolled back, so nothing of that batch is written; its rows are reported and the load goes on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from neo4j.exceptions import ClientError

from cmdb.bulk.models import (
    DEFAULT_BATCH_SIZE,
    BatchOutcome,
    BulkResult,
    ItemRow,
    OrgRow,
    Progress,
    RelationRow,
)
from cmdb.bulk.repository import BulkRepository, Row
from cmdb.bulk.rows import (
    ORG_NAMES,
    P,
    PreparedItem,
    PreparedOrg,
    PreparedRelation,
    check_ends,
    failed,
    identifier_claims,
    identifier_rejection,
    plan_item,
    plan_org,
    prepare_batch,
    prepare_item,
    prepare_org,
    prepare_relation,
    refs_of,
    reject,
    unique_in_batch,
)
from cmdb.core.chunks import numbered_chunks
from cmdb.core.clock import utcnow
from cmdb.core.models import OrgKind, Rejected
from cmdb.db.driver import CountingTx, Database
from cmdb.items import writes
from cmdb.items.models import RelationType
from cmdb.settings import Settings

T = TypeVar("T")




class BulkService:
    """Idempotent bulk upserts; the bulk path of the benchmark loader and of discovery."""

    def __init__(
        self, db: Database, settings: Settings, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.db = db
        self.settings = settings
        self.batch_size = batch_size
        self.repo = BulkRepository()

    # -------------------------------------------------------------------------- public

    async def upsert_org_units(
        self, kind: OrgKind, rows: Iterable[OrgRow | Mapping[str, Any]],
        progress: Progress | None = None, total: int | None = None,
    ) -> BulkResult:
        """Owner groups, cost centres or locations, merged on id. A parent must be of the
        same kind and exist already or come in the same batch (give parents first)."""
        return await self._run(
            rows, lambda i, r: prepare_org(kind, i, r),
            lambda batch: self._write_org(kind, batch), progress, total,
        )

    async def upsert_items(
        self, rows: Iterable[ItemRow | Mapping[str, Any]],
        progress: Progress | None = None, total: int | None = None,
    ) -> BulkResult:
        """CIs and services merged on id. A new item gets every field (defaults included);
        an existing one only the fields its row sets, and is left alone when they match."""
        return await self._run(rows, prepare_item, self._write_items, progress, total)

    async def upsert_relations(
        self, rows: Iterable[RelationRow | Mapping[str, Any]],
        progress: Progress | None = None, total: int | None = None,
    ) -> BulkResult:
        """One live relationship per (source, type, target), like ``relate``; the endpoint
        rules are checked for each row with the classes of the stored endpoints."""
        return await self._run(
            rows, prepare_relation, self._write_relations, progress, total
        )

    # -------------------------------------------------------------------------- batching

    async def _run(
        self,
        rows: Iterable[T],
        prepare: Callable[[int, T], P],
        write: Callable[[list[P]], Awaitable[BatchOutcome]],
        progress: Progress | None,
        total: int | None,
    ) -> BulkResult:
        """Validate batch k+1 in a worker thread while batch k is written: the rows (and the
        generator behind them) are consumed in that thread, one batch at a time."""
        if total is None and isinstance(rows, Sequence):
            total = len(rows)
        result = BulkResult()
        chunks = numbered_chunks(rows, self.batch_size)
        batch = await asyncio.to_thread(prepare_batch, chunks, prepare)
        while batch is not None:
            size, prepared, rejected = batch
            ahead = asyncio.ensure_future(asyncio.to_thread(prepare_batch, chunks, prepare))
            try:
                if prepared:
                    outcome, failed = await self._guarded(write, prepared)
                    result.failed_batches += failed
                    result.add(outcome)
            except BaseException:
                ahead.cancel()
                raise
            result.total += size
            result.batches += 1
            result.rejected.extend(rejected)
            if progress is not None:
                progress(result.total, total)
            batch = await ahead
        result.rejected.sort(key=lambda r: r.index)
        return result

    @staticmethod
    async def _guarded(
        write: Callable[[list[P]], Awaitable[BatchOutcome]], rows: list[P]
    ) -> tuple[BatchOutcome, bool]:
        """The batch's outcome, and whether Neo4j refused it (then every row is rejected)."""
        try:
            return await write(rows), False
        except ClientError as e:
            if (e.code or "").startswith(("Neo.ClientError.Security", "Neo.ClientError.Database")):
                raise  # not about the rows: no later batch would fare better
            return failed(rows, e), True

    # -------------------------------------------------------------------------- items

    async def _write_items(self, batch: list[PreparedItem]) -> BatchOutcome:
        now = utcnow()

        async def work(tx: CountingTx) -> BatchOutcome:
            out = BatchOutcome()
            existing = await self.repo.existing_items(tx, [p.id for p in batch])
            ref_ids = sorted({v for p in batch for v in refs_of(p, existing) if v})
            org = await self.repo.org_labels(tx, ref_ids)
            planned: list[tuple[PreparedItem, dict[str, Any], bool]] = []
            for p in batch:
                try:
                    plan = plan_item(p, existing.get(p.id), org)
                except Rejected as e:
                    out.rejected.append(reject(p.index, p.id, e))
                    continue
                if plan is None:
                    out.unchanged += 1
                else:
                    planned.append((p, plan, p.id not in existing))
            claims = identifier_claims(p for p, _, _ in planned)
            held: dict[str, list[Row]] = defaultdict(list)
            for found in await self.repo.identifier_conflicts(tx, claims):
                held[found["id"]].append(found)
            creates: dict[str, list[Row]] = defaultdict(list)  # by label set
            updates: list[Row] = []
            for p, plan, new in planned:
                if p.id in held:
                    out.rejected.append(identifier_rejection(p, held[p.id]))
                elif new:
                    creates[p.labels].append(plan)
                else:
                    updates.append(plan)
            for labels, rows in creates.items():
                out.created += await writes.create_many(tx, labels, rows, now)
            out.updated += await writes.update_many(tx, updates, now)
            return out

        return await self.db.write_tx(work)

    # -------------------------------------------------------------------------- relations

    async def _write_relations(self, batch: list[PreparedRelation]) -> BatchOutcome:
        now = utcnow()

        async def work(tx: CountingTx) -> BatchOutcome:
            out = BatchOutcome()
            ends = await self.repo.ends(tx, sorted({i for r in batch
                                                    for i in (r.source, r.target)}))
            groups: dict[RelationType, list[Row]] = defaultdict(list)
            for r in batch:
                try:
                    check_ends(r, ends)
                except Rejected as e:
                    out.rejected.append(reject(r.index, r.key, e))
                    continue
                groups[r.type].append({"s": r.source, "t": r.target, "props": r.props})
            for rel_type, rows in groups.items():
                counts = await writes.relate_many(tx, rel_type, rows, now)
                out.created += counts.get("created", 0)
                out.updated += counts.get("updated", 0)
                out.unchanged += counts.get("unchanged", 0)
            return out

        return await self.db.write_tx(work)

    # -------------------------------------------------------------------------- org units

    async def _write_org(self, kind: OrgKind, batch: list[PreparedOrg]) -> BatchOutcome:
        now = utcnow()
        what = ORG_NAMES[kind]

        async def work(tx: CountingTx) -> BatchOutcome:
            out = BatchOutcome()
            existing = await self.repo.existing_org(tx, [o.id for o in batch])
            clashes: dict[str, list[Row]] = defaultdict(list)
            for c in await self.repo.org_conflicts(tx, kind, [
                {"id": o.id, "nameLower": o.name_lower, "code": o.code} for o in batch
            ]):
                clashes[c["id"]].append(c)
            in_batch = {o.id for o in batch}
            stored_parents = await self.repo.parents(tx, kind, sorted(
                {o.parent_id for o in batch if o.parent_id and o.parent_id not in in_batch}
            ))
            rows: list[Row] = []
            links: list[Row] = []
            earlier: dict[tuple[str, str | None], str] = {}  # (name|code, value) -> id
            for o in batch:
                try:
                    unique_in_batch(o, earlier)
                    plan = plan_org(kind, what, o, existing.get(o.id), clashes.get(o.id, []),
                                     in_batch | stored_parents)
                except Rejected as e:
                    out.rejected.append(reject(o.index, o.id, e))
                    continue
                if plan is None:
                    out.unchanged += 1
                    continue
                props, link = plan
                rows.append({"id": o.id, "props": props})
                if link:
                    links.append({"id": o.id, "parentId": o.parent_id})
                if o.id in existing:
                    out.updated += 1
                else:
                    out.created += 1
            if rows:
                await self.repo.upsert_org(tx, kind, rows, links, now)
            return out

        return await self.db.write_tx(work)
