"""Keyset-paginated listing shared by every item kind."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from cmdb.core.cypher import ItemFilter, SortSpec, build_list_query, cursor_value
from cmdb.core.mapping import native
from cmdb.core.pagination import Page, PageRequest, encode_cursor
from cmdb.db.driver import Database

T = TypeVar("T")


async def list_items(
    db: Database,
    label: str,
    f: ItemFilter,
    sort: SortSpec,
    page: PageRequest,
    want_total: bool,
    to_model: Callable[[dict[str, Any]], T],
) -> Page[T]:
    query, params = build_list_query(label, f, sort, page, want_total)
    (row,) = await db.read(query, params)
    rows: list[dict[str, Any]] = row["rows"]
    has_more = len(rows) > page.size
    rows = rows[: page.size]
    if not page.forward:
        rows.reverse()
    items = [
        (encode_cursor(cursor_value(native(r["sortValue"])), r["item"]["id"]), to_model(r["item"]))
        for r in rows
    ]
    return Page(
        items=items,
        has_next_page=has_more if page.forward else page.cursor is not None,
        has_previous_page=page.cursor is not None if page.forward else has_more,
        total_count=row["total"],
    )

