"""People over GraphQL: roles -> users -> the user view (desktops, entitlements with their
reason, requests, environment health, history), administration, and who may read what."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cmdb.demo import people as data
from cmdb.demo.loader import load_demo

pytestmark = pytest.mark.integration

USER_VIEW = """
query($u: String!) { user(userName: $u) {
  userName displayName email active
  manager { userName displayName }
  costCentre { code }
  managedCostCentres { code }
  directReports { userName }
  ownerGroups { name }
  roles { roleName since until current role { name } }
  entitlements { name kind grantedBy softwarePackage { name ciClass } }
  currentDesktops { desktop { name } host { name } pool { name } since sessionId }
  serviceRequests { id status properties }
  environmentHealth { state components { kind state reason item { name } } }
  sessions { desktopName hostName poolName start end logonSeconds active }
} }"""

ROLES_TREE = """{ roles { name entitlements { name }
  members { user { userName currentDesktops { desktop { name } } } } } }"""


@pytest.fixture
async def demo(clean_db, test_settings, gql):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    return gql


async def view(gql, user: str) -> dict[str, Any]:
    found: dict[str, Any] = (await gql.ok(USER_VIEW, u=user))["user"]
    return found


async def test_roles_to_users_to_johns_view(demo):
    tree = await demo.ok(ROLES_TREE)
    roles = {r["name"]: r for r in tree["roles"]}
    # Business roles, plus the roles the demo catalogue entitles (e.g. requester).
    assert {r.name for r in data.ROLES} <= set(roles)
    traders = {m["user"]["userName"] for m in roles["Trader"]["members"]}
    assert traders == {"maryS", "johnW", "alexT", "samR"}
    assert [e["name"] for e in roles["Trader"]["entitlements"]] == ["Bloomberg Terminal"]

    john = await view(demo, "johnw")  # user names are matched ignoring case
    assert (john["userName"], john["displayName"]) == ("johnW", "John Walker")
    assert john["manager"] == {"userName": "maryS", "displayName": "Mary Shaw"}
    assert john["costCentre"] == {"code": "CC-1200"}
    assert {r["roleName"] for r in john["roles"]} == {"Employee", "Trader"}
    assert all(r["current"] and r["until"] is None for r in john["roles"])
    entitled = {e["name"]: e for e in john["entitlements"]}
    assert entitled["Bloomberg Terminal"]["grantedBy"] == ["Trader"]
    assert entitled["Microsoft 365 Apps"]["grantedBy"] == ["Employee"]
    assert entitled["Bloomberg Terminal"]["softwarePackage"] == {
        "name": "Bloomberg Terminal", "ciClass": "SOFTWARE_PACKAGE"}
    assert "PeopleSoft HCM Client" not in entitled
    (desk,) = john["currentDesktops"]
    assert (desk["desktop"], desk["host"], desk["pool"]) == (
        {"name": "virtdesk_123"}, {"name": "vdi-esx-01"}, {"name": "pool-standard"})
    assert desk["sessionId"] is not None and desk["since"] is not None
    assert john["serviceRequests"] == []
    health = john["environmentHealth"]
    assert health["state"] == "UP"
    parts = {(c["kind"], c["item"]["name"]) for c in health["components"]}
    assert parts == {("DESKTOP", "virtdesk_123"), ("HOST", "vdi-esx-01"),
                     ("POOL", "pool-standard"), ("SERVICE", "Trading"), ("SERVICE", "Email"),
                     ("SERVICE", "Collaboration")}
    # the last 30 days: today's open session and the four days before, each on a desktop
    # that is gone
    sessions = john["sessions"]
    assert [s["desktopName"] for s in sessions] == [
        "virtdesk_123", "virtdesk_731", "virtdesk_744", "virtdesk_759", "virtdesk_768"]
    assert sessions[0]["active"] and sessions[0]["end"] is None
    assert all(s["logonSeconds"] and s["end"] for s in sessions[1:])

    mary = await view(demo, "maryS")
    assert mary["managedCostCentres"] == [{"code": "CC-1200"}]
    assert {u["userName"] for u in mary["directReports"]} == {"johnW", "alexT", "samR"}
    assert {e["name"]: e["grantedBy"] for e in mary["entitlements"]}["Bloomberg Terminal"] == [
        "Head of Trading", "Trader"]
    tom = await view(demo, "tomO")
    assert {g["name"] for g in tom["ownerGroups"]} == {"Unix Ops", "Windows Ops"}


async def test_environment_health_follows_host_and_needed_services(demo):
    ids = await demo.ok('{ h: configurationItems(filter: {nameContains: "vdi-esx-01"}) '
                        '{ edges { node { id } } } '
                        't: configurationItems(filter: {nameContains: "trading-db"}) '
                        '{ edges { node { id name } } } }')
    host = ids["h"]["edges"][0]["node"]["id"]
    down = ('mutation($ids: [ID!]!) { setOperationalState(ids: $ids, state: DOWN, '
            'cause: "test") { changes { itemId } } }')
    await demo.ok(down, ids=[host])
    health = (await view(demo, "johnW"))["environmentHealth"]
    assert health["state"] == "DOWN"
    states = {c["item"]["name"]: c["state"] for c in health["components"]}
    assert states["vdi-esx-01"] == "DOWN" and states["virtdesk_123"] == "DOWN"
    # the payroll clerk's desktop runs on the same host
    assert (await view(demo, "maryK"))["environmentHealth"]["state"] == "DOWN"
    # priyaS's assigned desktop runs on the other host, but its pool rests on the VDI
    # cluster, which lost one of its two hosts
    priya = (await view(demo, "priyaS"))["environmentHealth"]
    states = {(c["kind"], c["item"]["name"]): c["state"] for c in priya["components"]}
    assert states[("HOST", "vdi-esx-02")] == "UP"
    assert states[("POOL", "pool-standard")] == "DEGRADED"
    assert priya["state"] == "DEGRADED"
    # helenC has no desktop: her environment is the services her software needs
    helen = (await view(demo, "helenC"))["environmentHealth"]
    assert {c["kind"] for c in helen["components"]} == {"SERVICE"}

    # Trading's databases both down: Trading is down; a trader's environment says why
    dbs = [e["node"]["id"] for e in ids["t"]["edges"]]
    await demo.ok(down, ids=dbs)
    sam = (await view(demo, "samR"))["environmentHealth"]
    trading = [c for c in sam["components"] if c["item"]["name"] == "Trading"]
    assert trading and trading[0]["state"] == "DOWN"
    assert trading[0]["reason"] == "needed by Bloomberg Terminal"
    assert sam["state"] == "DOWN"


async def test_service_requests_are_the_users_orders(demo, clean_db):
    await clean_db.write("""
        MATCH (u:User {userName: 'johnW'})
        CREATE (:Order {id: 'o-1', status: 'FULFILLED', createdAt: datetime($a)})
               -[:REQUESTED_BY]->(u),
               (:Order {id: 'o-2', status: 'SUBMITTED', createdAt: datetime($b),
                        itemName: 'Standard VDI desktop'})-[:REQUESTED_BY]->(u)""",
                         {"a": "2026-01-05T10:00:00Z", "b": "2026-02-01T09:00:00Z"})
    orders = (await view(demo, "johnW"))["serviceRequests"]
    assert [(o["id"], o["status"]) for o in orders] == [("o-2", "SUBMITTED"),
                                                        ("o-1", "FULFILLED")]
    assert orders[0]["properties"]["itemName"] == "Standard VDI desktop"
    assert orders[0]["properties"]["createdAt"].startswith("2026-02-01T09:00")
    assert (await view(demo, "maryS"))["serviceRequests"] == []


USERS_PAGE = """query($f: UserFilter, $first: Int, $after: String) {
  users(filter: $f, first: $first, after: $after) { totalCount
    pageInfo { hasNextPage endCursor } edges { node { userName } } } }"""


async def test_users_list_pages_and_filters(demo):
    seen: list[str] = []
    after = None
    while True:
        page = (await demo.ok(USERS_PAGE, first=4, after=after))["users"]
        assert page["totalCount"] == len(data.USERS)
        seen += [e["node"]["userName"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted((u.user_name for u in data.USERS), key=str.lower)
    back = await demo.ok("""query($b: String) { users(last: 3, before: $b) {
        pageInfo { hasPreviousPage } edges { node { userName } } } }""", b=after)
    users = back["users"]
    assert [e["node"]["userName"] for e in users["edges"]] == seen[4:7]
    assert users["pageInfo"]["hasPreviousPage"] is True

    async def names(**f: Any) -> list[str]:
        page = (await demo.ok(USERS_PAGE, f=f))["users"]
        assert page["totalCount"] == len(page["edges"])
        return [e["node"]["userName"] for e in page["edges"]]

    assert await names(roleName="trader") == ["alexT", "johnW", "maryS", "samR"]
    assert await names(costCentreCode="CC-1400") == ["maryK", "paulH"]
    assert await names(managerUserName="maryS") == ["alexT", "johnW", "samR"]
    assert await names(nameContains="mary") == ["maryK", "maryS"]
    assert await names(nameContains="walker", active=True) == ["johnW"]
    bad = await demo(USERS_PAGE, after="not-a-cursor")
    assert bad["errors"][0]["extensions"]["code"] == "INVALID"


ERRORS = "errors { field message code }"


async def test_administration_with_field_errors(gql):
    async def run(query: str, **v: Any) -> dict[str, Any]:
        found: dict[str, Any] = next(iter((await gql.ok(query, **v)).values()))
        return found

    create = ("mutation($i: CreateUserInput!) { createUser(input: $i) { user { userName } "
              + ERRORS + " } }")
    assert (await run(create, i={"userName": "ann", "displayName": "Ann"}))["errors"] == []
    assert (await run(create, i={"userName": "bob", "displayName": "Bob",
                                 "email": "bob@corp.example"}))["errors"] == []
    taken = await run(create, i={"userName": "ANN", "displayName": "Other Ann"})
    assert taken["errors"][0]["field"] == "input.userName"
    assert taken["errors"][0]["code"] == "CONFLICT"
    invalid = await run(create, i={"userName": "a b", "displayName": " ", "email": "x"})
    assert {e["field"] for e in invalid["errors"]} == {
        "input.userName", "input.displayName", "input.email"}

    update = ("mutation($u: String!, $i: UpdateUserInput!) { updateUser(userName: $u, "
              "input: $i) { user { userName displayName active } " + ERRORS + " } }")
    changed = await run(update, u="ann", i={"displayName": "Ann Lee", "active": False})
    assert changed["user"] == {"userName": "ann", "displayName": "Ann Lee", "active": False}
    assert (await run(update, u="nobody", i={"active": True}))["errors"][0]["code"] == \
        "NOT_FOUND"

    manager = ("mutation($u: String!, $m: String) { setManager(userName: $u, "
               "managerUserName: $m) { user { manager { userName } } " + ERRORS + " } }")
    assert (await run(manager, u="ann", m="bob"))["user"]["manager"] == {"userName": "bob"}
    cycle = await run(manager, u="bob", m="ann")
    assert cycle["errors"][0]["code"] == "CONFLICT" and "cycle" in cycle["errors"][0]["message"]
    assert (await run(manager, u="ann", m=None))["user"]["manager"] is None

    cc = ("mutation($u: String!, $c: String) { setUserCostCentre(userName: $u, "
          "costCentreCode: $c) { user { costCentre { code } } " + ERRORS + " } }")
    missing = await run(cc, u="ann", c="CC-9999")
    assert (missing["errors"][0]["field"], missing["errors"][0]["code"]) == (
        "costCentreCode", "NOT_FOUND")

    role = ("mutation($i: CreateRoleInput!) { createRole(input: $i) { role { name } "
            + ERRORS + " } }")
    assert (await run(role, i={"name": "Quant", "description": "Models"}))["errors"] == []
    assert (await run(role, i={"name": "quant"}))["errors"][0]["code"] == "CONFLICT"

    pkg = await gql.ok("""mutation { createConfigurationItem(input: {name: "MATLAB",
        ciClass: SOFTWARE_PACKAGE}) { configurationItem { id } } }""")
    pkg_id = pkg["createConfigurationItem"]["configurationItem"]["id"]
    vm = await gql.ok("""mutation { createConfigurationItem(input: {name: "vm-1",
        ciClass: VIRTUAL_MACHINE}) { configurationItem { id } } }""")
    vm_id = vm["createConfigurationItem"]["configurationItem"]["id"]
    entitle = ("mutation($r: String!, $t: ID!) { entitleRole(roleName: $r, targetId: $t) "
               "{ role { name entitlements { name } } " + ERRORS + " } }")
    assert (await run(entitle, r="Quant", t=pkg_id))["role"]["entitlements"] == [
        {"name": "MATLAB"}]
    wrong = await run(entitle, r="Quant", t=vm_id)
    assert (wrong["errors"][0]["field"], wrong["errors"][0]["code"]) == ("targetId",
                                                                         "NOT_FOUND")

    add = ("mutation($u: String!, $r: String!, $s: DateTime) { addRoleMembership(userName: $u, "
           "roleName: $r, since: $s) { membership { since until current } " + ERRORS + " } }")
    end = ("mutation($u: String!, $r: String!, $t: DateTime) { endRoleMembership(userName: $u, "
           "roleName: $r, until: $t) { membership { since until current } " + ERRORS + " } }")
    since = datetime(2025, 3, 1, tzinfo=UTC)
    joined = await run(add, u="bob", r="Quant", s=since.isoformat())
    assert joined["membership"]["current"] is True
    assert (await run(add, u="bob", r="Quant"))["errors"][0]["code"] == "CONFLICT"
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    assert (await run(add, u="ann", r="Quant", s=future))["errors"][0]["field"] == "since"
    ent = "query { user(userName: \"bob\") { entitlements { name grantedBy } } }"
    assert (await gql.ok(ent))["user"]["entitlements"] == [
        {"name": "MATLAB", "grantedBy": ["Quant"]}]
    too_early = await run(end, u="bob", r="Quant", t="2025-01-01T00:00:00Z")
    assert too_early["errors"][0]["field"] == "until"
    left = await run(end, u="bob", r="Quant", t="2025-09-30T17:00:00Z")
    assert left["membership"]["current"] is False
    assert (await gql.ok(ent))["user"]["entitlements"] == []
    history = await gql.ok('{ user(userName: "bob") { roles(includeEnded: true) '
                           '{ roleName since until } current: roles { roleName } } }')
    assert history["user"]["current"] == []
    (ended,) = history["user"]["roles"]
    assert (ended["roleName"], ended["until"][:10]) == ("Quant", "2025-09-30")
    rejoin_overlap = await run(add, u="bob", r="Quant", s="2025-06-01T00:00:00Z")
    assert rejoin_overlap["errors"][0]["code"] == "CONFLICT"
    assert (await run(add, u="bob", r="Quant"))["errors"] == []
    assert (await run(end, u="ann", r="Quant"))["errors"][0]["code"] == "NOT_FOUND"


async def test_who_may_read_and_write(demo):
    john = demo.as_user("johnW", "requester")
    # a requester reads their own view...
    me = await john.ok('{ me { userName sessions { desktopName } currentDesktops '
                       '{ desktop { name } } manager { userName } } }')
    assert me["me"]["userName"] == "johnW" and me["me"]["sessions"]
    assert me["me"]["manager"] == {"userName": "maryS"}
    own = await john.ok('query { user(userName: "johnW") { entitlements { name } } }')
    assert own["user"]["entitlements"]
    # ...but nobody else's, whether they exist or not, in lists and counts alike
    for name in ("maryS", "nobody"):
        assert (await john.ok('query($u: String!) { user(userName: $u) { userName } }',
                              u=name))["user"] is None
    page = (await john.ok(USERS_PAGE))["users"]
    assert (page["totalCount"], [e["node"]["userName"] for e in page["edges"]]) == (
        1, ["johnW"])
    nested = await john('{ me { manager { userName sessions { desktopName } } } }')
    assert nested["data"]["me"]["manager"] == {"userName": "maryS", "sessions": None}
    assert nested["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    roles = await john("{ roles { name } }")
    assert roles["data"] is None and roles["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # an operator reads everyone but changes nobody
    olga = demo.as_user("olga", "operator")
    assert (await olga.ok('{ user(userName: "maryS") { sessions { desktopName } } }'))[
        "user"]["sessions"] == []
    assert (await olga.ok(USERS_PAGE))["users"]["totalCount"] == len(data.USERS)
    denied = await olga('mutation { createUser(input: {userName: "x", displayName: "X"}) '
                        '{ user { id } errors { code } } }')
    assert denied["data"] is None  # refused at the root: identity writes are the admin's
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    no_role = await demo.as_user("nobody")('{ user(userName: "johnW") { userName } }')
    assert no_role["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_roles_recorded_with_name_only_are_read_and_administered(gql, clean_db):
    """Other areas may write roles as {name, description} and memberships as {since}."""
    await gql.ok('mutation { createUser(input: {userName: "ann", displayName: "Ann"}) '
                 '{ errors { message } } }')
    await clean_db.write("""
        MATCH (u:User {userName: 'ann'})
        CREATE (u)-[:HAS_ROLE {since: datetime('2025-01-01T00:00:00Z')}]->
               (:Role {name: 'Approver', description: 'Approves orders'})""")
    found = await gql.ok('{ role(name: "approver") { id name members { user { userName } } } '
                         'user(userName: "ann") { roles { roleName role { name } } } }')
    assert found["role"]["name"] == "Approver" and found["role"]["id"]
    assert found["role"]["members"] == [{"user": {"userName": "ann"}}]
    assert found["user"]["roles"] == [{"roleName": "Approver", "role": {"name": "Approver"}}]
    taken = await gql.ok('mutation { createRole(input: {name: "APPROVER"}) '
                         '{ errors { code } } }')
    assert taken["createRole"]["errors"] == [{"code": "CONFLICT"}]
    ended = await gql.ok('mutation { endRoleMembership(userName: "ann", roleName: "Approver") '
                         '{ membership { current } errors { message } } }')
    assert ended["endRoleMembership"] == {"membership": {"current": False}, "errors": []}


PEOPLE_IMPACT = """query($ids: [ID!]!, $down: Boolean) {
  peopleImpact(ids: $ids, assumeDown: $down) {
    users { rank state roles reasons paths user { userName } }
    roles { rank role state userNames } } }"""


async def ci_id(gql, name: str) -> str:
    found = await gql.ok('query($n: String!) { configurationItems(filter: {nameContains: $n}) '
                         '{ edges { node { id name } } } }', n=name)
    (node,) = [e["node"] for e in found["configurationItems"]["edges"] if e["node"]["name"] == name]
    return str(node["id"])


async def test_people_impact_ranks_users_with_their_roles_and_paths(demo):
    host = await ci_id(demo, "vdi-esx-01")
    # what-if: nothing is stored
    found = (await demo.ok(PEOPLE_IMPACT, ids=[host], down=True))["peopleImpact"]
    users = {u["user"]["userName"]: u for u in found["users"]}
    # on desktops on that host now: johnW (open session) and maryK, alexT (assigned, logged on)
    assert {"johnW", "maryK", "alexT"} <= set(users)
    john = users["johnW"]
    assert john["state"] == "DOWN" and john["roles"] == ["Employee", "Trader"]
    assert any(r.startswith("desktop virtdesk_123 down via vdi-esx-01") for r in john["reasons"])
    assert ["vdi-esx-01", "virtdesk_123"] in john["paths"]
    # the others' pools lost half their hosts: degraded, ranked after the down ones
    states = [u["state"] for u in found["users"]]
    assert states == sorted(states, key=["DOWN", "DEGRADED", "UNKNOWN", "UP"].index)
    assert [u["rank"] for u in found["users"]] == list(range(1, len(found["users"]) + 1))
    roles = {r["role"]: r for r in found["roles"]}
    assert {"johnW", "alexT"} <= set(roles["Trader"]["userNames"])
    assert roles["Payroll Clerk"]["userNames"] == ["maryK"]
    live = (await demo.ok(PEOPLE_IMPACT, ids=[host], down=False))["peopleImpact"]
    assert live == {"users": [], "roles": []}  # the host is up: nobody is affected

    # Trading down reaches every trader through the Bloomberg Terminal's needs
    dbs = [await ci_id(demo, n) for n in ("trading-db", "trading-db-standby")]
    found = (await demo.ok(PEOPLE_IMPACT, ids=dbs, down=True))["peopleImpact"]
    traders = {u["user"]["userName"]: u for u in found["users"]}
    assert set(traders) == {"maryS", "johnW", "alexT", "samR"}
    assert all(u["state"] == "DOWN" for u in traders.values())
    assert any("Bloomberg Terminal (role Trader) needs Trading" in r
               for r in traders["johnW"]["reasons"])
    assert found["roles"][0]["role"] in {"Employee", "Trader"}
    assert set(found["roles"][0]["userNames"]) == set(traders)

    denied = await demo.as_user("johnW", "requester")(PEOPLE_IMPACT, ids=dbs, down=True)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"

