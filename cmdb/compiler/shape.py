"""The statement's answer made into the response: only the values whose response form differs
from what Neo4j returns are touched (times, decimals, JSON objects, maintenance windows), and
connections get their edges, cursors and page info as the resolvers give them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from cmdb.compiler.models import ConnectionSpec, Fix, LookupSpec, ObjectSpec, Plan
from cmdb.core.clock import utcnow
from cmdb.core.cypher import cursor_value
from cmdb.core.mapping import native
from cmdb.core.pagination import Page, PageRequest, encode_cursor, keyset_page
from cmdb.health import periods

Fixes = tuple[tuple[str, Fix, Any], ...]


def _value(fix: Fix, sub: Any, v: Any, now: datetime) -> Any:
    if v is None:
        return None
    if fix is Fix.DATETIME:
        return datetime.fromisoformat(v).isoformat()
    if fix is Fix.DECIMAL:
        return str(Decimal(v))
    if fix is Fix.PAIRS:
        return {k: native(x) for k, x in v}
    if fix is Fix.MAINTENANCE:
        if not isinstance(v, list):  # a CI's, already a boolean
            return v
        status, windows = v
        return status == "MAINTENANCE" or periods.within(list(windows or []), now)
    if fix is Fix.OBJECT:
        apply(sub, v, now)
        return v
    for rel in v:  # Fix.ITEMS
        apply(sub, rel, now)
    return v


def apply(fixes: Fixes, obj: dict[str, Any] | None, now: datetime) -> None:
    if obj is None:
        return
    for key, fix, sub in fixes:
        if key in obj:
            obj[key] = _value(fix, sub, obj[key], now)


def _page_info(spec: ObjectSpec, page: Page[Any]) -> dict[str, Any]:
    values = {
        "hasNextPage": page.has_next_page, "hasPreviousPage": page.has_previous_page,
        "startCursor": page.items[0][0] if page.items else None,
        "endCursor": page.items[-1][0] if page.items else None, "__typename": "PageInfo",
    }
    return {f.key: values[f.name] for f in spec.fields}


def connection(spec: ConnectionSpec, value: dict[str, Any], page: PageRequest,
               now: datetime) -> dict[str, Any]:
    fixes = spec.item.fixes if spec.item else ()

    def entry(row: dict[str, Any]) -> tuple[str, Any]:
        apply(fixes, row["item"], now)
        cursor = (encode_cursor(cursor_value(native(row["sortValue"])), row["id"])
                  if spec.want_cursor else "")
        return cursor, row["item"]

    found = keyset_page(value["rows"], page, entry, value.get("total"))
    out: dict[str, Any] = {}
    for f in spec.fields:
        if f.name == "edges":
            edge_type = f.sub.type_name
            out[f.key] = [
                {e.key: node if e.name == "node" else cursor if e.name == "cursor"
                 else edge_type for e in f.sub.fields}
                for cursor, node in found.items
            ]
        elif f.name == "pageInfo":
            out[f.key] = _page_info(f.sub, found)
        elif f.name == "totalCount":
            out[f.key] = found.total_count
        else:
            out[f.key] = spec.type_name
    return out


def shape(plan: Plan, data: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    for root in plan.roots:
        if isinstance(root.spec, LookupSpec):
            apply(root.spec.item.fixes, data[root.key], now)
        elif isinstance(root.spec, ConnectionSpec):
            data[root.key] = connection(root.spec, data[root.key], plan.pages[root.key], now)
    return data
