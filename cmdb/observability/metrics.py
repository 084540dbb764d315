"""Prometheus metrics, served at ``/metrics``.

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

import asyncio
import logging
import re
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from graphql import GraphQLError
from neo4j.exceptions import ServiceUnavailable, SessionExpired
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cmdb.core.models import DomainError
from cmdb.identity.http import forbidden, request_principal
from cmdb.identity.principal import Permission, has_permission
from cmdb.observability.instruments import (
    ERROR_BY_KIND,
    REGISTRY,
    REQUEST_SECONDS,
    REQUESTS,
)

if TYPE_CHECKING:
    from cmdb.db.driver import Database
    from cmdb.settings import Settings

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


# ----------------------------------------------------------------------- scrape time


class BusinessGauges:
    """Open alarms, orders waiting, services down: read at scrape time, one statement each,
    at most once per ``ttl_s`` however often (or concurrently) ``/metrics`` is scraped."""

    def __init__(self, db: Database, ttl_s: float) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self._at = -float("inf")
        self._metrics: list[Metric] = []
        self._lock = asyncio.Lock()

    async def metrics(self) -> list[Metric]:
        async with self._lock:
            if time.monotonic() - self._at >= self.ttl_s:
                self._metrics = await self._read()
                self._at = time.monotonic()
            return self._metrics

    async def _read(self) -> list[Metric]:
        from cmdb.alarms.repository import AlarmRepository
        from cmdb.catalog.repository import CatalogRepository
        from cmdb.health.repository import HealthRepository

        up = GaugeMetricFamily("cmdb_business_gauges_up",
                               "1 when the business gauges below were read from Neo4j.")
        try:
            alarms = await AlarmRepository(self.db).open_counts()
            orders = await CatalogRepository(self.db).waiting_order_counts()
            down = await HealthRepository(self.db).services_down()
        except Exception:  # Neo4j away: say so, and try again after the ttl
            log.warning("business gauges could not be read", exc_info=True)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        open_alarms = GaugeMetricFamily(
            "cmdb_alarms_open", "Alarms not cleared, by severity and status.",
            labels=["severity", "status"])
        for severity, status, n in sorted(alarms):
            open_alarms.add_metric([severity, status], n)
        waiting = GaugeMetricFamily(
            "cmdb_orders_waiting", "Orders waiting, by stage (approval, fulfilment) and status.",
            labels=["stage", "status"])
        for status in ("SUBMITTED", "AWAITING_APPROVAL", "APPROVED", "FULFILLING", "FAILED"):
            stage = "approval" if status in ("SUBMITTED", "AWAITING_APPROVAL") else "fulfilment"
            waiting.add_metric([stage, status], orders.get(status, 0))
        services_down = GaugeMetricFamily(
            "cmdb_services_down", "Services in service whose rolled-up health is DOWN.")
        services_down.add_metric([], down)
        return [up, open_alarms, waiting, services_down]


class _Snapshot(Collector):
    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return iter(self._metrics)


def database_metrics(db: Database) -> list[Metric]:
    """Round trips, statements in flight and, when the driver shows it, its pool."""
    trips = CounterMetricFamily("cmdb_neo4j_round_trips", "Statements sent to Neo4j.")
    trips.add_metric([], db.round_trips.count)
    in_flight = GaugeMetricFamily("cmdb_neo4j_in_flight",
                                  "Statements and transactions running in Neo4j now.")
    in_flight.add_metric([], db.in_flight)
    found: list[Metric] = [trips, in_flight]
    pool = pool_usage(db)
    if pool is not None:
        conns = GaugeMetricFamily("cmdb_neo4j_pool_connections",
                                  "Connections of the driver's pool, by state.",
                                  labels=["state"])
        conns.add_metric(["in_use"], pool[0])
        conns.add_metric(["idle"], pool[1])
        size = GaugeMetricFamily("cmdb_neo4j_pool_max_size", "The pool's maximum size.")
        size.add_metric([], db.pool_size)
        found += [conns, size]
    return found


def pool_usage(db: Database) -> tuple[int, int] | None:
    """(in use, idle) connections, read from the driver's pool at scrape time. The driver
    has no public API for it; if its internals change, None (the pool is not exported)."""
    try:
        connections = db.driver._pool.connections
        in_use = idle = 0
        for conns in list(connections.values()):
            for c in list(conns):
                if c.in_use:
                    in_use += 1
                else:
                    idle += 1
    except Exception:
        return None
    return in_use, idle


def metrics_router(settings: Settings) -> APIRouter:
    """``GET /metrics``: needs permission ``metrics:read`` unless ``metrics_public``."""
    OPERATIONS.limit = settings.metrics_max_operations
    router = APIRouter()
    gauges: dict[int, BusinessGauges] = {}

    @router.get(METRICS_PATH, include_in_schema=False)
    async def metrics(request: Request) -> Response:
        if not settings.metrics_public:
            principal = request_principal(request)
            if not has_permission(principal, Permission.METRICS_READ):
                return forbidden(principal, Permission.METRICS_READ, "read metrics")
        db: Database = request.app.state.db
        business = gauges.get(id(db))
        if business is None or business.db is not db:
            business = gauges[id(db)] = BusinessGauges(db, settings.metrics_cache_s)
        snapshot = CollectorRegistry(auto_describe=False)
        snapshot.register(_Snapshot(database_metrics(db) + await business.metrics()))
        body = generate_latest(REGISTRY) + generate_latest(snapshot)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return router
