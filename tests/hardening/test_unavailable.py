"""Neo4j unreachable: every surface answers 503 with Retry-After and a clear error, within
the configured bound (never a 500, never a hang). The app talks to a real driver pointed at
a local port where nothing listens."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.auth import auth_headers

pytestmark = pytest.mark.integration

# Generous: a request waits FAST_RETRY_S; this only turns a hang into a failure.
HANG = 60

REST = [
    ("/api/alarms", {"alarms": [{"source": "zabbix", "ciId": "ci-1", "severity": "MAJOR",
                                 "dedupKey": "cpu", "message": "CPU high"}]},
     ("zabbix", "monitoring")),
    ("/api/chargeback/usage", {"records": [{"recordId": "r1", "ciId": "ci-1",
                                           "meter": "storage-gb-month", "quantity": "1",
                                           "at": "2026-11-01T00:00:00Z", "source": "s"}]},
     ("pure", "monitoring")),
    ("/api/discovery/batches", {"source": "scanner", "items": [
        {"ciClass": "SERVER", "identifiers": {"serialNumber": "S1"}}]},
     ("scanner-7", "discovery_agent")),
    ("/api/vdi/events", {"events": [{"eventId": "e1", "eventType": "LOGON", "sessionId": "s1",
                                     "user": "CORP\\u", "desktop": "d", "pool": "p",
                                     "host": "h", "timestamp": "2026-11-01T08:00:00Z"}]},
     ("horizon", "discovery_agent")),
]


def assert_unavailable(r: httpx.Response) -> dict[str, Any]:
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) > 0
    assert r.headers["x-request-id"]
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize(("path", "body", "who"), REST, ids=[p for p, _, _ in REST])
async def test_rest_writes_answer_503_with_retry_after(unreachable, path, body, who):
    r = await asyncio.wait_for(unreachable.post(path, json=body, headers=auth_headers(*who)),
                               HANG)
    body = assert_unavailable(r)
    assert body["code"] == "UNAVAILABLE" and "retry later" in body["error"]


async def test_rest_reads_answer_503(unreachable):
    r = await asyncio.wait_for(
        unreachable.get("/api/chargeback/periods/2026-10/lines.csv"), HANG)
    assert assert_unavailable(r)["code"] == "UNAVAILABLE"


@pytest.mark.parametrize("query", [
    "{ configurationItems(first: 5) { edges { node { id name } } } }",
    'mutation { raiseAlarm(input: {source: "z", ciId: "ci-1", severity: MAJOR, dedupKey: "k",'
    ' message: "m"}) { alarm { id } errors { message } } }',
    '{ a: alarms { id } b: catalogueItems { id } }',
], ids=["query", "mutation", "two-fields"])
async def test_graphql_answers_503_with_a_clear_error(unreachable, query):
    r = await asyncio.wait_for(unreachable.post("/graphql", json={"query": query}), HANG)
    body = assert_unavailable(r)
    assert body["errors"], body
    for error in body["errors"]:
        assert error["message"] == "the database is unavailable; retry later"
        assert error["extensions"]["code"] == "UNAVAILABLE"
        assert "Traceback" not in str(error) and "bolt" not in str(error).lower()


async def test_graphql_over_get_answers_503(unreachable):
    r = await asyncio.wait_for(unreachable.get(
        "/graphql", params={"query": "{ alarms { id } }"}), HANG)
    assert_unavailable(r)


async def test_readyz_is_red_and_healthz_stays_green(unreachable):
    ready = await asyncio.wait_for(unreachable.get("/readyz"), HANG)
    assert ready.status_code == 503 and ready.json()["neo4j"] is False
    assert int(ready.headers["retry-after"]) > 0
    assert (await unreachable.get("/healthz")).status_code == 200


async def test_a_client_error_is_still_answered_without_the_database(unreachable):
    """Validation before any database call keeps answering 4xx, not 503."""
    r = await unreachable.post("/api/alarms", content=b"{", headers={
        **auth_headers("zabbix", "monitoring"), "Content-Type": "application/json"})
    assert r.status_code == 400
    bad = await unreachable.post("/graphql", json={"query": "{ nope }"})
    assert bad.status_code == 200 and "nope" in bad.json()["errors"][0]["message"]
