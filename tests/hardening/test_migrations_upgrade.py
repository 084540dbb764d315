"""Schema migrations from every earlier version: a graph left at version v (its schema from
migrations 1..v and data in that version's shape) migrates to the latest version, ends with
exactly the constraints and indexes of a fresh migrate, and keeps its data (migration 3's
HAS_MEMBER mirrors are added to older graphs). Complements the gap tests in
test_catalog_transitions.py and test_discovery.py."""

from __future__ import annotations

from typing import Any

import pytest

from cmdb.db import migrations as mig

pytestmark = pytest.mark.integration

VERSIONS = [0, *sorted(m.version for m in mig.MIGRATIONS)]

CONSTRAINTS = """SHOW CONSTRAINTS YIELD name, type, entityType, labelsOrTypes, properties
RETURN name, type, entityType, labelsOrTypes, properties"""
INDEXES = """SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties,
  owningConstraint WHERE type <> 'LOOKUP'
RETURN name, type, entityType, labelsOrTypes, properties, owningConstraint"""


async def schema(db) -> set[tuple[Any, ...]]:
    found = set()
    for kind, statement in (("constraint", CONSTRAINTS), ("index", INDEXES)):
        for row in await db.read(statement):
            found.add((kind, *(tuple(v) if isinstance(v, list) else v
                                for _, v in sorted(row.items()))))
    return found


async def wipe(db) -> None:
    """An empty database: no data, no constraints, no indexes (but Neo4j's lookup ones)."""
    await db.write("MATCH (n) DETACH DELETE n")
    for row in await db.read("SHOW CONSTRAINTS YIELD name RETURN name"):
        await db.write("DROP CONSTRAINT `" + row["name"].replace("`", "``") + "`")
    for row in await db.read("SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' "
                             "RETURN name"):
        await db.write("DROP INDEX `" + row["name"].replace("`", "``") + "`")


async def migrate_to(db, version: int, monkeypatch) -> None:
    with monkeypatch.context() as m:
        m.setattr(mig, "MIGRATIONS", tuple(x for x in mig.MIGRATIONS if x.version <= version))
        await mig.migrate(db)
    assert await mig.current_version(db) == version


# Data as the application wrote it at each version.
ITEMS = """
CREATE (h:Item:CI {id: 'h1', name: 'host-1', nameLower: 'host-1', ciClass: 'HYPERVISOR_HOST',
                   serialNumber: 'SN-1', lifecycleStatus: 'IN_SERVICE',
                   operationalState: 'UP'})
CREATE (c:Item:CI {id: 'c1', name: 'cluster-1', nameLower: 'cluster-1', ciClass: 'CLUSTER',
                   lifecycleStatus: 'IN_SERVICE', operationalState: 'UP'})
CREATE (s:Item:Service {id: 's1', name: 'Payroll', nameLower: 'payroll',
                        serviceKind: 'BUSINESS', lifecycleStatus: 'IN_SERVICE'})
CREATE (h)-[:MEMBER_OF {since: 'v', attr_required: true}]->(c)
CREATE (s)-[:DEPENDS_ON]->(c)
"""
MIRROR = """MATCH (h:CI {id: 'h1'})-[r:MEMBER_OF]->(c:CI {id: 'c1'})
CREATE (c)-[m:HAS_MEMBER]->(h) SET m = properties(r)"""
ALARM = """CREATE (:Alarm {id: 'a1', source: 'zabbix', dedupKey: 'cpu', ciId: 'h1',
  openKey: 'zabbix' + char(0) + 'cpu', status: 'OPEN', severity: 'MAJOR',
  lastOccurredAt: datetime()})""".replace("char(0)", "'|'")
ORDER = """CREATE (:Order {id: 'o1', idempotencyScope: 'u|k1', status: 'AWAITING_APPROVAL',
  requester: 'u', submittedAt: datetime()})"""
LINES_V9 = "CREATE (:ChargeLine {id: 'l1', period: '2026-01', amount: '1.00'})"
LINES_V10 = """CREATE (:ChargeLine {id: 'l1', period: '2026-01', run: 1, amount: '1.00'}),
  (:ChargeLine {id: 'l1', period: '2026-01', run: 2, amount: '1.50'})"""


async def write_data(db, version: int) -> None:
    await db.write(ITEMS)
    if version >= 3:
        await db.write(MIRROR)
    if version >= 4:
        await db.write(ALARM)
    if version >= 8:
        await db.write(ORDER)
    if version >= 10:
        await db.write(LINES_V10)
    elif version >= 9:
        await db.write(LINES_V9)


async def census(db) -> dict[str, Any]:
    nodes = await db.read("MATCH (n) WHERE NOT n:SchemaMigration "
                          "RETURN labels(n) AS labels, properties(n) AS props")
    rels = await db.read("MATCH (a)-[r]->(b) RETURN a.id AS a, type(r) AS type, b.id AS b, "
                         "properties(r) AS props")
    return {
        "nodes": sorted((sorted(r["labels"]), sorted(map(str, r["props"].items())))
                        for r in nodes),
        "rels": sorted((r["a"], r["type"], r["b"], sorted(map(str, r["props"].items())))
                       for r in rels),
    }


async def test_every_earlier_version_migrates_to_the_fresh_schema(db, monkeypatch):
    try:
        await wipe(db)
        await mig.migrate(db)
        fresh = await schema(db)
        assert fresh and await mig.current_version(db) == mig.LATEST_VERSION

        for version in VERSIONS:
            await wipe(db)
            await migrate_to(db, version, monkeypatch)
            await write_data(db, version)
            before = await census(db)

            applied = await mig.migrate(db)
            assert [m.version for m in applied] == [v for v in VERSIONS if v > version]
            assert await mig.current_version(db) == mig.LATEST_VERSION
            assert await mig.pending(db) == []
            assert await schema(db) == fresh, f"from version {version}"

            after = await census(db)
            assert after["nodes"] == before["nodes"], f"from version {version}"
            mirrors = [r for r in after["rels"] if r[1] == "HAS_MEMBER"]
            assert mirrors == [("c1", "HAS_MEMBER", "h1",
                                sorted(map(str, {"since": "v", "attr_required": True}
                                           .items())))], f"from version {version}"
            assert [r for r in after["rels"] if r[1] != "HAS_MEMBER"] == \
                [r for r in before["rels"] if r[1] != "HAS_MEMBER"]
    finally:
        # Later tests get the graph as the session fixture left it: migrated, empty.
        await db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
        await mig.migrate(db)
