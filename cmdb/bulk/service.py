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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from neo4j.exceptions import ClientError

from cmdb.bulk.models import (
    DEFAULT_BATCH_SIZE,
    BatchOutcome,
    BulkResult,
    CIRow,
    ItemRow,
    OrgRow,
    Progress,
    RejectCode,
    Rejection,
    RelationRow,
    ServiceRow,
)
from cmdb.bulk.repository import BulkRepository, Row
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError, LifecycleStatus, OrgKind
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx, Database
from cmdb.items.inventory import common_properties
from cmdb.items.models import SERVICE, SERVICE_LABELS, RelationType, class_labels, rule_violation
from cmdb.items.repository import (
    IDENTIFIER_PROPERTIES,
    UNIQUE_IDENTIFIERS,
    identifier_properties,
    sla_properties,
    value_properties,
)
from cmdb.rollup.models import rule_property_errors
from cmdb.settings import Settings

T = TypeVar("T")


class _Keyed(Protocol):
    index: int

    @property
    def key(self) -> str: ...


P = TypeVar("P", bound=_Keyed)

_REF_FIELDS = {"owner": "owner_group_id", "cc": "cost_centre_id", "loc": "location_id"}
_REF_KINDS = {"owner": OrgKind.OWNER_GROUP, "cc": OrgKind.COST_CENTRE, "loc": OrgKind.LOCATION}
_ORG_NAMES = {OrgKind.OWNER_GROUP: "owner group", OrgKind.COST_CENTRE: "cost centre",
              OrgKind.LOCATION: "location"}
_UNIQUE_PROPS = tuple(IDENTIFIER_PROPERTIES[f] for f in UNIQUE_IDENTIFIERS)


class _Rejected(Exception):
    def __init__(self, code: RejectCode, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field = code, reason, field


@dataclass
class _Item:
    """A validated item row: what to set when it is new, and what it sets when it exists."""

    index: int
    id: str
    is_service: bool
    cls: str  # ciClass, or serviceKind for a service
    labels: str
    create_props: dict[str, Any]
    update_props: dict[str, Any]
    create_refs: dict[str, str | None]
    update_refs: dict[str, str | None]  # only the references the row gives
    identifiers: dict[str, str]  # unique identifier property -> value the row claims
    retired: bool  # the row asks for lifecycle status RETIRED

    @property
    def key(self) -> str:
        return self.id


@dataclass
class _Relation:
    index: int
    source: str
    target: str
    type: RelationType
    props: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.source} -{self.type.value}-> {self.target}"


@dataclass
class _Org:
    index: int
    id: str
    name_lower: str
    code: str | None
    parent_id: str | None
    parent_given: bool
    create_props: dict[str, Any]
    update_props: dict[str, Any]

    @property
    def key(self) -> str:
        return self.id


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
            rows, lambda i, r: _prepare_org(kind, i, r),
            lambda batch: self._write_org(kind, batch), progress, total,
        )

    async def upsert_items(
        self, rows: Iterable[ItemRow | Mapping[str, Any]],
        progress: Progress | None = None, total: int | None = None,
    ) -> BulkResult:
        """CIs and services merged on id. A new item gets every field (defaults included);
        an existing one only the fields its row sets, and is left alone when they match."""
        return await self._run(rows, _prepare_item, self._write_items, progress, total)

    async def upsert_relations(
        self, rows: Iterable[RelationRow | Mapping[str, Any]],
        progress: Progress | None = None, total: int | None = None,
    ) -> BulkResult:
        """One live relationship per (source, type, target), like ``relate``; the endpoint
        rules are checked for each row with the classes of the stored endpoints."""
        return await self._run(
            rows, _prepare_relation, self._write_relations, progress, total
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
        chunks = _chunks(rows, self.batch_size)
        batch = await asyncio.to_thread(_prepare_batch, chunks, prepare)
        while batch is not None:
            size, prepared, rejected = batch
            ahead = asyncio.ensure_future(asyncio.to_thread(_prepare_batch, chunks, prepare))
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
            return _failed(rows, e), True

    # -------------------------------------------------------------------------- items

    async def _write_items(self, batch: list[_Item]) -> BatchOutcome:
        now = utcnow()

        async def work(tx: CountingTx) -> BatchOutcome:
            out = BatchOutcome()
            existing = await self.repo.existing_items(tx, [p.id for p in batch])
            ref_ids = sorted({v for p in batch for v in _refs_of(p, existing) if v})
            org = await self.repo.org_labels(tx, ref_ids)
            writes: list[tuple[_Item, dict[str, Any], bool]] = []
            for p in batch:
                try:
                    plan = _plan_item(p, existing.get(p.id), org)
                except _Rejected as e:
                    out.rejected.append(_reject(p.index, p.id, e))
                    continue
                if plan is None:
                    out.unchanged += 1
                else:
                    writes.append((p, plan, p.id not in existing))
            claims = _identifier_claims(p for p, _, _ in writes)
            held: dict[str, list[Row]] = defaultdict(list)
            for found in await self.repo.identifier_conflicts(tx, claims):
                held[found["id"]].append(found)
            creates: dict[str, list[Row]] = defaultdict(list)  # by label set
            updates: list[Row] = []
            for p, plan, new in writes:
                if p.id in held:
                    out.rejected.append(_identifier_rejection(p, held[p.id]))
                elif new:
                    creates[p.labels].append(plan)
                else:
                    updates.append(plan)
            for labels, rows in creates.items():
                await self.repo.create_items(tx, labels, rows, now)
                out.created += len(rows)
            if updates:
                await self.repo.update_items(tx, updates, now)
                out.updated += len(updates)
            return out

        return await self.db.write_tx(work)

    # -------------------------------------------------------------------------- relations

    async def _write_relations(self, batch: list[_Relation]) -> BatchOutcome:
        now = utcnow()

        async def work(tx: CountingTx) -> BatchOutcome:
            out = BatchOutcome()
            ends = await self.repo.ends(tx, sorted({i for r in batch
                                                    for i in (r.source, r.target)}))
            groups: dict[RelationType, list[Row]] = defaultdict(list)
            for r in batch:
                try:
                    _check_ends(r, ends)
                except _Rejected as e:
                    out.rejected.append(_reject(r.index, r.key, e))
                    continue
                groups[r.type].append({"s": r.source, "t": r.target, "props": r.props})
            for rel_type, rows in groups.items():
                counts = await self.repo.upsert_relations(tx, rel_type, rows, now)
                out.created += counts.get("created", 0)
                out.updated += counts.get("updated", 0)
                out.unchanged += counts.get("unchanged", 0)
            return out

        return await self.db.write_tx(work)

    # -------------------------------------------------------------------------- org units

    async def _write_org(self, kind: OrgKind, batch: list[_Org]) -> BatchOutcome:
        now = utcnow()
        what = _ORG_NAMES[kind]

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
                    _unique_in_batch(o, earlier)
                    plan = _plan_org(kind, what, o, existing.get(o.id), clashes.get(o.id, []),
                                     in_batch | stored_parents)
                except _Rejected as e:
                    out.rejected.append(_reject(o.index, o.id, e))
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


# ------------------------------------------------------------------------------ helpers


def _chunks(rows: Iterable[T], size: int) -> Iterator[list[tuple[int, T]]]:
    chunk: list[tuple[int, T]] = []
    for item in enumerate(rows):
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _prepare_batch(
    chunks: Iterator[list[tuple[int, T]]], prepare: Callable[[int, T], P]
) -> tuple[int, list[P], list[Rejection]] | None:
    """The next batch validated: (its size, its rows, the rows it rejected), or None."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    prepared: list[P] = []
    rejected: list[Rejection] = []
    first_seen: dict[str, int] = {}
    for index, raw in chunk:
        try:
            row = prepare(index, raw)
            if row.key in first_seen:
                raise _Rejected(RejectCode.INVALID, f"{row.key!r} repeats row "
                                f"{first_seen[row.key]} of the same batch")
            first_seen[row.key] = index
            prepared.append(row)
        except _Rejected as e:
            rejected.append(Rejection(index=index, key=_key_of(raw), code=e.code,
                                      reason=e.reason, field=e.field))
    return len(chunk), prepared, rejected


def _failed(rows: Sequence[_Keyed], error: ClientError) -> BatchOutcome:
    reason = f"Neo4j refused the batch, nothing of it was written: {error.message or error}"
    return BatchOutcome(rejected=[
        Rejection(index=r.index, key=r.key, code=RejectCode.BATCH_FAILED, reason=reason)
        for r in rows
    ])


def _key_of(raw: Any) -> str | None:
    if isinstance(raw, Mapping):
        if "source_id" in raw:
            return f"{raw.get('source_id')} -{raw.get('type')}-> {raw.get('target_id')}"
        ident = raw.get("id")
        return str(ident) if ident is not None else None
    if isinstance(raw, RelationRow):
        return f"{raw.source_id} -{raw.type.value}-> {raw.target_id}"
    ident = getattr(raw, "id", None)
    return str(ident) if ident is not None else None


def _reject(index: int, key: str, e: _Rejected) -> Rejection:
    return Rejection(index=index, key=key, code=e.code, reason=e.reason, field=e.field)


def _domain(e: DomainError) -> _Rejected:
    first = e.errors[0]
    field_name = first.field.removeprefix("input.") if first.field else None
    reason = "; ".join(
        (f"{err.field.removeprefix('input.')}: " if err.field else "") + err.message
        for err in e.errors
    )
    return _Rejected(RejectCode.INVALID, reason, field_name)


def _validated(model: type[T], raw: Any) -> T:
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        raise _Rejected(RejectCode.INVALID, f"expected a {model.__name__} or a mapping")
    try:
        return validate(model, dict(raw), prefix="")  # type: ignore[type-var]
    except DomainError as e:
        raise _domain(e) from None


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same type (so that 1, 1.0 and True differ), lists element-wise."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------ items


def _prepare_item(index: int, raw: ItemRow | Mapping[str, Any]) -> _Item:
    if isinstance(raw, ServiceRow | CIRow):
        row: ItemRow = raw
    elif isinstance(raw, Mapping) and "kind" in raw:
        row = _validated(ServiceRow, raw)
    else:
        row = _validated(CIRow, raw)
    given = row.model_fields_set - {"id"}
    fields = row.model_dump(exclude={"id"})
    changed = {k: fields[k] for k in given}
    changed.pop("attributes", None)  # attributes are checked once, below
    try:
        attributes = attribute_properties(row.attributes, "attributes")
        create, update = common_properties(fields | {"attributes": {}}), common_properties(changed)
    except DomainError as e:
        raise _domain(e) from None
    create |= attributes
    if "attributes" in given:
        update |= attributes
    identifiers: dict[str, str] = {}
    if isinstance(row, CIRow):
        # A blank serial or instance id passes Identifiers (stripped to ""): treat it as none.
        ids = {k: v or None for k, v in identifier_properties(row.identifiers).items()}
        create |= {k: v for k, v in ids.items() if v}
        create["ciClass"] = row.ci_class.value
        if "identifiers" in given:
            update |= ids
        identifiers = {p: str(ids[p]) for p in _UNIQUE_PROPS if ids[p]}
        cls, labels, is_service = row.ci_class.value, class_labels(row.ci_class), False
    else:
        extra = sla_properties(row.sla) | value_properties(row.business_value)
        create |= {k: v for k, v in extra.items() if v is not None}
        create["serviceKind"] = row.kind.value
        create["costRecovery"] = row.cost_recovery.value
        if "cost_recovery" in given:
            update["costRecovery"] = row.cost_recovery.value
        if "sla" in given:
            update |= sla_properties(row.sla)
        if "business_value" in given:
            update |= value_properties(row.business_value)
        cls, labels, is_service = row.kind.value, SERVICE_LABELS[row.kind], True
    refs = {key: getattr(row, name) for key, name in _REF_FIELDS.items()}
    return _Item(
        index=index, id=row.id, is_service=is_service, cls=cls, labels=labels,
        create_props=create, update_props=update, create_refs=refs,
        update_refs={k: v for k, v in refs.items() if _REF_FIELDS[k] in given},
        identifiers=identifiers,
        retired=row.lifecycle_status is LifecycleStatus.RETIRED,
    )


def _refs_of(p: _Item, existing: Mapping[str, Row]) -> Iterable[str | None]:
    return (p.update_refs if p.id in existing else p.create_refs).values()


def _plan_item(
    p: _Item, stored: Row | None, org: Mapping[str, list[str]]
) -> dict[str, Any] | None:
    """The row to send for ``p`` (props and reference flags), or None when nothing changes."""
    what = "service" if p.is_service else "CI"
    if stored is None:
        if p.retired:
            raise _Rejected(RejectCode.INVALID, f"a new {what} cannot be retired",
                            "lifecycleStatus")
        props = p.create_props
        wanted: dict[str, str | None] = {
            k: v for k, v in p.create_refs.items() if v is not None
        }
    else:
        have = stored["props"]
        stored_cls = SERVICE if stored["isService"] else have.get("ciClass")
        if stored_cls != (SERVICE if p.is_service else p.cls) or (
            p.is_service and have.get("serviceKind") != p.cls
        ):
            raise _Rejected(RejectCode.CONFLICT, f"id {p.id!r} is already a "
                            f"{have.get('serviceKind') or have.get('ciClass')} item; the class "
                            "of an item cannot change", "id")
        if have.get("lifecycleStatus") == LifecycleStatus.RETIRED.value:
            raise _Rejected(RejectCode.CONFLICT, f"{what} {p.id!r} is retired", "id")
        if p.retired:
            raise _Rejected(RejectCode.INVALID, f"retire a {what} with its retire mutation, "
                            "not by a bulk update", "lifecycleStatus")
        props = {k: v for k, v in p.update_props.items() if not _same(have.get(k), v)}
        wanted = {k: v for k, v in p.update_refs.items() if stored[k] != v}
        if not props and not wanted:
            return None
    missing = [k for k, v in wanted.items() if v and _REF_KINDS[k].value not in org.get(v, [])]
    if missing:
        raise _Rejected(RejectCode.NOT_FOUND, "; ".join(
            f"{_ORG_NAMES[_REF_KINDS[k]]} {wanted[k]!r} not found" for k in missing
        ), _camel(_REF_FIELDS[missing[0]]))
    row: dict[str, Any] = {"id": p.id, "props": props}
    for key in _REF_FIELDS:
        row["set" + key.capitalize()] = key in wanted
        row[key] = wanted.get(key)
    return row


def _identifier_claims(items: Iterable[_Item]) -> dict[str, list[dict[str, str]]]:
    claims: dict[str, list[dict[str, str]]] = {p: [] for p in _UNIQUE_PROPS}
    for item in items:
        for prop, value in item.identifiers.items():
            claims[prop].append({"id": item.id, "value": value})
    return claims


def _identifier_rejection(p: _Item, clash: list[Row]) -> Rejection:
    reason = "; ".join(f"{c['prop']} {c['value']!r} already identifies CI {c['heldBy']!r}"
                       for c in clash)
    return Rejection(index=p.index, key=p.id, code=RejectCode.CONFLICT, reason=reason,
                     field=f"identifiers.{clash[0]['prop']}")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


# ------------------------------------------------------------------------------ relations


def _prepare_relation(index: int, raw: RelationRow | Mapping[str, Any]) -> _Relation:
    row = _validated(RelationRow, raw)
    if row.source_id == row.target_id:
        raise _Rejected(RejectCode.INVALID, "an item cannot be related to itself", "targetId")
    try:
        rule_errors = rule_property_errors(row.properties)
        if rule_errors:
            raise DomainError([FieldError(field=f"properties.{k}", message=m)
                               for k, m in rule_errors.items()])
        props = attribute_properties(row.properties, "properties")
    except DomainError as e:
        raise _domain(e) from None
    return _Relation(index, row.source_id, row.target_id, row.type, props)


def _check_ends(r: _Relation, ends: Mapping[str, tuple[str, str]]) -> None:
    source, target = ends.get(r.source), ends.get(r.target)
    for end, ident, name in ((source, r.source, "sourceId"), (target, r.target, "targetId")):
        if end is None:
            raise _Rejected(RejectCode.NOT_FOUND, f"item {ident!r} not found", name)
        if end[1] == LifecycleStatus.RETIRED.value:
            raise _Rejected(RejectCode.CONFLICT, f"item {ident!r} is retired", name)
    assert source is not None and target is not None
    why = rule_violation(r.type, source[0], target[0])
    if why:
        raise _Rejected(RejectCode.INVALID, why, "type")


# ------------------------------------------------------------------------------ org units


def _prepare_org(kind: OrgKind, index: int, raw: OrgRow | Mapping[str, Any]) -> _Org:
    row = _validated(OrgRow, raw)
    if kind is OrgKind.COST_CENTRE and row.code is None:
        raise _Rejected(RejectCode.INVALID, "a cost centre needs a code", "code")
    if kind is not OrgKind.COST_CENTRE and row.code is not None:
        raise _Rejected(RejectCode.INVALID, "only cost centres have a code", "code")
    if kind is OrgKind.OWNER_GROUP and row.parent_id is not None:
        raise _Rejected(RejectCode.INVALID, "owner groups have no parent", "parentId")
    if row.parent_id == row.id:
        raise _Rejected(RejectCode.INVALID, "a unit cannot be its own parent", "parentId")
    given = row.model_fields_set
    every = {"name": row.name, "nameLower": row.name.lower(), "code": row.code,
             "email": row.email, "description": row.description}
    source = {"name": "name", "nameLower": "name", "code": "code", "email": "email",
              "description": "description"}
    return _Org(
        index=index, id=row.id, name_lower=row.name.lower(), code=row.code,
        parent_id=row.parent_id, parent_given="parent_id" in given,
        create_props={k: v for k, v in every.items() if v is not None},
        update_props={k: v for k, v in every.items() if source[k] in given},
    )


def _unique_in_batch(o: _Org, earlier: dict[tuple[str, str | None], str]) -> None:
    for what, value in (("name", o.name_lower), ("code", o.code)):
        held = earlier.setdefault((what, value), o.id) if value is not None else o.id
        if held != o.id:
            raise _Rejected(RejectCode.CONFLICT, f"{what} {value!r} is also given to "
                            f"{held!r} in the same batch", what)


def _plan_org(
    kind: OrgKind, what: str, o: _Org, stored: Row | None, clashes: list[Row],
    parents: set[str],
) -> tuple[dict[str, Any], bool] | None:
    """(props, whether to re-point the parent) for ``o``, or None when nothing changes."""
    if stored is not None and kind.value not in stored["labels"]:
        raise _Rejected(RejectCode.CONFLICT, f"id {o.id!r} is already another kind of unit",
                        "id")
    for c in clashes:
        if c["what"] == "name":
            raise _Rejected(RejectCode.CONFLICT, f"a {what} named {o.name_lower!r} exists "
                            f"({c['heldBy']!r})", "name")
        raise _Rejected(RejectCode.CONFLICT, f"cost centre code {o.code!r} is held by "
                        f"{c['heldBy']!r}", "code")
    if o.parent_id is not None and o.parent_id not in parents:
        raise _Rejected(RejectCode.NOT_FOUND, f"parent {what} {o.parent_id!r} not found",
                        "parentId")
    if stored is None:
        return o.create_props, o.parent_id is not None
    have = stored["props"]
    props = {k: v for k, v in o.update_props.items() if not _same(have.get(k), v)}
    relink = o.parent_given and stored["parentId"] != o.parent_id
    return (props, relink) if props or relink else None
