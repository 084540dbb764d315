"""``GET /metrics``: the process's instruments and, read at scrape time, the database's round
trips and pool and the business gauges (open alarms, orders waiting, services down)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from cmdb.alarms.repository import AlarmRepository
from cmdb.catalog.repository import CatalogRepository
from cmdb.health.repository import HealthRepository
from cmdb.identity.principal import Permission, has_permission
from cmdb.identity.request_auth import forbidden, request_principal
from cmdb.observability.instruments import REGISTRY
from cmdb.observability.metrics import METRICS_PATH, OPERATIONS

if TYPE_CHECKING:
    from cmdb.db.driver import Database
    from cmdb.settings import Settings

log = logging.getLogger("cmdb.metrics")


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
    # The roll-up worker's polls and roll-ups are left out of both (they are not requests').
    trips = CounterMetricFamily("cmdb_neo4j_round_trips",
                                "Statements sent to Neo4j for requests.")
    trips.add_metric([], db.round_trips.count)
    in_flight = GaugeMetricFamily("cmdb_neo4j_in_flight",
                                  "Requests' statements and transactions running in Neo4j now.")
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
