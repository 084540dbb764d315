"""Spans around the database's statements while the app runs, when tracing is on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.trace import TracerProvider

from cmdb.db.driver import Database


@contextmanager
def trace_database(db: Database, provider: TracerProvider | None) -> Iterator[None]:
    """Spans around the database's statements while the app runs (when tracing is on)."""
    if provider is None:
        yield
        return
    before = db.tracer
    db.tracer = provider.get_tracer("cmdb.neo4j")
    try:
        yield
    finally:
        db.tracer = before
