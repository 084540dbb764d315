"""The bulk path against a real Neo4j: same graph shape as the mutations, idempotent,
per-row rejections, and whole-batch rollback when Neo4j refuses a batch."""

from __future__ import annotations

import pytest

from cmdb.bulk import BulkService, CIRow, OrgRow, RejectCode, RelationRow, ServiceRow
from cmdb.core.models import OrgKind
from cmdb.items.models import CIClass, Identifiers, RelationType, ServiceKind

pytestmark = pytest.mark.integration

ITEM_FIELDS = """
  __typename id name description lifecycleStatus operationalState criticality attributes
  createdAt updatedAt retiredAt retiredReason
  ownerGroup { id name email description }
  costCentre { id code name description parent { id code } }
  location { id name description parent { id name } }
  ... on ConfigurationItem { ciClass families source lastSeenAt
    identifiers { serialNumber hostName domain fqdn macAddress cloudInstanceId } }
  ... on Service { kind sla { availabilityTarget responseTargetMinutes restoreTargetMinutes
    maintenanceWindows } businessValue { revenuePerHour users } costRecovery }
  relationships(direction: BOTH) { type direction depth sourceId targetId properties
    item { id } }
"""
READ = "query($id: ID!) { node(id: $id) { " + ITEM_FIELDS + " } }"

CI_INPUT = {
    "name": "web-07", "ciClass": "VIRTUAL_MACHINE", "description": "front end",
    "operationalState": "DEGRADED", "criticality": "HIGH",
    "identifiers": {"hostName": "Web-07", "domain": "corp.example", "serialNumber": "VM-7",
                    "macAddress": "00-1a-2b-3c-4d-5e", "cloudInstanceId": "i-0abc"},
    "attributes": {"os": "linux", "vcpus": 4, "ssd": True, "tags": ["a", "b"]},
}
SERVICE_INPUT = {
    "name": "Payroll", "kind": "BUSINESS", "criticality": "CRITICAL",
    "sla": {"availabilityTarget": "99.95", "responseTargetMinutes": 15,
            "maintenanceWindows": ["Sun 02:00-04:00"]},
    "businessValue": {"revenuePerHour": "125000.50", "users": 4200},
    "costRecovery": "PRICES",
    "attributes": {"tier": "gold"},
}


def bulk(db, settings, batch_size=5000):
    return BulkService(db, settings, batch_size=batch_size)


# Health roll-up (healthState, healthChangedAt, HAD_STATE history) is written by the health
# module when a mutation runs; the bulk path leaves it to a roll-up after the load.
HEALTH_KEYS = {"healthState", "healthChangedAt"}


async def shape(db, names, key):
    """Labels, property keys and relationships (type, other end, keys) of one node, with
    ids replaced by the names in ``names``."""
    rename = {v: k for k, v in names.items()}
    rows = await db.read(
        "MATCH (n {id: $id}) RETURN labels(n) AS labels, keys(n) AS keys, "
        "[(n)-[r]-(o) WHERE type(r) <> 'HAD_STATE' | [type(r), o.id, keys(r)]] AS rels",
        {"id": names[key]})
    row = rows[0]
    return (sorted(row["labels"]), sorted(set(row["keys"]) - HEALTH_KEYS),
            sorted((t, rename.get(o, o), tuple(sorted(k))) for t, o, k in row["rels"]))


async def org_via_mutations(gql):
    og = await gql.ok('mutation { createOwnerGroup(input: {name: "Unix Ops", '
                      'email: "unix@corp.example"}) { ownerGroup { id } } }')
    root = await gql.ok('mutation { createCostCentre(input: {code: "CC-1", name: "IT"}) '
                        '{ costCentre { id } } }')
    root_id = root["createCostCentre"]["costCentre"]["id"]
    cc = await gql.ok('mutation($p: ID) { createCostCentre(input: {code: "CC-2", name: "Ops", '
                      'parentId: $p}) { costCentre { id } } }', p=root_id)
    loc = await gql.ok('mutation { createLocation(input: {name: "London"}) '
                       '{ location { id } } }')
    return {"owner": og["createOwnerGroup"]["ownerGroup"]["id"],
            "cc": cc["createCostCentre"]["costCentre"]["id"],
            "loc": loc["createLocation"]["location"]["id"]}


async def load_org(service):
    """The same org units as ``org_via_mutations``, through the bulk path."""
    og = await service.upsert_org_units(OrgKind.OWNER_GROUP, [
        OrgRow(id="og-1", name="Unix Ops", email="unix@corp.example")])
    cc = await service.upsert_org_units(OrgKind.COST_CENTRE, [
        OrgRow(id="cc-1", name="IT", code="CC-1"),
        OrgRow(id="cc-2", name="Ops", code="CC-2", parent_id="cc-1")])
    loc = await service.upsert_org_units(OrgKind.LOCATION, [OrgRow(id="loc-1", name="London")])
    for r in (og, cc, loc):
        assert r.rejected == [] and r.created + r.unchanged == r.total
    return {"owner": "og-1", "cc": "cc-2", "loc": "loc-1"}


def ci_row(ident, name, cls=CIClass.VIRTUAL_MACHINE, **kw):
    return CIRow(id=ident, name=name, ci_class=cls, **kw)


def normalise(node, ids):
    """A read-back with ids and timestamps replaced by stable names."""
    rename = {v: k for k, v in ids.items()}

    def fix(value):
        if isinstance(value, dict):
            return {k: ("<ts>" if k in ("createdAt", "updatedAt") and v else fix(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return rename.get(value, value) if isinstance(value, str) else value

    return fix(node)


async def test_bulk_items_read_back_like_mutation_items(gql, clean_db, test_settings):
    # The mutation path: org units, a CI, a service and a relationship between them.
    org = await org_via_mutations(gql)
    refs = {"ownerGroupId": org["owner"], "costCentreId": org["cc"], "locationId": org["loc"]}
    ci = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                      "input: $i) { configurationItem { id } errors { message } } }",
                      i=CI_INPUT | refs)
    ci_id = ci["createConfigurationItem"]["configurationItem"]["id"]
    svc = await gql.ok("mutation($i: CreateServiceInput!) { createService(input: $i) "
                       "{ service { id } errors { message } } }", i=SERVICE_INPUT | refs)
    svc_id = svc["createService"]["service"]["id"]
    rel = await gql.ok("mutation($i: RelateInput!) { relate(input: $i) { errors { message } } }",
                       i={"sourceId": svc_id, "targetId": ci_id, "type": "DEPENDS_ON",
                          "properties": {"required": True}})
    assert rel["relate"]["errors"] == []
    cc_parent = (await clean_db.read("MATCH (:CostCentre {code: 'CC-2'})-[:PART_OF]->(p) "
                                     "RETURN p.id AS id"))[0]["id"]
    names = {"ci": ci_id, "svc": svc_id, "owner": org["owner"], "cc": org["cc"],
             "loc": org["loc"], "ccParent": cc_parent}
    by_mutation = {k: normalise((await gql.ok(READ, id=names[k]))["node"], names)
                   for k in ("ci", "svc")}
    shapes = {k: await shape(clean_db, names, k) for k in ("ci", "svc", "owner", "cc", "loc")}

    # The bulk path, on an empty graph, with the same content and stable ids.
    await clean_db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
    service = bulk(clean_db, test_settings)
    org_ids = await load_org(service)
    result = await service.upsert_items([
        CIRow.model_validate({
            "id": "ci-1", "name": "web-07", "ci_class": "VirtualMachine",
            "description": "front end", "operational_state": "DEGRADED", "criticality": "HIGH",
            "identifiers": Identifiers(host_name="Web-07", domain="corp.example",
                                       serial_number="VM-7", mac_address="00-1a-2b-3c-4d-5e",
                                       cloud_instance_id="i-0abc"),
            "attributes": CI_INPUT["attributes"], "owner_group_id": org_ids["owner"],
            "cost_centre_id": org_ids["cc"], "location_id": org_ids["loc"]}),
        ServiceRow.model_validate({
            "id": "svc-1", "name": "Payroll", "kind": ServiceKind.BUSINESS,
            "criticality": "CRITICAL",
            "sla": {"availability_target": "99.95", "response_target_minutes": 15,
                    "maintenance_windows": ["Sun 02:00-04:00"]},
            "business_value": {"revenue_per_hour": "125000.50", "users": 4200},
            "cost_recovery": "PRICES",
            "attributes": {"tier": "gold"}, "owner_group_id": org_ids["owner"],
            "cost_centre_id": org_ids["cc"], "location_id": org_ids["loc"]}),
    ])
    assert (result.created, result.rejected) == (2, [])
    rels = await service.upsert_relations([
        RelationRow(source_id="svc-1", target_id="ci-1", type=RelationType.DEPENDS_ON,
                    properties={"required": True})])
    assert (rels.created, rels.rejected) == (1, [])
    bulk_names = {"ci": "ci-1", "svc": "svc-1", "owner": "og-1", "cc": "cc-2", "loc": "loc-1",
                  "ccParent": "cc-1"}
    assert by_mutation["svc"]["costRecovery"] == "PRICES"
    for k in ("ci", "svc"):
        assert normalise((await gql.ok(READ, id=bulk_names[k]))["node"], bulk_names) \
            == by_mutation[k]
    for k in ("ci", "svc", "owner", "cc", "loc"):
        assert await shape(clean_db, bulk_names, k) == shapes[k], k


async def small_enterprise(service):
    await load_org(service)
    refs = {"owner_group_id": "og-1", "cost_centre_id": "cc-2", "location_id": "loc-1"}
    items = await service.upsert_items([
        ServiceRow(id="svc-1", name="Payroll", kind=ServiceKind.TECHNICAL, **refs),
        ci_row("app-1", "payroll-app", CIClass.APPLICATION_INSTANCE, **refs),
        ci_row("app-2", "payroll-batch", CIClass.APPLICATION_INSTANCE, **refs),
        ci_row("db-1", "payroll-db", CIClass.DATABASE, **refs),
        *(ci_row(f"vm-{i}", f"vm-{i}", attributes={"vcpus": i},
                 identifiers=Identifiers(host_name=f"vm-{i}", domain="corp.example",
                                         mac_address=f"02:00:00:00:00:0{i}"), **refs)
          for i in range(1, 5)),
    ])
    rels = await service.upsert_relations([
        RelationRow(source_id="svc-1", target_id="app-1", type=RelationType.DEPENDS_ON),
        RelationRow(source_id="svc-1", target_id="app-2", type=RelationType.DEPENDS_ON),
        RelationRow(source_id="app-1", target_id="db-1", type=RelationType.DEPENDS_ON,
                    properties={"required": True}),
        RelationRow(source_id="app-2", target_id="db-1", type=RelationType.DEPENDS_ON,
                    properties={"required": True}),
        RelationRow(source_id="app-1", target_id="vm-1", type=RelationType.RUNS_ON,
                    properties={"redundancyGroup": "app-1"}),
        RelationRow(source_id="app-1", target_id="vm-2", type=RelationType.RUNS_ON,
                    properties={"redundancyGroup": "app-1"}),
        RelationRow(source_id="app-2", target_id="vm-3", type=RelationType.RUNS_ON),
        RelationRow(source_id="db-1", target_id="vm-4", type=RelationType.RUNS_ON),
    ])
    return items, rels


async def counts(db):
    rows = await db.read("MATCH (n) WHERE NOT n:SchemaMigration "
                         "RETURN count(n) AS nodes, COUNT { ()-[]->() } AS rels, "
                         "max(n.updatedAt) AS latest")
    return rows[0]["nodes"], rows[0]["rels"], rows[0]["latest"]


async def test_reloading_the_same_rows_changes_nothing(clean_db, test_settings):
    service = bulk(clean_db, test_settings, batch_size=3)
    items, rels = await small_enterprise(service)
    assert (items.created, items.updated, items.rejected) == (8, 0, [])
    assert (rels.created, rels.rejected) == (8, [])
    assert items.batches == 3
    before = await counts(clean_db)
    assert before[:2] == (4 + 8, 8 + 3 * 8 + 1)  # org + items; relations + refs + PART_OF

    items, rels = await small_enterprise(service)
    assert (items.created, items.updated, items.unchanged) == (0, 0, 8)
    assert (rels.created, rels.updated, rels.unchanged) == (0, 0, 8)
    assert await counts(clean_db) == before  # same nodes, relationships and updatedAt

    changed = await service.upsert_items([
        ci_row("vm-1", "vm-1", attributes={"vcpus": 8}),
        ci_row("vm-2", "vm-2", attributes={"vcpus": 2}, cost_centre_id="cc-1"),
    ])
    assert (changed.created, changed.updated, changed.unchanged) == (0, 2, 0)
    rows = await clean_db.read(
        "MATCH (n:CI) WHERE n.id IN ['vm-1', 'vm-2'] RETURN n.id AS id, n.attr_vcpus AS v, "
        "n.updatedAt > n.createdAt AS touched, [(n)-[:CHARGED_TO]->(c) | c.code] AS cc, "
        "n.hostName AS host ORDER BY id")
    assert [(r["id"], r["v"], r["touched"], r["cc"], r["host"]) for r in rows] == [
        ("vm-1", 8, True, ["CC-2"], "vm-1"),  # identifiers not given: left as they were
        ("vm-2", 2, True, ["CC-1"], "vm-2")]
    again = await service.upsert_relations([
        RelationRow(source_id="app-1", target_id="db-1", type=RelationType.DEPENDS_ON,
                    properties={"required": False})])
    assert (again.updated, again.created) == (1, 0)
    assert (await counts(clean_db))[1] == before[1]


async def test_invalid_rows_are_rejected_and_the_rest_loads(clean_db, test_settings):
    service = bulk(clean_db, test_settings)
    await load_org(service)
    seen = []
    result = await service.upsert_items([
        ci_row("ok-1", "ok-1", owner_group_id="og-1"),
        {"id": "bad-mac", "name": "x", "ci_class": "Server",
         "identifiers": {"mac_address": "not-a-mac"}},
        ci_row("bad-attr", "y", attributes={"Bad Key": 1}),
        ci_row("no-owner", "z", owner_group_id="og-missing"),
        ci_row("retired", "r", lifecycle_status="RETIRED"),
        {"id": "bad-class", "name": "w", "ci_class": "Toaster"},
        {"id": "  ", "name": "v", "ci_class": "Server"},
        ci_row("ok-2", "ok-2"),
        ci_row("ok-2", "ok-2 again"),
    ], progress=lambda done, total: seen.append((done, total)))
    assert (result.total, result.created) == (9, 2)
    by_index = {r.index: r for r in result.rejected}
    assert sorted(by_index) == [1, 2, 3, 4, 5, 6, 8]
    assert by_index[1].field == "identifiers.macAddress" and "MAC" in by_index[1].reason
    assert by_index[2].field == "attributes.Bad Key"
    assert by_index[3].code is RejectCode.NOT_FOUND
    assert by_index[3].reason == "owner group 'og-missing' not found"
    assert by_index[4].field == "lifecycleStatus"
    assert by_index[5].field == "ciClass"
    assert by_index[6].field == "id"
    assert "repeats" in by_index[8].reason
    assert seen == [(9, 9)]
    ids = await clean_db.read("MATCH (n:CI) RETURN n.id AS id ORDER BY id")
    assert [r["id"] for r in ids] == ["ok-1", "ok-2"]


async def test_conflicts_with_stored_items_are_rejected_per_row(clean_db, test_settings):
    service = bulk(clean_db, test_settings)
    first = await service.upsert_items([
        ci_row("srv-1", "srv-1", CIClass.SERVER,
               identifiers=Identifiers(serial_number="SN-1", host_name="srv-1",
                                       domain="corp.example"))])
    assert first.created == 1
    result = await service.upsert_items([
        ci_row("srv-2", "srv-2", CIClass.SERVER, identifiers=Identifiers(serial_number="SN-1")),
        ci_row("srv-3", "srv-3", CIClass.SERVER,
               identifiers=Identifiers(host_name="SRV-1", domain="corp.example")),
        ci_row("srv-1", "srv-1", CIClass.VIRTUAL_MACHINE),
        ci_row("srv-4", "srv-4", CIClass.SERVER, identifiers=Identifiers(serial_number="SN-4")),
    ])
    assert result.created == 1
    codes = [(r.index, r.code, r.field) for r in result.rejected]
    assert codes == [
        (0, RejectCode.CONFLICT, "identifiers.serialNumber"),
        (1, RejectCode.CONFLICT, "identifiers.fqdn"),
        (2, RejectCode.CONFLICT, "id"),
    ]
    assert "'srv-1'" in result.rejected[0].reason
    as_service = await service.upsert_items([
        ServiceRow(id="srv-1", name="srv-1", kind=ServiceKind.TECHNICAL)])
    assert [(r.code, r.field) for r in as_service.rejected] == [(RejectCode.CONFLICT, "id")]
    # Identifiers strips a blank serial to "": that is no serial, not a shared one.
    blank = await service.upsert_items([
        ci_row(f"blank-{i}", "b", CIClass.SERVER, identifiers=Identifiers(serial_number="  "))
        for i in range(2)])
    assert (blank.created, blank.rejected) == (2, [])
    held = await clean_db.read("MATCH (n:CI) WHERE n.serialNumber = '' RETURN count(n) AS c")
    assert held[0]["c"] == 0


async def test_relationship_rules_are_checked_per_row(clean_db, test_settings):
    service = bulk(clean_db, test_settings)
    await service.upsert_items([
        ci_row("db-1", "db-1", CIClass.DATABASE),
        ci_row("db-2", "db-2", CIClass.DATABASE),
        ci_row("vm-1", "vm-1"),
        ci_row("pkg-1", "openssl 3", CIClass.SOFTWARE_PACKAGE),
        ServiceRow(id="svc-1", name="Email", kind=ServiceKind.BUSINESS),
    ])
    rt = RelationType
    result = await service.upsert_relations([
        RelationRow(source_id="db-1", target_id="vm-1", type=rt.RUNS_ON),  # ok
        RelationRow(source_id="db-1", target_id="db-2", type=rt.RUNS_ON),  # target rule
        RelationRow(source_id="vm-1", target_id="pkg-1", type=rt.INSTALLED_ON),  # source rule
        RelationRow(source_id="vm-1", target_id="svc-1", type=rt.USES),  # no service target
        RelationRow(source_id="pkg-1", target_id="vm-1", type=rt.INSTALLED_ON),  # ok
        RelationRow(source_id="db-1", target_id="nope", type=rt.DEPENDS_ON),  # missing end
        {"source_id": "db-1", "target_id": "db-1", "type": "DEPENDS_ON"},  # itself
        {"source_id": "db-1", "target_id": "db-2", "type": "OWNS"},  # unknown type
        RelationRow(source_id="svc-1", target_id="db-1", type=rt.DEPENDS_ON,
                    properties={"nested": {"a": 1}}),  # bad property
        RelationRow(source_id="db-1", target_id="vm-1", type=rt.RUNS_ON),  # repeats row 0
    ])
    assert (result.created, result.total) == (2, 10)
    rejected = {r.index: r for r in result.rejected}
    assert sorted(rejected) == [1, 2, 3, 5, 6, 7, 8, 9]
    assert rejected[1].reason == "RUNS_ON cannot point to a Database"
    assert rejected[2].reason == "a VirtualMachine cannot be the source of INSTALLED_ON"
    assert rejected[3].reason == "USES cannot point to a service"
    assert rejected[5].code is RejectCode.NOT_FOUND and rejected[5].field == "targetId"
    assert rejected[6].field == "targetId"
    assert rejected[7].field == "type"
    assert rejected[8].field == "properties.nested"
    assert rejected[9].key == "db-1 -RUNS_ON-> vm-1" and "repeats" in rejected[9].reason
    rels = await clean_db.read("MATCH (s)-[r]->(t) RETURN s.id + ' ' + type(r) + ' ' + t.id "
                               "AS r ORDER BY r")
    assert [r["r"] for r in rels] == ["db-1 RUNS_ON vm-1", "pkg-1 INSTALLED_ON vm-1"]


async def test_a_batch_neo4j_refuses_is_rolled_back_whole(clean_db, test_settings):
    service = bulk(clean_db, test_settings, batch_size=3)

    def server(i, serial):
        return ci_row(f"srv-{i}", f"srv-{i}", CIClass.SERVER,
                      identifiers=Identifiers(serial_number=serial))

    # Rows 3 and 5 claim one serial number: only Neo4j sees that (neither is stored yet).
    result = await service.upsert_items([
        server(0, "A"), server(1, "B"), server(2, "C"),
        server(3, "DUP"), server(4, "E"), server(5, "DUP"),
        server(6, "F"), server(7, "G"),
    ])
    assert (result.batches, result.failed_batches, result.created) == (3, 1, 5)
    assert [(r.index, r.code) for r in result.rejected] == [
        (i, RejectCode.BATCH_FAILED) for i in (3, 4, 5)]
    assert "nothing of it was written" in result.rejected[0].reason
    ids = await clean_db.read("MATCH (n:CI) RETURN n.id AS id ORDER BY id")
    assert [r["id"] for r in ids] == ["srv-0", "srv-1", "srv-2", "srv-6", "srv-7"]
    assert (await clean_db.read("MATCH ()-[r]->() RETURN count(r) AS c"))[0]["c"] == 0


async def test_org_units_hierarchy_and_conflicts(gql, clean_db, test_settings):
    service = bulk(clean_db, test_settings, batch_size=2)
    result = await service.upsert_org_units(OrgKind.COST_CENTRE, [
        OrgRow(id="cc-root", name="Group", code="CC-0"),
        OrgRow(id="cc-it", name="IT", code="CC-1", parent_id="cc-root"),
        OrgRow(id="cc-ops", name="Ops", code="CC-2", parent_id="cc-it"),  # next batch
        OrgRow(id="cc-dup", name="Other", code="CC-1"),  # code held by cc-it
        {"id": "cc-nocode", "name": "No code"},
        OrgRow(id="cc-orphan", name="Orphan", code="CC-9", parent_id="cc-missing"),
        OrgRow(id="cc-name", name="ops", code="CC-3"),  # name held (case-insensitively)
    ])
    assert result.created == 3
    assert [(r.index, r.code, r.field) for r in result.rejected] == [
        (3, RejectCode.CONFLICT, "code"), (4, RejectCode.INVALID, "code"),
        (5, RejectCode.NOT_FOUND, "parentId"), (6, RejectCode.CONFLICT, "name")]
    data = await gql.ok('{ costCentres { code parent { code parent { code } } } }')
    assert sorted(data["costCentres"], key=lambda c: c["code"]) == [
        {"code": "CC-0", "parent": None},
        {"code": "CC-1", "parent": {"code": "CC-0", "parent": None}},
        {"code": "CC-2", "parent": {"code": "CC-1", "parent": {"code": "CC-0"}}},
    ]
    again = await service.upsert_org_units(OrgKind.COST_CENTRE, [
        OrgRow(id="cc-ops", name="Operations", code="CC-2", parent_id="cc-root")])
    assert (again.updated, again.rejected) == (1, [])
    moved = await clean_db.read("MATCH (c {id: 'cc-ops'})-[:PART_OF]->(p) "
                                "RETURN c.name AS name, collect(p.id) AS parents")
    assert moved == [{"name": "Operations", "parents": ["cc-root"]}]
    kinds = await service.upsert_org_units(OrgKind.OWNER_GROUP, [
        OrgRow(id="cc-it", name="IT"), OrgRow(id="og-1", name="Ops", parent_id="og-0")])
    assert [(r.index, r.field) for r in kinds.rejected] == [(0, "id"), (1, "parentId")]


async def test_member_of_gets_its_impact_mirror(clean_db, test_settings):
    from cmdb.bulk.service import BulkService
    from cmdb.items.models import CIClass, RelationType

    bulk = BulkService(clean_db, test_settings)
    await bulk.upsert_items([
        {"id": "h1", "name": "h1", "ci_class": CIClass.HYPERVISOR_HOST},
        {"id": "c1", "name": "c1", "ci_class": CIClass.CLUSTER},
    ])
    result = await bulk.upsert_relations([{"source_id": "h1", "target_id": "c1",
                                           "type": RelationType.MEMBER_OF,
                                           "properties": {"minUp": 1}}])
    assert result.created == 1
    rows = await clean_db.read("MATCH (:Item {id: 'c1'})-[h:HAS_MEMBER]->(:Item {id: 'h1'}) "
                               "RETURN h.attr_minUp AS k")
    assert rows == [{"k": 1}]


async def test_recompute_all_rolls_up_bulk_loaded_items(clean_db, test_settings):
    from cmdb.bulk.service import BulkService
    from cmdb.core.models import OperationalState
    from cmdb.items.models import CIClass, RelationType
    from cmdb.rollup.repository import recompute_all

    bulk = BulkService(clean_db, test_settings)
    await bulk.upsert_items([
        {"id": "app", "name": "app", "ci_class": CIClass.APPLICATION_INSTANCE,
         "operational_state": OperationalState.UP},
        {"id": "db", "name": "db", "ci_class": CIClass.DATABASE,
         "operational_state": OperationalState.DOWN},
        {"id": "h1", "name": "h1", "ci_class": CIClass.HYPERVISOR_HOST,
         "operational_state": OperationalState.DOWN},
        {"id": "h2", "name": "h2", "ci_class": CIClass.HYPERVISOR_HOST,
         "operational_state": OperationalState.UP},
        {"id": "c", "name": "c", "ci_class": CIClass.CLUSTER,
         "operational_state": OperationalState.UP},
    ])
    await bulk.upsert_relations([
        {"source_id": "app", "target_id": "db", "type": RelationType.DEPENDS_ON},
        {"source_id": "h1", "target_id": "c", "type": RelationType.MEMBER_OF},
        {"source_id": "h2", "target_id": "c", "type": RelationType.MEMBER_OF},
    ])
    items, changed = await recompute_all(clean_db, batch=2)
    assert items == 5 and changed == 5
    rows = await clean_db.read("MATCH (n:Item) RETURN n.id AS id, n.healthState AS s")
    assert {r["id"]: r["s"] for r in rows} == {
        "app": "DOWN", "db": "DOWN", "h1": "DOWN", "h2": "UP", "c": "DEGRADED"}
    assert (await recompute_all(clean_db, batch=2)) == (5, 0)  # settled: nothing changes
