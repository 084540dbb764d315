"""The statement's answer made into the response. Each object arrives as the list of its
selected fields' values in selection order; a builder made once per plan pairs them with the
response keys and converts only the values whose response form differs from what Neo4j gives
(times, decimals, JSON objects, maintenance windows, nested objects). Connections get their
edges, cursors and page info as the resolvers give them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

from cmdb.compiler import models as sp
from cmdb.core.clock import utcnow
from cmdb.core.cypher import ATTRIBUTE_PREFIX, cursor_value
from cmdb.core.mapping import native
from cmdb.core.pagination import Page, PageRequest, encode_cursor, keyset_page
from cmdb.health import periods

Build = Callable[[Any], Any]
_PREFIX = len(ATTRIBUTE_PREFIX)


def _datetime(v: Any) -> Any:
    return None if v is None else datetime.fromisoformat(v).isoformat()


def _decimal(v: Any) -> Any:
    return None if v is None else str(Decimal(v))


def _pairs(v: Any) -> Any:
    """The attributes among a node's or relationship's properties (their ``attr_`` keys)."""
    if v is None:
        return None
    return {k[_PREFIX:]: native(x) for k, x in v.items() if k.startswith(ATTRIBUTE_PREFIX)}


def _maintenance(v: Any) -> Any:
    """A service's [lifecycleStatus, windows]: in maintenance now? (its windows move with
    the clock, so this is worked out per request, as the resolvers do)."""
    status, windows = v
    return status == "MAINTENANCE" or periods.within(list(windows or []), utcnow())


def _listed(build: Build) -> Build:
    return lambda v: [build(x) for x in v]


def _object(keys: tuple[str, ...], convert: list[tuple[int, Build]]) -> Build:
    if not convert:
        return lambda v: None if v is None else dict(zip(keys, v, strict=False))

    def build(v: Any) -> Any:
        if v is None:
            return None
        for i, fn in convert:
            v[i] = fn(v[i])
        return dict(zip(keys, v, strict=False))  # an item's type tag, last, is left out

    return build


def _fields(fields: tuple[sp.FieldSpec, ...], convert_of: Callable[[sp.FieldSpec], Build | None]
            ) -> Build:
    convert = [(i, fn) for i, f in enumerate(fields) if (fn := convert_of(f)) is not None]
    return _object(tuple(f.key for f in fields), convert)


def _unit(spec: sp.ObjectSpec) -> Build:
    return _fields(spec.fields, lambda f: _unit(f.sub) if f.name == "parent" else None)


def _plain(spec: sp.ObjectSpec) -> Build:
    return _fields(spec.fields, lambda f: _decimal if f.name in sp.DECIMALS else None)


def _item_field(type_name: str) -> Callable[[sp.FieldSpec], Build | None]:
    def convert(f: sp.FieldSpec) -> Build | None:
        if f.name in sp.DATETIMES:
            return _datetime
        if f.name == "attributes":
            return _pairs
        if f.name == "inMaintenance" and type_name == "Service":
            return _maintenance
        if f.name in sp.OBJECT_FIELDS:
            return _plain(f.sub)
        if f.name in sp.ORG_UNIT_TYPES:
            return _unit(f.sub)
        if f.name == "relationships":
            return _listed(_relation(f.sub))
        return None

    return convert


def _relation(spec: sp.RelationSpec) -> Build:
    def convert(f: sp.FieldSpec) -> Build | None:
        if f.name == "item":
            return item(f.sub)
        if f.name in ("createdAt", "retiredAt"):
            return _datetime
        return _pairs if f.name == "properties" else None

    return _fields(spec.fields, convert)


def item(spec: sp.ItemSpec) -> Build:
    ci = _fields(spec.ci, _item_field("ConfigurationItem")) if spec.ci is not None else None
    svc = _fields(spec.service, _item_field("Service")) if spec.service is not None else None
    if ci is None or svc is None:
        only = ci or svc
        assert only is not None
        return only
    return lambda v: None if v is None else svc(v) if v[-1] == "S" else ci(v)


def _page_info(spec: sp.ObjectSpec, page: Page[Any]) -> dict[str, Any]:
    values = {
        "hasNextPage": page.has_next_page, "hasPreviousPage": page.has_previous_page,
        "startCursor": page.items[0][0] if page.items else None,
        "endCursor": page.items[-1][0] if page.items else None, "__typename": "PageInfo",
    }
    return {f.key: values[f.name] for f in spec.fields}


def _connection(spec: sp.ConnectionSpec) -> Callable[[Any, PageRequest], Any]:
    node = item(spec.item) if spec.item is not None else (lambda v: {})

    def entry(row: dict[str, Any]) -> tuple[str, Any]:
        cursor = (encode_cursor(cursor_value(native(row["sortValue"])), row["id"])
                  if spec.want_cursor else "")
        return cursor, node(row["item"])

    def build(value: Any, page: PageRequest) -> dict[str, Any]:
        found = keyset_page(value["rows"], page, entry, value.get("total"))
        out: dict[str, Any] = {}
        for f in spec.fields:
            if f.name == "edges":
                out[f.key] = [
                    {e.key: n if e.name == "node" else c if e.name == "cursor"
                     else f.sub.type_name for e in f.sub.fields}
                    for c, n in found.items
                ]
            elif f.name == "pageInfo":
                out[f.key] = _page_info(f.sub, found)
            elif f.name == "totalCount":
                out[f.key] = found.total_count
            else:
                out[f.key] = spec.type_name
        return out

    return build


@lru_cache(maxsize=1024)
def _builders(roots: tuple[sp.RootSpec, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for root in roots:
        spec = root.spec
        if isinstance(spec, sp.LookupSpec):
            out.append(item(spec.item))
        elif isinstance(spec, sp.ConnectionSpec):
            out.append(_connection(spec))
        elif isinstance(spec, sp.OrgListSpec):
            out.append(_listed(_unit(spec.unit)))
        else:
            out.append(None)  # a constant
    return tuple(out)


def shape(plan: sp.Plan, values: list[Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for root, build, value in zip(plan.roots, _builders(plan.roots), values, strict=True):
        if isinstance(root.spec, sp.ConnectionSpec):
            data[root.key] = build(value, plan.pages[root.key])
        else:
            data[root.key] = value if build is None else build(value)
    return data
