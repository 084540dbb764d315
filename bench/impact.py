"""Bottom-up impact latency on the loaded tier: through our GraphQL API and through the raw
statement (the same Cypher, straight through the driver), sequential, alternating.

    .venv/bin/python -m bench.impact --n 200      # uses the bench instance and its tier

Writes bench/results/impact-<tier>.json and regenerates docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
from neo4j import GraphDatabase

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


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--port", type=int, default=8111)
    args = ap.parse_args()

    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings

    instance = instance_for(Settings(home=ROOT / ".cmdb"), "bench")
    instance.ensure_running()
    driver = GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password()),
                                  notifications_min_severity="OFF")
    marker = driver.execute_query("MATCH (m:BenchmarkLoad) RETURN m.tier AS tier").records
    tier = marker[0]["tier"] if marker else "?"
    cis = driver.execute_query("MATCH (n:CI) RETURN count(n) AS c").records[0]["c"]
    ids = [r["id"] for r in driver.execute_query(
        SAMPLE, {"n": args.n, "skip": random.Random(7).randint(0, max(cis - 5000, 0))}).records]
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
        with httpx.Client(timeout=60,
                          headers={"Authorization": IDP.authorization()}) as client:
            for warm in ids[:20]:  # warm both paths the same way
                client.post(url, json={"query": QUERY, "variables": {"ids": [warm]}})
                driver.execute_query(hq.IMPACTED, {**raw_params, "ids": [warm]})
            for ci in ids:
                t = time.perf_counter()
                r = client.post(url, json={"query": QUERY, "variables": {"ids": [ci]}})
                ours.append((time.perf_counter() - t) * 1000)
                body = r.json()
                assert "errors" not in body, body
                reached.append(len(body["data"]["impact"]))
                t = time.perf_counter()
                driver.execute_query(hq.IMPACTED, {**raw_params, "ids": [ci]},
                                     routing_="r")
                raw.append((time.perf_counter() - t) * 1000)
    finally:
        server.terminate()
        server.wait(timeout=30)
        driver.close()
    record = {
        "tier": tier, "cis": cis, "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(), "requests": len(ids),
        "services_reached_mean": round(statistics.mean(reached), 1) if reached else 0,
        "graphql_p50_ms": pct(ours, 50), "graphql_p95_ms": pct(ours, 95),
        "raw_p50_ms": pct(raw, 50), "raw_p95_ms": pct(raw, 95),
    }
    print(json.dumps(record, indent=1))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"impact-{tier}.json").write_text(json.dumps(record, indent=1) + "\n")
    write_doc(render({p.stem: json.loads(p.read_text()) for p in RESULTS.glob("*.json")}))


if __name__ == "__main__":
    main()
