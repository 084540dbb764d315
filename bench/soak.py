"""A bounded load test: mixed reads (80%) and writes (20%) on our API for a fixed time, at a
fixed rate, with memory sampled from start to end.

    .venv/bin/python -m bench.soak                      # 10 minutes at 40 req/s
    .venv/bin/python -m bench.soak --minutes 1 --rate 20 --skip-load

The API runs in production mode with two workers over the `bench` Neo4j instance, holding tier
S of the synthetic enterprise (10k CIs) plus the demo enterprise (its catalogue, people,
meters and pools). wrk (one connection per thread) sends pre-generated requests from
bench/wrk/mixed.lua, each with its own unique key for writes; every answer is checked (HTTP
200 and no GraphQL errors). The resident memory of the API (all workers) and of Neo4j is
sampled every --sample-s seconds. Results go to bench/results/soak.json and the "Load test"
section of docs/benchmarks.md. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import tools
from bench.doc import replace_section
from bench.idp import BenchIdP
from bench.queries import sample_ids
from bench.run import machine, rss_mb

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PORT = 8111
SECTION_START = "<!-- soak:start -->"
SECTION_END = "<!-- soak:end -->"
IDP = BenchIdP(port=27911)

# Who sends what: token index (1-based, as mixed.lua reads BENCH_TOKEN_<n>) per principal.
PRINCIPALS: dict[str, tuple[str, tuple[str, ...]]] = {
    "operator": ("soak-operator", ("operator",)),
    "requester": ("johnW", ("requester",)),
    "finance": ("soak-finance", ("finance_all",)),
    "monitoring": ("soak-monitor", ("monitoring",)),
    "admin": ("soak-admin", ("admin",)),
}
TOKEN_INDEX = {name: i + 1 for i, name in enumerate(PRINCIPALS)}

# kind -> (weight in 100, principal, document). Reads 80, writes 20.
READS: dict[str, tuple[int, str, str]] = {
    "ci-lookup": (30, "operator", "query Lookup($id: ID!) { configurationItem(id: $id) { "
                  "id name ciClass lifecycleStatus operationalState healthState criticality } }"),
    "services": (15, "operator", "query Services { services(first: 20) { edges { node { "
                 "id name healthState } } } }"),
    "impact": (15, "operator", "query Impact($ids: [ID!]!) { impact(ids: $ids, assumeDown: true) "
               "{ rank state pathNames item { id name } } }"),
    "catalogue": (10, "requester", "query Catalogue { catalogueItems { id name } }"),
    "my-orders": (5, "requester", "query MyOrders { myOrders(first: 20) { id status } }"),
    "cost-report": (5, "finance", "query Cost($p: String!) { costReport(period: $p) { total "
                    "rows { key name amount } } }"),
}
WRITES: dict[str, tuple[int, str, str]] = {
    "alarm": (6, "monitoring", "mutation Raise($i: RaiseAlarmInput!) { raiseAlarm(input: $i) "
              "{ alarm { id } errors { message } } }"),
    "alarm-clear": (2, "monitoring",
                    "mutation Clear($i: ClearAlarmInput!) { clearAlarm(input: $i) { "
                    "alarm { id } errors { message } } }"),
    "usage": (5, "monitoring", "mutation Usage($r: [UsageRecordInput!]!) { recordUsage("
              "records: $r) { created duplicates rejected { index reason } errors { message } } }"),
    "order": (3, "requester", "mutation Order($i: SubmitOrderInput!) { submitOrder(input: $i) "
              "{ created order { id status } errors { message } } }"),
    "ci-update": (4, "admin", "mutation Update($id: ID!, $a: JSON!) { updateConfigurationItem("
                  "id: $id, input: {attributes: $a}) { configurationItem { id } "
                  "errors { message } } }"),
}


def _post(url: str, body: dict[str, Any], auth: str) -> dict[str, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "content-type": "application/json", "authorization": auth})
    with urllib.request.urlopen(req, timeout=30) as r:
        answer: dict[str, Any] = json.loads(r.read())
        return answer


class World:
    """Ids the requests refer to, read from the loaded graph."""

    def __init__(self, driver: Any) -> None:
        self.cis = sample_ids(driver, 2000)
        rows, _, _ = driver.execute_query(
            "MATCH (n:CI) WHERE n.name IN $names RETURN n.name AS name, n.id AS id",
            {"names": ["vol-payroll-data", "vol-trading-data", "vol-exchange-db01",
                       "payroll-db-01", "trading-web-01", "exchange-mbx-01", "sharepoint-web-01",
                       "esx-a-01", "vdi-connection-01", "server123"]}, routing_="r")
        self.demo_cis = [r["id"] for r in rows]
        rows, _, _ = driver.execute_query(
            "MATCH (i:CatalogueItem) WHERE i.name IN $names RETURN i.name AS name, i.id AS id",
            {"names": ["VDI desktop (standard)", "VDI desktop (power user)"]}, routing_="r")
        self.items = {r["name"]: r["id"] for r in rows}
        if not self.cis or len(self.demo_cis) < 3 or len(self.items) < 2:
            raise SystemExit("the bench graph lacks tier S or the demo data; run without "
                             "--skip-load")


def requests_file(path: Path, world: World, n: int, run: str, segments: int,
                  seed: int = 7) -> None:
    """n requests in a random order of the weighted kinds; writes carry unique keys.

    wrk's threads start at ``segments`` evenly spaced places; each sends its segment in
    order, so a clear only names an alarm raised earlier in the same segment."""
    rnd = random.Random(seed)
    kinds = {**READS, **WRITES}
    names = list(kinds)
    weights = [kinds[k][0] for k in names]
    period = datetime.now(UTC).strftime("%Y-%m")
    raised: list[dict[str, str]] = []
    segment = 0
    with path.open("w") as f:
        for i in range(n):
            if i * segments // n != segment:
                segment, raised = i * segments // n, []
            kind = rnd.choices(names, weights)[0]
            if kind == "alarm-clear" and not raised:
                kind = "alarm"
            _, who, doc = kinds[kind]
            var: dict[str, Any]
            if kind == "ci-lookup":
                var = {"id": rnd.choice(world.cis)}
            elif kind == "impact":
                var = {"ids": [rnd.choice(world.demo_cis + world.cis[:50])]}
            elif kind == "cost-report":
                var = {"p": period}
            elif kind == "alarm":
                alarm = {"source": "soak", "ciId": rnd.choice(world.demo_cis + world.cis[:200]),
                         "dedupKey": f"{run}-{i}"}
                raised.append(alarm)
                var = {"i": {**alarm, "severity": rnd.choice(["MINOR", "MAJOR", "CRITICAL"]),
                             "message": "load test"}}
            elif kind == "alarm-clear":
                alarm = raised.pop(rnd.randrange(len(raised)))
                var = {"i": {"source": alarm["source"], "dedupKey": alarm["dedupKey"]}}
            elif kind == "usage":
                at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                var = {"r": [{"recordId": f"{run}-{i}", "ciId": rnd.choice(world.demo_cis),
                              "meter": "vcpu-hours", "quantity": str(rnd.randint(1, 64)),
                              "at": at, "source": "soak"}]}
            elif kind == "order":
                item = rnd.choice(list(world.items.values()))
                var = {"i": {"itemId": item, "form": {}, "idempotencyKey": f"{run}-{i}"}}
            elif kind == "ci-update":
                var = {"id": rnd.choice(world.cis), "a": {"loadTestTick": i}}
            else:
                var = {}
            body = json.dumps({"query": doc, "variables": var}, separators=(",", ":"))
            f.write(f"{kind}\t{TOKEN_INDEX[who]}\t{body}\n")


_BUCKET = re.compile(r'^cmdb_request_duration_seconds_bucket\{(?P<labels>[^}]*)\} (?P<n>\S+)$')


def scrape_latencies(url: str, auth: str, scrapes: int = 12) -> dict[str, dict[str, float]]:
    """Per GraphQL operation: requests and p50/p95 (ms, interpolated in the histogram's
    buckets) from the API's own /metrics. Each worker keeps its own registry and a scrape
    reaches one of them, so distinct snapshots are summed."""
    snapshots: dict[tuple[tuple[str, float], ...], dict[str, dict[float, float]]] = {}
    for _ in range(scrapes):
        req = urllib.request.Request(url, headers={"authorization": auth})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        hist: dict[str, dict[float, float]] = {}
        for line in text.splitlines():
            m = _BUCKET.match(line)
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m["labels"]))
            if labels.get("route") != "/graphql":
                continue
            le = float("inf") if labels["le"] == "+Inf" else float(labels["le"])
            hist.setdefault(labels["operation"], {})[le] = float(m["n"])
        key = tuple(sorted((op, b[float("inf")]) for op, b in hist.items()))
        snapshots[key] = hist
    merged: dict[str, dict[float, float]] = {}
    for hist in snapshots.values():
        for op, buckets in hist.items():
            for le, n in buckets.items():
                merged.setdefault(op, {})[le] = merged.get(op, {}).get(le, 0) + n
    out = {}
    for op, buckets in merged.items():
        total = buckets[float("inf")]
        out[op] = {"requests": total, "p50_ms": _quantile(buckets, 0.5) * 1000,
                   "p95_ms": _quantile(buckets, 0.95) * 1000}
    return out


def _quantile(buckets: dict[float, float], q: float) -> float:
    edges = sorted(buckets)
    target = q * buckets[float("inf")]
    lower, below = 0.0, 0.0
    for le in edges:
        if buckets[le] >= target:
            if le == float("inf"):
                return lower
            share = (target - below) / max(buckets[le] - below, 1e-9)
            return lower + (le - lower) * share
        lower, below = le, buckets[le]
    return lower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=40.0, help="requests per second, all kinds")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--sample-s", type=float, default=15.0)
    ap.add_argument("--memory-bound-mb", type=float, default=100.0,
                    help="the API's allowed growth in resident memory from start to end")
    ap.add_argument("--skip-load", action="store_true", help="use the graph already loaded")
    args = ap.parse_args()
    tools.ensure(programs=("wrk",))  # installs wrk or says how, before anything starts

    from neo4j import GraphDatabase

    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings

    instance = instance_for(Settings(home=ROOT / ".cmdb"), "bench")
    instance.ensure_running()
    db_env = {**os.environ, "CMDB_NEO4J_URI": instance.uri, "CMDB_NEO4J_USER": "neo4j",
              "CMDB_NEO4J_PASSWORD": instance.password()}
    if not args.skip_load:
        subprocess.run([sys.executable, "-m", "bench.load", "--tier", "S", "--instance", "bench",
                        "--wipe"], cwd=ROOT, check=True)
        subprocess.run([sys.executable, "-m", "cmdb", "demo", "load"], cwd=ROOT, check=True,
                       env=db_env)
    with GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password())) as d:
        world = World(d)
        before, _, _ = d.execute_query("MATCH (n) RETURN count(n) AS n", routing_="r")
    run = datetime.now(UTC).strftime("soak%Y%m%d%H%M%S")

    IDP.start()
    tokens = {f"BENCH_TOKEN_{TOKEN_INDEX[name]}": IDP.token(user, roles)
              for name, (user, roles) in PRINCIPALS.items()}
    total = int(args.rate * args.minutes * 60 * 1.2) + 1000
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        requests_file(tmp / "requests.tsv", world, total, run, args.connections)
        env = {**db_env, "CMDB_MODE": "production", "CMDB_LOG_LEVEL": "WARNING",
               "CMDB_API_WORKERS": str(args.workers), **IDP.env()}
        log = (tmp / "api.log").open("wb")
        api = subprocess.Popen([sys.executable, "-m", "cmdb", "serve", "--host", "127.0.0.1",
                                "--port", str(PORT), "--workers", str(args.workers)],
                               cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
        url = f"http://127.0.0.1:{PORT}/graphql"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    _post(url, {"query": "{ __typename }"}, "Bearer " + tokens["BENCH_TOKEN_1"])
                    break
                except OSError:
                    if time.monotonic() > deadline or api.poll() is not None:
                        raise SystemExit((tmp / "api.log").read_text()[-3000:]) from None
                    time.sleep(0.5)
            neo4j_pid = instance.status().pid or 0
            samples: list[dict[str, float]] = []
            started = time.monotonic()
            stop = threading.Event()

            def sample() -> None:
                while True:
                    samples.append({
                        "s": round(time.monotonic() - started),
                        "api_mb": rss_mb(api.pid),
                        "neo4j_mb": rss_mb(neo4j_pid, children=False)})
                    print(f"  {samples[-1]['s']:5}s  API {samples[-1]['api_mb']} MB  "
                          f"Neo4j {samples[-1]['neo4j_mb']} MB", flush=True)
                    if stop.wait(args.sample_s):
                        return

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            seconds = round(args.minutes * 60)
            c = args.connections
            out = subprocess.run(
                ["wrk", "-t", str(c), "-c", str(c), "-d", f"{seconds}s", "--timeout", "30s",
                 "-s", str(ROOT / "bench" / "wrk" / "mixed.lua"), url],
                env={**os.environ, **tokens, "BENCH_REQUESTS": str(tmp / "requests.tsv"),
                     "BENCH_RATE": str(args.rate), "BENCH_CONNECTIONS": str(c),
                     "BENCH_THREADS": str(c)},
                capture_output=True, text=True, timeout=seconds + 120, check=True)
            stop.set()
            sampler.join()
            monitor = tokens[f"BENCH_TOKEN_{TOKEN_INDEX['monitoring']}"]
            by_operation = scrape_latencies(f"http://127.0.0.1:{PORT}/metrics",
                                            "Bearer " + monitor)
            samples.append({"s": round(time.monotonic() - started),
                            "api_mb": rss_mb(api.pid),
                            "neo4j_mb": rss_mb(neo4j_pid, children=False)})
        finally:
            os.killpg(api.pid, 15)
            api.wait(timeout=30)
            log.close()
            api_log = (tmp / "api.log").read_text(errors="replace")
    if out.stderr.strip():
        print(out.stderr[-3000:], file=sys.stderr)
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("BENCH "))
    result: dict[str, Any] = json.loads(line[len("BENCH "):])
    with GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password())) as d:
        after, _, _ = d.execute_query("MATCH (n) RETURN count(n) AS n", routing_="r")
    record = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(),
        "minutes": args.minutes, "target_rate": args.rate, "connections": args.connections,
        "workers": args.workers, "result": result, "memory": samples,
        "by_operation": by_operation,
        "memory_bound_mb": args.memory_bound_mb,
        "nodes_before": before[0]["n"], "nodes_after": after[0]["n"],
        "server_errors_logged": api_log.count('"level": "error"'),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "soak.json").write_text(json.dumps(record, indent=1) + "\n")
    text = render(record)
    print("\n" + text)
    growth = samples[-1]["api_mb"] - samples[0]["api_mb"]
    if growth > args.memory_bound_mb:
        print(f"API memory grew {growth:.0f} MB, over the bound of {args.memory_bound_mb:g} MB",
              file=sys.stderr)
        sys.exit(1)
    replace_section(DOC, f"{SECTION_START}\n## Load test\n\n{text}{SECTION_END}",
                    SECTION_START, SECTION_END, "## Load test")


def render(rec: dict[str, Any]) -> str:
    r = rec["result"]
    m = rec["machine"]
    secs = r["duration_us"] / 1e6
    failed = sum(r["failed"].values()) + r["socket_errors"]
    reads = sum(v for k, v in r["ok"].items() if k in READS)
    writes = sum(v for k, v in r["ok"].items() if k in WRITES)
    mem = rec["memory"]
    first, last = mem[0], mem[-1]
    peak_api = max(s["api_mb"] for s in mem)
    lines = [
        f"Run {rec['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB; "
        f"Python {m['python']}, Neo4j {m['neo4j']}. `python -m bench.soak --minutes "
        f"{rec['minutes']:g} --rate {rec['target_rate']:g}`: the API in production mode with "
        f"{rec['workers']} workers over tier S (10k CIs) plus the demo enterprise; wrk with "
        f"{rec['connections']} connections at a fixed rate; every request carries a bearer "
        "token and every answer is checked (HTTP 200, no GraphQL errors).",
        "",
        "| | value |",
        "|---|---:|",
        f"| duration | {secs:.0f} s |",
        f"| requests | {r['requests']:,} ({reads:,} reads, {writes:,} writes answered) |",
        f"| throughput | {r['requests'] / secs:.1f} req/s |",
        f"| latency p50 / p90 / p95 / p99 | {r['p50_us'] / 1000:.1f} / {r['p90_us'] / 1000:.1f}"
        f" / {r['p95_us'] / 1000:.1f} / {r['p99_us'] / 1000:.1f} ms |",
        f"| max latency | {r['max_us'] / 1000:.0f} ms |",
        f"| failed answers | {failed} ({100 * failed / max(1, r['requests']):.3f} %) |",
        f"| API memory (2 workers) start / end / peak | {first['api_mb']:.0f} / "
        f"{last['api_mb']:.0f} / {peak_api:.0f} MB |",
        f"| API memory growth (bound {rec['memory_bound_mb']:g} MB) | "
        f"{last['api_mb'] - first['api_mb']:+.0f} MB |",
        f"| Neo4j memory start / end | {first['neo4j_mb']:.0f} / {last['neo4j_mb']:.0f} MB |",
        f"| graph nodes before / after | {rec['nodes_before']:,} / {rec['nodes_after']:,} |",
        f"| errors in the API log | {rec['server_errors_logged']} |",
        "",
        "Requests answered by kind: " + ", ".join(
            f"{k} {v:,}" for k, v in sorted(r["ok"].items(), key=lambda kv: -kv[1])) + ".",
    ]
    if r["failed"]:
        lines.append("Failed by kind: " + ", ".join(
            f"{k} {v}" for k, v in sorted(r["failed"].items())) + "; by status: " + ", ".join(
            f"{k} {v}" for k, v in sorted(r["failed_status"].items())) + ".")
    if rec.get("by_operation"):
        lines += ["", "Latency by operation, from the API's own `/metrics` histograms "
                  "(interpolated within buckets):", "",
                  "| operation | requests | p50 ms | p95 ms |", "|---|---:|---:|---:|"]
        for op, v in sorted(rec["by_operation"].items(), key=lambda kv: -kv[1]["requests"]):
            lines.append(f"| {op} | {v['requests']:,.0f} | {v['p50_ms']:.1f} | "
                         f"{v['p95_ms']:.1f} |")
    lines.append("")
    lines.append("Memory over the run (API, all workers / Neo4j, MB): " + ", ".join(
        f"{s['s']}s {s['api_mb']:.0f}/{s['neo4j_mb']:.0f}" for s in mem[:: max(1, len(mem) // 12)]
    ) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
