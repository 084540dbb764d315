"""Shared Cypher: the item projection, a small filter compiler and keyset list queries.

Everything that reaches query text here is either a constant or passed an allow-list;
values always travel as parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, LiteralString

from cmdb.core.models import (
    Criticality,
    DomainError,
    LifecycleStatus,
    OperationalState,
    SortDirection,
)
from cmdb.core.pagination import PageRequest

ATTRIBUTE_PREFIX = "attr_"
ATTRIBUTE_KEY = re.compile(r"^[a-z][A-Za-z0-9_]{0,62}$")

# Owner, cost centre and location come with the node, so reading an item costs no extra trip.
# Temporal values travel as ISO strings: hydrating driver DateTime objects was the largest
# single cost of wide reads (tens of microseconds each).
_DATES: LiteralString = """createdAt: toString(n.createdAt), updatedAt: toString(n.updatedAt),
    retiredAt: toString(n.retiredAt), lastSeenAt: toString(n.lastSeenAt),
    healthChangedAt: toString(n.healthChangedAt),"""

# The org fields an item view shows: no timestamps, whose driver DateTimes cost more to decode
# than the rest of a wide read.
_ORG: LiteralString = ".id, .name, .code, .email, .description"

ITEM_PROJECTION: LiteralString = """n {
    .*, """ + _DATES + """
    kind: CASE WHEN n:Service THEN 'SERVICE' ELSE 'CI' END,
    ownerGroup: [(n)-[:OWNED_BY]->(og:OwnerGroup) | og {""" + _ORG + """}][0],
    costCentre: [(n)-[:CHARGED_TO]->(cc:CostCentre) |
                 cc {""" + _ORG + """, parentId: [(cc)-[:PART_OF]->(ccp) | ccp.id][0]}][0],
    location: [(n)-[:LOCATED_IN]->(lo:Location) |
               lo {""" + _ORG + """, parentId: [(lo)-[:PART_OF]->(lop) | lop.id][0]}][0]
}"""

# The same without owner, cost centre and location, for reads that do not ask for them:
# on wide nested reads the three lookups per item are most of the statement's work.
ITEM_PROJECTION_BARE: LiteralString = """n {
    .*, """ + _DATES + """
    kind: CASE WHEN n:Service THEN 'SERVICE' ELSE 'CI' END
}"""

_ITEM_LABELS = {"CI", "Service", "Item"}


def trusted(text: str) -> LiteralString:
    """Mark text built only from constants and allow-listed names as safe query text."""
    return text  # mypy reads LiteralString as str; the allow-lists are the real guard


def check_attribute_key(key: str, field_name: str) -> str:
    if not ATTRIBUTE_KEY.match(key):
        raise DomainError.single(
            field_name,
            f"attribute key {key!r} must start with a lower-case letter and hold only "
            "letters, digits and underscores (at most 63)",
        )
    return key


@dataclass
class ItemFilter:
    classes: list[str] | None = None
    service_kinds: list[str] | None = None
    lifecycle_status: list[LifecycleStatus] | None = None
    operational_state: list[OperationalState] | None = None
    criticality: list[Criticality] | None = None
    owner_group_id: str | None = None
    cost_centre_code: str | None = None
    location_id: str | None = None
    name_contains: str | None = None
    identifier: str | None = None
    attributes: list[tuple[str, Any]] = field(default_factory=list)
    include_retired: bool = False
    # The caller's scope (identity.scope.Visibility); None reads everything (internal use).
    visibility: Any = None


# (filter field, condition on ``n``, parameter): a list matches any of its values.
_MATCH_FILTERS: tuple[tuple[str, LiteralString, str], ...] = (
    ("classes", "n.ciClass IN $f_classes", "f_classes"),
    ("service_kinds", "n.serviceKind IN $f_kinds", "f_kinds"),
    ("lifecycle_status", "n.lifecycleStatus IN $f_status", "f_status"),
    ("operational_state", "n.operationalState IN $f_state", "f_state"),
    ("criticality", "n.criticality IN $f_crit", "f_crit"),
    ("owner_group_id", "EXISTS { (n)-[:OWNED_BY]->(:OwnerGroup {id: $f_owner}) }", "f_owner"),
    ("cost_centre_code", "EXISTS { (n)-[:CHARGED_TO]->(:CostCentre {code: $f_cc}) }", "f_cc"),
    ("location_id", "EXISTS { (n)-[:LOCATED_IN]->(:Location {id: $f_loc}) }", "f_loc"),
)


def compile_item_filter(f: ItemFilter) -> tuple[list[LiteralString], dict[str, Any]]:
    """Turn a filter into WHERE conditions on ``n`` and their parameters."""
    where: list[LiteralString] = []
    params: dict[str, Any] = {}
    for attr, condition, param in _MATCH_FILTERS:
        value = getattr(f, attr)
        if value is not None:
            where.append(condition)
            params[param] = value if isinstance(value, str) else [
                getattr(v, "value", v) for v in value]
        elif attr == "lifecycle_status" and not f.include_retired:
            where.append("n.lifecycleStatus <> 'RETIRED'")
    if f.name_contains:
        where.append("n.nameLower CONTAINS $f_name")
        params["f_name"] = f.name_contains.lower()
    if f.identifier:
        where.append(
            "any(v IN $f_ident WHERE v IN "
            "[n.serialNumber, n.hostName, n.fqdn, n.macAddress, n.cloudInstanceId])"
        )
        raw = f.identifier.strip()
        params["f_ident"] = sorted({raw, raw.lower(), raw.upper().replace("-", ":")})
    if f.visibility is not None and not f.visibility.everything:
        where.append(trusted("(" + f.visibility.predicate() + ")"))
        params.update(f.visibility.params())
    for i, (key, value) in enumerate(f.attributes):
        check_attribute_key(key, f"filter.attributes[{i}].key")
        where.append(trusted(f"n[$f_ak{i}] = $f_av{i}"))
        params[f"f_ak{i}"] = ATTRIBUTE_PREFIX + key
        params[f"f_av{i}"] = value
    return where, params


@dataclass(frozen=True)
class SortSpec:
    prop: str  # allow-listed by the caller's enum
    direction: SortDirection
    is_datetime: bool = False


SORT_PROPERTIES: dict[str, tuple[str, bool]] = {
    "NAME": ("nameLower", False),
    "CREATED_AT": ("createdAt", True),
    "UPDATED_AT": ("updatedAt", True),
    "CRITICALITY": ("criticalityRank", False),
    "CLASS": ("ciClass", False),
}


def sort_spec(field_name: str, direction: SortDirection) -> SortSpec:
    prop, is_dt = SORT_PROPERTIES[field_name]
    return SortSpec(prop, direction, is_dt)


def cursor_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# Range indexes that hand a list page over in order, so that Neo4j stops after the page instead
# of sorting every match: (label, properties bound to one value, sort property); each index is
# on those properties, then the sort property, then id (db/migrations.py, version 16). Neo4j
# reads an index in order only when the statement has a predicate on every property of the
# index and its ORDER BY names the index's properties in index order, so the statement binds
# the prefix with ``=``, orders by the (constant) prefix first and says that the sort property
# and id exist. Longest prefix first: it leaves the fewest rows to filter.
ORDERED_INDEXES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("CI", ("ciClass", "operationalState"), "nameLower"),
    ("CI", ("ciClass",), "nameLower"),
    ("CI", (), "nameLower"),
    ("Service", ("serviceKind",), "nameLower"),
    ("Service", (), "nameLower"),
)

# Filter fields whose single value can bind an ordered index's prefix, by property.
_PREFIX_FIELDS = {"ciClass": "classes", "operationalState": "operational_state",
                  "serviceKind": "service_kinds"}
# Properties every item has (written on create): only these may be asserted to exist.
_ALWAYS_SET = {"nameLower", "id"}


def _single(f: ItemFilter, prop: str) -> Any:
    value = getattr(f, _PREFIX_FIELDS[prop])
    if value is None or isinstance(value, str) or len(value) != 1:
        return None
    return getattr(value[0], "value", value[0])


def ordered_index(label: str, f: ItemFilter, sort_prop: str) -> tuple[str, ...] | None:
    """The prefix of the ordered index that answers this list in order, or None."""
    if sort_prop not in _ALWAYS_SET:
        return None
    for index_label, prefix, prop in ORDERED_INDEXES:
        if index_label == label and prop == sort_prop and all(
                _single(f, p) is not None for p in prefix):
            return prefix
    return None


@dataclass(frozen=True)
class ListParts:
    """The pieces of a keyset list over ``n``: conditions without and with the page's
    cursor (the count takes the first) and the ORDER BY keys."""

    where: list[LiteralString]
    page_where: list[LiteralString]
    order: LiteralString
    sort_prop: LiteralString


def where_clause(conds: list[LiteralString]) -> LiteralString:
    return trusted("WHERE " + " AND ".join(conds)) if conds else ""


def list_parts(
    label: str, f: ItemFilter, sort: SortSpec, page: PageRequest
) -> tuple[ListParts, dict[str, Any]]:
    """Filter, cursor and order of one page of items labelled ``label``; ``$limit`` reads one
    row more than the page (it tells whether another page exists)."""
    if label not in _ITEM_LABELS:
        raise ValueError(f"unknown item label {label}")
    if sort.prop not in {p for p, _ in SORT_PROPERTIES.values()}:
        raise ValueError(f"unknown sort property {sort.prop}")
    where, params = compile_item_filter(f)
    ascending = (sort.direction is SortDirection.ASC) == page.forward
    order = "ASC" if ascending else "DESC"
    cmp = ">" if ascending else "<"
    page_where = list(where)
    order_by = [sort.prop, "id"]
    prefix = ordered_index(label, f, sort.prop)
    if prefix is not None:
        for i, prop in enumerate(prefix):
            page_where.append(trusted(f"n.{prop} = $o_eq{i}"))
            params[f"o_eq{i}"] = _single(f, prop)
        page_where.append(trusted(f"n.{sort.prop} IS NOT NULL AND n.id IS NOT NULL"))
        order_by = [*prefix, *order_by]
    if page.cursor is not None:
        value, ident = page.cursor
        check_cursor(value, sort, "after" if page.forward else "before")
        params["c_value"], params["c_id"] = value, ident
        v = "datetime($c_value)" if sort.is_datetime else "$c_value"
        # (p > v OR (p = v AND id > c)), written so that p >= v can seek a range of the index.
        page_where.append(trusted(
            f"n.{sort.prop} {cmp}= {v} AND (n.{sort.prop} {cmp} {v} OR n.id {cmp} $c_id)"
        ))
    params["limit"] = page.size + 1
    ordering = trusted(", ".join(f"n.{p} {order}" for p in order_by))
    return ListParts(where, page_where, ordering, trusted(sort.prop)), params


def check_cursor(value: Any, sort: SortSpec, field_name: str) -> None:
    """A cursor made for another order is refused (its value would not compare, or worse,
    compare and page wrongly)."""
    if sort.is_datetime:
        fits = isinstance(value, str) and _is_datetime(value)
    elif sort.prop == "criticalityRank":
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = isinstance(value, str)
    if not fits:
        raise DomainError.single(field_name, "this cursor belongs to a list in another order; "
                                 "start again from the first page")


def _is_datetime(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def build_list_query(
    label: str,
    f: ItemFilter,
    sort: SortSpec,
    page: PageRequest,
    want_total: bool,
) -> tuple[LiteralString, dict[str, Any]]:
    """One statement returning the total (when asked) and one page of projected items."""
    parts, params = list_parts(label, f, sort, page)
    total = (
        f"CALL () {{ MATCH (n:{label}) {where_clause(parts.where)} RETURN count(n) AS total }}"
        if want_total
        else "WITH null AS total"
    )
    text = f"""
{total}
CALL () {{
  MATCH (n:{label}) {where_clause(parts.page_where)}
  WITH n ORDER BY {parts.order} LIMIT $limit
  RETURN collect({{item: {ITEM_PROJECTION}, sortValue: n.{parts.sort_prop}}}) AS rows
}}
RETURN total, rows
"""
    return trusted(text), params
