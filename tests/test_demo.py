"""The demo enterprise: what it loads, that loading is idempotent, and the payroll story."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cmdb.db.driver import Database
from cmdb.demo import data
from cmdb.demo.catalogue import CATEGORIES as CATALOGUE_CATEGORIES
from cmdb.demo.catalogue import ITEMS as CATALOGUE_ITEMS
from cmdb.demo.chargeback import METERS as CB_METERS
from cmdb.demo.chargeback import POOLS as CB_POOLS
from cmdb.demo.chargeback import STORAGE_VOLUMES as CB_VOLUMES
from cmdb.demo.loader import DEMO_SOURCES, check_demo_data, load_demo, load_demo_report

pytestmark = pytest.mark.integration

N_ORG, N_SERVICES, N_CIS, N_RELS = 20, 12, 81, 164

FIRST_RUN = (
    f"demo data: created {N_ORG} org units, {N_SERVICES} services, {N_CIS} CIs, "
    f"{N_RELS} relationships; already present 0 org units, 0 services, 0 CIs, 0 relationships"
)
SECOND_RUN = (
    "demo data: created 0 org units, 0 services, 0 CIs, 0 relationships; already present "
    f"{N_ORG} org units, {N_SERVICES} services, {N_CIS} CIs, {N_RELS} relationships"
)


PEOPLE = "n:User OR n:Role OR n:DesktopSession OR n:BrokerEvent"


async def graph_state(db: Database) -> tuple[Any, ...]:
    """Counts and the latest write time of everything the demo touches; the first two
    counts are of the CMDB items (org units, services, CIs) alone, the last two of people
    (users, roles, sessions and the broker events behind them)."""
    # State history (StateChange nodes), pending marks and the workers' lock are the health
    # roll-up's, not the demo's.
    nodes = await db.read("MATCH (n) WHERE NOT n:SchemaMigration AND NOT n:StateChange "
                          "AND NOT n:RollupLock AND NOT n:RollupPending "
                          "RETURN count(n) AS c, max(n.updatedAt) AS u, max(n.createdAt) AS k, "
                          f"count(CASE WHEN {PEOPLE} THEN 1 END) AS p")
    rels = await db.read("MATCH (a)-[r]->(b) WHERE NOT r:HAD_STATE AND NOT r:HAS_MEMBER "
                         "RETURN count(r) AS c, max(r.updatedAt) AS u, "
                         f"count(CASE WHEN {PEOPLE.replace('n:', 'a:')} "
                         f"OR {PEOPLE.replace('n:', 'b:')} THEN 1 END) AS p")
    return (nodes[0]["c"] - nodes[0]["p"], rels[0]["c"] - rels[0]["p"], nodes[0]["u"],
            nodes[0]["k"], rels[0]["u"], nodes[0]["p"], rels[0]["p"])


def test_the_data_is_consistent():
    assert check_demo_data() == []
    assert (len(data.ORG_UNITS), len(data.SERVICES), len(data.CIS), len(data.RELATIONS)) == (
        N_ORG, N_SERVICES, N_CIS, N_RELS)
    assert 60 <= N_CIS <= 120


async def test_loads_the_enterprise(gql, clean_db, test_settings):
    lines: list[str] = []
    started = time.perf_counter()
    summary = await load_demo(clean_db, test_settings, echo=lines.append)
    elapsed = time.perf_counter() - started
    assert summary == FIRST_RUN
    assert "\n" not in summary
    assert len(lines) >= 8 and any("virtual desktops" in line for line in lines)
    assert elapsed < 30, f"demo load took {elapsed:.1f}s"

    found = await gql.ok("""{
      business: services(filter: {kinds: [BUSINESS]}) { totalCount edges { node {
        name criticality sla { availabilityTarget responseTargetMinutes restoreTargetMinutes
        maintenanceWindows } businessValue { revenuePerHour users } } } }
      technical: services(filter: {kinds: [TECHNICAL]}) { totalCount }
      configurationItems { totalCount }
      servers: configurationItems(filter: {classes: [SERVER]}) { totalCount }
      costCentres(first: 100) { code parent { code } }
      ownerGroups(first: 100) { name }
      locations { name }
    }""")
    business = {e["node"]["name"]: e["node"] for e in found["business"]["edges"]}
    assert found["business"]["totalCount"] == 5
    assert set(business) == {"Payroll", "Email", "Trading", "Virtual Desktop", "Collaboration"}
    payroll = business["Payroll"]
    assert payroll["criticality"] == "CRITICAL"
    assert payroll["sla"]["maintenanceWindows"] == ["Sun 02:00-04:00"]
    assert payroll["sla"]["responseTargetMinutes"] == 15
    assert payroll["businessValue"] == {"revenuePerHour": "12000.00", "users": 4200}
    assert all(s["sla"]["availabilityTarget"] and s["businessValue"]["users"]
               for s in business.values())
    assert found["technical"]["totalCount"] == 7
    assert found["configurationItems"]["totalCount"] == N_CIS
    assert found["servers"]["totalCount"] == 5
    parents = {c["code"]: (c["parent"] or {}).get("code") for c in found["costCentres"]}
    assert parents["CC-1000"] is None
    assert parents["CC-1100"] == parents["CC-1200"] == parents["CC-1400"] == "CC-1000"
    assert parents["CC-1310"] == "CC-1300"
    assert {"Unix Ops", "Windows Ops", "DBA Team", "Network Team", "EUC Team",
            "App Support Payroll"} <= {g["name"] for g in found["ownerGroups"]}
    assert {loc["name"] for loc in found["locations"]} == {"DC London", "DC Frankfurt"}


async def test_every_item_has_owner_cost_centre_and_location(gql, clean_db, test_settings):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    found = await gql.ok("""{
      configurationItems(first: 500) { edges { node { name ciClass
        ownerGroup { name } costCentre { code } location { name }
        identifiers { serialNumber hostName domain fqdn macAddress } } } }
      services(first: 500) { edges { node { name ownerGroup { name } costCentre { code }
        location { name } } } }
    }""")
    cis = [e["node"] for e in found["configurationItems"]["edges"]]
    items = cis + [e["node"] for e in found["services"]["edges"]]
    assert len(cis) == N_CIS and len(items) == N_CIS + N_SERVICES
    missing = [i["name"] for i in items
               if not (i["ownerGroup"] and i["costCentre"] and i["location"])]
    assert missing == []
    by_name = {c["name"]: c for c in cis}
    assert by_name["server123"]["identifiers"] == {
        "serialNumber": "CZJ91203K7", "hostName": "server123", "domain": "lon.corp.example",
        "fqdn": "server123.lon.corp.example", "macAddress": "94:40:C9:12:30:01"}
    hardware = [c for c in cis if c["ciClass"] in ("SERVER", "HYPERVISOR_HOST",
                                                    "NETWORK_DEVICE", "LOAD_BALANCER")]
    assert hardware and all(c["identifiers"]["serialNumber"] for c in hardware)
    assert all(c["identifiers"]["fqdn"] for c in cis if c["ciClass"] == "VIRTUAL_MACHINE")


async def test_second_run_changes_nothing(gql, clean_db, test_settings):
    assert await load_demo(clean_db, test_settings, echo=lambda _: None) == FIRST_RUN
    before = await graph_state(clean_db)
    # The catalogue: categories, items with one version each; HAS_VERSION and IN_CATEGORY
    # per item (its roles and their ENTITLED_TO edges count with the people).
    catalogue_nodes = len(CATALOGUE_CATEGORIES) + 2 * len(CATALOGUE_ITEMS)
    # Chargeback: meters with one rate card each (PRICES), pools with this month's cost
    # (COSTS), the month's storage usage records and their charge period.
    chargeback_nodes = (2 * len(CB_METERS) + 2 * len(CB_POOLS) + len(CB_VOLUMES) + 1)
    assert before[:2] == (N_ORG + N_SERVICES + N_CIS + catalogue_nodes + len(DEMO_SOURCES)
                          + chargeback_nodes,
                          N_RELS + 3 * (N_SERVICES + N_CIS) + 6  # + OWNED_BY.., PART_OF
                          + 2 * len(CATALOGUE_ITEMS) + len(CB_METERS) + len(CB_POOLS))
    lines: list[str] = []
    assert await load_demo(clean_db, test_settings, echo=lines.append) == SECOND_RUN
    assert lines and all("(0 created," in line for line in lines)
    assert await graph_state(clean_db) == before


async def test_a_partial_load_is_completed_and_retired_items_are_left_alone(
    gql, clean_db, test_settings
):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    # someone deleted a desktop behind the API's back, and unlinked a host from its cluster
    await clean_db.write("MATCH (n:CI {name: 'virtdesk_982'}) DETACH DELETE n")
    await clean_db.write("MATCH (:CI {name: 'esx-a-03'})-[r:MEMBER_OF]->() DELETE r")
    report = await load_demo_report(clean_db, test_settings, echo=lambda _: None)
    # the desktop, its pool, host and two packages; and the host's cluster membership
    assert (report.cis.created, report.relationships.created) == (1, 5)
    assert report.relationships.present == N_RELS - 5
    assert (report.users.created, report.roles.created, report.sessions.created) == (0, 0, 0)

    # a retired CI stays retired: not re-created, its relationships not revived
    ci = await gql.ok('{ configurationItems(filter: {nameContains: "virtdesk_204"}) '
                      '{ edges { node { id } } } }')
    ci_id = ci["configurationItems"]["edges"][0]["node"]["id"]
    retired = await gql.ok('mutation($id: ID!) { retireConfigurationItem(id: $id) '
                           '{ errors { message } } }', id=ci_id)
    assert retired["retireConfigurationItem"]["errors"] == []
    report = await load_demo_report(clean_db, test_settings, echo=lambda _: None)
    assert report.created == 0
    assert (report.cis.present, report.relationships.skipped) == (N_CIS, 4)
    assert "skipped 4 relationships" in report.summary()


PAYROLL_STORY = """
query {
  configurationItems(filter: {nameContains: "server123"}) { edges { node {
    id name operationalState
    relationships(direction: INCOMING, depth: 4) {
      depth type path properties
      item { __typename id name ... on Service { kind criticality } }
    }
  } } }
}"""


async def test_server123_down_is_why_payroll_is_down(gql, clean_db, test_settings):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    found = await gql.ok(PAYROLL_STORY)
    (edge,) = found["configurationItems"]["edges"]
    server = edge["node"]
    rels = server["relationships"]
    names = {server["id"]: server["name"]} | {r["item"]["id"]: r["item"]["name"] for r in rels}
    by_name = {r["item"]["name"]: r for r in rels}

    payroll = by_name["Payroll"]
    assert payroll["item"]["__typename"] == "Service"
    assert payroll["item"]["kind"] == "BUSINESS" and payroll["item"]["criticality"] == "CRITICAL"
    assert payroll["depth"] == 4
    assert [names[i] for i in payroll["path"]] == list(data.PAYROLL_CHAIN)
    assert payroll["type"] == "DEPENDS_ON" and payroll["properties"] == {"required": True}

    db_rel = by_name["payroll-db"]
    assert (db_rel["depth"], db_rel["type"], db_rel["properties"]) == (
        1, "RUNS_ON", {"required": True})
    assert by_name["payroll-app"]["depth"] == 2
    assert by_name["Payroll Application Service"]["depth"] == 3
    # only the payroll stack rests on server123, plus the database software installed on it
    assert set(by_name) == {"payroll-db", "Oracle Database 19c", "payroll-app", "payroll-web",
                            "Payroll Application Service", "Payroll"}

    # and top-down: Payroll's model reaches the server
    svc = await gql.ok('{ services(filter: {nameContains: "Payroll", kinds: [BUSINESS]}) '
                       '{ edges { node { relationships(direction: OUTGOING, depth: 4) '
                       '{ depth item { name } } } } } }')
    (node,) = [e["node"] for e in svc["services"]["edges"]]
    down = {r["item"]["name"]: r["depth"] for r in node["relationships"]}
    assert down["server123"] == 4


async def test_cluster_redundancy_is_modelled(gql, clean_db, test_settings):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    found = await gql.ok('{ configurationItems(filter: {nameContains: "esx-cluster-a"}) '
                         '{ edges { node { ciClass relationships(direction: INCOMING, '
                         'types: [MEMBER_OF]) { properties item { name } } } } } }')
    (edge,) = found["configurationItems"]["edges"]
    assert edge["node"]["ciClass"] == "CLUSTER"
    members = {r["item"]["name"]: r["properties"] for r in edge["node"]["relationships"]}
    assert members == {h: {"redundancyGroup": "esx-cluster-a", "minUp": 2}
                       for h in ("esx-a-01", "esx-a-02", "esx-a-03")}
