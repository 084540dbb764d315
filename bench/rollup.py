"""Commit to service health: how long after a state write a service's healthState follows.

    .venv/bin/python -m bench.rollup --tier S --instance bench
    .venv/bin/python -m bench.rollup --tier S --instance test-1 --wipe   # a test instance
    .venv/bin/python -m bench.rollup --tier M --instance bench --samples 100 --storm 30

Loads the tier if needed (``bench.load``), rolls every item up once if the load left them
without health, serves our API (``cmdb serve``, production mode, ``--workers``) and then:

- single: a client sets one CI DOWN with ``updateConfigurationItem`` and polls the service
  it takes down (found with ``impact(assumeDown: true)``) until its healthState changes;
  then sets it back UP and waits again. Latency runs from the mutation's answer (its commit)
  to the first read that shows the service's new state.
- storm: every member of one cluster (the largest with a service above it) set DOWN at
  once, one request each, concurrently; the latency runs from the last answer to the
  service's change, and the cluster's history shows how many roll-ups recorded it (1: one
  coalesced roll-up).

Prints a table and the machine; writes bench/results/rollup-<tier>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.ingest import machine
from bench.load import connect_settings
from bench.run import IDP, ROOT, _wait_http
from cmdb.core.clock import utcnow
from cmdb.db.driver import Database
from cmdb.rollup.repository import recompute_all

PORT = 8104
URL = f"http://127.0.0.1:{PORT}/graphql"
SET = ("mutation($id: ID!, $s: OperationalState!) { updateConfigurationItem(id: $id, "
       "input: {operationalState: $s}) { errors { message } } }")
HEALTH = "query($id: ID!) { node(id: $id) { ... on Service { healthState } } }"
IMPACT = ("query($ids: [ID!]!) { impact(ids: $ids, assumeDown: true) "
          "{ state item { id } } }")
# Clusters whose members (all of them: a cluster needs one member up unless its
# relationships say otherwise) number at least $n, largest first.
CLUSTERS = """
MATCH (m:CI)-[r:MEMBER_OF]->(c:Cluster) WHERE r.retiredAt IS NULL
WITH c, collect({id: m.id, state: m.operationalState}) AS members WHERE size(members) >= $n
RETURN c.id AS id, members ORDER BY size(members) DESC LIMIT 20
"""
CANDIDATES = """
MATCH (x:CI) WHERE x.operationalState = 'UP' AND x.lifecycleStatus = 'IN_SERVICE'
  AND EXISTS { (:Item)-[:DEPENDS_ON|RUNS_ON]->(x) }
RETURN x.id AS id LIMIT 2000
"""
CLUSTER_CHANGES = """
MATCH (c:StateChange {itemId: $id}) WHERE c.at >= $since
RETURN count(c) AS n, count(DISTINCT c.at) AS times
"""


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 1) if s else float("nan")


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        r = await self.client.post(URL, json={"query": query, "variables": variables})
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        if body.get("errors"):
            raise RuntimeError(body["errors"])
        data: dict[str, Any] = body["data"]
        return data

    async def set_state(self, ci_id: str, state: str) -> float:
        """Set the state; the time its answer (so its commit) arrived."""
        data = await self.gql(SET, id=ci_id, s=state)
        if data["updateConfigurationItem"]["errors"]:
            raise RuntimeError(data["updateConfigurationItem"]["errors"])
        return time.perf_counter()

    async def health(self, service_id: str) -> str | None:
        node = (await self.gql(HEALTH, id=service_id))["node"]
        return node.get("healthState") if node else None

    async def until(self, service_id: str, state: str, timeout_s: float = 30) -> float:
        """Poll until the service shows ``state``; the time of that read."""
        deadline = time.perf_counter() + timeout_s
        while await self.health(service_id) != state:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"{service_id} did not become {state}")
        return time.perf_counter()

    async def settled(self, timeout_s: float = 30) -> None:
        """Wait until no write is waiting for the roll-up (the public count)."""
        deadline = time.perf_counter() + timeout_s
        while (await self.gql("{ pendingRollUps }"))["pendingRollUps"]:
            if time.perf_counter() > deadline:
                raise RuntimeError("the roll-up did not settle")
            await asyncio.sleep(0.01)

    async def affected(self, *ids: str) -> tuple[str, str, str] | None:
        """A service that these CIs going down change: (id, state now, state then). The
        what-if reads its states inside its own (rolled back) transaction, so the states
        now are read apart."""
        then = {e["item"]["id"]: e["state"]
                for e in (await self.gql(IMPACT, ids=list(ids)))["impact"]}
        for svc, state in then.items():
            now = await self.health(svc)
            if now is not None and now != state:
                return svc, now, state
        return None


async def singles(api: Api, db: Database, samples: int) -> dict[str, Any]:
    ids = [r["id"] for r in await db.read(CANDIDATES)]
    random.Random(7).shuffle(ids)
    lat: list[float] = []
    writes: list[float] = []
    for ci_id in ids:
        if len(lat) >= 2 * samples:
            break
        found = await api.affected(ci_id)
        if found is None:
            continue
        svc, before, after = found
        for state, want in (("DOWN", after), ("UP", before)):
            started = time.perf_counter()
            committed = await api.set_state(ci_id, state)
            writes.append((committed - started) * 1000)
            lat.append((await api.until(svc, want) - committed) * 1000)
    return {"changes": len(lat), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
            "max_ms": round(max(lat), 1) if lat else None,
            "write_p50_ms": pct(writes, 50), "write_p95_ms": pct(writes, 95)}


async def storm(api: Api, db: Database, size: int) -> dict[str, Any] | None:
    for row in await db.read(CLUSTERS, {"n": size}):
        members = row["members"]
        # From all members up (the generated states are random), so the storm can move it.
        await asyncio.gather(*[api.set_state(m["id"], "UP") for m in members])
        await api.settled()
        found = await api.affected(*[m["id"] for m in members])
        if found is None:
            await asyncio.gather(*[api.set_state(m["id"], m["state"] or "UNKNOWN")
                                   for m in members])
            continue
        svc, before, _ = found
        since = utcnow()
        started = time.perf_counter()
        answers = await asyncio.gather(*[api.set_state(m["id"], "DOWN") for m in members])
        last = max(answers)
        after = await _changed(api, svc, before)
        seen = time.perf_counter()
        changes = (await db.read(CLUSTER_CHANGES, {"id": row["id"], "since": since}))[0]
        await asyncio.gather(*[api.set_state(m["id"], m["state"] or "UNKNOWN")
                               for m in members])
        await api.settled()
        return {"members": len(members), "writes_ms": round((last - started) * 1000, 1),
                "last_write_to_service_ms": round((seen - last) * 1000, 1),
                "service": f"{before} -> {after}",
                "cluster_changes_recorded": changes["n"]}
    return None


async def _changed(api: Api, svc: str, before: str, timeout_s: float = 30) -> str:
    deadline = time.perf_counter() + timeout_s
    while True:
        now = await api.health(svc)
        if now is not None and now != before:
            return now
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{svc} did not change")


def serve(settings: Any, workers: int, delay_ms: int, logs: Path) -> subprocess.Popen[bytes]:
    IDP.start()
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    env = {**os.environ, "CMDB_NEO4J_URI": settings.neo4j_uri, "CMDB_NEO4J_USER": "neo4j",
           "CMDB_NEO4J_PASSWORD": pw, "CMDB_MODE": "production", "CMDB_LOG_LEVEL": "WARNING",
           "CMDB_ROLLUP_DELAY_MS": str(delay_ms), **IDP.env()}
    log = open(logs, "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen([sys.executable, "-m", "cmdb", "serve", "--host", "127.0.0.1",
                             "--port", str(PORT), "--workers", str(workers)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    _wait_http(URL, {"query": "{ __typename }"})
    return proc


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    settings, _ = connect_settings(args.instance, 300.0, print)
    subprocess.run([sys.executable, "-m", "bench.load", "--tier", args.tier,
                    "--instance", args.instance, *(["--wipe"] if args.wipe else [])],
                   cwd=ROOT, check=True)
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw)
    try:
        if (await db.read("MATCH (x:Item) WHERE x.healthState IS NULL "
                          "RETURN count(x) > 0 AS todo"))[0]["todo"]:
            print("rolling every item up once (the load leaves health unset)")
            await recompute_all(db)
        proc = serve(settings, args.workers, args.delay_ms, Path(f"/tmp/bench-rollup-{PORT}.log"))
        try:
            headers = {"authorization": IDP.authorization()}
            async with httpx.AsyncClient(headers=headers, timeout=30) as client:
                api = Api(client)
                single = await singles(api, db, args.samples)
                stormed = await storm(api, db, args.storm)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    finally:
        await db.close()
    return {"tier": args.tier, "workers": args.workers, "delay_ms": args.delay_ms,
            "single": single, "storm": stormed, "machine": machine(),
            "at": utcnow().isoformat(timespec="seconds")}


def table(r: dict[str, Any]) -> str:
    s, st = r["single"], r["storm"]
    lines = [
        f"commit to service health, tier {r['tier']}, {r['workers']} API workers, "
        f"CMDB_ROLLUP_DELAY_MS={r['delay_ms']}",
        "| case | n | p50 ms | p95 ms | max ms | write p50 ms | write p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| single CI -> service | {s['changes']} | {s['p50_ms']} | {s['p95_ms']} | "
        f"{s['max_ms']} | {s['write_p50_ms']} | {s['write_p95_ms']} |",
    ]
    if st:
        lines += ["", f"storm: {st['members']} members of one cluster set DOWN at once in "
                  f"{st['writes_ms']} ms; service {st['service']} "
                  f"{st['last_write_to_service_ms']} ms after the last answer; changes "
                  f"recorded for the cluster: {st['cluster_changes_recorded']}"]
    m = r["machine"]
    lines += ["", f"machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB, "
              f"Neo4j {m['neo4j']}, Python {m['python']}; {r['at']}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.rollup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", default="S")
    p.add_argument("--instance", default="bench")
    p.add_argument("--samples", type=int, default=30, help="CIs set DOWN and back UP")
    p.add_argument("--storm", type=int, default=10,
                   help="at least this many members of one cluster set DOWN at once")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--delay-ms", type=int, default=50)
    p.add_argument("--wipe", action="store_true",
                   help="let bench.load empty a graph that holds other data (a test instance)")
    args = p.parse_args(argv)
    result = asyncio.run(measure(args))
    out = ROOT / "bench" / "results" / f"rollup-{args.tier}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
