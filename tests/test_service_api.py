"""Services and org units over GraphQL: SLA and business value, validation, retire."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

CREATE = """
mutation($i: CreateServiceInput!) { createService(input: $i) {
  service { id name kind criticality sla { availabilityTarget responseTargetMinutes
    restoreTargetMinutes maintenanceWindows } businessValue { revenuePerHour users } }
  errors { field message code } } }"""

UPDATE = """
mutation($id: ID!, $i: UpdateServiceInput!) { updateService(id: $id, input: $i) {
  service { name sla { availabilityTarget maintenanceWindows } businessValue { users
    revenuePerHour } } errors { field message code } } }"""


async def test_service_with_sla_round_trips_exact_decimals(gql):
    data = await gql.ok(CREATE, i={
        "name": "Payroll", "kind": "BUSINESS", "criticality": "CRITICAL",
        "sla": {"availabilityTarget": "99.95", "responseTargetMinutes": 15,
                "restoreTargetMinutes": 240, "maintenanceWindows": ["Sun 02:00-04:00"]},
        "businessValue": {"revenuePerHour": "125000.50", "users": 4200},
    })
    svc = data["createService"]["service"]
    assert data["createService"]["errors"] == []
    assert svc["sla"] == {"availabilityTarget": "99.95", "responseTargetMinutes": 15,
                          "restoreTargetMinutes": 240, "maintenanceWindows": ["Sun 02:00-04:00"]}
    assert svc["businessValue"] == {"revenuePerHour": "125000.50", "users": 4200}

    upd = await gql.ok(UPDATE, id=svc["id"], i={"businessValue": {"users": 5000}})
    got = upd["updateService"]["service"]
    assert got["businessValue"] == {"users": 5000, "revenuePerHour": "125000.50"}
    assert got["sla"]["availabilityTarget"] == "99.95"
    # null for a nested value is refused by name, and nothing changes
    for field in ("sla", "businessValue"):
        bad = await gql.ok(UPDATE, id=svc["id"], i={field: None, "name": "Renamed"})
        assert bad["updateService"]["errors"] == [{
            "field": f"input.{field}", "code": "INVALID",
            "message": f"{field} cannot be null: leave it out to keep it, or give the fields "
                       "to change"}]
    kept = await gql.ok(UPDATE, id=svc["id"], i={})
    assert kept["updateService"]["service"]["name"] == "Payroll"
    assert kept["updateService"]["service"]["businessValue"]["users"] == 5000


async def test_service_validation(gql, clean_db):
    data = await gql.ok(CREATE, i={
        "name": "Bad", "kind": "BUSINESS",
        "sla": {"availabilityTarget": "101", "maintenanceWindows": ["whenever"]},
        "businessValue": {"users": -1},
    })
    fields = {e["field"] for e in data["createService"]["errors"]}
    assert fields == {"input.sla.availabilityTarget", "input.sla.maintenanceWindows",
                      "input.businessValue.users"}
    assert (await clean_db.read("MATCH (s:Service) RETURN count(s) AS c"))[0]["c"] == 0


async def test_kind_cannot_change_and_retire_works(gql):
    data = await gql.ok(CREATE, i={"name": "Email", "kind": "BUSINESS"})
    sid = data["createService"]["service"]["id"]
    retired = await gql.ok("mutation($id: ID!) { retireService(id: $id) { service "
                           "{ lifecycleStatus } errors { code } } }", id=sid)
    assert retired["retireService"]["service"]["lifecycleStatus"] == "RETIRED"
    listed = await gql.ok("{ services { edges { node { name } } } }")
    assert listed["services"]["edges"] == []
    # a CI id is not a service
    ci = await gql.ok('mutation { createConfigurationItem(input: {name: "x", ciClass: SERVER})'
                      ' { configurationItem { id } } }')
    cid = ci["createConfigurationItem"]["configurationItem"]["id"]
    assert (await gql.ok("query($id: ID!) { service(id: $id) { id } }", id=cid))["service"] \
        is None
    wrong = await gql.ok(UPDATE, id=cid, i={"name": "y"})
    assert wrong["updateService"]["errors"][0]["code"] == "NOT_FOUND"


async def test_cost_centre_hierarchy_and_conflicts(gql):
    create = ("mutation($i: CostCentreInput!) { createCostCentre(input: $i) { costCentre "
              "{ id code parent { code } } errors { field code } } }")
    root = (await gql.ok(create, i={"code": "CC-1", "name": "Corporate"}))
    root_id = root["createCostCentre"]["costCentre"]["id"]
    child = await gql.ok(create, i={"code": "CC-2", "name": "Finance", "parentId": root_id})
    assert child["createCostCentre"]["costCentre"]["parent"] == {"code": "CC-1"}
    dup = await gql.ok(create, i={"code": "CC-2", "name": "Finance"})
    assert {(e["field"], e["code"]) for e in dup["createCostCentre"]["errors"]} == {
        ("input.code", "CONFLICT"), ("input.name", "CONFLICT")}
    orphan = await gql.ok(create, i={"code": "CC-3", "name": "X", "parentId": "nope"})
    assert orphan["createCostCentre"]["errors"] == [{"field": "input.parentId",
                                                     "code": "NOT_FOUND"}]
    listed = await gql.ok('{ costCentres(nameContains: "fin") { code } }')
    assert listed["costCentres"] == [{"code": "CC-2"}]
