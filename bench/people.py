"""People and desktops: broker-feed ingest throughput and user-view latency.

    .venv/bin/python -m bench.people --instance test-4 --users 2000 --days 10 --wipe

Builds an estate on the given local instance (``--wipe`` empties it first: never point it at
a graph you need): hosts, pools, software packages needing services, roles, users with
memberships; then a broker feed of ``users x days`` sessions (logon, sample, logoff), each day
on a new desktop, of which only the last day's desktops still exist as CIs. Measures, through
the real code paths: the feed through ``VdiService.ingest`` (events/s, first time and replayed),
and the GraphQL user view (roles, entitlements, current desktops, environment health, the
period's sessions) in process for random users, sequentially (p50/p95). Writes
``bench/results/people.json`` and the "People and desktops" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any, LiteralString

import httpx

from bench.doc import replace_section
from bench.run import DOC, RESULTS, ROOT, machine
from cmdb.app import create_app
from cmdb.db.driver import Database
from cmdb.db.migrations import migrate
from cmdb.identity.devissuer import DevIssuer
from cmdb.identity.principal import Principal
from cmdb.settings import Settings
from cmdb.vdi.service import VdiService

SECTION_START = "<!-- people:start -->"
SECTION_END = "<!-- people:end -->"
# Target: the user view of a user with ten days of history answers within 100 ms at p95.
TARGET_P95_MS = 100.0

_ESTATE: LiteralString = """
UNWIND range(1, $hosts) AS i
CREATE (:Item:CI:Compute:Hardware:HypervisorHost {id: 'host-' + i, name: 'vdi-esx-' + i,
  nameLower: 'vdi-esx-' + i, ciClass: 'HypervisorHost', lifecycleStatus: 'IN_SERVICE',
  operationalState: 'UP', healthState: 'UP', criticality: 'HIGH', createdAt: datetime(),
  updatedAt: datetime()})
WITH count(*) AS _
UNWIND ['pool-standard', 'pool-trader'] AS p
CREATE (:Item:CI:Grouping:DesktopPool {id: p, name: p, nameLower: p, ciClass: 'DesktopPool',
  lifecycleStatus: 'IN_SERVICE', operationalState: 'UP', healthState: 'UP',
  criticality: 'HIGH', createdAt: datetime(), updatedAt: datetime()})
WITH count(*) AS _
UNWIND range(1, $roles) AS i
CREATE (svc:Item:Service {id: 'svc-' + i, name: 'Service ' + i, nameLower: 'service ' + i,
  serviceKind: 'BUSINESS', lifecycleStatus: 'IN_SERVICE', operationalState: 'UP',
  healthState: 'UP', criticality: 'HIGH', createdAt: datetime(), updatedAt: datetime()})
CREATE (pkg:Item:CI:Software:SoftwarePackage {id: 'pkg-' + i, name: 'Package ' + i,
  nameLower: 'package ' + i, ciClass: 'SoftwarePackage', lifecycleStatus: 'IN_SERVICE',
  operationalState: 'UP', healthState: 'UP', criticality: 'MEDIUM', createdAt: datetime(),
  updatedAt: datetime()})
CREATE (pkg)-[:DEPENDS_ON {createdAt: datetime(), attr_required: false}]->(svc)
CREATE (r:Role {id: 'role-' + i, name: 'Role ' + i, nameLower: 'role ' + i})
CREATE (r)-[:ENTITLED_TO {since: datetime()}]->(pkg)
"""

_USERS: LiteralString = """
UNWIND $rows AS row
CREATE (u:User {id: row.id, userName: row.name, userNameLower: toLower(row.name),
  displayName: row.name, active: true, createdAt: datetime(), updatedAt: datetime()})
WITH u, row
UNWIND row.roles AS role
MATCH (r:Role {id: role})
CREATE (u)-[:HAS_ROLE {since: datetime('2024-01-01T00:00:00Z')}]->(r)
"""

_DESKTOPS: LiteralString = """
UNWIND $rows AS row
MATCH (h:HypervisorHost {id: row.host}), (p:DesktopPool {id: row.pool})
CREATE (d:Item:CI:Compute:Virtual:VirtualDesktop {id: row.name, name: row.name,
  nameLower: row.name, ciClass: 'VirtualDesktop', lifecycleStatus: 'IN_SERVICE',
  operationalState: 'UP', healthState: 'UP', criticality: 'LOW', createdAt: datetime(),
  updatedAt: datetime()})
CREATE (d)-[:RUNS_ON {createdAt: datetime()}]->(h)
CREATE (d)-[:MEMBER_OF {createdAt: datetime()}]->(p)
CREATE (p)-[:HAS_MEMBER {createdAt: datetime()}]->(d)
"""

VIEW = """query($u: String!, $s: DateTime) { user(userName: $u) {
  userName roles { roleName } entitlements { name grantedBy }
  currentDesktops { desktop { name } host { name } pool { name } }
  environmentHealth { state components { kind state } }
  sessions(start: $s) { desktopName hostName poolName start end logonSeconds } } }"""


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 2)


def feed(users: int, days: int, hosts: int, today: datetime) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for d in range(days):
        day = today - timedelta(days=days - d)
        for u in range(users):
            start = day + timedelta(hours=7, seconds=17 * u % 7200)
            desk = f"vd-{d}-{u}"
            common = {"sessionId": f"{d}-{u}", "user": f"CORP\\user{u}", "desktop": desk,
                      "pool": "pool-standard", "host": f"vdi-esx-{(u + d) % hosts + 1}"}
            events += [
                {**common, "eventId": f"{d}-{u}-on", "eventType": "LOGON",
                 "timestamp": start.isoformat(), "logonDurationMs": 9000 + u % 5000},
                {**common, "eventId": f"{d}-{u}-s", "eventType": "SAMPLE",
                 "timestamp": (start + timedelta(hours=2)).isoformat(), "roundTripMs": 25},
                {**common, "eventId": f"{d}-{u}-off", "eventType": "LOGOFF",
                 "timestamp": (start + timedelta(hours=8)).isoformat()},
            ]
    return events


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from cmdb.localdb.manager import instance_for

    instance = instance_for(Settings(home=ROOT / ".cmdb"), args.instance)
    instance.ensure_running()
    settings = Settings(mode="development", neo4j_uri=instance.uri, neo4j_user=instance.user,
                        neo4j_password=instance.password(), home=ROOT / ".cmdb",
                        log_json=False, log_level="WARNING")  # type: ignore[arg-type]
    db = Database.connect(instance.uri, instance.user, instance.password())
    try:
        if args.wipe:
            while (await db.write("MATCH (n) WITH n LIMIT 20000 DETACH DELETE n "
                                  "RETURN count(*) AS c"))[0]["c"]:
                pass
        await migrate(db)
        rng = random.Random(11)
        await db.write(_ESTATE, {"hosts": args.hosts, "roles": args.roles})
        rows = [{"id": f"u-{u}", "name": f"user{u}",
                 "roles": sorted({f"role-{rng.randint(1, args.roles)}" for _ in range(2)})}
                for u in range(args.users)]
        for i in range(0, len(rows), 1000):
            await db.write(_USERS, {"rows": rows[i:i + 1000]})
        # Only the last day's desktops still exist; the others were torn down.
        last = [{"name": f"vd-{args.days - 1}-{u}", "pool": "pool-standard",
                 "host": f"host-{(u + args.days - 1) % args.hosts + 1}"}
                for u in range(args.users)]
        for i in range(0, len(last), 1000):
            await db.write(_DESKTOPS, {"rows": last[i:i + 1000]})

        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        events = feed(args.users, args.days, args.hosts, today)
        agent = Principal("bench", frozenset({"discovery_agent"}))
        service = VdiService(db, settings)
        chunk = 5000
        t = time.perf_counter()
        stored = 0
        for i in range(0, len(events), chunk):
            report = await service.ingest(events[i:i + chunk], agent)
            stored += report.counts["stored"]
        first_s = time.perf_counter() - t
        t = time.perf_counter()
        duplicates = 0
        for i in range(0, len(events), chunk):
            duplicates += (await service.ingest(events[i:i + chunk], agent)).counts["duplicate"]
        replay_s = time.perf_counter() - t

        app = create_app(settings, db=db)
        latencies: list[float] = []
        sessions_seen: list[int] = []
        start = (today - timedelta(days=args.days + 1)).isoformat()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                         headers={"Authorization": "Bearer " + DevIssuer.load(
                                             settings).mint("bench", ["operator"])}) as client:
                picks = [rng.randrange(args.users) for _ in range(args.views + 20)]
                for n, u in enumerate(picks):
                    t = time.perf_counter()
                    r = await client.post("/graphql", json={
                        "query": VIEW, "variables": {"u": f"user{u}", "s": start}})
                    elapsed = (time.perf_counter() - t) * 1000
                    body = r.json()
                    assert r.status_code == 200 and "errors" not in body, body
                    if n >= 20:  # the first 20 warm the caches
                        latencies.append(elapsed)
                        sessions_seen.append(len(body["data"]["user"]["sessions"]))
    finally:
        await db.close()
    return {
        "date": datetime.now(UTC).date().isoformat(), "machine": machine(),
        "instance": args.instance, "users": args.users, "days": args.days,
        "hosts": args.hosts, "roles": args.roles, "events": len(events),
        "stored": stored, "ingest_s": round(first_s, 2),
        "ingest_events_per_s": round(len(events) / first_s, 1),
        "duplicates": duplicates, "replay_s": round(replay_s, 2),
        "replay_events_per_s": round(len(events) / replay_s, 1),
        "views": len(latencies), "sessions_per_view": statistics.mean(sessions_seen),
        "view_p50_ms": pct(latencies, 50), "view_p95_ms": pct(latencies, 95),
        "view_max_ms": round(max(latencies), 2), "target_p95_ms": TARGET_P95_MS,
    }


def section(res: dict[str, Any]) -> str:
    m = res["machine"]
    met = "met" if res["view_p95_ms"] <= res["target_p95_ms"] else "NOT met"
    return "\n".join([
        SECTION_START,
        "## People and desktops",
        "",
        "Produced by `.venv/bin/python -m bench.people --instance <name> --users "
        f"{res['users']} --days {res['days']} --wipe` (raw figures in "
        "`bench/results/people.json`): the broker feed through `VdiService.ingest` (the path "
        "of `POST /api/vdi/events` and `cmdb vdi import`, 5,000 events per call, 500 per "
        "transaction), then the GraphQL user view (roles, entitlements, current desktops, "
        "environment health, the period's sessions) in process for random users, "
        f"sequentially. Target: user view p95 within {res['target_p95_ms']:.0f} ms ({met}).",
        "",
        f"Run {res['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB; "
        f"Python {m['python']}, Neo4j {m['neo4j']}; {res['users']} users, {res['roles']} "
        f"roles, {res['hosts']} hosts; {res['days']} days of sessions, each day on a new "
        "desktop, only the last day's desktops still CIs.",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| feed events (logon, sample, logoff) | {res['events']:,} |",
        f"| first ingest | {res['ingest_s']} s, {res['ingest_events_per_s']:,} events/s |",
        f"| replay (all duplicates) | {res['replay_s']} s, "
        f"{res['replay_events_per_s']:,} events/s |",
        f"| user view, sessions per answer | {res['sessions_per_view']:.1f} |",
        f"| user view p50 / p95 / max ({res['views']} requests) | {res['view_p50_ms']} / "
        f"{res['view_p95_ms']} / {res['view_max_ms']} ms |",
        SECTION_END,
    ])


def write_doc(res: dict[str, Any]) -> None:
    replace_section(DOC, section(res), SECTION_START, SECTION_END, "## People and desktops")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instance", required=True, help="local instance name, e.g. test-4")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--roles", type=int, default=8)
    ap.add_argument("--views", type=int, default=200)
    ap.add_argument("--wipe", action="store_true", help="empty the instance's graph first")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "people.json").write_text(json.dumps(res, indent=2) + "\n")
    write_doc(res)
    print(section(res))


if __name__ == "__main__":
    main()
