"""Prometheus metrics recorded per request and per error; ``cmdb.api.metrics`` serves them at
``/metrics``.

Per request (kept to a few microseconds): a count and a latency histogram by route and, for
GraphQL, by operation name; errors by kind. Per Neo4j statement: a latency histogram by mode
(kept by the ``Database`` wrapper). At scrape time only: round trips, the driver's connection
pool, statements in flight, and the business gauges (open alarms, orders waiting, services
down), which cost one Cypher statement each and are cached for ``metrics_cache_s``.

Operation names are chosen by clients, so their label values are capped: once
``metrics_max_operations`` distinct names have been seen, further names are counted as
``other``; an operation without a name is ``anonymous``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from graphql import GraphQLError
from neo4j.exceptions import ServiceUnavailable, SessionExpired
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cmdb.core.models import DomainError
from cmdb.observability.instruments import (
    ERROR_BY_KIND,
    REQUEST_SECONDS,
    REQUESTS,
)

log = logging.getLogger("cmdb.metrics")
METRICS_PATH = "/metrics"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")


class OperationLabels:
    """Label values for client-chosen operation names, at most ``limit`` distinct ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.known: set[str] = set()

    def label(self, name: str | None) -> str:
        if name is None:
            return "anonymous"
        if name in self.known:
            return name
        if len(self.known) >= self.limit or not _NAME.fullmatch(name):
            return "other"
        self.known.add(name)
        return name


OPERATIONS = OperationLabels(200)


class RequestRecord:
    """What the GraphQL layer learns about the request being served."""

    __slots__ = ("errors", "operation")

    def __init__(self) -> None:
        self.operation: str | None = None
        self.errors = False  # errors already counted by kind


_record: ContextVar[RequestRecord | None] = ContextVar("cmdb_request_record", default=None)


def note_operation(execution_context: Any) -> None:
    """Called by the schema extension once the operation ran: its name for the labels."""
    rec = _record.get()
    if rec is None:
        return
    try:
        name = execution_context.operation_name
    except Exception:  # a document that is not one
        name = None
    rec.operation = OPERATIONS.label(name)


def error_kind(error: GraphQLError) -> str:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        # Refusals by the root-field guard are GraphQL errors with a code.
        code = (error.extensions or {}).get("code")
        if code is None and original is not None:
            code = (original.extensions or {}).get("code")
        if code == "FORBIDDEN":
            return "forbidden"
        if code == "UNAUTHENTICATED":
            return "auth"
        return "validation"
    if isinstance(original, DomainError):
        codes = {e.code for e in original.errors}
        if "FORBIDDEN" in codes:
            return "forbidden"
        if "UNAUTHENTICATED" in codes:
            return "auth"
        return "domain"
    if isinstance(original, ServiceUnavailable | SessionExpired):
        return "unavailable"
    return "internal"


def note_errors(errors: Iterable[GraphQLError]) -> None:
    """Called by the schema with the errors of an operation (before masking)."""
    rec = _record.get()
    if rec is not None:
        rec.errors = True
    for error in errors:
        ERROR_BY_KIND[error_kind(error)].inc()


def _status_kind(status: int) -> str | None:
    if status < 400:
        return None
    if status == 401:
        return "auth"
    if status == 403:
        return "forbidden"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "internal"
    if status in (404, 409):
        return "domain"
    return "validation"


def route_path(scope: Scope) -> str:
    """The template of the route that served the request (``/api/usage/{period}``), with
    the prefix of an included router; ``unmatched`` when none did."""
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        effective = fastapi_scope.get("effective_route_context")
        if effective is not None:
            path = getattr(effective.starlette_route, "path_format", None) \
                or getattr(effective, "path_format", None)
            if path:
                return str(path)
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not path:
        # A plain ASGI app on a Starlette route (the GraphQL view): FastAPI's router records
        # no route for it, so the app names the path it is served at.
        path = getattr(scope.get("endpoint"), "route_path", None)
    return str(path or "unmatched")


class MetricsMiddleware:
    """Counts and times every HTTP request. Plain ASGI, outside authentication (refusals
    count too) and inside the request-id middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # (route, operation) -> its histogram child and its counters by status.
        self._children: dict[tuple[str, str], tuple[Any, dict[int, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rec = RequestRecord()
        token = _record.set(rec)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            _record.reset(token)
            self._observe(scope, status, elapsed, rec)

    def _observe(self, scope: Scope, status: int, elapsed: float, rec: RequestRecord) -> None:
        path = route_path(scope)
        operation = (rec.operation or "other") if path == "/graphql" else ""
        key = (path, operation)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (REQUEST_SECONDS.labels(path, operation), {})
        children[0].observe(elapsed)
        counter = children[1].get(status)
        if counter is None:
            counter = children[1][status] = REQUESTS.labels(path, operation, str(status))
        counter.inc()
        if not rec.errors:
            kind = _status_kind(status)
            if kind is not None:
                ERROR_BY_KIND[kind].inc()
