"""Backup and restore of the local Neo4j (offline dump and load through ``cmdb db``): the
graph, its schema and its migration version come back; the instance is running afterwards."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cmdb.cli import app
from cmdb.db.driver import Database
from cmdb.db.migrations import LATEST_VERSION, current_version, migrate
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

CONSTRAINTS = "SHOW CONSTRAINTS YIELD name RETURN collect(name) AS names"
PROBES = "MATCH (p:BackupProbe) RETURN p.id AS id ORDER BY id"


async def reconnect(db: Database, settings) -> None:
    """A new driver for the shared database object. After a restore the old driver would
    wait on its bookmarks (transaction ids newer than the restored graph): an API must
    likewise be restarted after a restore (docs/operations.md)."""
    pw = settings.neo4j_password.get_secret_value()
    old, db.driver = db.driver, Database.connect(settings.neo4j_uri, settings.neo4j_user,
                                                 pw).driver
    await old.close()


def cli(*args: str):
    return CliRunner().invoke(app, ["db", *args])


async def ids(db) -> list[str]:
    return [r["id"] for r in await db.read(PROBES)]


async def test_backup_and_restore_bring_back_data_and_schema(clean_db, neo4j_instance,
                                                             test_settings, tmp_path,
                                                             monkeypatch):
    monkeypatch.chdir(ROOT)  # the CLI finds the instance under ./.cmdb
    name = neo4j_instance.spec.name
    db = clean_db
    await db.write("UNWIND ['kept', 'deleted-later'] AS id CREATE (:BackupProbe {id: id})")
    constraints = set((await db.read(CONSTRAINTS))[0]["names"])
    assert await current_version(db) == LATEST_VERSION
    dump = tmp_path / "graph.dump"
    try:
        r = cli("backup", "-i", name, "--to", str(dump))
        assert r.exit_code == 0, r.output
        assert dump.is_file() and dump.stat().st_size > 0
        assert neo4j_instance.status().running  # started again after the dump

        # After the backup: data deleted and added, a constraint and a version lost.
        await db.write("MATCH (p:BackupProbe {id: 'deleted-later'}) DELETE p")
        await db.write("CREATE (:BackupProbe {id: 'written-after'})")
        await db.write("DROP CONSTRAINT item_id")
        await db.write("MATCH (m:SchemaMigration {version: $v}) DELETE m", {"v": LATEST_VERSION})
        assert await ids(db) == ["kept", "written-after"]

        r = cli("restore", str(dump), "-i", name)
        assert r.exit_code == 0, r.output
        assert neo4j_instance.status().running
        await reconnect(db, test_settings)

        assert await ids(db) == ["deleted-later", "kept"]
        assert set((await db.read(CONSTRAINTS))[0]["names"]) == constraints
        assert await current_version(db) == LATEST_VERSION
    finally:
        # Later tests need the instance up with the full schema, whatever happened here.
        neo4j_instance.ensure_running()
        await reconnect(db, test_settings)
        await migrate(db)
        await db.write("MATCH (p:BackupProbe) DELETE p")


def test_backup_refuses_to_overwrite_and_restore_needs_a_file(neo4j_instance, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(ROOT)
    name = neo4j_instance.spec.name
    pid = neo4j_instance.status().pid
    existing = tmp_path / "taken.dump"
    existing.write_text("not mine")
    r = cli("backup", "-i", name, "--to", str(existing))
    assert r.exit_code == 1 and "already exists" in r.output
    assert existing.read_text() == "not mine"
    r = cli("restore", str(tmp_path / "missing.dump"), "-i", name)
    assert r.exit_code == 1 and "no backup file" in r.output
    # Refused before anything was stopped.
    assert neo4j_instance.status().pid == pid
