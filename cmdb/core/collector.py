"""Python's cyclic garbage collector, run less often during bulk calculations.

A period's chargeback allocates millions of small acyclic objects (tuples, fractions, line
rows) while a graph of a hundred thousand items is held in memory: with the default
thresholds the collector walks that graph again and again, about a third of the
calculation's CPU. Reference counting frees all of it anyway; cycles are still collected,
only less often.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

BULK_THRESHOLDS = (100_000, 20, 100)

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Raise the collector's thresholds while at least one bulk calculation runs (nested and
    concurrent uses share them), and restore them after the last."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(*(max(a, b) for a, b in zip(_saved, BULK_THRESHOLDS,
                                                          strict=True)))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
