"""A discovery import killed (SIGKILL) while its batch's transaction is open leaves the graph
as it was before that batch: one batch is one transaction, rolled back by Neo4j when the
client's connection dies. The import runs as the real CLI in a child process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cmdb.db.driver import Database
from cmdb.discovery.service import DiscoveryService
from cmdb.identity.principal import Principal
from cmdb.settings import Settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ADMIN = Principal("t-admin", frozenset({"admin"}))
KEPT = 50  # CIs stored before; the killed batch updates them
NEW = 15_000  # CIs the killed batch would create (a batch that takes seconds to write)

async def fingerprint(db: Database) -> dict[str, Any]:
    """Nodes and relationships by label and type, and a digest of every property of every
    node and relationship (the CIs the batch touches and their history included)."""
    nodes = await db.read("MATCH (n) WHERE NOT n:SchemaMigration "
                          "RETURN labels(n) AS l, properties(n) AS p")
    rels = await db.read("MATCH (a)-[r]->(b) RETURN type(r) AS t, properties(r) AS p, "
                         "elementId(a) AS a, elementId(b) AS b")
    node_rows = sorted(json.dumps([sorted(r["l"]), r["p"]], sort_keys=True, default=str)
                       for r in nodes)
    rel_rows = sorted(json.dumps([r["t"], r["p"], r["a"], r["b"]], sort_keys=True,
                                 default=str) for r in rels)
    by_label: dict[str, int] = {}
    for r in nodes:
        for label in r["l"]:
            by_label[label] = by_label.get(label, 0) + 1
    by_type: dict[str, int] = {}
    for r in rels:
        by_type[r["t"]] = by_type.get(r["t"], 0) + 1
    digest = hashlib.sha256("\n".join([*node_rows, "--", *rel_rows]).encode()).hexdigest()
    return {"nodes": len(nodes), "relationships": len(rels), "labels": by_label,
            "types": by_type, "digest": digest}


def server(i: int, version: int) -> dict[str, Any]:
    return {"key": f"h{i}", "ciClass": "SERVER",
            "identifiers": {"serialNumber": f"SN-{i:06d}", "hostName": f"host{i}"},
            "attributes": {"rack": f"r{i % 40}", "version": version}}


async def open_import_transactions(db: Database) -> list[dict[str, Any]]:
    rows = await db.read("SHOW TRANSACTIONS YIELD transactionId, currentQuery, elapsedTime, "
                         "clientAddress RETURN transactionId, currentQuery, "
                         "elapsedTime.milliseconds AS ms, clientAddress")
    return [r for r in rows if "SHOW TRANSACTIONS" not in (r["currentQuery"] or "")]


async def test_a_discovery_batch_killed_half_way_leaves_the_graph_as_before(
        clean_db: Database, test_settings: Settings, tmp_path: Path):
    svc = DiscoveryService(clean_db, test_settings)
    await svc.register_source(ADMIN, {"name": "scanner", "trust": 50})
    kept = await svc.ingest(ADMIN, "scanner", [server(i, 1) for i in range(KEPT)])
    assert kept.created == KEPT
    before = await fingerprint(clean_db)

    # One batch: the kept CIs changed, many new ones, and a relation between two of them.
    batch = {"source": "scanner",
             "items": [server(i, 2) for i in range(KEPT + NEW)],
             "relations": [{"source": {"key": "h1"}, "target": {"key": "h2"},
                            "type": "CONNECTS_TO"}]}
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(batch))
    pw = test_settings.neo4j_password.get_secret_value() if test_settings.neo4j_password \
        else ""
    env = {**os.environ, "CMDB_NEO4J_URI": test_settings.neo4j_uri or "",
           "CMDB_NEO4J_USER": test_settings.neo4j_user, "CMDB_NEO4J_PASSWORD": pw,
           "CMDB_HOME": str(ROOT / ".cmdb")}
    cmd = [sys.executable, "-m", "cmdb", "discovery", "import", str(path), "--source",
           "scanner", "--format", "json", "--batch-size", str(KEPT + NEW + 1)]
    child = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    killed_in: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            # Kill once its write transaction has been open for a while (well before commit).
            busy = [t for t in await open_import_transactions(clean_db) if t["ms"] >= 1000]
            if busy:
                killed_in = busy
                child.send_signal(signal.SIGKILL)
                break
            await asyncio.sleep(0.1)
    finally:
        if child.poll() is None and not killed_in:
            child.kill()
        out, err = child.communicate(timeout=60)
    assert killed_in, f"the import ended before it could be killed: {out} {err}"
    assert child.returncode == -signal.SIGKILL
    assert "created" not in out  # it never reported a result

    # Neo4j rolls the transaction back when the connection drops.
    deadline = time.monotonic() + 60
    ids = {t["transactionId"] for t in killed_in}
    while {t["transactionId"] for t in await open_import_transactions(clean_db)} & ids:
        assert time.monotonic() < deadline, "the killed batch's transaction is still open"
        await asyncio.sleep(0.2)
    assert await fingerprint(clean_db) == before

    # The same batch sent again, to the end, is whole: the rollback left nothing in its way.
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = await fingerprint(clean_db)
    assert after["labels"]["CI"] == KEPT + NEW
    assert after["types"].get("CONNECTS_TO") == 1
