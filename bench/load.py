"""Load a synthetic enterprise tier into Neo4j through the bulk path.

    python -m bench.load --tier S|M|L [--seed 42] [--batch 5000] [--instance bench]
                         [--force] [--wipe]

Without ``--instance`` the usual settings decide (``CMDB_NEO4J_URI``, else the local dev
instance). ``--instance bench`` starts the project's bench instance if needed (bolt 27687,
heap 4g, page cache 8g) and loads into it. Migrations run first. A marker node
``(:BenchmarkLoad {id: 'benchmark'})`` records what was loaded; loading the same tier, seed
and generator version again is skipped unless ``--force`` (which upserts again: an
idempotent reload). A graph holding another tier or seed is emptied first; a graph holding
data not loaded by this tool is refused unless ``--wipe``. Emptying a managed instance
deletes its database files and restarts it (fast); any other Neo4j is emptied with Cypher.
After loading, a managed instance is restarted (``--no-restart`` to skip) so the store on
disk is checkpointed before its size is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench.generator import GENERATOR_VERSION, TIERS, Enterprise
from cmdb.bulk import BulkResult, BulkService
from cmdb.core.clock import utcnow
from cmdb.core.models import OrgKind
from cmdb.db.driver import Database
from cmdb.db.migrations import migrate
from cmdb.settings import Settings, get_settings

Echo = Callable[[str], None]
MARKER_ID = "benchmark"


@dataclass
class Phase:
    name: str
    rows: int = 0
    seconds: float = 0.0
    result: BulkResult = field(default_factory=BulkResult)

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


class Ticker:
    """A progress callback that prints a line every ``every`` seconds."""

    def __init__(self, phase: str, echo: Echo, every: float = 5.0) -> None:
        self.phase, self.echo, self.every = phase, echo, every
        self.t0 = self.last = time.monotonic()

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if now - self.last < self.every and done != total:
            return
        self.last = now
        elapsed = now - self.t0
        of = f"/{total:,}" if total else ""
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        self.echo(f"  [{self.phase}] {done:,}{of} rows{pct}, {done / elapsed:,.0f} rows/s, "
                  f"{elapsed:.0f}s")


# ------------------------------------------------------------------------------ the graph


async def read_marker(db: Database) -> dict[str, Any] | None:
    rows = await db.read("MATCH (m:BenchmarkLoad {id: $id}) RETURN properties(m) AS m",
                         {"id": MARKER_ID})
    return dict(rows[0]["m"]) if rows else None


async def write_marker(db: Database, props: dict[str, Any]) -> None:
    await db.write("MERGE (m:BenchmarkLoad {id: $id}) SET m = $props, m.id = $id",
                   {"id": MARKER_ID, "props": props})


async def graph_size(db: Database) -> tuple[int, int]:
    rows = await db.read("CALL () { MATCH (n) WHERE NOT n:SchemaMigration RETURN count(n) AS n }"
                         " RETURN n, COUNT { ()-[]->() } AS r")
    return int(rows[0]["n"]), int(rows[0]["r"])


def reset_store(instance: Any, database: str, echo: Echo) -> None:
    """Empty a managed instance's database fast: stop it, delete that database's store and
    transaction logs (the system database, hence the password, stays), start it again."""
    t0 = time.monotonic()
    instance.stop(timeout_s=600, echo=echo)
    for sub in ("databases", "transactions"):
        shutil.rmtree(Path(instance.data_dir) / sub / database, ignore_errors=True)
    instance.ensure_running(echo=echo)
    echo(f"emptied database {database!r} of instance {instance.spec.name!r} in "
         f"{time.monotonic() - t0:.0f}s")


async def wipe(db: Database, echo: Echo) -> None:
    """Delete everything but the schema, in server-side batches (auto-commit)."""
    t0 = time.monotonic()
    async with db.driver.session(database=db.database) as session:
        result = await session.run(
            "MATCH (n) WHERE NOT n:SchemaMigration "
            "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 2000 ROWS")
        await result.consume()
    echo(f"wiped the graph in {time.monotonic() - t0:.0f}s")


async def memory_settings(db: Database) -> dict[str, str]:
    try:
        rows = await db.read("SHOW SETTINGS YIELD name, value "
                             "WHERE name STARTS WITH 'server.memory' RETURN name, value")
    except Exception:
        return {}
    return {r["name"]: str(r["value"]) for r in rows}


# ------------------------------------------------------------------------------ loading


async def load(db: Database, settings: Settings, enterprise: Enterprise, batch: int,
               echo: Echo) -> list[Phase]:
    bulk = BulkService(db, settings, batch_size=batch)
    lay = enterprise.layout
    phases: list[Phase] = []

    async def run(name: str, total: int, call: Callable[..., Awaitable[BulkResult]]) -> None:
        echo(f"{name}: {total:,} rows")
        ticker = Ticker(name, echo)
        t0 = time.monotonic()
        result = await call(progress=ticker)
        phase = Phase(name, result.total, time.monotonic() - t0, result)
        phases.append(phase)
        echo(f"  {name}: {result.total:,} rows in {phase.seconds:.1f}s ({phase.rate:,.0f}/s): "
             f"{result.created:,} created, {result.updated:,} updated, "
             f"{result.unchanged:,} unchanged, {len(result.rejected):,} rejected")
        for r in result.rejected[:5]:
            echo(f"    rejected row {r.index} ({r.key}): {r.code.value} {r.reason}")

    for kind in (OrgKind.LOCATION, OrgKind.COST_CENTRE, OrgKind.OWNER_GROUP):
        rows = list(enterprise.org_units(kind))  # a few hundred at most
        await run(f"org:{kind.value}", len(rows),
                  partial(bulk.upsert_org_units, kind, rows))
    items = lay.services + lay.cis
    await run("items", items, partial(bulk.upsert_items, enterprise.items(), total=items))
    relations = enterprise.relation_count()
    await run("relations", relations,
              partial(bulk.upsert_relations, enterprise.relations(), total=relations))
    return phases


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GiB"


async def main_async(args: argparse.Namespace, echo: Echo) -> int:
    settings, instance = connect_settings(args.instance, args.tx_timeout, echo)
    db = _connect(settings)
    try:
        return await _main(db, settings, instance, args, echo)
    finally:
        await db.close()


def _connect(settings: Settings) -> Database:
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                            settings.neo4j_database, settings.neo4j_tx_timeout_s)


async def _main(db: Database, settings: Settings, instance: Any, args: argparse.Namespace,
                echo: Echo) -> int:
    for m in await migrate(db):
        echo(f"applied migration {m.version}: {m.name}")
    enterprise = Enterprise(args.tier, args.seed)
    wanted = {"tier": args.tier, "seed": args.seed, "generator": GENERATOR_VERSION}
    marker = await read_marker(db)
    same = marker is not None and all(marker.get(k) == v for k, v in wanted.items())
    if same and marker is not None and marker.get("complete") and not (args.force or args.wipe):
        echo(f"tier {args.tier} seed {args.seed} is already loaded "
             f"({marker.get('loadedAt')}); use --force to load it again")
        if marker.get("report"):
            for line in _lines(json.loads(marker["report"])):
                echo(line)
        return 0
    nodes, _ = await graph_size(db)
    if nodes and not same and marker is None and not args.wipe:
        echo(f"error: the graph holds {nodes:,} nodes of other data; use --wipe to empty it "
             "first")
        return 2
    if nodes and (args.wipe or not same):  # another tier or seed: start from empty
        if marker is not None and not same:
            echo(f"the graph holds tier {marker.get('tier')} seed {marker.get('seed')}: "
                 "emptying it first")
        if instance is not None:
            await db.close()
            reset_store(instance, settings.neo4j_database, echo)
            db = _connect(settings)
            await migrate(db)
        else:
            await wipe(db, echo)
    await write_marker(db, wanted | {"complete": False, "startedAt": utcnow()})
    echo(f"loading tier {args.tier} (seed {args.seed}): {enterprise.layout.cis:,} CIs, "
         f"{enterprise.layout.services:,} services, {enterprise.relation_count():,} "
         f"relationships, batches of {args.batch}")
    t0 = time.monotonic()
    phases = await load(db, settings, enterprise, args.batch, echo)
    seconds = time.monotonic() - t0
    memory, size = await memory_settings(db), await graph_size(db)
    if instance is not None and not args.no_restart:
        # Community Neo4j has no checkpoint procedure; a clean restart flushes the page
        # cache into the store files, so the size on disk is the steady-state one.
        echo("restarting the instance to checkpoint the store before measuring it ...")
        await db.close()
        instance.stop(timeout_s=600, echo=echo)
        instance.ensure_running(echo=echo)
        db = _connect(settings)
    try:
        report = _report(phases, seconds, instance, memory, size, args)
        for line in _lines(report):
            echo(line)
        rejected = sum(len(p.result.rejected) for p in phases)
        await write_marker(db, wanted | {"complete": rejected == 0, "loadedAt": utcnow(),
                                         "report": json.dumps(report)})
    finally:
        await db.close()
    return 1 if rejected else 0


def _report(phases: list[Phase], seconds: float, instance: Any, memory: dict[str, str],
            size: tuple[int, int], args: argparse.Namespace) -> dict[str, Any]:
    node_phases = [p for p in phases if p.name != "relations"]
    rel = next(p for p in phases if p.name == "relations")
    node_rows = sum(p.rows for p in node_phases)
    node_s = sum(p.seconds for p in node_phases)
    report: dict[str, Any] = {
        "tier": args.tier, "seed": args.seed, "batch": args.batch,
        "seconds": round(seconds, 1),
        "nodeRows": node_rows, "nodeSeconds": round(node_s, 1),
        "nodeRowsPerSecond": round(node_rows / node_s) if node_s else None,
        "relationRows": rel.rows, "relationSeconds": round(rel.seconds, 1),
        "relationRowsPerSecond": round(rel.rate),
        "graphNodes": size[0], "graphRelationships": size[1],
        "rejected": dict(Counter(r.code.value for p in phases for r in p.result.rejected)),
        "memorySettings": memory,
    }
    if instance is not None:
        data = Path(instance.data_dir)
        report |= {
            "instance": instance.spec.name, "heap": instance.spec.heap,
            "pagecache": instance.spec.pagecache, "dataDir": str(data),
            "dataBytes": dir_size(data),
            "storeBytes": dir_size(data / "databases"),
            "txLogBytes": dir_size(data / "transactions"),
        }
    return report


def _lines(r: dict[str, Any]) -> list[str]:
    lines = [
        f"loaded tier {r['tier']} (seed {r['seed']}) in {r['seconds']:.0f}s "
        f"(batches of {r['batch']})",
        f"  nodes:         {r['nodeRows']:,} rows in {r['nodeSeconds']}s = "
        f"{r['nodeRowsPerSecond'] or 0:,} rows/s",
        f"  relationships: {r['relationRows']:,} rows in {r['relationSeconds']}s = "
        f"{r['relationRowsPerSecond']:,} rows/s",
        f"  graph:         {r['graphNodes']:,} nodes, {r['graphRelationships']:,} "
        "relationships (org links included)",
    ]
    if "dataBytes" in r:
        lines += [
            f"  on disk:       {_gb(r['dataBytes'])} in {r['dataDir']} (store "
            f"{_gb(r['storeBytes'])}, transaction logs {_gb(r['txLogBytes'])})",
            f"  memory:        instance {r['instance']!r}: heap {r['heap']}, page cache "
            f"{r['pagecache']}",
        ]
    elif r["memorySettings"]:
        lines.append(f"  memory:        {r['memorySettings']}")
    if r["rejected"]:
        lines.append(f"  REJECTED:      {r['rejected']}")
    return lines


def connect_settings(instance_name: str | None, tx_timeout: float,
                     echo: Echo) -> tuple[Settings, Any]:
    """Settings for the chosen Neo4j, and the managed local instance if it is one."""
    from cmdb.localdb.manager import instance_for

    base = get_settings()
    if instance_name is None:
        from cmdb.cli import connected_settings

        settings = connected_settings()
        instance = instance_for(settings, "dev") if base.neo4j_uri is None else None
    else:
        instance = instance_for(base, instance_name)
        instance.ensure_running(echo=echo)
        settings = base.model_copy(update={
            "neo4j_uri": instance.uri, "neo4j_user": instance.user,
            "neo4j_password": SecretStr(instance.password())})
    settings = settings.model_copy(update={"neo4j_tx_timeout_s": tx_timeout})
    return settings, instance


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tier", required=True, choices=sorted(TIERS))
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--instance", choices=("dev", "test", "bench", "bench-m",
                                          *(f"test-{n}" for n in range(1, 10))), default=None,
                   help="a project-managed local instance (started if needed)")
    p.add_argument("--force", action="store_true", help="load even if already loaded")
    p.add_argument("--wipe", action="store_true",
                   help="empty the graph first, even if it holds data of others")
    p.add_argument("--no-restart", action="store_true",
                   help="do not restart a managed instance to checkpoint before measuring")
    p.add_argument("--tx-timeout", type=float, default=300.0,
                   help="server-side timeout of each batch's transaction, seconds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)

    def echo(line: str) -> None:
        print(line, flush=True)

    return asyncio.run(main_async(args, echo))


if __name__ == "__main__":
    sys.exit(main())
