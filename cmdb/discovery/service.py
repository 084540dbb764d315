"""Discovery use cases: register sources, ingest batches, merge duplicates, sweep stale CIs,
and answer history and as-of questions.

Batch policy (documented in the README): every record is validated on its own; a malformed
or conflicting record is rejected with its index and reason and the others go ahead. The
accepted records of one batch are written in ONE transaction: all of them or none. A batch
is one REST request, one GraphQL call, or one chunk of ``batch_size`` records of a CLI
import (items first, then relationships, so relations may name items of earlier chunks by
their key). A batch killed half way is rolled back by Neo4j: the graph is as before it.

An import of several batches is a pipeline: while batch k is written, batch k+1 is validated
and, when its transaction would not read anything it depends on, reconciled (``_plan``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from neo4j.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from cmdb.core.clock import utcnow
from cmdb.core.mapping import as_datetime, dump_json, load_json, native
from cmdb.core.models import DomainError, FieldError, NotFound
from cmdb.core.validation import field_path
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery import queries as q
from cmdb.discovery.models import (
    DEFAULT_BATCH_SIZE,
    KEY_PATTERN,
    AsOfRelation,
    CIAsOf,
    DiscoveredItem,
    DiscoveredRelation,
    EndpointRef,
    IngestResult,
    Provenance,
    RejectCode,
    Rejection,
    Sighting,
    Source,
    SourceWrite,
    attribute_property,
)
from cmdb.discovery.reconcile import (
    Candidate,
    Rejected,
    apply,
    candidate,
    fill_from,
    identify,
    new_item_props,
    unchanged,
)
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items.history import MAX_HISTORY_PAGE, History, history_entry
from cmdb.items.models import (
    HistoryEntry,
    HistoryKind,
    RelationType,
    class_labels,
    rule_violation,
)
from cmdb.items.repository import HistoryRepository
from cmdb.rollup.models import rule_property_errors
from cmdb.rollup.repository import propagate, recompute, upward_closure
from cmdb.settings import Settings

log = logging.getLogger("cmdb.discovery")
_labels = lru_cache(maxsize=None)(class_labels)  # one label text per class (an enum)
T = TypeVar("T")
Row = dict[str, Any]
_ATTEMPTS = 3
# The largest page of an item's history (GraphQL refuses more before running).
# Properties an as-of view shows (provenance keys and lifecycle).
_AS_OF_KEYS = ("name", "description", "serialNumber", "hostName", "domain", "macAddress",
               "cloudInstanceId", "lifecycleStatus", "staleSince", "retiredReason")


class _Raced(Exception):
    """A concurrent batch created a CI this batch was about to create: read again."""


@dataclass
class _Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    suppressed: int = 0
    r_created: int = 0
    r_updated: int = 0
    r_unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)
    fresh: dict[str, str] = field(default_factory=dict)  # CIs created: id -> class
    fresh_relations: set[tuple[str, str, str]] = field(default_factory=set)
    classes: dict[str, str] = field(default_factory=dict)  # CIs identified: id -> class


@dataclass
class _ItemWrites:
    """What a batch writes for its items: CIs to create (by labels and the identifier
    they are MERGEd on), CIs to update, duplicates to merge (survivor, dup)."""

    creates: dict[tuple[str, str], list[Row]]
    updates: list[Row]
    pairs: list[Row]


@dataclass
class _RelationWrites:
    """What a batch writes for its relationships: those to create (by type), the
    MEMBER_OF ones whose HAS_MEMBER mirrors follow, the ends whose consumers roll up."""

    creates: dict[RelationType, list[Row]]
    mirrors: list[Row]
    changed_ends: set[str]


@dataclass
class _Plan:
    """A batch reconciled before its transaction, while the batch before it is written
    (see ``DiscoveryService._plan``): its outcome, and what its transaction writes."""

    now: datetime
    out: _Outcome
    history: History
    items: _ItemWrites | None = None
    relations: _RelationWrites | None = None
    accepted: list[_Accepted] | None = None  # relationships to look for first, then write


@dataclass
class SweepResult:
    stale: int = 0
    retired: int = 0
    relations_stale: int = 0
    relations_retired: int = 0


def _validation_reason(e: ValidationError) -> tuple[str, str | None]:
    errs = e.errors(include_url=False)
    fields = [field_path(err["loc"], "") for err in errs]
    reason = "; ".join(
        (f"{f}: " if f else "") + str(err["msg"]).removeprefix("Value error, ")
        for f, err in zip(fields, errs, strict=True)
    )
    return reason, fields[0] or None


def _validated(model: type[T], raw: Any) -> T:
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        raise Rejected(RejectCode.INVALID, "a record must be a JSON object")
    try:
        return model.model_validate(dict(raw))  # type: ignore[attr-defined, no-any-return]
    except ValidationError as e:
        reason, field_name = _validation_reason(e)
        raise Rejected(RejectCode.INVALID, reason, field_name) from None


_Prepared = tuple[list[Candidate], list[tuple[int, DiscoveredRelation, dict[str, Any]]],
                  list[Rejection]]


def _prepare(items: list[tuple[int, Any]], relations: list[tuple[int, Any]]) -> _Prepared:
    """Validate one batch's records: the candidates, the relations, the rejections."""
    rejected: list[Rejection] = []
    cands: list[Candidate] = []
    for index, raw in items:
        try:
            cands.append(candidate(index, _validated(DiscoveredItem, raw)))
        except Rejected as e:
            rejected.append(Rejection(index=index, record="item", code=e.code,
                                      reason=e.reason, field=e.field))
    rels: list[tuple[int, DiscoveredRelation, dict[str, Any]]] = []
    for index, raw in relations:
        try:
            rels.append((index, *_prepare_relation(raw)))
        except Rejected as e:
            rejected.append(Rejection(index=index, record="relation", code=e.code,
                                      reason=e.reason, field=e.field))
    return cands, rels, rejected


@lru_cache(maxsize=1024)
def _seen_at(seen_json: str | None, source: str) -> datetime | None:
    """When ``source`` last saw a CI, from its sightings (JSON): parsed once for the many
    CIs a batch saw at the same time."""
    at = load_json(seen_json).get(source)
    return None if at is None else datetime.fromisoformat(at)


def _identifier_values(cands: list[Candidate]) -> set[tuple[str, str]]:
    return {pv for c in cands for pv in c.unique.items()}


def _joined(earlier: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    return {**earlier, **own} if own else earlier


def _chunks(rows: Iterable[T], size: int, start: int = 0) -> Iterator[list[tuple[int, T]]]:
    chunk: list[tuple[int, T]] = []
    for item in enumerate(rows, start=start):
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class DiscoveryService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = DiscoveryRepository(db)
        self._resolution = timedelta(seconds=settings.discovery_sighting_resolution_s)

    # -------------------------------------------------------------------------- sources

    async def register_source(
        self, principal: Principal | None, data: Mapping[str, Any]
    ) -> Source:
        require_permission(principal, Permission.DISCOVERY_ADMIN, "register discovery sources")
        try:
            spec = SourceWrite.model_validate(dict(data))
        except ValidationError as e:
            raise DomainError([
                FieldError(field=field_path(err["loc"], "input"),
                           message=str(err["msg"]).removeprefix("Value error, "))
                for err in e.errors(include_url=False)
            ]) from None
        return await self.repo.upsert_source({
            "name": spec.name, "kind": spec.kind.value, "trust": spec.trust,
            "attributeTrust": dump_json(spec.attribute_trust),
            "description": spec.description, "now": utcnow(),
        })

    async def sources(self) -> list[Source]:
        return list((await self.repo.sources()).values())

    # -------------------------------------------------------------------------- ingest

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
        """Reconcile items, then relationships, one transaction per batch (see module doc).
        ``progress(done, total)`` is called after each batch when given."""
        require_permission(principal, Permission.DISCOVERY_WRITE, "send discovery data")
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
        total = len(item_list) + len(rel_list)
        result = IngestResult(items=len(item_list), relations=len(rel_list))
        done = 0
        if total <= size:  # one batch, one transaction: items and relations together
            batches = [(list(enumerate(item_list)), list(enumerate(rel_list)))]
        else:
            batches = [(chunk, []) for chunk in _chunks(item_list, size)]
            batches += [([], chunk) for chunk in _chunks(rel_list, size)]
        # A pipeline: while batch k is written, batch k+1 is validated (in a worker thread)
        # and, where it can be, reconciled (``_plan``); batch k+2's validation follows.
        prepares: dict[int, asyncio.Future[_Prepared]] = {}

        def prepare(k: int) -> asyncio.Future[_Prepared]:
            if k not in prepares:
                prepares[k] = asyncio.ensure_future(asyncio.to_thread(_prepare, *batches[k]))
            return prepares[k]

        async def ahead(k: int) -> tuple[_Prepared, _Plan | None]:
            prepared = await prepare(k)
            del prepares[k]  # an import's batches are not kept once they are written
            if k + 1 < len(batches):
                prepare(k + 1)
            # Relationships are planned once every item batch is written (their ends).
            if k == 0 or (batches[k][1] and batches[k - 1][0]):
                return prepared, None
            try:
                return prepared, await self._plan(source, sources, prepared, result)
            except Exception:  # a plan saves time only: the batch is reconciled as usual
                log.warning("batch %d of an import not planned ahead", k, exc_info=True)
                return prepared, None

        step = asyncio.ensure_future(ahead(0))
        claimed: set[tuple[str, str]] = set()  # the identifier values of the last batch
        try:
            for k, (chunk_items, chunk_rels) in enumerate(batches):
                prepared, plan = await step
                # Planned before the last batch was written: valid only if none of its
                # records shares an identifier value with that batch's (which may have
                # created or changed a CI holding it); otherwise reconciled again.
                if plan is not None and plan.items is not None and claimed and \
                        not claimed.isdisjoint(_identifier_values(prepared[0])):
                    plan = None
                if k + 1 < len(batches):
                    step = asyncio.ensure_future(ahead(k + 1))
                await self._batch(source, sources, prepared, merge_duplicates, result, plan)
                claimed = _identifier_values(prepared[0])
                result.batches += 1
                done += len(chunk_items) + len(chunk_rels)
                if progress:
                    progress(done, total)
        except BaseException:
            step.cancel()
            for f in prepares.values():
                f.cancel()
            raise
        result.rejected.sort(key=lambda r: (r.record, r.index))
        return result

    async def _plan(
        self, source: Source, sources: Mapping[str, Source], prepared: _Prepared,
        result: IngestResult,
    ) -> _Plan | None:
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
        out = _Outcome()
        history = History(source.name)
        if cands and not rels:
            values: dict[str, list[str]] = defaultdict(list)
            for c in cands:
                for p, v in c.unique.items():
                    values[p].append(v)
            if await self.db.read_tx(lambda tx: self.repo.identifiers_held(tx, values)):
                return None
            writes = await asyncio.to_thread(self._reconcile_items, source, sources, cands,
                                             {}, False, now, out, history)
            return _Plan(now, out, history, items=writes)
        if rels and not cands:
            planned = await asyncio.to_thread(_plan_relations, rels, result.ids,
                                              result.fresh, result.classes, out, history)
            if planned is not None:
                return _Plan(now, out, history, relations=planned[1], accepted=planned[0])
        return None

    async def _batch(
        self, source: Source, sources: Mapping[str, Source], prepared: _Prepared,
        merge_duplicates: bool, result: IngestResult, plan: _Plan | None = None,
    ) -> None:
        cands, rels, rejected = prepared
        result.rejected.extend(rejected)
        if not cands and not rels:
            return
        # Earlier batches' outcomes (only updated once this batch has committed) and this
        # batch's own; copied only when this batch has both items and relations (an
        # import's maps grow to every CI it names, its relation batches have no items).
        known, fresh, classes = result.ids, result.fresh, result.classes

        async def work(tx: CountingTx) -> _Outcome:
            nonlocal plan
            if plan is not None:  # used once: run again, the batch is reconciled here
                p, plan = plan, None
                if p.items is not None:
                    await self._write_item_changes(tx, p.items, p.now)
                if p.relations is not None:
                    await self._write_relation_changes(tx, source, p.relations, p.now)
                elif p.accepted is not None:
                    await self._seen_relations(tx, source, p.accepted, fresh, p.now, p.out,
                                               p.history)
                await self.repo.write_history(tx, p.history.records, p.now)
                return p.out
            now = utcnow()
            out = _Outcome()
            history = History(source.name)
            if cands:
                await self._write_items(tx, source, sources, cands, merge_duplicates, now,
                                        out, history)
            if rels:
                await self._write_relations(tx, source, rels, _joined(known, out.ids),
                                            _joined(fresh, out.fresh),
                                            _joined(classes, out.classes), now, out, history)
            await self.repo.write_history(tx, history.records, now)
            return out

        out = await self._retrying(work, cands, rels)
        result.created += out.created
        result.updated += out.updated
        result.unchanged += out.unchanged
        result.merged += out.merged
        result.suppressed += out.suppressed
        result.relations_created += out.r_created
        result.relations_updated += out.r_updated
        result.relations_unchanged += out.r_unchanged
        result.rejected.extend(out.rejected)
        result.ids.update(out.ids)
        result.fresh.update(out.fresh)
        result.classes.update(out.classes)

    async def _retrying(
        self, work: Any, cands: list[Candidate],
        rels: list[tuple[int, DiscoveredRelation, dict[str, Any]]],
    ) -> _Outcome:
        """Run the batch; a race with a concurrent batch (a CI created meanwhile, a unique
        identifier taken meanwhile) runs it again from a fresh read. Should Neo4j still
        refuse it, every record of the batch is rejected and nothing of it is written."""
        error: str = ""
        for _ in range(_ATTEMPTS):
            try:
                out: _Outcome = await self.db.write_tx(work)
                return out
            except _Raced:
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
        out = _Outcome()
        out.rejected = [Rejection(index=c.index, record="item", code=RejectCode.BATCH_FAILED,
                                  reason=reason) for c in cands]
        out.rejected += [Rejection(index=i, record="relation", code=RejectCode.BATCH_FAILED,
                                   reason=reason) for i, _, _ in rels]
        return out

    async def _write_items(
        self, tx: CountingTx, source: Source, sources: Mapping[str, Source],
        cands: list[Candidate], merge_duplicates: bool, now: datetime, out: _Outcome,
        history: History,
    ) -> None:
        found = await self._lookup(tx, cands)
        writes = self._reconcile_items(source, sources, cands, found, merge_duplicates, now,
                                       out, history)
        await self._write_item_changes(tx, writes, now)

    def _reconcile_items(
        self, source: Source, sources: Mapping[str, Source], cands: list[Candidate],
        found: Mapping[tuple[str, str], Row], merge_duplicates: bool, now: datetime,
        out: _Outcome, history: History,
    ) -> _ItemWrites:
        """What to write for the batch's items, given the stored CIs holding their
        identifiers (``found``): plain Python, no database."""
        now_iso = now.isoformat()
        claimed_values: dict[tuple[str, str], int] = {}
        claimed_ids: dict[str, int] = {}
        creates: dict[tuple[str, str], list[Row]] = defaultdict(list)
        updates: list[Row] = []
        pairs: list[Row] = []
        for c in cands:
            try:
                for pv in c.unique.items():
                    if pv in claimed_values:
                        raise Rejected(RejectCode.INVALID, f"{pv[0]} {pv[1]!r} is also given "
                                       f"by item {claimed_values[pv]} of this batch",
                                       f"identifiers.{pv[0]}")
                ident = identify(c, found)
                for cid in [r["id"] for _, r in ident.duplicates] + (
                    [ident.primary["id"]] if ident.primary else []
                ):
                    if cid in claimed_ids:
                        raise Rejected(RejectCode.INVALID, f"identifies CI {cid!r}, as item "
                                       f"{claimed_ids[cid]} of this batch does", "identifiers")
                if ident.duplicates and not merge_duplicates:
                    raise Rejected(RejectCode.CONFLICT, "; ".join(
                        f"{p} {c.unique[p]!r} identifies CI {r['id']!r}, a duplicate of "
                        f"{ident.primary['id']!r} (by {ident.rule}); merging is off"
                        for p, r in ident.duplicates if ident.primary
                    ), "identifiers")
            except Rejected as e:
                out.rejected.append(Rejection(index=c.index, record="item", code=e.code,
                                              reason=e.reason, field=e.field))
                continue
            for pv in c.unique.items():
                claimed_values[pv] = c.index
            if ident.primary is None:
                ci_id = str(uuid.uuid4())
                claimed_ids[ci_id] = c.index
                props = new_item_props(source, c, now_iso)
                # The creation record travels on the CI itself (queries.HISTORY).
                props["createdSeq"] = history.next_seq()
                props["createdChanges"] = dump_json(
                    {k: [None, v] for k, v in c.values.items()}
                    | {"name": [None, props["name"]]})
                rule = next(p for p in c.rules if p in c.unique)
                creates[(_labels(c.item.ci_class), rule)].append(
                    {"id": ci_id, "mergeValue": c.unique[rule], "props": props})
                out.created += 1
                out.fresh[ci_id] = c.cls
            else:
                ci_id = ident.primary["id"]
                claimed_ids[ci_id] = c.index
                stored = dict(ident.primary["props"])
                filled_props: dict[str, Any] = {}
                for prop, dup in ident.duplicates:
                    claimed_ids[dup["id"]] = c.index
                    filled = fill_from(stored, dup["props"])
                    filled_props.update({attribute_property(k): stored[attribute_property(k)]
                                         for k in filled})
                    if "fqdn" in stored and ("hostName" in filled or "domain" in filled):
                        filled_props["fqdn"] = stored["fqdn"]
                    pairs.append({"survivor": ci_id, "dup": dup["id"]})
                    detail = {"duplicate": dup["id"], "survivor": ci_id, "rule": ident.rule,
                              "identifier": prop, "value": c.unique[prop],
                              "reason": f"{ident.rule} {c.unique[ident.rule or '']!r} "
                              f"identifies {ci_id}; {prop} {c.unique[prop]!r} identifies "
                              f"{dup['id']}, which contradicts nothing"}
                    history.add(ci_id, HistoryKind.MERGED, filled, otherId=dup["id"],
                                detail=detail)
                    history.add(dup["id"], HistoryKind.MERGED_INTO,
                                {"lifecycleStatus": [dup["props"].get("lifecycleStatus"),
                                                     "RETIRED"]},
                                otherId=ci_id, detail=detail)
                    out.merged += 1
                if not ident.duplicates and unchanged(stored, c.values) and \
                        self._recently_seen(stored, source.name, now):
                    out.unchanged += 1  # re-sent within the sighting resolution: a read
                    out.classes[ci_id] = c.cls
                    if c.item.key:
                        out.ids[c.item.key] = ci_id
                    continue
                applied = apply(source, sources, stored, c.values, now_iso)
                props = filled_props | applied.props
                out.suppressed += applied.suppressed
                changed = bool(applied.changes or ident.duplicates)
                if changed:
                    if applied.changes:
                        history.add(ci_id, HistoryKind.UPDATED, applied.changes)
                    out.updated += 1
                else:
                    out.unchanged += 1
                if changed or not self._recently_seen(stored, source.name, now):
                    updates.append({"id": ci_id, "props": props, "seen": True,
                                    "changed": changed})
            out.classes[ci_id] = c.cls
            if c.item.key:
                out.ids[c.item.key] = ci_id
        return _ItemWrites(dict(creates), updates, pairs)

    async def _write_item_changes(self, tx: CountingTx, writes: _ItemWrites,
                                  now: datetime) -> None:
        pairs = writes.pairs
        if pairs:
            await self.repo.merge(tx, pairs, now)
        await self.repo.update_items(tx, writes.updates, now)
        raced = 0
        for (labels, rule), rows in writes.creates.items():
            raced += await self.repo.create_items(tx, labels, rule, rows, now)
        if raced:
            raise _Raced()
        if pairs:  # relationships moved: the survivors' consumers roll up again
            await propagate(tx, sorted({p["survivor"] for p in pairs}), "merged", now)

    def _recently_seen(self, stored: Mapping[str, Any], source: str, now: datetime) -> bool:
        """Whether this source's last sighting is within the sighting resolution (then an
        unchanged record writes nothing: re-sending a batch is a read)."""
        at = _seen_at(stored.get("seenBy"), source)
        return at is not None and at >= now - self._resolution

    async def _lookup(
        self, tx: CountingTx, cands: list[Candidate]
    ) -> dict[tuple[str, str], Row]:
        """Stored CIs holding the records' identifiers, in two steps: first each record's
        leading identifier (by its class's rules); then only the identifiers that could be
        held by some other CI: all of an unmatched record's, and those of a matched one that
        differ from what its CI holds (a value its CI holds is held by no other: unique).
        Re-sending what is stored costs one index seek per record."""
        first: dict[str, set[str]] = defaultdict(set)
        lead: list[tuple[str, str] | None] = []
        for c in cands:
            p0 = next((p for p in c.rules if p in c.unique), None)
            lead.append((p0, c.unique[p0]) if p0 else None)
            if p0:
                first[p0].add(c.unique[p0])
        found = await self.repo.lookup(tx, {p: sorted(v) for p, v in first.items()})
        more: dict[str, set[str]] = defaultdict(set)
        for c, key in zip(cands, lead, strict=True):
            hit = found.get(key) if key else None
            held = hit["props"] if hit else {}
            for p, v in c.unique.items():
                if (p, v) != key and held.get(p) != v:
                    more[p].add(v)
        if more:
            found.update(await self.repo.lookup(tx, {p: sorted(v) for p, v in more.items()}))
        return found

    async def _write_relations(
        self, tx: CountingTx, source: Source,
        rels: list[tuple[int, DiscoveredRelation, dict[str, Any]]], keys: Mapping[str, str],
        fresh: Mapping[str, str], classes: Mapping[str, str], now: datetime, out: _Outcome,
        history: History,
    ) -> None:
        """Relationships between items this ingest created need neither their ends looked up
        (their class is known, they are live) nor their live relationships (a new item has
        none but those this ingest makes, and the create statement skips an existing one),
        nor a health roll-up: new items are UNKNOWN with no state of their own yet, and so is
        anything rolled up from them alone."""
        by_ident: dict[str, set[str]] = defaultdict(set)
        for _, r, _ in rels:
            for end in (r.source, r.target):
                if end.identifiers is not None:
                    for p, v in _unique_of(end).items():
                        by_ident[p].add(v)
        found = await self.repo.lookup(tx, {p: sorted(v) for p, v in by_ident.items()})
        resolved = _resolve_relations(rels, keys, found, out)
        # Items this ingest identified are live (a retired one is rejected) of a known class.
        ends = await self.repo.ends(tx, sorted({i for x in resolved for i in (x[3], x[4])
                                                if i not in classes}))
        ends.update({i: (cls, "IN_SERVICE") for x in resolved for i in (x[3], x[4])
                     if (cls := classes.get(i)) is not None})
        accepted = _accept_relations(resolved, ends, out)
        await self._seen_relations(tx, source, accepted, fresh, now, out, history)

    async def _seen_relations(
        self, tx: CountingTx, source: Source, accepted: list[_Accepted],
        fresh: Mapping[str, str], now: datetime, out: _Outcome, history: History,
    ) -> None:
        """Write the accepted relationships: those live already are seen again first (one
        statement per type; their properties by precedence); the others are created."""
        touch: dict[RelationType, list[Row]] = defaultdict(list)
        for i, rt, props, s, t in accepted:
            if s not in fresh or (s, rt.value, t) in out.fresh_relations:
                touch[rt].append({"i": i, "s": s, "t": t, "props": props})
        live: set[int] = set()
        changed: dict[int, Row] = {}
        for rt, rows in touch.items():
            f, c, kept = await self.repo.touch_relations(tx, rt, rows, source, now,
                                                         now - self._resolution)
            live |= f
            changed.update(c)
            out.suppressed += kept
        writes = _relation_writes(accepted, live, changed, fresh, out, history)
        await self._write_relation_changes(tx, source, writes, now)

    async def _write_relation_changes(self, tx: CountingTx, source: Source,
                                      writes: _RelationWrites, now: datetime) -> None:
        for rt, rows in writes.creates.items():
            await self.repo.create_relations(tx, rt, rows, source, now)
        await self.repo.sync_mirrors(tx, writes.mirrors)
        if writes.changed_ends:
            await propagate(tx, sorted(writes.changed_ends), "discovered", now)

    # -------------------------------------------------------------------------- merge

    async def merge(
        self, principal: Principal | None, survivor_id: str, duplicate_ids: list[str],
        reason: str | None = None,
    ) -> int:
        """Merge duplicates into a survivor: relationships and history carried over, gaps
        filled, the duplicates retired (never deleted) and the merge recorded on both."""
        who = require_permission(principal, Permission.DISCOVERY_WRITE, "merge CIs")
        dups = list(dict.fromkeys(duplicate_ids))
        if not dups:
            raise DomainError.single("duplicateIds", "name at least one duplicate")
        if survivor_id in dups:
            raise DomainError.single("duplicateIds", "a CI cannot be merged into itself")

        async def work(tx: CountingTx) -> int:
            now = utcnow()
            props = await self.repo.item_props(tx, [survivor_id, *dups])
            for ident, name in [(survivor_id, "survivorId"), *((d, "duplicateIds") for d in dups)]:
                if ident not in props:
                    raise NotFound("CI", ident, name)
                if props[ident].get("lifecycleStatus") == "RETIRED":
                    raise DomainError.single(name, f"CI {ident!r} is retired", "CONFLICT")
                if props[ident].get("ciClass") != props[survivor_id].get("ciClass"):
                    raise DomainError.single(name, f"CI {ident!r} is a "
                                             f"{props[ident].get('ciClass')}, the survivor a "
                                             f"{props[survivor_id].get('ciClass')}", "CONFLICT")
            history = History(f"user:{who.user}")
            stored = dict(props[survivor_id])
            before = dict(stored)
            for d in dups:
                filled = fill_from(stored, props[d])
                detail = {"duplicate": d, "survivor": survivor_id, "reason": reason,
                          "by": who.user}
                history.add(survivor_id, HistoryKind.MERGED, filled, otherId=d, detail=detail)
                history.add(d, HistoryKind.MERGED_INTO,
                            {"lifecycleStatus": [props[d].get("lifecycleStatus"), "RETIRED"]},
                            otherId=survivor_id, detail=detail)
            changed = {k: v for k, v in stored.items() if before.get(k) != v}
            pairs = [{"survivor": survivor_id, "dup": d} for d in dups]
            await self.repo.merge(tx, pairs, now)
            await self.repo.update_items(tx, [{"id": survivor_id, "props": changed,
                                               "seen": False, "changed": True}], now)
            await self.repo.write_history(tx, history.records, now)
            await propagate(tx, [survivor_id], "merged", now)
            return len(dups)

        return await self.db.write_tx(work)

    # -------------------------------------------------------------------------- staleness

    async def sweep(
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

        async def mark(tx: CountingTx) -> int:
            row = await tx.one(q.MARK_STALE, {"before": stale_before, "now": now,
                                              "limit": chunk})
            ids = row["ids"] if row else []
            history = History("sweep")
            for i in ids:
                history.add(i, HistoryKind.STALE, {"staleSince": [None, now.isoformat()]})
            await self.repo.write_history(tx, history.records, now)
            return len(ids)

        while (n := await self.db.write_tx(mark)) > 0:
            result.stale += n

        async def retire(tx: CountingTx) -> int:
            rows = await tx.rows(q.TO_RETIRE, {"before": retire_before, "limit": chunk})
            ids = [r["id"] for r in rows]
            if not ids:
                return 0
            consumers = [i for i in await upward_closure(tx, ids) if i not in set(ids)]
            await tx.rows(q.RETIRE_UNSEEN, {"ids": ids, "now": now})
            history = History("sweep")
            for r in rows:
                history.add(r["id"], HistoryKind.RETIRED,
                            {"lifecycleStatus": [r["status"], "RETIRED"]},
                            detail={"lastSeenAt": r["lastSeenAt"]})
            await self.repo.write_history(tx, history.records, now)
            await recompute(tx, consumers, "retired", now)
            return len(ids)

        while (n := await self.db.write_tx(retire)) > 0:
            result.retired += n

        async def relations(tx: CountingTx) -> tuple[int, int]:
            stale = retired = 0
            history = History("sweep")
            ends: set[str] = set()
            for rt in RelationType:
                row = await tx.one(q.stale_relations(rt), {"before": stale_before, "now": now})
                stale += row["n"] if row else 0
                row = await tx.one(q.retire_relations(rt), {"before": retire_before,
                                                            "now": now})
                for e in (row["retired"] if row else []):
                    retired += 1
                    ends.update((e["s"], e["t"]))
                    history.add(e["s"], HistoryKind.RELATION_RETIRED, relationType=rt.value,
                                otherId=e["t"])
            await self.repo.write_history(tx, history.records, now)
            if ends:
                await propagate(tx, sorted(ends), "retired", now)
            return stale, retired

        result.relations_stale, result.relations_retired = await self.db.write_tx(relations)
        return result

    # -------------------------------------------------------------------------- reading

    async def history(
        self, item_id: str, since: datetime | None = None, until: datetime | None = None,
        first: int = 100,
    ) -> list[HistoryEntry]:
        since = since or datetime(1970, 1, 1, tzinfo=utcnow().tzinfo)
        until = until or utcnow() + timedelta(days=1)
        rows = await HistoryRepository(self.db).read(
            item_id, since, until, max(1, min(first, MAX_HISTORY_PAGE)))
        return [history_entry(r) for r in rows]

    async def as_of(self, item_id: str, at: datetime) -> CIAsOf:
        """The CI as it was at ``at``: today's values with every later change undone."""

        async def work(tx: CountingTx) -> CIAsOf:
            props = (await self.repo.item_props(tx, [item_id])).get(item_id)
            if props is None:
                raise NotFound("CI", item_id)
            created = as_datetime(native(props.get("createdAt")))
            if created is not None and created > at:
                return CIAsOf(id=item_id, at=at, existed=False)
            state: dict[str, Any] = {k: native(props.get(attribute_property(k)))
                                     for k in _AS_OF_KEYS}
            state.update({"attributes." + k[5:]: native(v) for k, v in props.items()
                          if k.startswith("attr_")})
            rel_changes: list[Row] = []
            for rec in await HistoryRepository.after(tx, item_id, at):
                if rec.get("mergedFrom"):
                    continue  # a duplicate's own past, not this CI's
                if rec["kind"].startswith("RELATION_"):
                    rel_changes.append(rec)
                    continue
                for key, (old, _new) in load_json(rec.get("changes")).items():
                    state[key] = old
            rels = []
            for r in await self.repo.relations_as_of(tx, item_id, at):
                p = {_rel_key(k): native(v) for k, v in r["props"].items()
                     if k.startswith("attr_")}
                if r["direction"] == "OUTGOING":
                    for rec in rel_changes:
                        if rec.get("relationType") == r["type"] and rec.get("otherId") == \
                                r["otherId"] and rec["kind"] == "RELATION_UPDATED":
                            for key, (old, _new) in load_json(rec.get("changes")).items():
                                p[key] = old
                rels.append(AsOfRelation(type=r["type"], direction=r["direction"],
                                         other_id=r["otherId"], properties=p))
            attrs = {k: v for k, v in state.items() if v is not None}
            return CIAsOf(id=item_id, at=at, existed=True, properties=attrs,
                          relations=sorted(rels, key=lambda x: (x.type, x.other_id)))

        return await self.db.read_tx(work)


_Resolved = tuple[int, DiscoveredRelation, dict[str, Any], str, str]
_Accepted = tuple[int, RelationType, dict[str, Any], str, str]


def _resolve_relations(
    rels: list[tuple[int, DiscoveredRelation, dict[str, Any]]], keys: Mapping[str, str],
    found: Mapping[tuple[str, str], Row], out: _Outcome,
) -> list[_Resolved]:
    """Each relationship's ends as CI ids (by id, by this import's keys, or by the stored
    CIs holding their identifiers); one that cannot be resolved is rejected."""
    resolved: list[_Resolved] = []
    for index, r, props in rels:
        try:
            s = _resolve(r.source, keys, found, "source")
            t = _resolve(r.target, keys, found, "target")
            if s == t:
                raise Rejected(RejectCode.INVALID, "an item cannot be related to itself",
                               "target")
            resolved.append((index, r, props, s, t))
        except Rejected as e:
            out.rejected.append(Rejection(index=index, record="relation", code=e.code,
                                          reason=e.reason, field=e.field))
    return resolved


def _accept_relations(resolved: list[_Resolved], ends: Mapping[str, tuple[str, str]],
                      out: _Outcome) -> list[_Accepted]:
    """The relationships whose ends exist, are live and may be joined by their type (each
    once per batch); the others are rejected. ``ends``: id -> (class, lifecycle status)."""
    accepted: list[_Accepted] = []
    first_seen: dict[tuple[str, str, str], int] = {}
    for index, r, props, s, t in resolved:
        try:
            for ident, name in ((s, "source"), (t, "target")):
                if ident not in ends:
                    raise Rejected(RejectCode.NOT_FOUND, f"item {ident!r} not found", name)
                if ends[ident][1] == "RETIRED":
                    raise Rejected(RejectCode.CONFLICT, f"item {ident!r} is retired", name)
            why = rule_violation(r.type, ends[s][0], ends[t][0])
            if why:
                raise Rejected(RejectCode.INVALID, why, "type")
            triple = (s, r.type.value, t)
            if triple in first_seen:
                raise Rejected(RejectCode.INVALID, f"repeats relation {first_seen[triple]} "
                               "of this batch")
            first_seen[triple] = index
        except Rejected as e:
            out.rejected.append(Rejection(index=index, record="relation", code=e.code,
                                          reason=e.reason, field=e.field))
            continue
        accepted.append((index, r.type, props, s, t))
    return accepted


def _relation_writes(
    accepted: list[_Accepted], live: set[int], changed: Mapping[int, Row],
    fresh: Mapping[str, str], out: _Outcome, history: History,
) -> _RelationWrites:
    """What to write for the accepted relationships, given those found live (``live``,
    by record index) and the old properties of those whose properties changed."""
    creates: dict[RelationType, list[Row]] = defaultdict(list)
    mirrors: list[Row] = []
    changed_ends: set[str] = set()
    for i, rt, props, s, t in accepted:
        row = {"s": s, "t": t, "props": props}
        if i not in live:
            # The creation record travels on the relationship (queries.HISTORY).
            creates[rt].append({**row, "seq": history.next_seq(), "changes": dump_json(
                {_rel_key(k): [None, v] for k, v in props.items()}) if props else None})
            if s in fresh:
                out.fresh_relations.add((s, rt.value, t))
            out.r_created += 1
        elif i in changed:
            have = changed[i]
            diff = {_rel_key(k): [have.get(k), v] for k, v in props.items()
                    if have.get(k) != v}
            history.add(s, HistoryKind.RELATION_UPDATED, diff,
                        relationType=rt.value, otherId=t)
            out.r_updated += 1
        else:
            out.r_unchanged += 1
            continue
        if s not in fresh or t not in fresh:
            changed_ends.update((s, t))
        if rt is RelationType.MEMBER_OF:
            mirrors.append(row)
    return _RelationWrites(dict(creates), mirrors, changed_ends)


def _plan_relations(
    rels: list[tuple[int, DiscoveredRelation, dict[str, Any]]], keys: Mapping[str, str],
    fresh: Mapping[str, str], classes: Mapping[str, str], out: _Outcome, history: History,
) -> tuple[list[_Accepted], _RelationWrites | None] | None:
    """The accepted relationships when both ends of each are CIs this ingest identified
    (see ``_plan``), and their writes too when each source end is one it created (no
    live relationship to look for first); None when an end is to be read."""
    for _, r, _ in rels:  # what rules a plan out, at the first such record
        for end in (r.source, r.target):
            if end.identifiers is not None or (end.id is not None and end.id not in classes):
                return None
    resolved = _resolve_relations(rels, keys, {}, out)
    if any(i not in classes for x in resolved for i in (x[3], x[4])):
        return None
    ends = {i: (classes[i], "IN_SERVICE") for x in resolved for i in (x[3], x[4])}
    accepted = _accept_relations(resolved, ends, out)
    if any(s not in fresh for _, _, _, s, _ in accepted):
        return accepted, None
    return accepted, _relation_writes(accepted, set(), {}, fresh, out, history)


def _rel_key(prop: str) -> str:
    """A relationship's property as clients name it (stored with the attribute prefix)."""
    return prop.removeprefix("attr_")


def _unique_of(end: EndpointRef) -> dict[str, str]:
    i = end.identifiers
    if i is None:
        return {}
    return {k: str(v) for k, v in (("serialNumber", i.serial_number),
                                   ("cloudInstanceId", i.cloud_instance_id),
                                   ("fqdn", i.fqdn), ("macAddress", i.mac_address)) if v}


def _resolve(end: EndpointRef, keys: Mapping[str, str], found: Mapping[tuple[str, str], Row],
             name: str) -> str:
    if end.id is not None:
        return end.id
    if end.key is not None:
        if end.key not in keys:
            raise Rejected(RejectCode.NOT_FOUND, f"no item with key {end.key!r} in this "
                           "import", f"{name}.key")
        return keys[end.key]
    for p, v in _unique_of(end).items():
        if (p, v) in found:
            return str(found[(p, v)]["id"])
    raise Rejected(RejectCode.NOT_FOUND, "no CI has these identifiers", f"{name}.identifiers")


_KEY = re.compile(KEY_PATTERN.removeprefix("^").removesuffix("$"))
_RELATION_FIELDS = frozenset(("source", "target", "type", "properties"))
_RELATION_TYPES = {t.value: t for t in RelationType}


def quick_relation(raw: Any) -> DiscoveredRelation | None:
    """The usual record, both ends by key (``{"source": {"key": ...}, "target": {"key":
    ...}, "type": ..., "properties"?: {...}}``), checked as ``DiscoveredRelation`` would
    check it, without its general validator (a third of a large import's client time);
    None for anything else, which is then validated in full."""
    if type(raw) is not dict or not raw.keys() <= _RELATION_FIELDS:
        return None
    rel_type = raw.get("type")
    props = raw.get("properties", {})
    if type(rel_type) is not str or rel_type not in _RELATION_TYPES or type(props) is not dict \
            or not all(type(k) is str for k in props):
        return None
    ends = []
    for side in ("source", "target"):
        end = raw.get(side)
        if type(end) is not dict or len(end) != 1:
            return None
        key = end.get("key")
        if type(key) is not str or not _KEY.fullmatch(key):
            return None
        ends.append(_built(EndpointRef, {"key": key, "id": None, "identifiers": None},
                           _KEY_SET))
    return _built(DiscoveredRelation, {"source": ends[0], "target": ends[1],
                                       "type": _RELATION_TYPES[rel_type],
                                       "properties": dict(props)},
                  _RELATION_SET if "properties" in raw else _RELATION_SET_BARE)


_KEY_SET = frozenset(("key",))
_RELATION_SET = frozenset(("source", "target", "type", "properties"))
_RELATION_SET_BARE = frozenset(("source", "target", "type"))
_M = TypeVar("_M", bound=BaseModel)


def _built(model: type[_M], values: dict[str, Any], fields_set: frozenset[str]) -> _M:
    """A model of checked values, every field given: what ``model_construct`` makes (its
    ``__dict__``, fields set, no extra or private values), at a tenth of its cost."""
    m = model.__new__(model)
    object.__setattr__(m, "__dict__", values)
    object.__setattr__(m, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(m, "__pydantic_extra__", None)
    object.__setattr__(m, "__pydantic_private__", None)
    return m


def _prepare_relation(raw: Any) -> tuple[DiscoveredRelation, dict[str, Any]]:
    r = quick_relation(raw) or _validated(DiscoveredRelation, raw)
    errors = rule_property_errors(r.properties)
    if errors:
        k, m = next(iter(errors.items()))
        raise Rejected(RejectCode.INVALID, f"properties.{k}: {m}", f"properties.{k}")
    try:
        props = attribute_properties(r.properties, "properties")
    except DomainError as e:
        raise Rejected(RejectCode.INVALID, "; ".join(f"{x.field}: {x.message}"
                                                     for x in e.errors),
                       e.errors[0].field) from None
    return r, props


def provenance_of(props_json: str | None, values: Mapping[str, Any]) -> list[Provenance]:
    """Provenance entries of a CI (its ``provenance`` property), with current values."""
    out = []
    for key, (src, set_at, confirmed) in sorted(load_json(props_json).items()):
        out.append(Provenance(attribute=key, value=values.get(key), source=src,
                              set_at=datetime.fromisoformat(set_at),
                              confirmed_at=datetime.fromisoformat(confirmed)))
    return out


def sightings_of(seen_json: str | None) -> list[Sighting]:
    return [Sighting(source=s, last_seen_at=datetime.fromisoformat(at))
            for s, at in sorted(load_json(seen_json).items())]
