"""Lists: Relay cursors both ways, filters, sorting, caps and bad cursors."""

from __future__ import annotations

import pytest

from tests.test_ci_api import create_ci

pytestmark = pytest.mark.integration

LIST = """
query($f: ConfigurationItemFilter, $o: ItemOrder, $first: Int, $after: String,
      $last: Int, $before: String) {
  configurationItems(filter: $f, orderBy: $o, first: $first, after: $after,
                     last: $last, before: $before) {
    totalCount
    edges { cursor node { name ciClass } }
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }"""


async def page(gql, **args):
    data = await gql.ok(LIST, **{"f": None, "o": None, "first": None, "after": None,
                                 "last": None, "before": None, **args})
    conn = data["configurationItems"]
    return [e["node"]["name"] for e in conn["edges"]], conn


@pytest.fixture
async def fleet(gql):
    group = await gql.ok('mutation { createOwnerGroup(input: {name: "EUC"}) '
                         '{ ownerGroup { id } } }')
    gid = group["createOwnerGroup"]["ownerGroup"]["id"]
    for i in range(7):
        await create_ci(gql, name=f"vm-{i:02}", ciClass="VIRTUAL_MACHINE",
                        criticality="HIGH" if i % 2 else "LOW",
                        attributes={"os": "linux" if i < 4 else "windows"},
                        ownerGroupId=gid if i < 3 else None)
    await create_ci(gql, name="esx-01", ciClass="HYPERVISOR_HOST",
                    identifiers={"serialNumber": "HOST-SN-1", "macAddress": "aa:bb:cc:dd:ee:01"})
    await create_ci(gql, name="Core-Switch", ciClass="NETWORK_DEVICE")
    return gid


async def test_forward_pages_cover_everything_once(gql, fleet):
    seen, after = [], None
    while True:
        names, conn = await page(gql, first=3, after=after)
        seen += names
        assert conn["totalCount"] == 9
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == sorted(seen, key=str.lower) and len(seen) == len(set(seen)) == 9


async def test_backward_pages_with_last_and_before(gql, fleet):
    names, conn = await page(gql, last=2)
    assert names == ["vm-05", "vm-06"] and conn["pageInfo"]["hasPreviousPage"]
    names2, conn2 = await page(gql, last=2, before=conn["pageInfo"]["startCursor"])
    assert names2 == ["vm-03", "vm-04"] and conn2["pageInfo"]["hasNextPage"]


async def test_sort_descending_by_creation(gql, fleet):
    names, _ = await page(gql, o={"field": "CREATED_AT", "direction": "DESC"}, first=2)
    assert names == ["Core-Switch", "esx-01"]
    names, _conn = await page(gql, o={"field": "CREATED_AT", "direction": "DESC"}, first=2,
                             after=_["pageInfo"]["endCursor"])
    assert names == ["vm-06", "vm-05"]


async def test_filters(gql, fleet):
    async def names(f):
        return (await page(gql, f=f))[0]

    assert await names({"classes": ["HYPERVISOR_HOST"]}) == ["esx-01"]
    assert await names({"families": ["NETWORK"]}) == ["Core-Switch"]
    assert len(await names({"families": ["COMPUTE"]})) == 8
    assert await names({"nameContains": "SWITCH"}) == ["Core-Switch"]
    assert await names({"ownerGroupId": fleet}) == ["vm-00", "vm-01", "vm-02"]
    assert await names({"criticality": ["HIGH"], "attributes": [{"key": "os",
                                                                 "value": "linux"}]}) == [
        "vm-01", "vm-03"]
    assert await names({"identifier": "AA-BB-CC-DD-EE-01"}) == ["esx-01"]
    assert await names({"identifier": "HOST-SN-1"}) == ["esx-01"]
    assert await names({"operationalState": ["DOWN"]}) == []


async def test_first_is_capped_and_bad_cursors_are_reported(gql, fleet, test_settings):
    body = await gql(LIST, f=None, o=None, first=test_settings.max_page_size + 1, after=None,
                     last=None, before=None)
    assert body["data"] is None
    assert "first must be between 0 and" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "INVALID"
    body = await gql(LIST, f=None, o=None, first=2, after="not-a-cursor", last=None,
                     before=None)
    assert "after is not a valid cursor" in body["errors"][0]["message"]
    body = await gql(LIST, f={"attributes": [{"key": "Bad Key", "value": 1}]}, o=None,
                     first=2, after=None, last=None, before=None)
    assert "attribute key" in body["errors"][0]["message"]


async def test_services_list_filters_by_kind(gql):
    for name, kind in (("Payroll", "BUSINESS"), ("Payroll App", "TECHNICAL")):
        await gql.ok("mutation($i: CreateServiceInput!) { createService(input: $i) "
                      "{ errors { message } } }", i={"name": name, "kind": kind})
    data = await gql.ok('{ services(filter: {kinds: [TECHNICAL]}) { totalCount '
                        'edges { node { name kind } } } }')
    assert data["services"]["totalCount"] == 1
    assert data["services"]["edges"][0]["node"] == {"name": "Payroll App", "kind": "TECHNICAL"}


async def test_total_count_through_fragments(gql, fleet):
    named = await gql.ok("query { configurationItems(first: 1) { ...C } } "
                         "fragment C on ConfigurationItemConnection { totalCount }")
    inline = await gql.ok("{ configurationItems(first: 1) { ... on ConfigurationItemConnection "
                          "{ totalCount } } }")
    merged = await gql.ok("{ configurationItems(first: 1) { edges { cursor } } "
                          "configurationItems(first: 1) { totalCount } }")
    assert named["configurationItems"]["totalCount"] == 9
    assert inline["configurationItems"]["totalCount"] == 9
    assert merged["configurationItems"]["totalCount"] == 9


async def test_users_total_count_through_fragments(gql):
    for name in ("ann", "bob", "cyd"):
        await gql.ok("mutation($i: CreateUserInput!) { createUser(input: $i) "
                     "{ errors { message } } }", i={"userName": name, "displayName": name})
    named = await gql.ok("query { users(first: 1) { ...U edges { node { userName } } } } "
                         "fragment U on UserConnection { totalCount }")
    inline = await gql.ok("{ users(first: 1) { ... on UserConnection { totalCount } } }")
    nested = await gql.ok("query { users(first: 1) { ... on UserConnection { ...U } } } "
                          "fragment U on UserConnection { totalCount }")
    merged = await gql.ok("{ users(first: 1) { edges { node { userName } } } "
                          "users(first: 1) { totalCount } }")
    assert named["users"] == {"totalCount": 3, "edges": [{"node": {"userName": "ann"}}]}
    assert inline["users"]["totalCount"] == 3
    assert nested["users"]["totalCount"] == 3
    assert merged["users"]["totalCount"] == 3


@pytest.mark.parametrize(("made_for", "used_for"), [
    ({"field": "NAME"}, {"field": "UPDATED_AT"}),
    ({"field": "NAME"}, {"field": "CRITICALITY"}),
    ({"field": "CRITICALITY"}, {"field": "CREATED_AT"}),
])
async def test_a_cursor_of_another_order_is_refused_by_name(gql, fleet, made_for, used_for):
    _, conn = await page(gql, first=2, o=made_for)
    cursor = conn["pageInfo"]["endCursor"]
    for direction in ("after", "before"):
        size = "first" if direction == "after" else "last"
        body = await gql(LIST, f=None, o=used_for, **{size: 2, direction: cursor})
        [error] = body["errors"]
        assert error["extensions"]["code"] == "INVALID", error
        [field] = error["extensions"]["fields"]
        assert field["field"] == direction, error
        assert "belongs to a list in another order" in error["message"], error
