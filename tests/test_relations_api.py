"""Relationships over GraphQL: relate/unrelate, both directions, types, depth, rules."""

from __future__ import annotations

import pytest

from tests.test_ci_api import create_ci

pytestmark = pytest.mark.integration

RELATE = """
mutation($input: RelateInput!) { relate(input: $input) {
  relation { type direction sourceId targetId properties item { id name } }
  errors { field message code } } }"""

UNRELATE = """
mutation($input: UnrelateInput!) { unrelate(input: $input) {
  relation { retiredAt } errors { field message code } } }"""

RELS = """
query($id: ID!, $dir: Direction!, $types: [RelationType!], $depth: Int!, $ret: Boolean!) {
  node(id: $id) { relationships(direction: $dir, types: $types, depth: $depth,
                                includeRetired: $ret) {
    type direction depth path item { __typename name } } } }"""


async def relate(gql, source, target, type_, **props):
    data = await gql.ok(RELATE, input={"sourceId": source, "targetId": target, "type": type_,
                                       "properties": props or None})
    payload = data["relate"]
    assert payload["errors"] == [], payload["errors"]
    return payload["relation"]


async def rels(gql, item_id, direction="BOTH", types=None, depth=1, include_retired=False):
    data = await gql.ok(RELS, id=item_id, dir=direction, types=types, depth=depth,
                        ret=include_retired)
    return data["node"]["relationships"]


async def make_service(gql, name, kind="BUSINESS"):
    data = await gql.ok("mutation($i: CreateServiceInput!) { createService(input: $i) "
                        "{ service { id } errors { message } } }",
                        i={"name": name, "kind": kind})
    return data["createService"]["service"]["id"]


@pytest.fixture
async def chain(gql):
    """Payroll -> payroll-app -> payroll-db -> server123, plus a host in a cluster."""
    server = (await create_ci(gql, name="server123", ciClass="SERVER"))["id"]
    dbase = (await create_ci(gql, name="payroll-db", ciClass="DATABASE"))["id"]
    app = (await create_ci(gql, name="payroll-app", ciClass="APPLICATION_INSTANCE"))["id"]
    payroll = await make_service(gql, "Payroll")
    await relate(gql, dbase, server, "RUNS_ON")
    await relate(gql, app, dbase, "DEPENDS_ON", required=True)
    await relate(gql, payroll, app, "DEPENDS_ON")
    return {"server": server, "db": dbase, "app": app, "payroll": payroll}


async def test_relate_returns_the_relation_with_properties(gql, chain):
    again = await relate(gql, chain["app"], chain["db"], "DEPENDS_ON", required=False)
    assert again["properties"] == {"required": False}  # relating again updates, no duplicate
    out = await rels(gql, chain["app"], "OUTGOING")
    assert [(r["type"], r["item"]["name"]) for r in out] == [("DEPENDS_ON", "payroll-db")]


async def test_both_directions_and_type_filter(gql, chain):
    both = await rels(gql, chain["db"])
    assert {(r["direction"], r["type"], r["item"]["name"]) for r in both} == {
        ("OUTGOING", "RUNS_ON", "server123"), ("INCOMING", "DEPENDS_ON", "payroll-app")}
    only = await rels(gql, chain["db"], types=["RUNS_ON"])
    assert [r["item"]["name"] for r in only] == ["server123"]


async def test_depth_follows_impact_upwards_with_paths(gql, chain):
    up = await rels(gql, chain["server"], "INCOMING", depth=3)
    assert [(r["depth"], r["item"]["name"], r["item"]["__typename"]) for r in up] == [
        (1, "payroll-db", "ConfigurationItem"),
        (2, "payroll-app", "ConfigurationItem"),
        (3, "Payroll", "Service"),
    ]
    assert up[2]["path"] == [chain["server"], chain["db"], chain["app"], chain["payroll"]]
    shallow = await rels(gql, chain["server"], "INCOMING", depth=2)
    assert len(shallow) == 2


async def test_cycles_do_not_hang_and_items_appear_once(gql):
    a = (await create_ci(gql, name="a", ciClass="APPLICATION_INSTANCE"))["id"]
    b = (await create_ci(gql, name="b", ciClass="APPLICATION_INSTANCE"))["id"]
    c = (await create_ci(gql, name="c", ciClass="APPLICATION_INSTANCE"))["id"]
    await relate(gql, a, b, "DEPENDS_ON")
    await relate(gql, b, c, "DEPENDS_ON")
    await relate(gql, c, a, "DEPENDS_ON")
    reach = await rels(gql, a, "OUTGOING", depth=5)
    assert sorted((r["item"]["name"], r["depth"]) for r in reach) == [("b", 1), ("c", 2)]


async def test_unrelate_retires_the_relationship(gql, chain):
    data = await gql.ok(UNRELATE, input={"sourceId": chain["db"], "targetId": chain["server"],
                                         "type": "RUNS_ON", "reason": "migrated"})
    assert data["unrelate"]["errors"] == [] and data["unrelate"]["relation"]["retiredAt"]
    assert await rels(gql, chain["db"], "OUTGOING") == []
    kept = await rels(gql, chain["db"], "OUTGOING", include_retired=True)
    assert [r["item"]["name"] for r in kept] == ["server123"]
    missing = await gql.ok(UNRELATE, input={"sourceId": chain["db"],
                                            "targetId": chain["server"], "type": "RUNS_ON"})
    assert missing["unrelate"]["errors"][0]["code"] == "NOT_FOUND"


async def test_rules_and_references_are_checked(gql, chain):
    cases = [
        ({"sourceId": chain["server"], "targetId": chain["db"], "type": "RUNS_ON"},
         "input.type"),
        ({"sourceId": chain["payroll"], "targetId": chain["server"], "type": "RUNS_ON"},
         "input.type"),
        ({"sourceId": chain["db"], "targetId": "nope", "type": "DEPENDS_ON"},
         "input.targetId"),
        ({"sourceId": chain["db"], "targetId": chain["db"], "type": "DEPENDS_ON"},
         "input.targetId"),
    ]
    for given, field in cases:
        data = await gql.ok(RELATE, input=given)
        assert data["relate"]["relation"] is None
        assert [e["field"] for e in data["relate"]["errors"]] == [field], given


async def test_retiring_an_item_ends_its_relationships(gql, chain):
    await gql.ok("mutation($id: ID!) { retireConfigurationItem(id: $id) { errors { code } } }",
                 id=chain["server"])
    assert await rels(gql, chain["db"], "OUTGOING") == []
    data = await gql.ok(RELATE, input={"sourceId": chain["db"], "targetId": chain["server"],
                                       "type": "RUNS_ON"})
    assert data["relate"]["errors"][0]["code"] == "CONFLICT"


async def test_depth_and_first_are_bounded(gql, chain):
    body = await gql(RELS, id=chain["db"], dir="BOTH", types=None, depth=99, ret=False)
    assert body["data"] is None or body["data"]["node"] is None
    assert "depth must be between 1 and" in body["errors"][0]["message"]
