"""Subscriptions at scale: commit-to-delivery latency and the Neo4j statements they cost.

    .venv/bin/python -m bench.subscriptions                        # the bench instance
    .venv/bin/python -m bench.subscriptions --instance test-1      # another managed instance

Starts the API as users do (``cmdb serve``, production mode, tokens from a stand-in identity
provider), once with the shared change feed (the product) and once with the former design
(``CMDB_SUBSCRIPTION_SHARED_FEED=false``: every subscriber polls Neo4j each second) as the
baseline. For each subscriber count (1, 100, 1,000 by default) it opens that many websockets
on the one process (``websockets`` client, graphql-transport-ws), each subscribed to
``stateChanges`` of one server CI, then commits state changes of that CI through the API
(``setOperationalState``, one every ``--gap`` seconds) and times, for every subscriber and
change, from sending the mutation to receiving the change (so the mutation's own time is
included). Neo4j statements per second are the server's read statements (its /metrics)
over the measured changes: with nothing else reading, they are what the subscriptions cost.

Creates one CI named ``bench-subscriptions-<random>`` on the instance and nothing else.
Prints a table and records the machine; writes ``bench/results/subscriptions.json`` and the
"Subscriptions" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import websockets

from bench.chargeback import INSTANCES
from bench.doc import replace_section
from bench.run import DOC, IDP, RESULTS, ROOT, machine
from tests.served import Served, free_port, served

SECTION_START, SECTION_END = "<!-- subscriptions:start -->", "<!-- subscriptions:end -->"
HEADING = "## Subscriptions"
TARGET_P95_MS = 1000.0
WATCH = "subscription($ids: [ID!]) { stateChanges(ids: $ids) { itemId state at } }"
SET = ("mutation($ids: [ID!]!, $s: OperationalState!) { setOperationalState(ids: $ids, "
       "state: $s, cause: \"bench\") { errors { message } } }")
CREATE = ("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem(input: $i) "
          "{ configurationItem { id } errors { message } } }")
READS = re.compile(r'^cmdb_neo4j_statement_duration_seconds_count\{mode="read"\} (\S+)$', re.M)
MODES = {"feed": "shared feed", "poll": "poll per subscriber (before)"}


def server_env(mode: str) -> dict[str, str]:
    """The served process's settings: production mode behind the stand-in identity provider,
    metrics public and their business gauges cached (so /metrics adds no Neo4j reads)."""
    return {"CMDB_MODE": "production", "CMDB_LOG_LEVEL": "WARNING",
            "CMDB_METRICS_PUBLIC": "true", "CMDB_METRICS_CACHE_S": "86400",
            "CMDB_SUBSCRIPTION_SHARED_FEED": "true" if mode == "feed" else "false",
            **IDP.env()}


class Subscriber:
    """One websocket, one stateChanges subscription; arrival times of each change's state."""

    def __init__(self, url: str, token: str, item_id: str) -> None:
        self.url, self.token, self.item_id = url, token, item_id
        self.arrivals: list[tuple[str, float]] = []
        self.errors: list[Any] = []
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.ws = await websockets.connect(self.url, subprotocols=["graphql-transport-ws"],
                                           max_queue=None, open_timeout=60)
        await self.ws.send(json.dumps({"type": "connection_init",
                                       "payload": {"Authorization": self.token}}))
        ack = json.loads(await asyncio.wait_for(self.ws.recv(), 60))
        assert ack["type"] == "connection_ack", ack
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
            "query": WATCH, "variables": {"ids": [self.item_id]}}}))
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            at = time.perf_counter()
            msg = json.loads(raw)
            if msg["type"] == "next" and not msg["payload"].get("errors"):
                self.arrivals.append((msg["payload"]["data"]["stateChanges"]["state"], at))
            elif msg["type"] in ("next", "error", "complete"):
                self.errors.append(msg)
            elif msg["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            await self.ws.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 1)


async def reads(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    found = READS.search(text)
    return float(found.group(1)) if found else 0.0


async def measure(server: Served, item_id: str, n: int, changes: int, gap_s: float,
                  wait_s: float) -> dict[str, Any]:
    auth = IDP.authorization()
    ws_url = server.url.replace("http://", "ws://") + "/graphql"
    subs = [Subscriber(ws_url, auth, item_id) for _ in range(n)]
    limit = asyncio.Semaphore(50)

    async def open_one(s: Subscriber) -> None:
        async with limit:
            await s.open()

    async with httpx.AsyncClient(base_url=server.url, headers={"authorization": auth},
                                 timeout=60) as client:
        try:
            await asyncio.gather(*(open_one(s) for s in subs))
            state = "DOWN"

            async def commit_and_wait(state: str) -> float | None:
                expected = {id(s): len(s.arrivals) + 1 for s in subs}
                sent = time.perf_counter()
                body = (await client.post("/graphql", json={
                    "query": SET, "variables": {"ids": [item_id], "s": state}})).json()
                assert not body.get("errors") and not body["data"]["setOperationalState"][
                    "errors"], body
                deadline = time.monotonic() + wait_s
                while any(len(s.arrivals) < expected[id(s)] for s in subs):
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.005)
                return sent

            # Warm-up: every subscription is in place once each has had one change.
            for _ in range(2):
                await commit_and_wait(state)
                state = "UP" if state == "DOWN" else "DOWN"
                await asyncio.sleep(gap_s)
            for s in subs:
                s.arrivals.clear()
            await reads(client)  # fills the metrics cache: later scrapes read nothing
            reads_before, t_before = await reads(client), time.perf_counter()
            latencies: list[float] = []
            lost = 0
            # Gaps vary (gap_s +-50 %): a fixed gap would meet the reads at the same phase
            # every time, and show one point of the latency's spread as all of it.
            jitter = random.Random(n)
            for _ in range(changes):
                sent = await commit_and_wait(state)
                assert sent is not None
                for s in subs:
                    got = [at for st, at in s.arrivals if at >= sent and st == state]
                    if got:
                        latencies.append((got[0] - sent) * 1000)
                    else:
                        lost += 1
                state = "UP" if state == "DOWN" else "DOWN"
                await asyncio.sleep(gap_s * jitter.uniform(0.5, 1.5))
            window = time.perf_counter() - t_before
            statements = await reads(client) - reads_before
            errors = sum(len(s.errors) for s in subs)
            first_error = next((json.dumps(e.get("payload"))[:300] for s in subs
                                for e in s.errors), None)
        finally:
            await asyncio.gather(*(s.close() for s in subs), return_exceptions=True)
    return {"subscribers": n, "changes": changes, "deliveries": len(latencies), "lost": lost,
            "errors": errors, "p50_ms": pct(latencies, 50), "p95_ms": pct(latencies, 95),
            "max_ms": round(max(latencies), 1) if latencies else float("nan"),
            "statements_per_s": round(statements / window, 1), "window_s": round(window, 1),
            "first_error": first_error}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cmdb.localdb.manager import instance_for
    from cmdb.settings import Settings

    instance = instance_for(Settings(home=ROOT / ".cmdb"), args.instance)
    instance.ensure_running()
    IDP.port = args.idp_port or free_port()
    IDP.start()
    counts = [int(c) for c in args.counts.split(",")]
    rows: list[dict[str, Any]] = []
    item_id = ""
    for mode in args.modes.split(","):
        # ``cmdb serve`` as users start it, stopped with Ctrl-C as a user stops it.
        with served(instance, env=server_env(mode)) as server:
            if not item_id:
                created = httpx.post(f"{server.url}/graphql", timeout=30, headers={
                    "authorization": IDP.authorization()}, json={"query": CREATE, "variables": {
                        "i": {"name": f"bench-subscriptions-{uuid.uuid4().hex[:8]}",
                              "ciClass": "SERVER", "operationalState": "UP"}}}).json()
                item_id = created["data"]["createConfigurationItem"]["configurationItem"]["id"]
            for n in counts:
                row = {"mode": mode, **await measure(server, item_id, n, args.changes,
                                                     args.gap, args.wait)}
                print(f"  {MODES[mode]:30} {n:5} subscribers  p50 {row['p50_ms']:8.1f} ms  "
                      f"p95 {row['p95_ms']:8.1f} ms  {row['statements_per_s']:7.1f} "
                      f"statements/s  lost {row['lost']}  errors {row['errors']}", flush=True)
                rows.append(row)
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "machine": machine(),
            "instance": args.instance, "changes": args.changes, "gap_s": args.gap,
            "interval_s": Settings().subscription_interval_s, "rows": rows,
            "target_p95_ms": TARGET_P95_MS,
            "command": " ".join(["python -m bench.subscriptions", *sys.argv[1:]])}


def section(res: dict[str, Any]) -> str:
    m = res["machine"]
    feed_max = [r for r in res["rows"] if r["mode"] == "feed"]
    top = max(feed_max, key=lambda r: r["subscribers"]) if feed_max else None
    met = ("met" if top and top["p95_ms"] <= res["target_p95_ms"] and not top["lost"]
           else "NOT met")
    lines = [
        SECTION_START, HEADING, "",
        f"Produced by `.venv/bin/{res['command']}` (raw figures in "
        "`bench/results/subscriptions.json`): `cmdb serve` started as users start it "
        "(production mode, one process), N websocket subscribers (graphql-transport-ws) on it, "
        "each watching `stateChanges` of one CI; then state changes of that CI committed through "
        f"the API, one every {res['gap_s']} s on average (+-50 %, so they meet the reads at "
        f"every phase), {res['changes']} per row. Latency is from sending "
        "the mutation to a subscriber receiving the change (the mutation's own time included), "
        "over every subscriber and change. Statements/s are the server's Neo4j reads over the "
        "measured changes (its /metrics). The baseline is the former design, kept behind "
        "`CMDB_SUBSCRIPTION_SHARED_FEED=false`: every subscriber polls Neo4j once a second. "
        "No peer runs beside them: the Neo4j GraphQL Library's subscriptions (version 7) read "
        "Neo4j's change data capture, which Neo4j Community does not have. "
        f"The shared feed reads every {res['interval_s']} s (`CMDB_SUBSCRIPTION_INTERVAL_S`) "
        f"while anyone subscribes. Target: p95 under {res['target_p95_ms']:.0f} ms at "
        f"{top['subscribers'] if top else '?'} subscribers ({met}).", "",
        f"Run {res['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB; "
        f"Python {m['python']}, Neo4j {m['neo4j']}; the `{res['instance']}` instance; client, "
        "server and Neo4j on the same machine.", "",
        "| design | subscribers | p50 ms | p95 ms | max ms | Neo4j statements/s | "
        "not delivered | stream errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        lines.append(f"| {MODES[r['mode']]} | {r['subscribers']:,} | {r['p50_ms']} | "
                     f"{r['p95_ms']} | {r['max_ms']} | {r['statements_per_s']} | {r['lost']} | "
                     f"{r['errors']} |")
    for r in res["rows"]:
        if r.get("first_error"):
            lines += ["", f"{MODES[r['mode']]}, {r['subscribers']:,} subscribers: streams ended "
                      f"with errors such as `{r['first_error']}`."]
    if res.get("notes"):
        lines += ["", res["notes"]]
    lines.append(SECTION_END)
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instance", choices=INSTANCES, default="bench")
    ap.add_argument("--counts", default="1,100,1000", help="subscriber counts")
    ap.add_argument("--modes", default="feed,poll", help="feed, poll or both")
    ap.add_argument("--changes", type=int, default=20, help="measured changes per row")
    ap.add_argument("--gap", type=float, default=1.5, help="seconds between changes")
    ap.add_argument("--wait", type=float, default=30.0,
                    help="how long a change may take to reach everyone before it is lost")
    ap.add_argument("--idp-port", type=int, default=0, help="default: a free port")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    res = asyncio.run(run(args))
    print(section(res))
    if args.no_write:
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "subscriptions.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    if old.get("notes"):
        res["notes"] = old["notes"]
    path.write_text(json.dumps(res, indent=2) + "\n")
    replace_section(DOC, section(res), SECTION_START, SECTION_END, HEADING)


if __name__ == "__main__":
    main()
