"""A client may send a write again (after a timeout or a 503) without it counting twice:
alarm raises by (source, eventId), here; orders, usage and discovery in test_restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.auth import auth_headers

pytestmark = pytest.mark.integration

MONITOR = auth_headers("zabbix", "monitoring")
RAISE = """mutation($i: RaiseAlarmInput!) { raiseAlarm(input: $i) {
  alarm { id count } deduplicated replayed errors { field message code } } }"""


async def a_ci(gql: Any, name: str = "web-01") -> str:
    r = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                     "input: $i) { configurationItem { id } } }",
                     i={"name": name, "ciClass": "SERVER", "operationalState": "UP"})
    ci: str = r["createConfigurationItem"]["configurationItem"]["id"]
    return ci


def alarm(ci: str, event: str | None, key: str = "cpu") -> dict[str, Any]:
    out = {"source": "zabbix", "ciId": ci, "severity": "MAJOR", "dedupKey": key,
           "message": "CPU high"}
    return out if event is None else {**out, "eventId": event}


async def count_of(gql: Any, key: str = "cpu") -> list[int]:
    data = await gql.ok("{ alarms { dedupKey count } }")
    return [a["count"] for a in data["alarms"] if a["dedupKey"] == key]


async def test_a_raise_sent_again_with_its_event_id_counts_once(client, gql):
    ci = await a_ci(gql)
    first = await client.post("/api/alarms", json={"alarms": [alarm(ci, "ev-1")]},
                              headers=MONITOR)
    again = await client.post("/api/alarms", json={"alarms": [alarm(ci, "ev-1")]},
                              headers=MONITOR)
    assert first.status_code == again.status_code == 200
    [a], [b] = first.json()["results"], again.json()["results"]
    assert a["outcome"] == b["outcome"] == "created"
    assert "replayed" not in a and b["replayed"] is True and b["alarmId"] == a["alarmId"]
    assert await count_of(gql) == [1]
    # A new occurrence counts; so does one without an event id (no way to tell it apart).
    await client.post("/api/alarms", json={"alarms": [alarm(ci, "ev-2"), alarm(ci, None)]},
                      headers=MONITOR)
    assert await count_of(gql) == [3]


async def test_the_same_event_twice_in_one_batch_counts_once(client, gql):
    ci = await a_ci(gql)
    r = await client.post("/api/alarms", json={"alarms": [
        alarm(ci, "ev-1"), alarm(ci, "ev-1"), alarm(ci, "ev-2")]}, headers=MONITOR)
    results = r.json()["results"]
    assert [x["outcome"] for x in results] == ["created", "created", "deduplicated"]
    assert [x.get("replayed", False) for x in results] == [False, True, False]
    assert await count_of(gql) == [2]


async def test_graphql_raise_replays_and_concurrent_twins_count_once(gql):
    ci = await a_ci(gql)
    monitor = gql.as_user("zabbix", "monitoring")
    first = (await monitor.ok(RAISE, i=alarm(ci, "ev-1")))["raiseAlarm"]
    again = (await monitor.ok(RAISE, i=alarm(ci, "ev-1")))["raiseAlarm"]
    assert (first["replayed"], again["replayed"]) == (False, True)
    assert again["alarm"] == first["alarm"] == {"id": first["alarm"]["id"], "count": 1}
    twins = await asyncio.gather(*(monitor.ok(RAISE, i=alarm(ci, "ev-2")) for _ in range(6)))
    assert sorted(t["raiseAlarm"]["replayed"] for t in twins) == [False] + [True] * 5
    assert await count_of(gql) == [2]


async def test_an_event_id_is_checked_like_the_other_fields(client, gql):
    ci = await a_ci(gql)
    r = await client.post("/api/alarms", json={"alarms": [alarm(ci, " "), alarm(ci, "a\u0000")]},
                          headers=MONITOR)
    results = r.json()["results"]
    assert [x["outcome"] for x in results] == ["rejected", "rejected"]
    assert {e["field"] for x in results for e in x["errors"]} == {"eventId"}
    assert await count_of(gql) == []
