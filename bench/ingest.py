"""Discovery ingest: reconciliation and history on, against a plain ``UNWIND … MERGE``.

    python -m bench.ingest [--count 100000] [--batch 5000] [--instance bench|test-N]

Generates ``count`` discovered CIs (one server per ten, the rest VMs, each with identifiers
and five attributes) and one ``RUNS_ON`` per VM to its server, then, ``--rounds`` times:

1. on an emptied graph, ``ceiling``: the same rows through a plain ``UNWIND $rows MERGE
   (n:…:CI {cloudInstanceId}) SET n += …`` making the same nodes (labels, id and indexed
   properties) and ``MERGE (a)-[:RUNS_ON]->(b)``, batch by batch (no identification,
   precedence, provenance, history or roll-up);
2. emptied again, ``first load``: ``DiscoveryService.ingest`` (identification by the class
   rules, precedence, provenance, history, health roll-up over new relationships);
3. ``re-ingest``: the same batch again (everything unchanged; within the sighting
   resolution, so nothing is written).

Each phase's wall time and CPU time (this process, and the Neo4j server's for a managed
local instance) are recorded. The machine may be shared: the best (least disturbed) wall
time of each phase is compared with the best of the others, every run is reported, and CPU
seconds, which hardly move with the machine's load, are compared as well.

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


class Clock:
    """Wall time and CPU time of one phase: this process's (validation, reconciliation,
    the driver) and, for a managed local instance, the Neo4j server process's. CPU seconds
    hardly move when other workloads share the machine; wall seconds do."""

    def __init__(self, neo4j_pid: int | None) -> None:
        self.pid = neo4j_pid
        self.tick = os.sysconf("SC_CLK_TCK")

    def _server(self) -> float:
        if self.pid is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime

    def start(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), self._server()

    def stop(self, t0: tuple[float, float, float]) -> dict[str, float]:
        return {"wall_s": round(time.perf_counter() - t0[0], 2),
                "client_cpu_s": round(time.process_time() - t0[1], 2),
                "neo4j_cpu_s": round(self._server() - t0[2], 2)}


def _neo4j_pid(instance: Any) -> int | None:
    try:
        return int(instance.pid_file.read_text().strip()) if instance is not None else None
    except (OSError, ValueError):
        return None


async def main(args: argparse.Namespace) -> int:
    settings, instance = connect_settings(args.instance, 600.0, print)
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                          settings.neo4j_database, 600.0)
    clock = Clock(_neo4j_pid(instance))
    runs: dict[str, list[dict[str, float]]] = {"ceiling": [], "first": [], "reingest": []}
    ok = True
    try:
        await migrate(db)
        items, relations = generate(args.count)
        print(f"{len(items):,} CIs, {len(relations):,} relationships, batches of {args.batch}, "
              f"{args.rounds} rounds")

        def tick(done: int, total: int) -> None:
            if done % (args.batch * 10) == 0 or done == total:
                print(f"  {done:,}/{total:,}", file=sys.stderr)

        # Each round measures all three on an emptied graph, one after the other, so that a
        # busy spell of a shared machine hits one round, not one configuration.
        for k in range(1, args.rounds + 1):
            await wipe(db)
            t0 = clock.start()
            await ceiling(db, items, relations, args.batch)
            runs["ceiling"].append(clock.stop(t0))
            print(f"round {k} ceiling (plain UNWIND … MERGE): {runs['ceiling'][-1]}")
            await wipe(db)
            svc = DiscoveryService(db, settings)
            await svc.register_source(AGENT, {"name": "bench", "kind": "AGENT", "trust": 50})
            t0 = clock.start()
            first = await svc.ingest(AGENT, "bench", items, relations,
                                     batch_size=args.batch, progress=tick)
            runs["first"].append(clock.stop(t0))
            print(f"round {k} first load: {runs['first'][-1]} {first.counts()}")
            t0 = clock.start()
            again = await svc.ingest(AGENT, "bench", items, relations,
                                     batch_size=args.batch, progress=tick)
            runs["reingest"].append(clock.stop(t0))
            print(f"round {k} re-ingest: {runs['reingest'][-1]} {again.counts()}")
            history = (await db.read("MATCH (h:HistoryRecord) RETURN count(h) AS n"))[0]["n"]
            ok = ok and (first.rejected == [] and first.created == len(items)
                         and again.created == 0 and again.updated == 0
                         and again.relations_created == 0)
        await wipe(db)
    finally:
        await db.close()
    n, m = len(items), len(relations)

    def best(name: str, key: str = "wall_s") -> float:
        return min(r[key] for r in runs[name])

    def cpu(name: str) -> float:
        return min(r["client_cpu_s"] + r["neo4j_cpu_s"] for r in runs[name])

    result = {
        "machine": machine(), "load_average": os.getloadavg(), "count": n, "relations": m,
        "batch": args.batch, "rounds": args.rounds, "runs": runs,
        "ceiling_s": best("ceiling"), "first_s": best("first"),
        "reingest_s": best("reingest"), "history_records": history,
        "first_counts": first.counts(), "reingest_counts": again.counts(),
    }
    labels = [("ceiling", "plain UNWIND … MERGE (ceiling)"),
              ("first", "discovery ingest, first load"),
              ("reingest", "discovery ingest, unchanged re-ingest")]
    print()
    print("| run | best s | all runs s | CIs/s (best) | x ceiling (best) | CPU s (client + "
          "Neo4j) | x ceiling (CPU) |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for name, label in labels:
        t = best(name)
        walls = ", ".join(f"{r['wall_s']:.1f}" for r in runs[name])
        c = min(runs[name], key=lambda r: r["client_cpu_s"] + r["neo4j_cpu_s"])
        print(f"| {label} | {t:.1f} | {walls} | {n / t:,.0f} | {best('ceiling') / t:.2f} | "
              f"{c['client_cpu_s'] + c['neo4j_cpu_s']:.1f} ({c['client_cpu_s']:.1f} + "
              f"{c['neo4j_cpu_s']:.1f}) | {cpu('ceiling') / cpu(name):.2f} |")
    print(f"\nre-ingest vs first load: {best('first') / best('reingest'):.2f}x faster (best "
          f"runs); per round: " + ", ".join(
              f"{f['wall_s'] / r['wall_s']:.2f}x" for f, r in zip(runs["first"],
                                                                  runs["reingest"],
                                                                  strict=True))
          + f"; history nodes after a first load and a re-ingest: {history:,}")
    print(f"machine: {result['machine']}; load average at the end: "
          f"{', '.join(f'{x:.1f}' for x in result['load_average'])}")
    out = ROOT / "bench" / "results" / "ingest.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=2,
                   help="measure ceiling, first load and re-ingest this many times each")
    p.add_argument("--instance", default="bench",
                   choices=("dev", "test", "bench", *(f"test-{i}" for i in range(1, 10))))
    sys.exit(asyncio.run(main(p.parse_args())))
