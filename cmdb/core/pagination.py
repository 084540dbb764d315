"""Relay cursor pagination by keyset: a cursor holds the sort value and the id of a row."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from cmdb.core.models import DomainError

T = TypeVar("T")
R = TypeVar("R")


def encode_cursor(sort_value: Any, ident: str) -> str:
    raw = json.dumps([sort_value, ident], separators=(",", ":"), default=str)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, field: str) -> tuple[Any, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(ident, str):
            raise ValueError
    except (ValueError, TypeError, json.JSONDecodeError):
        raise DomainError.single(field, f"{field} is not a valid cursor") from None
    return value, ident


@dataclass(frozen=True)
class PageRequest:
    """A validated window: ``forward`` pages with first/after, otherwise last/before."""

    size: int
    forward: bool
    cursor: tuple[Any, str] | None


def check_page_size(value: int, maximum: int, field: str = "first", minimum: int = 0) -> int:
    """A requested page size, refused outside ``minimum``..``maximum`` with the field named."""
    if not minimum <= value <= maximum:
        raise DomainError.single(field, f"{field} must be between {minimum} and {maximum}")
    return value


def page_request(
    first: int | None,
    after: str | None,
    last: int | None,
    before: str | None,
    default_size: int,
    max_size: int,
) -> PageRequest:
    if first is not None and last is not None:
        raise DomainError.single("first", "use either first/after or last/before, not both")
    for name, value in (("first", first), ("last", last)):
        if value is not None:
            check_page_size(value, max_size, name)
    if last is not None or before is not None:
        if after is not None:
            raise DomainError.single("after", "after cannot be combined with last/before")
        size = last if last is not None else default_size
        return PageRequest(size, False, decode_cursor(before, "before") if before else None)
    size = first if first is not None else default_size
    return PageRequest(size, True, decode_cursor(after, "after") if after else None)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[tuple[str, T]]  # (cursor, item)
    has_next_page: bool
    has_previous_page: bool
    total_count: int | None


def keyset_page(
    rows: list[R], page: PageRequest, entry: Callable[[R], tuple[str, T]], total: int | None
) -> Page[T]:
    """The page of ``rows`` read for ``page``: up to ``page.size + 1`` in the page's direction
    (the extra row says there are more); ``entry`` gives a row's cursor and item."""
    has_more = len(rows) > page.size
    rows = rows[: page.size]
    if not page.forward:
        rows.reverse()
    return Page(
        items=[entry(r) for r in rows],
        has_next_page=has_more if page.forward else page.cursor is not None,
        has_previous_page=page.cursor is not None if page.forward else has_more,
        total_count=total,
    )
