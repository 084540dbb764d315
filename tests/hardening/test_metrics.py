"""/metrics: who may scrape it, counters and histograms that move with requests, errors by
kind, bounded operation labels, and business gauges read from the graph (cached)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from cmdb.app import create_app
from cmdb.observability import metrics
from cmdb.observability.instruments import ERROR_KINDS
from tests.auth import auth_headers
from tests.conftest import settle
from tests.test_alarms_api import RAISE, raise_input, stack
from tests.test_alarms_api import gql as call

pytestmark = pytest.mark.integration

MONITOR = auth_headers("prom", "monitoring")
ADMIN = auth_headers("ada", "admin")


@pytest_asyncio.fixture
async def api(clean_db, test_settings, monkeypatch) -> AsyncIterator[httpx.AsyncClient]:
    settings = test_settings.model_copy(update={"metrics_cache_s": 0})
    app = create_app(settings, db=clean_db)
    # Operation names seen by earlier tests of this process must not use up the cap.
    monkeypatch.setattr(metrics, "OPERATIONS", metrics.OperationLabels(200))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def scrape(api: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = await api.get("/metrics", headers=MONITOR)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def post(api: httpx.AsyncClient, query: str, headers=ADMIN, **variables) -> httpx.Response:
    return await api.post("/graphql", json={"query": query, "variables": variables},
                          headers=headers)


async def test_metrics_need_permission_metrics_read(api):
    assert (await api.get("/metrics")).status_code == 401
    r = await api.get("/metrics", headers=auth_headers("olga", "operator"))
    assert r.status_code == 403 and "metrics:read" in r.json()["error"]
    assert (await api.get("/metrics", headers=MONITOR)).status_code == 200
    assert (await api.get("/metrics", headers=ADMIN)).status_code == 200


async def test_metrics_public_when_configured(clean_db, test_settings):
    app = create_app(test_settings.model_copy(update={"metrics_public": True}), db=clean_db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.get("/metrics")
            assert r.status_code == 200
            assert "cmdb_requests_total" in r.text
            # Only /metrics is opened: the API still wants a token.
            assert (await c.post("/graphql", json={"query": "{ __typename }"})).status_code \
                == 401


async def test_requests_by_operation_and_neo4j_round_trips_move(api):
    before = await scrape(api)
    for _ in range(2):
        r = await post(api, "query CountItems { configurationItems { totalCount } }")
        assert r.status_code == 200 and "errors" not in r.json()
    r = await post(api, "{ services { totalCount } }")
    assert r.status_code == 200
    after = await scrape(api)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("cmdb_requests_total", route="/graphql", operation="CountItems",
                 status="200") == 2
    assert delta("cmdb_request_duration_seconds_count", route="/graphql",
                 operation="CountItems") == 2
    assert delta("cmdb_request_duration_seconds_sum", route="/graphql",
                 operation="CountItems") > 0
    assert delta("cmdb_requests_total", route="/graphql", operation="anonymous",
                 status="200") == 1
    # The first scrape itself is counted by route.
    assert delta("cmdb_requests_total", route="/metrics", operation="", status="200") == 1
    assert delta("cmdb_neo4j_round_trips_total") >= 3
    statements = sum(delta("cmdb_neo4j_statement_duration_seconds_count", mode=m)
                     for m in ("read", "write", "tx"))
    assert statements >= 3
    assert value(after, "cmdb_neo4j_in_flight") == 0
    in_use = value(after, "cmdb_neo4j_pool_connections", state="in_use")
    idle = value(after, "cmdb_neo4j_pool_connections", state="idle")
    assert in_use + idle >= 1 and in_use <= value(after, "cmdb_neo4j_pool_max_size")


async def test_rest_requests_are_labelled_by_route(api):
    before = await scrape(api)
    r = await api.post("/api/alarms", json={"alarms": "no"}, headers=MONITOR)
    assert r.status_code == 400
    assert (await api.get("/no/such/path", headers=MONITOR)).status_code == 404
    after = await scrape(api)
    assert value(after, "cmdb_requests_total", route="/api/alarms", operation="",
                 status="400") - value(before, "cmdb_requests_total", route="/api/alarms",
                                       operation="", status="400") == 1
    assert value(after, "cmdb_requests_total", route="unmatched", operation="",
                 status="404") >= 1
    assert value(after, "cmdb_errors_total", kind="validation") \
        - value(before, "cmdb_errors_total", kind="validation") == 1


async def test_errors_are_counted_by_kind(api):
    before = await scrape(api)
    # validation: a field that does not exist
    assert "errors" in (await post(api, "query Bad { noSuchField }")).json()
    # auth: no token
    assert (await post(api, "{ services { totalCount } }", headers={})).status_code == 401
    # forbidden: an executive may not create configuration items
    body = (await post(api, 'mutation { createConfigurationItem(input: {name: "x", '
                       'ciClass: SERVER}) { errors { code } } }',
                       headers=auth_headers("erin", "executive"))).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # validation too: a page size out of range is refused before execution
    body = (await post(api, "{ configurationItems(first: -5) { totalCount } }")).json()
    assert body["errors"][0]["extensions"]["code"] == "INVALID"
    # domain: a period that is not a month (refused by the service)
    body = (await post(api, '{ costReport(period: "2026-13") { total } }')).json()
    assert body["errors"][0]["extensions"]["code"] == "INVALID"
    after = await scrape(api)

    def delta(kind: str) -> float:
        return value(after, "cmdb_errors_total", kind=kind) \
            - value(before, "cmdb_errors_total", kind=kind)

    assert delta("validation") == 2
    assert delta("auth") == 1
    assert delta("forbidden") == 1
    assert delta("domain") == 1
    assert delta("internal") == 0 and delta("unavailable") == 0
    for kind in ERROR_KINDS:  # every kind is exported, at 0 before the first
        assert ("cmdb_errors_total", (("kind", kind),)) in after


def test_unexpected_and_outage_errors_are_told_apart():
    from graphql import GraphQLError
    from neo4j.exceptions import ServiceUnavailable

    assert metrics.error_kind(GraphQLError("x", original_error=ServiceUnavailable("gone"))) \
        == "unavailable"
    assert metrics.error_kind(GraphQLError("x", original_error=KeyError("k"))) == "internal"


async def test_operation_names_are_capped(api, monkeypatch):
    labels = metrics.OperationLabels(limit=len(metrics.OPERATIONS.known) + 1)
    labels.known = set(metrics.OPERATIONS.known)
    monkeypatch.setattr(metrics, "OPERATIONS", labels)
    for name in ("FirstNewName", "SecondNewName", "ThirdNewName"):
        r = await post(api, f"query {name} {{ services {{ totalCount }} }}")
        assert r.status_code == 200 and "errors" not in r.json()
    after = await scrape(api)
    assert value(after, "cmdb_requests_total", route="/graphql", operation="FirstNewName",
                 status="200") >= 1
    assert value(after, "cmdb_requests_total", route="/graphql", operation="SecondNewName",
                 status="200") == 0
    assert value(after, "cmdb_requests_total", route="/graphql", operation="ThirdNewName",
                 status="200") == 0
    assert value(after, "cmdb_requests_total", route="/graphql", operation="other",
                 status="200") >= 2


def test_operation_labels_refuse_odd_names():
    labels = metrics.OperationLabels(limit=10)
    assert labels.label(None) == "anonymous"
    assert labels.label("a b") == "other"
    assert labels.label("x" * 101) == "other"
    assert labels.label("Fine_1") == "Fine_1"


ORDERS = """
UNWIND $orders AS o
CREATE (:Order {id: o.id, idempotencyScope: o.id, status: o.status})
"""


async def test_business_gauges_follow_the_graph(api, clean_db):
    before = await scrape(api)
    assert value(before, "cmdb_business_gauges_up") == 1
    assert value(before, "cmdb_services_down") == 0
    assert value(before, "cmdb_alarms_open", severity="CRITICAL", status="OPEN") == 0
    assert value(before, "cmdb_orders_waiting", stage="approval",
                 status="AWAITING_APPROVAL") == 0

    server, _, _ = await stack(api)
    await call(api, MONITOR, RAISE, input=raise_input(server, severity="CRITICAL"))
    await call(api, MONITOR, RAISE, input=raise_input(server, key="disk", severity="MINOR"))
    await clean_db.write(ORDERS, {"orders": [
        {"id": "o1", "status": "AWAITING_APPROVAL"}, {"id": "o2", "status": "AWAITING_APPROVAL"},
        {"id": "o3", "status": "FULFILLING"}, {"id": "o4", "status": "FULFILLED"}]})

    await settle(clean_db)  # the alarms' states rolled up to Payroll
    after = await scrape(api)
    assert value(after, "cmdb_services_down") == 1  # Payroll, through its app
    assert value(after, "cmdb_alarms_open", severity="CRITICAL", status="OPEN") == 1
    assert value(after, "cmdb_alarms_open", severity="MINOR", status="OPEN") == 1
    assert value(after, "cmdb_orders_waiting", stage="approval",
                 status="AWAITING_APPROVAL") == 2
    assert value(after, "cmdb_orders_waiting", stage="fulfilment", status="FULFILLING") == 1
    assert sum(v for (n, _), v in after.items() if n == "cmdb_orders_waiting") == 3


async def test_business_gauges_are_cached_between_scrapes(clean_db, test_settings):
    app = create_app(test_settings.model_copy(update={"metrics_cache_s": 3600}), db=clean_db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as api:
            first = await scrape(api)
            await clean_db.write(ORDERS, {"orders": [{"id": "o1", "status": "APPROVED"}]})
            trips = clean_db.round_trips.count
            second = await scrape(api)
            # No statement ran for the second scrape, and it shows the cached values.
            assert clean_db.round_trips.count == trips
            assert value(second, "cmdb_orders_waiting", stage="fulfilment",
                         status="APPROVED") == value(first, "cmdb_orders_waiting",
                                                     stage="fulfilment", status="APPROVED") == 0
