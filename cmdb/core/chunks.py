"""Rows taken a batch at a time, each with its place in the whole."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def numbered_chunks(rows: Iterable[T], size: int, start: int = 0
                    ) -> Iterator[list[tuple[int, T]]]:
    """``rows`` numbered from ``start``, in lists of ``size`` (the last may be shorter);
    consumed lazily, so a generator's rows are read one batch at a time."""
    chunk: list[tuple[int, T]] = []
    for item in enumerate(rows, start=start):
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
