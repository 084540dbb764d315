"""Bulk rows validated like the single-item path (the same pydantic models and property
builders) and planned against what a batch's transaction read: what to write, or why not."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from neo4j.exceptions import ClientError

from cmdb.bulk.models import (
    BatchOutcome,
    CIRow,
    ItemRow,
    OrgRow,
    Rejection,
    RelationRow,
    ServiceRow,
)
from cmdb.core.mapping import camel
from cmdb.core.models import DomainError, FieldError, LifecycleStatus, OrgKind, RejectCode, Rejected
from cmdb.core.validation import validate
from cmdb.core.values import attribute_properties
from cmdb.items.models import SERVICE, SERVICE_LABELS, RelationType, class_labels, rule_violation
from cmdb.items.properties import common_properties
from cmdb.items.repository import (
    IDENTIFIER_PROPERTIES,
    UNIQUE_IDENTIFIERS,
    identifier_properties,
    sla_properties,
    value_properties,
)
from cmdb.rollup.models import rule_property_errors

T = TypeVar("T")
Row = dict[str, Any]


class Keyed(Protocol):
    index: int

    @property
    def key(self) -> str: ...


P = TypeVar("P", bound=Keyed)

_REF_FIELDS = {"owner": "owner_group_id", "cc": "cost_centre_id", "loc": "location_id"}
_REF_KINDS = {"owner": OrgKind.OWNER_GROUP, "cc": OrgKind.COST_CENTRE, "loc": OrgKind.LOCATION}
ORG_NAMES = {OrgKind.OWNER_GROUP: "owner group", OrgKind.COST_CENTRE: "cost centre",
             OrgKind.LOCATION: "location"}
_UNIQUE_PROPS = tuple(IDENTIFIER_PROPERTIES[f] for f in UNIQUE_IDENTIFIERS)


@dataclass
class PreparedItem:
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
class PreparedRelation:
    index: int
    source: str
    target: str
    type: RelationType
    props: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.source} -{self.type.value}-> {self.target}"


@dataclass
class PreparedOrg:
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


def reject(index: int, key: str, e: Rejected) -> Rejection:
    return Rejection(index=index, key=key, code=e.code, reason=e.reason, field=e.field)


def _domain(e: DomainError) -> Rejected:
    first = e.errors[0]
    field_name = first.field.removeprefix("input.") if first.field else None
    reason = "; ".join(
        (f"{err.field.removeprefix('input.')}: " if err.field else "") + err.message
        for err in e.errors
    )
    return Rejected(RejectCode.INVALID, reason, field_name)


def _validated(model: type[T], raw: Any) -> T:
    if isinstance(raw, model):
        return raw
    if not isinstance(raw, Mapping):
        raise Rejected(RejectCode.INVALID, f"expected a {model.__name__} or a mapping")
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


def prepare_item(index: int, raw: ItemRow | Mapping[str, Any]) -> PreparedItem:
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
    return PreparedItem(
        index=index, id=row.id, is_service=is_service, cls=cls, labels=labels,
        create_props=create, update_props=update, create_refs=refs,
        update_refs={k: v for k, v in refs.items() if _REF_FIELDS[k] in given},
        identifiers=identifiers,
        retired=row.lifecycle_status is LifecycleStatus.RETIRED,
    )


def refs_of(p: PreparedItem, existing: Mapping[str, Row]) -> Iterable[str | None]:
    return (p.update_refs if p.id in existing else p.create_refs).values()


def plan_item(
    p: PreparedItem, stored: Row | None, org: Mapping[str, list[str]]
) -> dict[str, Any] | None:
    """The row to send for ``p`` (props and reference flags), or None when nothing changes."""
    what = "service" if p.is_service else "CI"
    if stored is None:
        if p.retired:
            raise Rejected(RejectCode.INVALID, f"a new {what} cannot be retired",
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
            raise Rejected(RejectCode.CONFLICT, f"id {p.id!r} is already a "
                            f"{have.get('serviceKind') or have.get('ciClass')} item; the class "
                            "of an item cannot change", "id")
        if have.get("lifecycleStatus") == LifecycleStatus.RETIRED.value:
            raise Rejected(RejectCode.CONFLICT, f"{what} {p.id!r} is retired", "id")
        if p.retired:
            raise Rejected(RejectCode.INVALID, f"retire a {what} with its retire mutation, "
                            "not by a bulk update", "lifecycleStatus")
        props = {k: v for k, v in p.update_props.items() if not _same(have.get(k), v)}
        wanted = {k: v for k, v in p.update_refs.items() if stored[k] != v}
        if not props and not wanted:
            return None
    missing = [k for k, v in wanted.items() if v and _REF_KINDS[k].value not in org.get(v, [])]
    if missing:
        raise Rejected(RejectCode.NOT_FOUND, "; ".join(
            f"{ORG_NAMES[_REF_KINDS[k]]} {wanted[k]!r} not found" for k in missing
        ), camel(_REF_FIELDS[missing[0]]))
    row: dict[str, Any] = {"id": p.id, "props": props}
    for key in _REF_FIELDS:
        row["set" + key.capitalize()] = key in wanted
        row[key] = wanted.get(key)
    return row


def identifier_claims(items: Iterable[PreparedItem]) -> dict[str, list[dict[str, str]]]:
    claims: dict[str, list[dict[str, str]]] = {p: [] for p in _UNIQUE_PROPS}
    for item in items:
        for prop, value in item.identifiers.items():
            claims[prop].append({"id": item.id, "value": value})
    return claims


def identifier_rejection(p: PreparedItem, clash: list[Row]) -> Rejection:
    reason = "; ".join(f"{c['prop']} {c['value']!r} already identifies CI {c['heldBy']!r}"
                       for c in clash)
    return Rejection(index=p.index, key=p.id, code=RejectCode.CONFLICT, reason=reason,
                     field=f"identifiers.{clash[0]['prop']}")


# ------------------------------------------------------------------------------ relations


def prepare_relation(index: int, raw: RelationRow | Mapping[str, Any]) -> PreparedRelation:
    row = _validated(RelationRow, raw)
    if row.source_id == row.target_id:
        raise Rejected(RejectCode.INVALID, "an item cannot be related to itself", "targetId")
    try:
        rule_errors = rule_property_errors(row.properties)
        if rule_errors:
            raise DomainError([FieldError(field=f"properties.{k}", message=m)
                               for k, m in rule_errors.items()])
        props = attribute_properties(row.properties, "properties")
    except DomainError as e:
        raise _domain(e) from None
    return PreparedRelation(index, row.source_id, row.target_id, row.type, props)


def check_ends(r: PreparedRelation, ends: Mapping[str, tuple[str, str]]) -> None:
    source, target = ends.get(r.source), ends.get(r.target)
    for end, ident, name in ((source, r.source, "sourceId"), (target, r.target, "targetId")):
        if end is None:
            raise Rejected(RejectCode.NOT_FOUND, f"item {ident!r} not found", name)
        if end[1] == LifecycleStatus.RETIRED.value:
            raise Rejected(RejectCode.CONFLICT, f"item {ident!r} is retired", name)
    assert source is not None and target is not None
    why = rule_violation(r.type, source[0], target[0])
    if why:
        raise Rejected(RejectCode.INVALID, why, "type")


# ------------------------------------------------------------------------------ org units


def prepare_org(kind: OrgKind, index: int, raw: OrgRow | Mapping[str, Any]) -> PreparedOrg:
    row = _validated(OrgRow, raw)
    if kind is OrgKind.COST_CENTRE and row.code is None:
        raise Rejected(RejectCode.INVALID, "a cost centre needs a code", "code")
    if kind is not OrgKind.COST_CENTRE and row.code is not None:
        raise Rejected(RejectCode.INVALID, "only cost centres have a code", "code")
    if kind is OrgKind.OWNER_GROUP and row.parent_id is not None:
        raise Rejected(RejectCode.INVALID, "owner groups have no parent", "parentId")
    if row.parent_id == row.id:
        raise Rejected(RejectCode.INVALID, "a unit cannot be its own parent", "parentId")
    given = row.model_fields_set
    every = {"name": row.name, "nameLower": row.name.lower(), "code": row.code,
             "email": row.email, "description": row.description}
    source = {"name": "name", "nameLower": "name", "code": "code", "email": "email",
              "description": "description"}
    return PreparedOrg(
        index=index, id=row.id, name_lower=row.name.lower(), code=row.code,
        parent_id=row.parent_id, parent_given="parent_id" in given,
        create_props={k: v for k, v in every.items() if v is not None},
        update_props={k: v for k, v in every.items() if source[k] in given},
    )


def unique_in_batch(o: PreparedOrg, earlier: dict[tuple[str, str | None], str]) -> None:
    for what, value in (("name", o.name_lower), ("code", o.code)):
        held = earlier.setdefault((what, value), o.id) if value is not None else o.id
        if held != o.id:
            raise Rejected(RejectCode.CONFLICT, f"{what} {value!r} is also given to "
                            f"{held!r} in the same batch", what)


def plan_org(
    kind: OrgKind, what: str, o: PreparedOrg, stored: Row | None, clashes: list[Row],
    parents: set[str],
) -> tuple[dict[str, Any], bool] | None:
    """(props, whether to re-point the parent) for ``o``, or None when nothing changes."""
    if stored is not None and kind.value not in stored["labels"]:
        raise Rejected(RejectCode.CONFLICT, f"id {o.id!r} is already another kind of unit",
                        "id")
    for c in clashes:
        if c["what"] == "name":
            raise Rejected(RejectCode.CONFLICT, f"a {what} named {o.name_lower!r} exists "
                            f"({c['heldBy']!r})", "name")
        raise Rejected(RejectCode.CONFLICT, f"cost centre code {o.code!r} is held by "
                        f"{c['heldBy']!r}", "code")
    if o.parent_id is not None and o.parent_id not in parents:
        raise Rejected(RejectCode.NOT_FOUND, f"parent {what} {o.parent_id!r} not found",
                        "parentId")
    if stored is None:
        return o.create_props, o.parent_id is not None
    have = stored["props"]
    props = {k: v for k, v in o.update_props.items() if not _same(have.get(k), v)}
    relink = o.parent_given and stored["parentId"] != o.parent_id
    return (props, relink) if props or relink else None


# ------------------------------------------------------------------------------ batches


def prepare_batch(
    chunks: Iterator[list[tuple[int, T]]], prepare: Callable[[int, T], P]
) -> tuple[int, list[P], list[Rejection]] | None:
    """The next batch validated: (its size, its rows, the rows it rejected), or None; a
    row repeating the key of an earlier one of the batch is rejected."""
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
                raise Rejected(RejectCode.INVALID, f"{row.key!r} repeats row "
                                f"{first_seen[row.key]} of the same batch")
            first_seen[row.key] = index
            prepared.append(row)
        except Rejected as e:
            rejected.append(Rejection(index=index, key=_key_of(raw), code=e.code,
                                      reason=e.reason, field=e.field))
    return len(chunk), prepared, rejected


def failed(rows: Sequence[Keyed], error: ClientError) -> BatchOutcome:
    """Every row of a batch Neo4j refused, rejected."""
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
