"""Bottom-up impact latency on the loaded tier: through our GraphQL API and through the raw
statement (the same Cypher and parameters, straight through the synchronous driver, in an
auto-commit transaction on a kept session as the API runs reads), sequential, alternating.

    .venv/bin/python -m bench.impact --n 200      # uses the bench instance and its tier
    .venv/bin/python -m bench.impact --instance test-3   # another managed instance

The GraphQL client is ``http.client`` on one kept-alive connection (``--client httpx`` for
httpx, which costs the calling process about 0.5 ms of CPU per request more: the client's
cost, not the API's).

Writes bench/results/impact-<tier>.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from neo4j import READ_ACCESS, GraphDatabase

from bench.chargeback import INSTANCES
from bench.run import IDP, RESULTS, ROOT, _wait_http, machine, render, write_doc
from cmdb.health import queries as hq
from cmdb.health.repository import impacted_params

QUERY = """query($ids: [ID!]!) { impact(ids: $ids, servicesOnly: true, affectedOnly: false) {
  rank state pathNames item { id name } } }"""

# CIs that hold something up: hosts, databases, VMs and application instances.
SAMPLE = """
MATCH (n:CI) WHERE n.ciClass IN ['HypervisorHost', 'Database', 'VirtualMachine',
                                 'ApplicationInstance', 'Server']
WITH n SKIP $skip LIMIT 4000
WHERE EXISTS { (n)<-[:RUNS_ON|DEPENDS_ON|HAS_MEMBER]-() }
RETURN n.id AS id LIMIT $n
"""


class Client:
    """POSTs GraphQL to the API on one kept-alive connection; returns the decoded body."""

    def __init__(self, port: int, authorization: str, kind: str) -> None:
        self.kind = kind
        self.headers = {"Authorization": authorization, "Content-Type": "application/json"}
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.httpx = httpx.Client(timeout=60, headers=self.headers) if kind == "httpx" else None
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.httpx is not None:
            answer: dict[str, Any] = self.httpx.post(self.url, json=body).json()
            return answer
        self.conn.request("POST", "/graphql", json.dumps(body).encode(), self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        answer = json.loads(data)
        return answer

    def close(self) -> None:
        if self.httpx is not None:
            self.httpx.close()
        self.conn.close()


def raw_read(session: Any, params: dict[str, Any]) -> list[Any]:
    """The statement as the API runs a read: one auto-commit transaction (RUN and PULL in
    one round trip) on a session kept between statements, all records fetched."""
    return list(session.run(hq.IMPACTED, params))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--port", type=int, default=8111)
    ap.add_argument("--client", choices=["http.client", "httpx"], default="http.client")
    ap.add_argument("--instance", choices=INSTANCES, default="bench",
                    help="the managed local instance holding the loaded tier")
    ap.add_argument("--idp-port", type=int, default=IDP.port,
                    help="loopback port of the stand-in identity provider")
    ap.add_argument("--no-write", action="store_true",
                    help="print the figures only (no results file, no docs)")
    args = ap.parse_args()

    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings

    instance = instance_for(Settings(home=ROOT / ".cmdb"), args.instance)
    instance.ensure_running()
    driver = GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password()),
                                  notifications_min_severity="OFF")
    marker = driver.execute_query("MATCH (m:BenchmarkLoad) RETURN m.tier AS tier").records
    tier = marker[0]["tier"] if marker else "?"
    cis = driver.execute_query("MATCH (n:CI) RETURN count(n) AS c").records[0]["c"]
    ids = [r["id"] for r in driver.execute_query(
        SAMPLE, {"n": args.n, "skip": random.Random(7).randint(0, max(cis - 5000, 0))}).records]
    IDP.port = args.idp_port
    IDP.start()
    # The same statement and parameters the API runs (this month's SLA history included).
    now = datetime.now(UTC)
    raw_params = impacted_params([], True, now.replace(day=1, hour=0, minute=0, second=0,
                                                       microsecond=0), now)
    env = {**os.environ, "CMDB_NEO4J_URI": instance.uri, "CMDB_NEO4J_USER": "neo4j",
           "CMDB_NEO4J_PASSWORD": instance.password(), "CMDB_MODE": "production",
           "CMDB_LOG_LEVEL": "WARNING", **IDP.env()}
    server = subprocess.Popen([sys.executable, "-m", "cmdb", "serve", "--port", str(args.port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{args.port}/graphql"
    ours: list[float] = []
    raw: list[float] = []
    reached: list[int] = []
    try:
        _wait_http(url, {"query": "{ __typename }"})
        client = Client(args.port, IDP.authorization(), args.client)
        raw_session = driver.session(database="neo4j", default_access_mode=READ_ACCESS)
        try:
            for warm in ids[:20]:  # warm both paths the same way
                client.post({"query": QUERY, "variables": {"ids": [warm]}})
                raw_read(raw_session, {**raw_params, "ids": [warm]})
            for ci in ids:
                t = time.perf_counter()
                body = client.post({"query": QUERY, "variables": {"ids": [ci]}})
                ours.append((time.perf_counter() - t) * 1000)
                assert "errors" not in body, body
                reached.append(len(body["data"]["impact"]))
                t = time.perf_counter()
                raw_read(raw_session, {**raw_params, "ids": [ci]})
                raw.append((time.perf_counter() - t) * 1000)
        finally:
            raw_session.close()
            client.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
        driver.close()
    record = {
        "tier": tier, "cis": cis, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(), "requests": len(ids),
        "services_reached_mean": round(statistics.mean(reached), 1) if reached else 0,
        "graphql_p50_ms": pct(ours, 50), "graphql_p95_ms": pct(ours, 95),
        "raw_p50_ms": pct(raw, 50), "raw_p95_ms": pct(raw, 95), "client": args.client,
        "ratio_p50": round(pct(ours, 50) / pct(raw, 50), 2),
        "ratio_p95": round(pct(ours, 95) / pct(raw, 95), 2),
    }
    print(json.dumps(record, indent=1))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"impact-{tier}.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("notes"):  # written by hand: runs, spread, what the figures mean
        record["notes"] = old["notes"]
    path.write_text(json.dumps(record, indent=1) + "\n")
    write_doc(render({p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}))


if __name__ == "__main__":
    main()
