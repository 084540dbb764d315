"""Spans around Neo4j statements, made only when tracing is on (the database wrapper holds
a tracer then). A span names the statement (its constant in a ``queries`` module when it is
one) and its kind (first Cypher clause); never its parameter values."""

from __future__ import annotations

import importlib
import pkgutil
from contextlib import AbstractContextManager
from functools import lru_cache

from opentelemetry.trace import Span, SpanKind, Tracer

import cmdb


@lru_cache(maxsize=1)
def statement_names() -> dict[str, str]:
    """Cypher text -> ``<package>.<CONSTANT>`` for the constants of every ``queries``
    module (built once, when the first span is made)."""
    names: dict[str, str] = {}
    for info in pkgutil.iter_modules(cmdb.__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"cmdb.{info.name}.queries")
        except ImportError:
            continue
        for attr, value in vars(module).items():
            if attr.isupper() and isinstance(value, str):
                names.setdefault(value, f"{info.name}.{attr}")
    return names


def _named_by_comment(query: str) -> str | None:
    """A generated statement's name: its first line, ``// <name>`` (compiled reads)."""
    if query.startswith("// "):
        first = query.split("\n", 1)[0][3:].strip()
        return first if first.replace(".", "").replace("_", "").isalnum() else None
    return None


def statement_kind(query: str) -> str:
    for word in query.split(None, 8):
        if word.isalpha():
            return word.upper()
    return "CYPHER"


def statement_span(tracer: Tracer, query: str, mode: str,
                   database: str) -> AbstractContextManager[Span]:
    """The current span while one statement runs (ended, with any error, on exit)."""
    kind = statement_kind(query)
    name = statement_names().get(query) or _named_by_comment(query)
    attributes = {"db.system.name": "neo4j", "db.namespace": database,
                  "db.operation.name": kind, "cmdb.neo4j.mode": mode}
    if name:
        attributes["db.query.summary"] = name
    return tracer.start_as_current_span(f"neo4j {name or kind}", kind=SpanKind.CLIENT,
                                        attributes=attributes)


def transaction_span(tracer: Tracer, mode: str, database: str) -> AbstractContextManager[Span]:
    """The current span of a managed transaction; its statements' spans nest in it."""
    return tracer.start_as_current_span(
        f"neo4j {mode} transaction", kind=SpanKind.CLIENT,
        attributes={"db.system.name": "neo4j", "db.namespace": database,
                    "cmdb.neo4j.mode": mode})
