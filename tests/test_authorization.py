"""The authorisation matrix: every role against every root field, and depth control.

``EXPECTED`` is written out here on purpose, independently of ``cmdb/identity/access.py``: the
test compares what the API does for each role with what this table says it should do. A root
field without a sample operation here fails ``test_every_root_field_is_in_the_matrix``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from cmdb.api.schema import build_schema
from cmdb.db.driver import Database
from cmdb.demo.loader import load_demo
from cmdb.identity.principal import ROLES
from cmdb.settings import Settings
from tests.conftest import GQL, app_client, wipe

pytestmark = pytest.mark.integration

ALL = frozenset(ROLES)
OPS = frozenset({"admin", "operator"})
OWNERS = OPS | {"service_owner"}
ALARM_WRITERS = OPS | {"monitoring", "discovery_agent"}
CAT_MANAGE = frozenset({"catalogue_admin", "admin"})
CAT_APPROVE = CAT_MANAGE | {"approver"}
CAT_ORDER = CAT_APPROVE | {"requester", "operator", "service_owner"}
CAT_BROWSE = CAT_ORDER | {"executive", "finance", "finance_all"}
FINANCE = frozenset({"finance", "finance_all", "admin"})
FINANCE_MANAGE = frozenset({"finance_all", "admin"})
PEOPLE_READERS = frozenset({"operator", "service_owner", "approver", "catalogue_admin",
                            "finance", "finance_all", "admin"})

NOWHERE = "00000000-0000-4000-8000-000000000000"
WINDOW = {"s": "2026-11-01T00:00:00Z", "e": "2026-11-02T00:00:00Z"}

# field -> (operation, variables, roles expected to be allowed)
SAMPLES: dict[str, tuple[str, dict[str, Any], frozenset[str]]] = {
    "Query.node": ("query($id: ID!) { node(id: $id) { id } }", {"id": "SERVER"}, ALL),
    "Query.configurationItem": ("query($id: ID!) { configurationItem(id: $id) { id } }",
                                {"id": "SERVER"}, ALL),
    "Query.configurationItems": ("{ configurationItems { totalCount } }", {}, ALL),
    "Query.service": ("query($id: ID!) { service(id: $id) { id } }", {"id": "PAYROLL"}, ALL),
    "Query.services": ("{ services { totalCount } }", {}, ALL),
    "Query.ownerGroups": ("{ ownerGroups { id } }", {}, ALL),
    "Query.costCentres": ("{ costCentres { id } }", {}, ALL),
    "Query.locations": ("{ locations { id } }", {}, ALL),
    "Query.serviceModel": ("query($id: ID!) { serviceModel(id: $id) { state } }",
                           {"id": "PAYROLL"}, ALL),
    "Query.availability": ("query($id: ID!, $s: DateTime!, $e: DateTime!) { "
                           "availability(id: $id, start: $s, end: $e) { minutesDown } }",
                           {"id": "PAYROLL", **WINDOW}, ALL),
    "Query.alarms": ("{ alarms { id } }", {}, OWNERS | {"monitoring"}),
    "Query.impact": ("query($ids: [ID!]!) { impact(ids: $ids) { rank } }",
                     {"ids": ["SERVER"]}, OWNERS),
    "Query.whatIf": ("query($ids: [ID!]!, $s: DateTime!, $e: DateTime!) { "
                     "whatIf(ciIds: $ids, start: $s, end: $e) { usersAffected } }",
                     {"ids": ["SERVER"], **WINDOW}, OWNERS),
    "Query.stateHistory": ("query($id: ID!, $s: DateTime!, $e: DateTime!) { "
                           "stateHistory(id: $id, start: $s, end: $e) { state } }",
                           {"id": "PAYROLL", **WINDOW}, OWNERS),
    "Query.statesAsOf": ("query($ids: [ID!]!, $s: DateTime!) { statesAsOf(ids: $ids, at: $s) }",
                         {"ids": ["PAYROLL"], "s": WINDOW["s"]}, OWNERS),
    "Query.plannedChanges": ("{ plannedChanges { id } }", {}, OWNERS),
    "Query.pendingRollUps": ("{ pendingRollUps }", {}, ALL),
    # Mutations name an id that does not exist: allowed callers get NOT_FOUND or validation
    # errors, refused ones FORBIDDEN, and nothing is written either way.
    "Mutation.createConfigurationItem": (
        "mutation { createConfigurationItem(input: {name: \"\", ciClass: SERVER}) "
        "{ errors { code } } }", {}, OPS),
    "Mutation.updateConfigurationItem": (
        "mutation($id: ID!) { updateConfigurationItem(id: $id, input: {}) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.retireConfigurationItem": (
        "mutation($id: ID!) { retireConfigurationItem(id: $id) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.setAsset": (
        "mutation($id: ID!) { setAsset(ciId: $id, input: {purchasePrice: \"1\", "
        "purchaseDate: \"2026-01-01\", depreciationMonths: 12}) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.clearAsset": (
        "mutation($id: ID!) { clearAsset(ciId: $id) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.setOperationalState": (
        "mutation($id: ID!) { setOperationalState(ids: [$id], state: UP) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.relate": (
        "mutation($id: ID!) { relate(input: {sourceId: $id, targetId: $id, type: DEPENDS_ON}) "
        "{ errors { code } } }", {"id": NOWHERE}, OPS),
    "Mutation.unrelate": (
        "mutation($id: ID!) { unrelate(input: {sourceId: $id, targetId: $id, type: DEPENDS_ON}) "
        "{ errors { code } } }", {"id": NOWHERE}, OPS),
    "Mutation.createService": (
        "mutation { createService(input: {name: \"\", kind: BUSINESS}) { errors { code } } }",
        {}, OPS),
    "Mutation.updateService": (
        "mutation($id: ID!) { updateService(id: $id, input: {}) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.retireService": (
        "mutation($id: ID!) { retireService(id: $id) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Mutation.createOwnerGroup": (
        "mutation { createOwnerGroup(input: {name: \"\"}) { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.createCostCentre": (
        "mutation { createCostCentre(input: {name: \"\", code: \"\"}) { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.createLocation": (
        "mutation { createLocation(input: {name: \"\"}) { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.planChange": (
        "mutation($s: DateTime!) { planChange(input: {title: \"\", start: $s, end: $s, "
        "ciIds: []}) { errors { code } } }", {"s": WINDOW["s"]}, OWNERS),
    "Mutation.raiseAlarm": (
        "mutation($id: ID!) { raiseAlarm(input: {source: \"t\", ciId: $id, severity: MAJOR, "
        "dedupKey: \"k\", message: \"m\"}) { errors { code } } }", {"id": NOWHERE},
        ALARM_WRITERS),
    "Mutation.clearAlarm": (
        "mutation($id: ID!) { clearAlarm(input: {id: $id}) { errors { code } } }",
        {"id": NOWHERE}, ALARM_WRITERS),
    "Mutation.acknowledgeAlarm": (
        "mutation($id: ID!) { acknowledgeAlarm(id: $id) { errors { code } } }",
        {"id": NOWHERE}, OPS),
    "Query.catalogueCategories": ("{ catalogueCategories { id } }", {}, CAT_BROWSE),
    "Query.catalogueItems": ("{ catalogueItems { id } }", {}, CAT_BROWSE),
    "Query.catalogueItem": ("query($id: ID!) { catalogueItem(id: $id) { id } }",
                            {"id": NOWHERE}, CAT_BROWSE),
    "Query.order": ("query($id: ID!) { order(id: $id) { id } }", {"id": NOWHERE}, CAT_BROWSE),
    "Query.myOrders": ("{ myOrders { id } }", {}, CAT_BROWSE),
    "Query.mySubscriptions": ("{ mySubscriptions { id } }", {}, CAT_BROWSE),
    "Query.subscription": ("query($id: ID!) { subscription(id: $id) { id } }",
                           {"id": NOWHERE}, CAT_BROWSE),
    "Query.approvalQueue": ("{ approvalQueue { id } }", {}, CAT_APPROVE),
    "Query.orders": ("{ orders { id } }", {}, CAT_MANAGE),
    "Query.subscriptions": ("{ subscriptions { id } }", {}, CAT_MANAGE),
    "Query.fulfilmentTasks": ("{ fulfilmentTasks { id } }", {}, CAT_MANAGE),
    "Mutation.createCatalogueCategory": (
        "mutation { createCatalogueCategory(input: {name: \"\"}) { errors { code } } }", {},
        CAT_MANAGE),
    "Mutation.createCatalogueItem": (
        "mutation { createCatalogueItem(input: {name: \"\", formSchema: {}, roles: [], "
        "recipe: {}}) { errors { code } } }", {}, CAT_MANAGE),
    "Mutation.updateCatalogueItem": (
        "mutation($id: ID!) { updateCatalogueItem(id: $id, input: {}) { errors { code } } }",
        {"id": NOWHERE}, CAT_MANAGE),
    "Mutation.retireCatalogueItem": (
        "mutation($id: ID!) { retireCatalogueItem(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_MANAGE),
    "Mutation.completeFulfilmentTask": (
        "mutation($id: ID!) { completeFulfilmentTask(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_MANAGE),
    "Mutation.failFulfilmentTask": (
        "mutation($id: ID!) { failFulfilmentTask(id: $id, note: \"n\") { errors { code } } }",
        {"id": NOWHERE}, CAT_MANAGE),
    "Mutation.submitOrder": (
        "mutation($id: ID!) { submitOrder(input: {itemId: $id, form: {}, "
        "idempotencyKey: \"k-1\"}) { errors { code } } }", {"id": NOWHERE}, CAT_ORDER),
    "Mutation.cancelOrder": (
        "mutation($id: ID!) { cancelOrder(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_ORDER),
    "Mutation.retryFulfilment": (
        "mutation($id: ID!) { retryFulfilment(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_ORDER),
    "Mutation.decommissionSubscription": (
        "mutation($id: ID!) { decommissionSubscription(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_ORDER),
    "Mutation.approveOrder": (
        "mutation($id: ID!) { approveOrder(id: $id) { errors { code } } }",
        {"id": NOWHERE}, CAT_APPROVE),
    "Mutation.rejectOrder": (
        "mutation($id: ID!) { rejectOrder(id: $id, reason: \"r\") { errors { code } } }",
        {"id": NOWHERE}, CAT_APPROVE),
    # People: reads are open to everyone signed in (narrowed inside); writes are the admin's.
    "Query.me": ("{ me { userName } }", {}, ALL),
    "Query.user": ("query { user(userName: \"nobody-here\") { userName } }", {}, ALL),
    "Query.users": ("{ users { totalCount } }", {}, ALL),
    "Query.roles": ("{ roles { name } }", {}, PEOPLE_READERS),
    "Query.role": ("{ role(name: \"nobody-here\") { name } }", {}, PEOPLE_READERS),
    "Query.peopleImpact": ("query($ids: [ID!]!) { peopleImpact(ids: $ids) { users { rank } } }",
                           {"ids": ["SERVER"]}, OWNERS),
    "Mutation.createUser": (
        "mutation { createUser(input: {userName: \"\", displayName: \"\"}) "
        "{ errors { code } } }", {}, frozenset({"admin"})),
    "Mutation.updateUser": (
        "mutation { updateUser(userName: \"nobody-here\", input: {}) { errors { code } } }",
        {}, frozenset({"admin"})),
    "Mutation.setManager": (
        "mutation { setManager(userName: \"nobody-here\") { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.setUserCostCentre": (
        "mutation { setUserCostCentre(userName: \"nobody-here\") { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.setUserOwnerGroups": (
        "mutation { setUserOwnerGroups(userName: \"nobody-here\", ownerGroupIds: []) "
        "{ errors { code } } }", {}, frozenset({"admin"})),
    "Mutation.setCostCentreOwner": (
        "mutation { setCostCentreOwner(costCentreCode: \"CC-NONE\") { errors { code } } }",
        {}, frozenset({"admin"})),
    "Mutation.createRole": (
        "mutation { createRole(input: {name: \"\"}) { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.addRoleMembership": (
        "mutation { addRoleMembership(userName: \"nobody-here\", roleName: \"none\") "
        "{ errors { code } } }", {}, frozenset({"admin"})),
    "Mutation.endRoleMembership": (
        "mutation { endRoleMembership(userName: \"nobody-here\", roleName: \"none\") "
        "{ errors { code } } }", {}, frozenset({"admin"})),
    "Mutation.entitleRole": (
        "mutation($id: ID!) { entitleRole(roleName: \"none\", targetId: $id) "
        "{ errors { code } } }", {"id": NOWHERE}, frozenset({"admin"})),
    "Mutation.revokeRoleEntitlement": (
        "mutation($id: ID!) { revokeRoleEntitlement(roleName: \"none\", targetId: $id) "
        "{ errors { code } } }", {"id": NOWHERE}, frozenset({"admin"})),
    # Discovery: agents send and merge; the admin registers sources and sweeps.
    "Query.discoverySources": ("{ discoverySources { name } }", {},
                               OPS | {"discovery_agent"}),
    "Mutation.ingestDiscoveryBatch": (
        "mutation { ingestDiscoveryBatch(input: {source: \"no-such-source\"}) "
        "{ errors { code } } }", {}, frozenset({"discovery_agent", "admin"})),
    "Mutation.mergeConfigurationItems": (
        "mutation($id: ID!) { mergeConfigurationItems(survivorId: $id, duplicateIds: []) "
        "{ errors { code } } }", {"id": NOWHERE}, frozenset({"discovery_agent", "admin"})),
    "Mutation.registerDiscoverySource": (
        "mutation { registerDiscoverySource(input: {name: \"\"}) { errors { code } } }", {},
        frozenset({"admin"})),
    "Mutation.sweepStaleConfigurationItems": (
        "mutation { sweepStaleConfigurationItems(staleAfterDays: -1) { errors { code } } }", {},
        frozenset({"admin"})),
    # Chargeback: cost reads are open to everyone and narrowed to their scope; managing is
    # for finance_all and admins; usage comes from metering integrations.
    "Query.meters": ("{ meters { code } }", {}, ALL),
    "Query.rateCards": ("{ rateCards { id } }", {}, ALL),
    "Query.costPools": ("{ costPools { code } }", {}, FINANCE),
    "Query.chargePeriods": ("{ chargePeriods { id } }", {}, FINANCE),
    "Query.costReport": ("{ costReport(period: \"2026-10\") { total } }", {}, ALL),
    "Query.costTrend": ("{ costTrend(from: \"2026-09\", to: \"2026-10\") { total } }", {},
                        ALL),
    "Query.chargeLines": ("{ chargeLines(period: \"2026-10\") { hasNextPage } }", {}, ALL),
    # Services' over/under-recovery is finance's, not anyone's own cost.
    "Query.chargeRecovery": ("{ chargeRecovery(period: \"2026-10\") { cost } }", {},
                             FINANCE),
    "Query.chargeLine": ("query($id: ID!) { chargeLine(id: $id) { id } }", {"id": NOWHERE},
                         ALL),
    "Mutation.defineMeter": (
        "mutation { defineMeter(input: {code: \"\", name: \"\", unit: \"\"}) "
        "{ errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.publishRateCard": (
        "mutation { publishRateCard(input: {meter: \"none\", effectiveFrom: \"2026-01-01\", "
        "currency: \"EUR\", tiers: []}) { errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.defineCostPool": (
        "mutation { defineCostPool(input: {code: \"p\", name: \"p\", driver: EQUAL, "
        "ciIds: []}) { errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.setCostPoolAmount": (
        "mutation { setCostPoolAmount(code: \"none\", period: \"never\", amount: \"1\") "
        "{ errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.setBillingMode": (
        "mutation { setBillingMode(costCentre: \"CC-NONE\", mode: SHOWBACK) "
        "{ errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.calculateChargePeriod": (
        "mutation { calculateChargePeriod(period: \"never\") { errors { code } } }", {},
        FINANCE_MANAGE),
    "Mutation.closeChargePeriod": (
        "mutation { closeChargePeriod(period: \"never\") { errors { code } } }", {},
        FINANCE_MANAGE),
    "Mutation.bookAdjustment": (
        "mutation { bookAdjustment(input: {period: \"never\", costCentre: \"CC-NONE\", "
        "amount: \"1\", reason: \"r\"}) { errors { code } } }", {}, FINANCE_MANAGE),
    "Mutation.recordUsage": ("mutation { recordUsage(records: []) { received } }", {},
                             FINANCE_MANAGE | {"discovery_agent", "monitoring"}),
}
SUBSCRIPTIONS = {"Subscription.stateChanges": (OPS | {"monitoring"}, "stateChanges { itemId }"),
                 "Subscription.orderStatus": (CAT_BROWSE, f'orderStatus(id: "{NOWHERE}") {{ id }}')}


def test_every_root_field_is_in_the_matrix():
    schema = build_schema(Settings())._schema
    fields = {f"{t}.{name}" for t in ("Query", "Mutation", "Subscription")
              for name in schema.get_type(t).fields}  # type: ignore[union-attr]
    assert fields == set(SAMPLES) | set(SUBSCRIPTIONS)


@pytest_asyncio.fixture
async def gql(db: Database, test_settings: Settings) -> AsyncIterator[GQL]:
    """An admin caller, as conftest's, but over the graph as ``world`` left it: not wiped."""
    async with app_client(db, test_settings) as client:
        yield GQL(client)


@dataclass
class _Loaded:
    ids: dict[str, str] | None = None  # None: the graph may not hold the world unchanged


@pytest.fixture(scope="module")
def loaded() -> _Loaded:
    return _Loaded()


@pytest_asyncio.fixture
async def world(request: pytest.FixtureRequest, gql: GQL, db: Database,
                test_settings: Settings, loaded: _Loaded) -> dict[str, str]:
    """The demo enterprise and a service owner; their ids by name. The demo is slow to load,
    so tests share one load while they only read it; after a test marked ``writes_world``
    the next test loads it again."""
    if loaded.ids is None:
        loaded.ids = await _load_world(gql, db, test_settings)
    ids = loaded.ids
    if request.node.get_closest_marker("writes_world") is not None:
        loaded.ids = None
    return ids


async def _load_world(gql: GQL, db: Database, test_settings: Settings) -> dict[str, str]:
    await wipe(db)
    await load_demo(db, test_settings, echo=lambda _: None)
    rows = await db.read(
        "MATCH (n:Item) WHERE n.name IN ['server123', 'Payroll', 'esx-a-01', 'trd-srv-01'] "
        "RETURN n.name AS name, n.id AS id")
    ids = {r["name"]: r["id"] for r in rows}
    # The service owner: a user in Payroll's owner group.
    group = await db.read("MATCH (g:OwnerGroup {name: 'App Support Payroll'}) "
                          "RETURN g.id AS id")
    made = await gql.ok("""mutation($g: ID!) {
        a: createUser(input: {userName: "sam-owner", displayName: "Sam Owner"}) { errors { code } }
        b: setUserOwnerGroups(userName: "sam-owner", ownerGroupIds: [$g]) { errors { code } } }""",
                        g=group[0]["id"])
    assert made == {"a": {"errors": []}, "b": {"errors": []}}
    return {"SERVER": ids["server123"], "PAYROLL": ids["Payroll"], "ESX": ids["esx-a-01"],
            "TRADING_SERVER": ids["trd-srv-01"]}


def _fill(value: Any, world: dict[str, str]) -> Any:
    if isinstance(value, list):
        return [_fill(v, world) for v in value]
    return world.get(value, value) if isinstance(value, str) else value


def _refused(body: dict[str, Any], field: str) -> bool:
    top = [e for e in body.get("errors", []) if e.get("path", [None])[0] == field]
    if any(e.get("extensions", {}).get("code") == "FORBIDDEN" for e in top):
        return True
    payload = (body.get("data") or {}).get(field)
    return isinstance(payload, dict) and any(
        e.get("code") == "FORBIDDEN" for e in payload.get("errors") or [])


def _user(role: str) -> str:
    return "sam-owner" if role == "service_owner" else f"user-{role}"


@pytest.mark.parametrize("role", ROLES)
async def test_matrix(gql, world, db, role):
    caller = gql.as_user(_user(role), role)
    before = (await db.read("MATCH (n) RETURN count(n) AS n"))[0]["n"]
    mismatches = []
    for name, (operation, variables, allowed) in SAMPLES.items():
        field = name.split(".", 1)[1]
        body = await caller(operation, **{k: _fill(v, world) for k, v in variables.items()})
        refused = _refused(body, field)
        if refused == (role in allowed):
            mismatches.append(f"{name}: {'refused' if refused else 'allowed'}; body {body}")
        masked = [e for e in body.get("errors", []) if "Internal error" in e["message"]]
        assert not masked, (name, masked)
    assert mismatches == []
    after = (await db.read("MATCH (n) RETURN count(n) AS n"))[0]["n"]
    assert after == before  # no sample wrote anything


def test_subscriptions_by_role(test_settings):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from cmdb.app import create_app
    from tests.auth import auth_headers

    with TestClient(create_app(test_settings)) as tc:
        for _name, (allowed, selection) in SUBSCRIPTIONS.items():
            for role in ROLES:
                with tc.websocket_connect("/graphql",
                                          subprotocols=["graphql-transport-ws"]) as ws:
                    ws.send_json({"type": "connection_init",
                                  "payload": auth_headers(_user(role), role)})
                    assert ws.receive_json()["type"] == "connection_ack"
                    ws.send_json({"id": "1", "type": "subscribe",
                                  "payload": {"query": f"subscription {{ {selection} }}"}})
                    if role in allowed:
                        ws.send_json({"id": "1", "type": "complete"})
                        continue  # subscribed: the stream waits for changes
                    message = ws.receive_json()
                    # Refused at the root: an "error" message; refused by the resolver: a
                    # "next" carrying the error. Either way nothing is streamed.
                    errors = (message["payload"] if message["type"] == "error"
                              else message["payload"]["errors"])
                    assert message["type"] in {"error", "next"}, (role, message)
                    assert errors[0]["extensions"]["code"] == "FORBIDDEN", (role, message)
                    with contextlib.suppress(WebSocketDisconnect):
                        ws.close()


# --- depth control ----------------------------------------------------------------------------

NESTED = """query($id: ID!) { service(id: $id) { name
  relationships(direction: OUTGOING, depth: 5) { path item { id name __typename } } } }"""


async def test_an_executive_cannot_reach_a_host_by_any_path(gql, world):
    ceo = gql.as_user("erin", "executive")
    for host in (world["ESX"], world["SERVER"]):
        assert (await ceo.ok("query($id: ID!) { node(id: $id) { id } }", id=host)) == {
            "node": None}
        assert (await ceo.ok("query($id: ID!) { configurationItem(id: $id) { id } }",
                             id=host)) == {"configurationItem": None}
    # Hidden and non-existent ids answer alike.
    assert await ceo("query($id: ID!) { node(id: $id) { id } }", id=world["ESX"]) == \
        await ceo("query($id: ID!) { node(id: $id) { id } }", id=NOWHERE)
    listed = await ceo.ok("""{ configurationItems(filter: {identifier: "MXQ3280A01"}) {
        totalCount edges { node { id } } } all: configurationItems { totalCount } }""")
    assert listed == {"configurationItems": {"totalCount": 0, "edges": []},
                      "all": {"totalCount": 0}}
    nested = (await ceo.ok(NESTED, id=world["PAYROLL"]))["service"]["relationships"]
    assert nested, "the executive still sees Payroll's technical service"
    assert {r["item"]["__typename"] for r in nested} == {"Service"}
    hidden = {world["ESX"], world["SERVER"]}
    assert not any(set(r["path"]) & hidden for r in nested)
    model = (await ceo.ok("""query($id: ID!) { serviceModel(id: $id) {
        entries { item { __typename } path } rootCauses { item { id } } } }""",
                          id=world["PAYROLL"]))["serviceModel"]
    assert {e["item"]["__typename"] for e in model["entries"]} == {"Service"}
    assert not any(set(e["path"]) & hidden for e in model["entries"])
    services = await ceo.ok("{ services { totalCount } }")
    everything = await gql.ok("{ services { totalCount } }")
    assert services == everything  # services in full


async def test_a_service_owner_sees_their_services_in_depth_and_no_other_infrastructure(
        gql, world):
    sam = gql.as_user("sam-owner", "service_owner")
    assert (await sam.ok("query($id: ID!) { node(id: $id) { id } }", id=world["SERVER"])) == {
        "node": {"id": world["SERVER"]}}
    assert (await sam.ok("query($id: ID!) { node(id: $id) { id } }",
                         id=world["TRADING_SERVER"])) == {"node": None}
    mine = await sam.ok("{ configurationItems(first: 500) { totalCount edges { node { id } } } }")
    ids = {e["node"]["id"] for e in mine["configurationItems"]["edges"]}
    assert world["SERVER"] in ids and world["TRADING_SERVER"] not in ids
    assert mine["configurationItems"]["totalCount"] == len(ids)
    model = await gql.ok("""query($id: ID!) { serviceModel(id: $id) {
        entries { item { id __typename } } } }""", id=world["PAYROLL"])
    in_model = {e["item"]["id"] for e in model["serviceModel"]["entries"]
                if e["item"]["__typename"] == "ConfigurationItem"}
    # Everything the owned services rest on; the scope also follows membership links (a host's
    # cluster) that the roll-up model walks the other way.
    assert in_model <= ids
    trading = await gql.ok("""query($id: ID!) { node(id: $id) { id } }""",
                           id=world["TRADING_SERVER"])
    assert trading["node"] is not None  # it exists; Sam just cannot see it


async def test_a_discovery_agent_reads_nothing(gql, world):
    agent = gql.as_user("scanner", "discovery_agent")
    data = await agent.ok("""query($id: ID!) { node(id: $id) { id }
        services { totalCount } configurationItems { totalCount } }""", id=world["PAYROLL"])
    assert data == {"node": None, "services": {"totalCount": 0},
                    "configurationItems": {"totalCount": 0}}


@pytest.mark.writes_world
async def test_a_service_owner_sees_alarms_and_states_only_inside_their_scope(gql, world):
    raise_ = """mutation($id: ID!, $k: String!) { raiseAlarm(input: {source: "zabbix", ciId: $id,
        severity: MAJOR, dedupKey: $k, message: "disk"}) { errors { code } } }"""
    for key, ci in (("mine", world["SERVER"]), ("theirs", world["TRADING_SERVER"])):
        assert (await gql.ok(raise_, id=ci, k=key))["raiseAlarm"]["errors"] == []
    sam = gql.as_user("sam-owner", "service_owner")
    alarms = (await sam.ok("{ alarms { ciId dedupKey } }"))["alarms"]
    assert [a["dedupKey"] for a in alarms] == ["mine"]
    assert len((await gql.ok("{ alarms { id } }"))["alarms"]) == 2
    states = await sam.ok("query($ids: [ID!]!, $at: DateTime!) { statesAsOf(ids: $ids, at: $at) }",
                          ids=[world["SERVER"], world["TRADING_SERVER"]],
                          at="2100-01-01T00:00:00Z")
    assert states["statesAsOf"][1] is None and states["statesAsOf"][0] is not None


async def test_a_requester_sees_their_own_desktop_and_no_one_elses(gql, world):
    ci_list = "{ configurationItems(first: 500) { totalCount edges { node { name ciClass } } } }"
    john = (await gql.as_user("johnW", "requester").ok(ci_list))["configurationItems"]
    names = {e["node"]["name"] for e in john["edges"]}
    assert "virtdesk_123" in names
    assert {e["node"]["ciClass"] for e in john["edges"]} == {"VIRTUAL_DESKTOP"}
    assert john["totalCount"] == len(names)
    mary = (await gql.as_user("maryK", "requester").ok(ci_list))["configurationItems"]
    assert "virtdesk_123" not in {e["node"]["name"] for e in mary["edges"]}


@pytest.mark.writes_world
async def test_a_user_watches_everything_their_environment_rests_on(gql, world, db,
                                                                     test_settings):
    import asyncio

    from cmdb.api.schema import build_schema
    from cmdb.identity.principal import Principal
    from cmdb.schema.context import Context
    from cmdb.services import Services

    schema = build_schema(test_settings)
    sub = "subscription($u: String) { stateChanges(userName: $u) { itemId state } }"

    def ctx(user: str, *roles: str) -> Context:
        return Context(Services(db, test_settings), "t", Principal(user, frozenset(roles)))

    # Someone else's environment answers like a user that does not exist.
    other = await schema.subscribe(sub, variable_values={"u": "maryS"},
                                   context_value=ctx("johnW", "requester"))
    first = await asyncio.wait_for(other.__anext__(), timeout=10)
    assert first.errors is not None and first.errors[0].extensions is not None
    assert first.errors[0].extensions["code"] == "NOT_FOUND"
    stream = await schema.subscribe(sub, variable_values={"u": "johnW"},
                                    context_value=ctx("johnW", "requester"))
    nxt = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.3)
    desk = await db.read("MATCH (d:CI {name: 'virtdesk_123'}) RETURN d.id AS id")
    await gql.ok("mutation($ids: [ID!]!) { setOperationalState(ids: $ids, state: DOWN) "
                 "{ errors { code } } }", ids=[desk[0]["id"]])
    got = await asyncio.wait_for(nxt, timeout=10)
    assert got.errors is None
    assert got.data is not None
    assert got.data["stateChanges"] == {"itemId": desk[0]["id"], "state": "DOWN"}
    await stream.aclose()
