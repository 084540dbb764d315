"""Discovery ingest: reconciliation and history on, against a plain ``UNWIND … MERGE``.

    python -m bench.ingest [--count 100000] [--batch 5000] [--instance bench|test-N]

Generates ``count`` discovered CIs (one server per ten, the rest VMs, each with identifiers
and five attributes) and one ``RUNS_ON`` per VM to its server, then on an emptied graph:

1. ``ceiling``: the same rows through a plain ``UNWIND $rows MERGE (n:…:CI {cloudInstanceId})
   SET n += …`` making the same nodes (labels, id and indexed properties) and ``MERGE
   (a)-[:RUNS_ON]->(b)``, batch by batch (no identification, precedence, provenance,
   history or roll-up);
2. emptied again, ``first load``: ``DiscoveryService.ingest`` (identification by the class
   rules, precedence, provenance, history records, health roll-up over new relationships);
3. ``re-ingest``: the same batch again (everything unchanged; within the sighting
   resolution, so nothing is written);
4. emptied again, the ceiling once more: the faster ceiling run is the reference (the
   machine may be shared; both runs are reported).

Prints a table with the machine and writes ``bench/results/ingest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.load import connect_settings
from cmdb.db.driver import Database
from cmdb.db.migrations import migrate
from cmdb.discovery.service import DiscoveryService
from cmdb.identity.principal import Principal

ROOT = Path(__file__).resolve().parent.parent
AGENT = Principal("bench", frozenset({"admin"}))

# The same nodes the discovery path makes (labels, id, indexed properties), nothing else.
CEILING_ITEMS = {
    "Server": """
UNWIND $rows AS row
MERGE (n:Item:CI:Compute:Hardware:Server {cloudInstanceId: row.cloudInstanceId})
SET n += row.props, n.createdAt = $now, n.updatedAt = $now, n.lastSeenAt = $now
""",
    "VirtualMachine": """
UNWIND $rows AS row
MERGE (n:Item:CI:Compute:Virtual:VirtualMachine {cloudInstanceId: row.cloudInstanceId})
SET n += row.props, n.createdAt = $now, n.updatedAt = $now, n.lastSeenAt = $now
""",
}
CEILING_RELATIONS = """
UNWIND $rows AS row
MATCH (a:CI {cloudInstanceId: row.s})
MATCH (b:CI {cloudInstanceId: row.t})
MERGE (a)-[:RUNS_ON]->(b)
"""


def generate(count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items: list[dict[str, Any]] = []
    relations: list[dict[str, Any]] = []
    servers = max(1, count // 10)
    for i in range(servers):
        items.append({
            "key": f"s{i}", "ciClass": "Server",
            "identifiers": {"serialNumber": f"SRV{i:08d}", "hostName": f"srv-{i:06d}",
                            "domain": "dc1.bench.example", "macAddress": _mac(i, 1),
                            "cloudInstanceId": f"srv-{i}"},
            "attributes": {"os": "RHEL 9.4", "cpu": 64, "memoryGb": 512, "rack": f"R{i % 40}",
                           "model": "ProLiant DL380"},
        })
    for j in range(count - servers):
        items.append({
            "key": f"v{j}", "ciClass": "VirtualMachine",
            "identifiers": {"cloudInstanceId": f"vm-{j}", "hostName": f"vm-{j:07d}",
                            "domain": "dc1.bench.example", "macAddress": _mac(j, 2)},
            "attributes": {"os": "Ubuntu 24.04", "cpu": 4, "memoryGb": 16,
                           "cluster": f"c{j % 50}", "tier": "gold" if j % 3 else "silver"},
        })
        relations.append({"source": {"key": f"v{j}"}, "target": {"key": f"s{j % servers}"},
                          "type": "RUNS_ON"})
    return items, relations


def _mac(i: int, kind: int) -> str:
    b = i.to_bytes(4, "big")
    return ":".join(f"{x:02X}" for x in (0x02, kind, *b))


def _ceiling_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for it in items:
        ids = it["identifiers"]
        props = {f"attr_{k}": v for k, v in it["attributes"].items()}
        props.update({k: v for k, v in ids.items() if k != "cloudInstanceId"})
        props.update({"ciClass": it["ciClass"], "name": ids["hostName"],
                      "nameLower": ids["hostName"], "id": str(uuid.uuid4()),
                      "fqdn": f"{ids['hostName']}.{ids['domain']}",
                      "lifecycleStatus": "IN_SERVICE", "operationalState": "UNKNOWN",
                      "healthState": "UNKNOWN", "criticality": "MEDIUM",
                      "criticalityRank": 3})
        rows.append({"cloudInstanceId": ids["cloudInstanceId"], "props": props,
                     "cls": it["ciClass"]})
    return rows


async def wipe(db: Database) -> None:
    async with db.driver.session(database=db.database) as session:
        await session.run("MATCH (n) WHERE NOT n:SchemaMigration "
                          "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS")


async def ceiling(db: Database, items: list[dict[str, Any]], relations: list[dict[str, Any]],
                  batch: int) -> float:
    rows = _ceiling_rows(items)
    keys = {it["key"]: it["identifiers"]["cloudInstanceId"] for it in items}
    rels = [{"s": keys[r["source"]["key"]], "t": keys[r["target"]["key"]]} for r in relations]
    started = time.perf_counter()
    now = datetime.now(UTC)
    for i in range(0, len(rows), batch):
        chunk = rows[i:i + batch]
        for cls, query in CEILING_ITEMS.items():
            group = [r for r in chunk if r["cls"] == cls]
            if group:
                await db.write(query, {"rows": group, "now": now})
    for i in range(0, len(rels), batch):
        await db.write(CEILING_RELATIONS, {"rows": rels[i:i + batch]})
    return time.perf_counter() - started


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in
                Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")),
               platform.processor())
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
    from cmdb.localdb.manager import NEO4J_VERSION

    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "neo4j": f"{NEO4J_VERSION} Community"}


async def main(args: argparse.Namespace) -> int:
    settings, _instance = connect_settings(args.instance, 600.0, print)
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                          settings.neo4j_database, 600.0)
    try:
        await migrate(db)
        items, relations = generate(args.count)
        print(f"{len(items):,} CIs, {len(relations):,} relationships, batches of {args.batch}")
        await wipe(db)
        t_ceiling = await ceiling(db, items, relations, args.batch)
        print(f"ceiling (plain UNWIND … MERGE): {t_ceiling:.1f} s")
        await wipe(db)
        svc = DiscoveryService(db, settings)
        await svc.register_source(AGENT, {"name": "bench", "kind": "AGENT", "trust": 50})

        def tick(done: int, total: int) -> None:
            if done % (args.batch * 5) == 0 or done == total:
                print(f"  {done:,}/{total:,}", file=sys.stderr)

        started = time.perf_counter()
        first = await svc.ingest(AGENT, "bench", items, relations, batch_size=args.batch,
                                 progress=tick)
        t_first = time.perf_counter() - started
        print(f"first load: {t_first:.1f} s {first.counts()}")
        started = time.perf_counter()
        again = await svc.ingest(AGENT, "bench", items, relations, batch_size=args.batch,
                                 progress=tick)
        t_again = time.perf_counter() - started
        print(f"re-ingest: {t_again:.1f} s {again.counts()}")
        history = (await db.read("MATCH (h:HistoryRecord) RETURN count(h) AS n"))[0]["n"]
        # The machine may be shared: the ceiling is measured again at the end and the faster
        # of the two runs is the ceiling (both are reported).
        await wipe(db)
        t_ceiling_2 = await ceiling(db, items, relations, args.batch)
        print(f"ceiling again: {t_ceiling_2:.1f} s")
        await wipe(db)
    finally:
        await db.close()
    n = len(items)
    ceilings = (round(t_ceiling, 2), round(t_ceiling_2, 2))
    t_ceiling = min(t_ceiling, t_ceiling_2)
    result = {
        "machine": machine(), "count": n, "relations": len(relations), "batch": args.batch,
        "ceiling_s": round(t_ceiling, 2), "ceiling_runs_s": ceilings,
        "first_s": round(t_first, 2),
        "reingest_s": round(t_again, 2), "history_records": history,
        "first_counts": first.counts(), "reingest_counts": again.counts(),
    }
    rows = [("plain UNWIND … MERGE (ceiling)", t_ceiling),
            ("discovery ingest, first load", t_first),
            ("discovery ingest, unchanged re-ingest", t_again)]
    print()
    print("| run | seconds | CIs/s | records/s | x ceiling |")
    print("|---|---:|---:|---:|---:|")
    for name, t in rows:
        print(f"| {name} | {t:.1f} | {n / t:,.0f} | {(n + len(relations)) / t:,.0f} | "
              f"{t_ceiling / t:.2f} |")
    print(f"\nceiling runs (before, after): {ceilings[0]} s, {ceilings[1]} s; re-ingest vs "
          f"first load: {t_first / t_again:.2f}x faster; history records written: {history:,}")
    print(f"machine: {result['machine']}")
    out = ROOT / "bench" / "results" / "ingest.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    ok = (first.rejected == [] and again.created == 0 and again.updated == 0
          and again.relations_created == 0)
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--instance", default="bench",
                   choices=("dev", "test", "bench", *(f"test-{i}" for i in range(1, 10))))
    sys.exit(asyncio.run(main(p.parse_args())))
