"""Neo4j stopped and started again in the middle of a load of orders, alarm raises, usage
records and discovery batches, each request with a key of its own.

While Neo4j is gone the API answers 503 with Retry-After (never a 500, never a hang) and
/readyz is red; afterwards green. Clients send a failed request again a bounded number of
times with the same key, as a real client would. Then the graph is checked: every
acknowledged request is stored exactly once (no duplicates, nothing lost), and nothing is
half stored (an order with all its parts, a discovery batch with all its records, or none).

The counts are printed (``-s``) and written to ``.cmdb/hardening/restart-counts.json``.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from cmdb.app import create_app
from cmdb.db.driver import Database
from tests.auth import auth_headers
from tests.catalog_world import build_world, create_item
from tests.conftest import GQL
from tests.hardening.conftest import Outage, app_client, fast_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / ".cmdb" / "hardening" / "restart-counts.json"
CLIENTS_PER_KIND = 3
ATTEMPTS = 6  # per request, the first included
MAX_BACKOFF_S = 2.0  # a client honours Retry-After up to this (keeps the test short)
LOAD_BEFORE_S = 5.0  # load before the stop, and after Neo4j is back
DOWN_S = 3.0  # extra time down after the stop returned
HANG = 60  # a single answer taking longer is a hang

REQUESTER = auth_headers("johnW", "requester")
MONITOR = auth_headers("zabbix", "monitoring")
METERING = auth_headers("pure-exporter", "monitoring")
AGENT = auth_headers("scanner-7", "discovery_agent")
SUBMIT = """mutation($i: SubmitOrderInput!) { submitOrder(input: $i) {
  created order { id status } errors { field message code } } }"""


@dataclass
class Request:
    kind: str
    key: str
    attempts: int = 0
    acknowledged: bool = False
    # A client resends the same request: its CI and time are chosen once.
    ci: str | None = None
    at: str | None = None
    statuses: list[int] = field(default_factory=list)
    retry_after: list[str | None] = field(default_factory=list)


@dataclass
class World:
    item: str
    cis: list[str]


class Load:
    def __init__(self, client: httpx.AsyncClient, world: World) -> None:
        self.client = client
        self.world = world
        self.requests: list[Request] = []
        self.stop = asyncio.Event()

    async def send(self, r: Request, again: bool = False) -> None:
        """One request, sent again with the same key after a failure (bounded)."""
        if not again:
            self.requests.append(r)
        for _ in range(ATTEMPTS):
            r.attempts += 1
            try:
                resp = await asyncio.wait_for(self.post(r), HANG)
            except httpx.TransportError:  # never expected in process; counted as a failure
                r.statuses.append(-1)
                r.retry_after.append(None)
                continue
            r.statuses.append(resp.status_code)
            r.retry_after.append(resp.headers.get("retry-after"))
            if resp.status_code == 200 and self.accepted(r, resp.json()):
                r.acknowledged = True
                return
            if resp.status_code != 503:
                return  # not a fault to wait out: the client gives up on it
            wait = min(float(resp.headers.get("retry-after") or 1), MAX_BACKOFF_S)
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))

    async def post(self, r: Request) -> httpx.Response:
        if r.ci is None:
            r.ci = random.choice(self.world.cis)
            r.at = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        ci = r.ci
        if r.kind == "order":
            return await self.client.post("/graphql", headers=REQUESTER, json={
                "query": SUBMIT, "variables": {"i": {
                    "itemId": self.world.item, "idempotencyKey": r.key,
                    "form": {"siteName": f"s-{r.key[:12]}"}}}})
        if r.kind == "alarm":
            return await self.client.post("/api/alarms", headers=MONITOR, json={"alarms": [{
                "source": "zabbix", "ciId": ci, "severity": "MINOR", "dedupKey": r.key,
                "eventId": r.key, "message": "disk filling"}]})
        if r.kind == "usage":
            return await self.client.post("/api/chargeback/usage", headers=METERING, json={
                "records": [{"recordId": r.key, "ciId": ci, "meter": "storage-gb-month",
                             "quantity": "10", "at": r.at, "source": "pure-lon-01"}]})
        return await self.client.post("/api/discovery/batches", headers=AGENT,
                                      json=discovery_batch(r.key))

    @staticmethod
    def accepted(r: Request, body: dict[str, Any]) -> bool:
        if r.kind == "order":
            payload = (body.get("data") or {}).get("submitOrder") or {}
            return not body.get("errors") and payload.get("errors") == [] \
                and payload.get("order") is not None
        if r.kind == "alarm":
            return bool(body["counts"]["rejected"] == 0)
        if r.kind == "usage":
            return bool(body["counts"]["rejected"] == 0)
        return not body["rejected"]

    async def client_task(self, kind: str) -> None:
        while not self.stop.is_set():
            await self.send(Request(kind, uuid.uuid4().hex))


def discovery_batch(key: str) -> dict[str, Any]:
    return {"source": "scanner", "items": [
        {"key": "h", "ciClass": "SERVER", "identifiers": {"serialNumber": f"SN-{key}"}},
        {"key": "a", "ciClass": "APPLICATION_INSTANCE",
         "identifiers": {"cloudInstanceId": f"app-{key}"}},
    ], "relations": [{"source": {"key": "a"}, "target": {"key": "h"}, "type": "RUNS_ON"}]}


async def build(client: httpx.AsyncClient, db: Database) -> World:
    gql = GQL(client)
    await build_world(gql, db)
    item = await create_item(gql, "Team site", approval=[])
    cis = []
    for i in range(4):
        r = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                         "input: $i) { configurationItem { id } } }",
                         i={"name": f"vol-{i}", "ciClass": "STORAGE_VOLUME",
                            "operationalState": "UP"})
        cis.append(r["createConfigurationItem"]["configurationItem"]["id"])
    meter = await gql.ok("""mutation { defineMeter(input: {code: "storage-gb-month",
        name: "Storage", unit: "GB-month"}) { errors { message } } }""")
    assert meter["defineMeter"]["errors"] == []
    source = await gql.ok("""mutation { registerDiscoverySource(input: {name: "scanner",
        trust: 50}) { errors { message } } }""")
    assert source["registerDiscoverySource"]["errors"] == []
    return World(item, cis)


# --- what the graph holds, per request key ----------------------------------------------------

STORED = {
    # Orders: how many for the key, and whether each has every part its submission and
    # fulfilment write (version link, requester, first transition, and once FULFILLED its
    # subscription and the CI the recipe makes).
    "order": """
        UNWIND $keys AS key
        OPTIONAL MATCH (o:Order {idempotencyScope: $scope + key})
        WITH key, o, EXISTS { (o)-[:FOR_VERSION]->() } AND EXISTS { (o)-[:REQUESTED_BY]->() }
             AND EXISTS { (o)-[:HAS_TRANSITION]->() } AS submitted,
             COUNT { MATCH (s:Subscription {orderId: o.id}) RETURN s } AS subs,
             COUNT { MATCH (c:CI) WHERE c.attr_catalogueOrderId = o.id RETURN c } AS cis
        RETURN key, count(o) AS n,
               all(x IN collect(CASE WHEN o IS NOT NULL
                                     THEN [submitted, o.status, subs, cis] END) WHERE x[0] AND
                   CASE x[1] WHEN 'FULFILLED' THEN x[2] = 1 AND x[3] = 1
                             ELSE x[2] = 0 AND x[3] = 0 END) AS whole,
               collect(o.status) AS statuses""",
    "alarm": """
        UNWIND $keys AS key
        OPTIONAL MATCH (a:Alarm {source: 'zabbix', dedupKey: key})
        WITH key, collect(a) AS found
        RETURN key, size(found) + reduce(n = 0, a IN found | n + a.count - 1) AS n,
               true AS whole, [] AS statuses""",
    "usage": """
        UNWIND $keys AS key
        OPTIONAL MATCH (u:UsageRecord {recordId: key})
        RETURN key, count(u) AS n, true AS whole, [] AS statuses""",
    # A batch: its server, its application and the RUNS_ON between them, all or none.
    "discovery": """
        UNWIND $keys AS key
        OPTIONAL MATCH (h:CI {serialNumber: 'SN-' + key})
        WITH key, count(h) AS hosts
        OPTIONAL MATCH (a:CI {cloudInstanceId: 'app-' + key})
        WITH key, hosts, count(a) AS apps
        OPTIONAL MATCH (:CI {cloudInstanceId: 'app-' + key})-[r:RUNS_ON]->
                       (:CI {serialNumber: 'SN-' + key})
        WITH key, hosts, apps, count(r) AS rels
        RETURN key, hosts AS n, (hosts = apps AND apps = rels) AS whole, [] AS statuses""",
}


async def graph_counts(db: Database, load: Load) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, query in STORED.items():
        reqs = [r for r in load.requests if r.kind == kind]
        rows = {row["key"]: row for row in await db.read(query, {
            "keys": [r.key for r in reqs], "scope": "johnW\u0000"})}
        acked = [r for r in reqs if r.acknowledged]
        failed = [r for r in reqs if not r.acknowledged]
        out[kind] = {
            "sent": len(reqs),
            "acknowledged": len(acked),
            "failed": len(failed),
            "stored": sum(1 for r in reqs if rows[r.key]["n"] > 0),
            "duplicates": sum(rows[r.key]["n"] - 1 for r in reqs if rows[r.key]["n"] > 1),
            "lost": sum(1 for r in acked if rows[r.key]["n"] == 0),
            "failed_but_stored": sum(1 for r in failed if rows[r.key]["n"] > 0),
            "half_stored": sum(1 for r in reqs if not rows[r.key]["whole"]),
            "attempts": sum(r.attempts for r in reqs),
            "answers": dict(Counter(str(s) for r in reqs for s in r.statuses)),
            "order_statuses": dict(Counter(s for r in reqs for s in rows[r.key]["statuses"]))
            if kind == "order" else None,
        }
    return out


async def test_neo4j_restart_under_load(outage: Outage, fresh_db: Database, test_settings):
    started = time.monotonic()
    app = create_app(fast_settings(test_settings), db=fresh_db)
    async with app_client(app) as client:
        world = await build(client, fresh_db)
        load = Load(client, world)
        readyz: list[tuple[str, int, str | None]] = []
        phase = "before"

        async def watch_readyz() -> None:
            while not load.stop.is_set():
                r = await asyncio.wait_for(client.get("/readyz"), HANG)
                readyz.append((phase, r.status_code, r.headers.get("retry-after")))
                await asyncio.sleep(0.5)

        tasks = [asyncio.create_task(load.client_task(kind))
                 for kind in ("order", "alarm", "usage", "discovery")
                 for _ in range(CLIENTS_PER_KIND)]
        watcher = asyncio.create_task(watch_readyz())
        try:
            await asyncio.sleep(LOAD_BEFORE_S)
            phase = "stopping"
            await outage.stop()
            phase = "down"
            down_at = len(load.requests)
            await asyncio.sleep(DOWN_S)
            # Probes while down: each surface answers 503 with Retry-After.
            probes = [Request(kind, uuid.uuid4().hex) for kind in STORED]
            answers = [await load.post(p) for p in probes]
            ready_down = await client.get("/readyz")
            phase = "starting"
            await outage.start()
            phase = "after"
            await asyncio.sleep(LOAD_BEFORE_S)
        finally:
            load.stop.set()
            await asyncio.gather(*tasks, watcher)
        ready_after = await client.get("/readyz")
        during = await graph_counts(fresh_db, load)
        # Later, a client sends what it gave up on once more (same key): nothing may be
        # stored twice, and an order whose fulfilment was cut off is carried on.
        gave_up = [r for r in load.requests if not r.acknowledged]
        await asyncio.gather(*(load.send(r, again=True) for r in gave_up))

    for probe, answer in zip(probes, answers, strict=True):
        assert answer.status_code == 503, (probe.kind, answer.text)
        assert int(answer.headers["retry-after"]) > 0
        if probe.kind == "order":
            assert answer.json()["errors"][0]["extensions"]["code"] == "UNAVAILABLE"
        else:
            assert answer.json()["code"] == "UNAVAILABLE"
    assert ready_down.status_code == 503 and ready_down.json()["neo4j"] is False
    assert ready_after.status_code == 200, ready_after.text
    assert ("down", 503, "5") in readyz and readyz[-1][1] == 200, readyz
    assert {s for _, s, _ in readyz} <= {200, 503}

    counts = await graph_counts(fresh_db, load)
    report = {"at": datetime.now(UTC).isoformat(timespec="seconds"),
              "seconds": round(time.monotonic() - started, 1),
              "clients": 4 * CLIENTS_PER_KIND, "attempts_per_request": ATTEMPTS,
              "requests_sent_before_the_stop_returned": down_at,
              "readyz": dict(Counter(f"{p}:{s}" for p, s, _ in readyz)),
              "totals": totals(during), "by_kind": during,
              "after_resending_the_failed_ones": {"resent": len(gave_up),
                                                  "totals": totals(counts),
                                                  "by_kind": counts}}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print("\nrestart under load:", json.dumps(report, indent=2))

    every_answer = Counter(s for r in load.requests for s in r.statuses)
    # Only successes and 503s: no 500, no other refusal, no transport failure.
    assert set(every_answer) <= {200, 503}, every_answer
    for r in load.requests:
        for status, retry_after in zip(r.statuses, r.retry_after, strict=True):
            assert status != 503 or (retry_after or "").isdigit(), r
    assert every_answer[503] > 0, "the outage was not seen by any client"
    for kind, c in during.items():
        assert c["acknowledged"] > 0, (kind, c)
        assert c["duplicates"] == 0, (kind, c)
        assert c["lost"] == 0, (kind, c)
        assert c["half_stored"] == 0, (kind, c)
    for kind, c in counts.items():  # after the failed ones were sent again
        assert c["acknowledged"] == c["stored"] == c["sent"], (kind, c)
        assert c["duplicates"] == c["half_stored"] == 0, (kind, c)
    assert counts["order"]["order_statuses"] == {"FULFILLED": counts["order"]["sent"]}


def totals(counts: dict[str, Any]) -> dict[str, int]:
    return {k: sum(c[k] for c in counts.values()) for k in (
        "sent", "acknowledged", "failed", "stored", "duplicates", "lost", "failed_but_stored",
        "half_stored", "attempts")}
