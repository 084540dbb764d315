"""CRUD, validation errors and retire-not-delete for configuration items, over GraphQL."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

CREATE = """
mutation($input: CreateConfigurationItemInput!) {
  createConfigurationItem(input: $input) {
    configurationItem { id name ciClass families lifecycleStatus operationalState criticality
      identifiers { serialNumber hostName domain fqdn macAddress }
      attributes ownerGroup { name } costCentre { code name } }
    errors { field message code }
  }
}"""


async def create_ci(gql, **fields):
    data = await gql.ok(CREATE, input=fields)
    payload = data["createConfigurationItem"]
    assert payload["errors"] == [], payload["errors"]
    return payload["configurationItem"]


async def test_create_and_read_back(gql):
    group = (await gql.ok('mutation { createOwnerGroup(input: {name: "Unix Ops"}) '
                          '{ ownerGroup { id } errors { message } } }'))
    group_id = group["createOwnerGroup"]["ownerGroup"]["id"]
    ci = await create_ci(
        gql, name="server123", ciClass="SERVER", criticality="HIGH", ownerGroupId=group_id,
        identifiers={"serialNumber": "SN-1", "hostName": "Server123", "domain": "Corp.Example",
                     "macAddress": "00-1a-2b-3c-4d-5e"},
        attributes={"os": "RHEL 9", "cpuCount": 16},
    )
    assert ci["ciClass"] == "SERVER"
    assert ci["families"] == ["Compute", "Hardware"]
    assert ci["identifiers"] == {"serialNumber": "SN-1", "hostName": "server123",
                                 "domain": "corp.example", "fqdn": "server123.corp.example",
                                 "macAddress": "00:1A:2B:3C:4D:5E"}
    assert ci["attributes"] == {"os": "RHEL 9", "cpuCount": 16}
    assert ci["ownerGroup"] == {"name": "Unix Ops"}
    assert ci["lifecycleStatus"] == "IN_SERVICE"

    read = await gql.ok("query($id: ID!) { configurationItem(id: $id) { name criticality } "
                        "node(id: $id) { __typename id } }", id=ci["id"])
    assert read["configurationItem"] == {"name": "server123", "criticality": "HIGH"}
    assert read["node"] == {"__typename": "ConfigurationItem", "id": ci["id"]}
    # owner, cost centre and location are read only when asked for, fragments included
    owned = await gql.ok("query($id: ID!) { node(id: $id) { ... on ConfigurationItem "
                         "{ ownerGroup { name } } } }", id=ci["id"])
    assert owned["node"] == {"ownerGroup": {"name": "Unix Ops"}}


async def test_validation_errors_name_the_field_and_write_nothing(gql, clean_db):
    data = await gql.ok(CREATE, input={"name": "  ", "ciClass": "SERVER",
                                       "identifiers": {"macAddress": "not-a-mac"},
                                       "attributes": {"Bad Key": 1, "nested": {"a": 1}}})
    payload = data["createConfigurationItem"]
    assert payload["configurationItem"] is None
    fields = {e["field"] for e in payload["errors"]}
    assert "input.name" in fields
    assert "input.identifiers.macAddress" in fields
    rows = await clean_db.read("MATCH (n:CI) RETURN count(n) AS c")
    assert rows[0]["c"] == 0


async def test_bad_attributes_are_reported_per_key(gql, clean_db):
    data = await gql.ok(CREATE, input={"name": "x", "ciClass": "SERVER",
                                       "attributes": {"Bad Key": 1, "nested": {"a": 1}}})
    errors = data["createConfigurationItem"]["errors"]
    assert {e["field"] for e in errors} == {"input.attributes.Bad Key", "input.attributes.nested"}
    assert (await clean_db.read("MATCH (n:CI) RETURN count(n) AS c"))[0]["c"] == 0


async def test_duplicate_identifier_is_a_conflict(gql):
    first = await create_ci(gql, name="a", ciClass="SERVER", identifiers={"serialNumber": "X1"})
    data = await gql.ok(CREATE, input={"name": "b", "ciClass": "SERVER",
                                       "identifiers": {"serialNumber": "X1"}})
    (err,) = data["createConfigurationItem"]["errors"]
    assert err["code"] == "CONFLICT"
    assert err["field"] == "input.identifiers.serialNumber"
    assert first["id"] in err["message"]


async def test_unknown_reference_is_not_found(gql, clean_db):
    data = await gql.ok(CREATE, input={"name": "a", "ciClass": "SERVER",
                                       "costCentreId": "nope"})
    (err,) = data["createConfigurationItem"]["errors"]
    assert (err["field"], err["code"]) == ("input.costCentreId", "NOT_FOUND")
    assert (await clean_db.read("MATCH (n:CI) RETURN count(n) AS c"))[0]["c"] == 0


UPDATE = """
mutation($id: ID!, $input: UpdateConfigurationItemInput!) {
  updateConfigurationItem(id: $id, input: $input) {
    configurationItem { name description operationalState attributes costCentre { code }
      identifiers { serialNumber hostName } }
    errors { field message code }
  }
}"""


async def test_update_changes_only_given_fields(gql):
    cc = await gql.ok('mutation { createCostCentre(input: {code: "CC-100", name: "Finance"}) '
                      '{ costCentre { id } } }')
    cc_id = cc["createCostCentre"]["costCentre"]["id"]
    ci = await create_ci(gql, name="db01", ciClass="DATABASE", description="payroll db",
                         identifiers={"serialNumber": "S-9", "hostName": "db01"},
                         attributes={"engine": "postgres", "version": "15"})
    data = await gql.ok(UPDATE, id=ci["id"], input={
        "operationalState": "DOWN", "costCentreId": cc_id,
        "attributes": {"version": "16", "engine": None},
        "identifiers": {"hostName": "db01b"},
    })
    payload = data["updateConfigurationItem"]
    assert payload["errors"] == []
    got = payload["configurationItem"]
    assert got["name"] == "db01" and got["description"] == "payroll db"
    assert got["operationalState"] == "DOWN"
    assert got["attributes"] == {"version": "16"}
    assert got["costCentre"] == {"code": "CC-100"}
    assert got["identifiers"] == {"serialNumber": "S-9", "hostName": "db01b"}

    cleared = await gql.ok(UPDATE, id=ci["id"], input={"costCentreId": None,
                                                       "description": None})
    assert cleared["updateConfigurationItem"]["configurationItem"]["costCentre"] is None
    assert cleared["updateConfigurationItem"]["configurationItem"]["description"] is None


async def test_update_unknown_id_is_not_found(gql):
    data = await gql.ok(UPDATE, id="missing", input={"name": "x"})
    (err,) = data["updateConfigurationItem"]["errors"]
    assert err["code"] == "NOT_FOUND"


RETIRE = """
mutation($id: ID!) { retireConfigurationItem(id: $id, reason: "decommissioned") {
  configurationItem { lifecycleStatus retiredAt retiredReason } errors { code message } } }"""


async def test_retire_keeps_the_ci_and_hides_it_from_default_lists(gql, clean_db):
    keep = await create_ci(gql, name="keep", ciClass="VIRTUAL_MACHINE")
    gone = await create_ci(gql, name="gone", ciClass="VIRTUAL_MACHINE")
    data = await gql.ok(RETIRE, id=gone["id"])
    retired = data["retireConfigurationItem"]["configurationItem"]
    assert retired["lifecycleStatus"] == "RETIRED"
    assert retired["retiredAt"] and retired["retiredReason"] == "decommissioned"

    listed = await gql.ok("{ configurationItems { edges { node { name } } } }")
    assert [e["node"]["name"] for e in listed["configurationItems"]["edges"]] == ["keep"]
    with_retired = await gql.ok("{ configurationItems(filter: {includeRetired: true}) "
                                "{ edges { node { name } } } }")
    assert {e["node"]["name"] for e in with_retired["configurationItems"]["edges"]} == {
        "keep", "gone"}
    # still stored, still readable by id
    assert (await clean_db.read("MATCH (n:CI {id: $id}) RETURN n.lifecycleStatus AS s",
                                {"id": gone["id"]}))[0]["s"] == "RETIRED"
    again = await gql.ok(RETIRE, id=gone["id"])
    assert again["retireConfigurationItem"]["errors"][0]["code"] == "CONFLICT"
    upd = await gql.ok(UPDATE, id=gone["id"], input={"name": "zombie"})
    assert upd["updateConfigurationItem"]["errors"][0]["code"] == "CONFLICT"
    assert keep["id"] != gone["id"]
