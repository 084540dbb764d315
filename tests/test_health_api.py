"""Health roll-up, impact, service models, history and availability over GraphQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cmdb.bulk import BulkService, CIRow
from cmdb.core import clock
from cmdb.core.models import OperationalState
from cmdb.demo.loader import load_demo
from cmdb.items.models import CIClass
from tests.auth import auth_headers
from tests.test_ci_api import create_ci
from tests.test_relations_api import make_service, relate

pytestmark = pytest.mark.integration

SET = """mutation($ids: [ID!]!, $s: OperationalState!) {
  setOperationalState(ids: $ids, state: $s, cause: "test") {
    changes { itemId state previous } errors { code message } } }"""

IMPACT = """query($ids: [ID!]!, $at: DateTime, $assume: Boolean!) {
  impact(ids: $ids, at: $at, assumeDown: $assume) {
    rank state pathNames inCriticalPeriod minutesToSlaBreach reasons
    item { __typename name healthState } } }"""

PAYDAY = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


@pytest.fixture
def pinned():
    yield clock.pin
    clock.pin(None)


async def ids_by_name(gql, *names):
    out = {}
    for name in names:
        data = await gql.ok('query($n: String!) { configurationItems(filter: {nameContains: $n}) '
                            '{ edges { node { id name } } } services(filter: {nameContains: $n})'
                            ' { edges { node { id name } } } }', n=name)
        nodes = [e["node"] for k in ("configurationItems", "services")
                 for e in data[k]["edges"] if e["node"]["name"] == name]
        out[name] = nodes[0]["id"]
    return out


async def health(gql, item_id):
    data = await gql.ok("query($id: ID!) { node(id: $id) { healthState } }", id=item_id)
    return data["node"]["healthState"]


@pytest.fixture
async def demo(gql, clean_db, test_settings):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    return await ids_by_name(gql, "server123", "payroll-db", "Payroll", "Trading",
                             "esx-a-01", "esx-a-02", "esx-cluster-a")


async def test_demo_starts_healthy(gql, demo):
    data = await gql.ok("{ services { edges { node { name healthState } } } }")
    assert {e["node"]["healthState"] for e in data["services"]["edges"]} == {"UP"}


async def load_demo_at(gql, db, test_settings, pin, when):
    """The demo, loaded with the clock at ``when`` (its items created, and their states first
    recorded, then)."""
    pin(when)
    await load_demo(db, test_settings, echo=lambda _: None)
    pin(None)
    return await ids_by_name(gql, "server123", "payroll-db", "Payroll", "Trading")


async def test_server123_down_takes_payroll_down_and_ranks_it_first_on_payday(
    gql, clean_db, test_settings, pinned
):
    # Loaded before November: the whole month counts for the SLA minutes left.
    demo = await load_demo_at(gql, clean_db, test_settings, pinned,
                              datetime(2026, 10, 1, tzinfo=UTC))
    pinned(PAYDAY - timedelta(minutes=30))
    result = await gql.ok(SET, ids=[demo["server123"]], s="DOWN")
    pinned(None)
    changed = {c["itemId"]: c["state"] for c in result["setOperationalState"]["changes"]}
    assert changed[demo["Payroll"]] == "DOWN"
    assert await health(gql, demo["Payroll"]) == "DOWN"
    assert await health(gql, demo["Trading"]) == "UP"

    data = await gql.ok(IMPACT, ids=[demo["server123"]], at=PAYDAY.isoformat(), assume=False)
    first = data["impact"][0]
    assert first["item"]["name"] == "Payroll" and first["rank"] == 1
    assert first["inCriticalPeriod"] is True
    assert first["pathNames"] == ["server123", "payroll-db", "payroll-app",
                                  "Payroll Application Service", "Payroll"]
    assert any("business-critical" in r for r in first["reasons"])
    # 99.9 % of November less five 2-hour Sunday windows allows 42.6 min; 30 are used
    assert first["minutesToSlaBreach"] == pytest.approx(12.6)
    names = [e["item"]["name"] for e in data["impact"]]
    assert "Payroll Application Service" in names and "Trading" not in names

    not_payday = await gql.ok(IMPACT, ids=[demo["server123"]],
                              at=(PAYDAY + timedelta(days=10)).isoformat(), assume=False)
    assert not_payday["impact"][0]["inCriticalPeriod"] is False

    recovered = await gql.ok(SET, ids=[demo["server123"]], s="UP")
    assert recovered["setOperationalState"]["errors"] == []
    assert await health(gql, demo["Payroll"]) == "UP"


async def test_sla_minutes_left_count_from_when_the_service_existed(
    gql, clean_db, test_settings, pinned
):
    # Loaded Mon 16 Nov 00:00: 15 days of November count, less the Sunday 02:00-04:00
    # windows of the 22nd and 29th: 21,600 - 240 = 21,360 min; 0.1 % of that is 21.36 min.
    # server123 goes down at 09:50 on pay day; at 10:00 10 min are used: 11.36 left.
    demo = await load_demo_at(gql, clean_db, test_settings, pinned,
                              datetime(2026, 11, 16, tzinfo=UTC))
    pinned(PAYDAY - timedelta(minutes=10))
    await gql.ok(SET, ids=[demo["server123"]], s="DOWN")
    pinned(None)
    data = await gql.ok(IMPACT, ids=[demo["server123"]], at=PAYDAY.isoformat(), assume=False)
    payroll = next(e for e in data["impact"] if e["item"]["name"] == "Payroll")
    assert payroll["minutesToSlaBreach"] == pytest.approx(11.4)
    assert any("11 min of SLA downtime left" in r for r in payroll["reasons"])
    # Before the demo existed there is no figure: asked for 1 November, 10:00.
    early = await gql.ok(IMPACT, ids=[demo["server123"]], assume=True,
                         at=datetime(2026, 11, 1, 10, tzinfo=UTC).isoformat())
    payroll = next(e for e in early["impact"] if e["item"]["name"] == "Payroll")
    assert payroll["minutesToSlaBreach"] is None
    assert not any("SLA downtime" in r for r in payroll["reasons"])


async def test_a_service_inside_its_window_still_passes_its_state_on(gql, demo):
    # Payroll Application Service and Payroll are inside Sun 02:00-04:00 at 02:30: a failure
    # under them still reaches them and Payroll (the window is no shield), and the impact
    # says the time is inside the window.
    sunday = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)
    data = await gql.ok(IMPACT, ids=[demo["server123"]], at=sunday.isoformat(), assume=True)
    payroll = next(e for e in data["impact"] if e["item"]["name"] == "Payroll")
    assert payroll["state"] == "DOWN"
    assert any("inside its SLA maintenance window now" in r for r in payroll["reasons"])
    monday = await gql.ok(IMPACT, ids=[demo["server123"]], assume=True,
                          at=(sunday + timedelta(days=1)).isoformat())
    payroll = next(e for e in monday["impact"] if e["item"]["name"] == "Payroll")
    assert not any("maintenance window" in r for r in payroll["reasons"])


async def test_one_cluster_node_down_degrades_two_take_it_down(gql, demo):
    await gql.ok(SET, ids=[demo["esx-a-01"]], s="DOWN")
    assert await health(gql, demo["esx-cluster-a"]) == "DEGRADED"
    await gql.ok(SET, ids=[demo["esx-a-02"]], s="DOWN")
    assert await health(gql, demo["esx-cluster-a"]) == "DOWN"
    await gql.ok(SET, ids=[demo["esx-a-01"], demo["esx-a-02"]], s="UP")
    assert await health(gql, demo["esx-cluster-a"]) == "UP"


async def test_what_if_changes_nothing_stored(gql, demo, clean_db):
    before = await clean_db.read("MATCH (n:Item) RETURN n.id AS id, n.healthState AS s, "
                                 "n.operationalState AS o ORDER BY id")
    changes = (await clean_db.read("MATCH (c:StateChange) RETURN count(c) AS c"))[0]["c"]
    data = await gql.ok(IMPACT, ids=[demo["server123"]], at=None, assume=True)
    assert data["impact"][0]["item"]["name"] in ("Payroll", "Payroll Application Service")
    assert {e["state"] for e in data["impact"]} == {"DOWN"}
    after = await clean_db.read("MATCH (n:Item) RETURN n.id AS id, n.healthState AS s, "
                                "n.operationalState AS o ORDER BY id")
    assert after == before
    assert (await clean_db.read("MATCH (c:StateChange) RETURN count(c) AS c"))[0]["c"] == changes


async def test_service_model_shows_states_and_root_cause(gql, demo):
    await gql.ok(SET, ids=[demo["server123"]], s="DOWN")
    data = await gql.ok("""query($id: ID!) { serviceModel(id: $id) { state
        root { name } entries { depth state item { name } }
        rootCauses { item { name } pathNames } } }""", id=demo["Payroll"])
    model = data["serviceModel"]
    assert model["state"] == "DOWN" and model["root"]["name"] == "Payroll"
    assert [c["item"]["name"] for c in model["rootCauses"]] == ["server123"]
    assert model["rootCauses"][0]["pathNames"][0] == "Payroll"
    by_name = {e["item"]["name"]: e for e in model["entries"]}
    assert by_name["payroll-db"]["state"] == "DOWN"
    assert by_name["Payroll Application Service"]["depth"] == 1


async def test_rules_on_relationships(gql):
    app = (await create_ci(gql, name="app", ciClass="APPLICATION_INSTANCE",
                           operationalState="UP"))["id"]
    db = (await create_ci(gql, name="db", ciClass="DATABASE", operationalState="UP"))["id"]
    cache = (await create_ci(gql, name="cache", ciClass="DATABASE", operationalState="UP"))["id"]
    switch = (await create_ci(gql, name="sw", ciClass="NETWORK_DEVICE",
                              operationalState="UP"))["id"]
    await relate(gql, app, db, "DEPENDS_ON")
    await relate(gql, app, cache, "DEPENDS_ON", required=False)
    await relate(gql, app, switch, "CONNECTS_TO")
    await gql.ok(SET, ids=[switch], s="DOWN")
    assert await health(gql, app) == "UP"  # informational
    await gql.ok(SET, ids=[cache], s="DOWN")
    assert await health(gql, app) == "DEGRADED"  # optional
    await gql.ok(SET, ids=[db], s="DOWN")
    assert await health(gql, app) == "DOWN"  # required
    await gql.ok("mutation($id: ID!) { updateConfigurationItem(id: $id, input: "
                 "{lifecycleStatus: MAINTENANCE}) { errors { message } } }", id=db)
    assert await health(gql, app) == "DEGRADED"  # maintenance suppresses


async def test_cycles_settle_and_recover(gql):
    a, b, c, d = [(await create_ci(gql, name=n, ciClass="APPLICATION_INSTANCE",
                                   operationalState="UP"))["id"] for n in "abcd"]
    await relate(gql, a, b, "DEPENDS_ON")
    await relate(gql, b, c, "DEPENDS_ON")
    await relate(gql, c, a, "DEPENDS_ON")
    await relate(gql, c, d, "DEPENDS_ON")
    await gql.ok(SET, ids=[d], s="DOWN")
    assert [await health(gql, x) for x in (a, b, c)] == ["DOWN"] * 3
    await gql.ok(SET, ids=[d], s="UP")
    assert [await health(gql, x) for x in (a, b, c)] == ["UP"] * 3


async def test_history_as_of_and_availability_on_a_scripted_timeline(gql, pinned):
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    pinned(t0)
    svc = await make_service(gql, "Billing")
    await gql.ok("mutation($id: ID!) { updateService(id: $id, input: {sla: "
                 "{availabilityTarget: \"99\", maintenanceWindows: [\"Sun 02:00-04:00\"]}})"
                 " { errors { message } } }", id=svc)
    host = (await create_ci(gql, name="host", ciClass="SERVER", operationalState="UP"))["id"]
    await relate(gql, svc, host, "DEPENDS_ON")
    pinned(t0 + timedelta(days=2))               # Tue 3 Mar 00:00: down for 6 hours
    await gql.ok(SET, ids=[host], s="DOWN")
    pinned(t0 + timedelta(days=2, hours=6))
    await gql.ok(SET, ids=[host], s="DEGRADED")  # degraded for a day: still available
    pinned(t0 + timedelta(days=3, hours=6))
    await gql.ok(SET, ids=[host], s="UP")
    pinned(t0 + timedelta(days=40))

    as_of = await gql.ok("query($ids: [ID!]!, $at: DateTime!) { statesAsOf(ids: $ids, at: $at) }",
                         ids=[svc], at=(t0 + timedelta(days=2, hours=3)).isoformat())
    assert as_of["statesAsOf"] == ["DOWN"]
    history = await gql.ok("query($id: ID!, $s: DateTime!, $e: DateTime!) { stateHistory(id: $id,"
                           " start: $s, end: $e) { state at } }", id=svc,
                           s=t0.isoformat(), e=(t0 + timedelta(days=31)).isoformat())
    assert [h["state"] for h in history["stateHistory"]] == ["UP", "DOWN", "DEGRADED", "UP"]

    month = await gql.ok("query($id: ID!, $s: DateTime!, $e: DateTime!) { availability(id: $id,"
                         " start: $s, end: $e) { minutesDown minutesDegraded minutesInMaintenance"
                         " availabilityPercent targetPercent met } }", id=svc,
                         s=t0.isoformat(), e=(t0 + timedelta(days=31)).isoformat())
    a = month["availability"]
    # March 2026 has 5 Sundays, 2 h of maintenance each
    assert a["minutesInMaintenance"] == 5 * 120
    assert a["minutesDown"] == 360 and a["minutesDegraded"] == 24 * 60
    counted = 31 * 24 * 60 - 600
    assert a["availabilityPercent"] == pytest.approx(100 * (counted - 360) / counted, abs=1e-3)
    assert a["targetPercent"] == 99.0 and a["met"] is True


async def test_state_changes_subscription_sees_a_change(gql, clean_db, test_settings):
    import asyncio

    from cmdb.api.schema import build_schema
    from cmdb.identity.principal import Principal
    from cmdb.schema.context import Context
    from cmdb.services import Services

    host = (await create_ci(gql, name="h", ciClass="SERVER", operationalState="UP"))["id"]
    schema = build_schema(test_settings)
    ctx = Context(Services(clean_db, test_settings), "test",
                  Principal("olga", frozenset({"operator"})))
    stream = await schema.subscribe(
        "subscription($ids: [ID!]) { stateChanges(ids: $ids) { itemId state previous } }",
        variable_values={"ids": [host]}, context_value=ctx)
    first = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.2)
    await gql.ok(SET, ids=[host], s="DOWN")
    result = await asyncio.wait_for(first, timeout=10)
    await stream.aclose()
    assert result.errors is None
    assert result.data is not None
    assert result.data["stateChanges"] == {"itemId": host, "state": "DOWN", "previous": "UP"}


def test_legacy_graphql_ws_protocol_is_refused(test_settings):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from cmdb.app import create_app

    # The app makes its own driver here: the test client runs it on another event loop.
    with TestClient(create_app(test_settings)) as client:
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(
                "/graphql", subprotocols=["graphql-ws"]) as ws:
            ws.receive_json()
        with client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init",
                          "payload": auth_headers("olga", "operator")})
            assert ws.receive_json()["type"] == "connection_ack"


WHAT_IF = """query($ids: [ID!]!, $s: DateTime!, $e: DateTime!) {
  whatIf(ciIds: $ids, start: $s, end: $e) { usersAffected
    affected { insideMaintenanceWindow impact { item { name } state } }
    collisions { change { title } sharedServiceIds sharedCiIds } } }"""

PLAN = """mutation($i: PlanChangeInput!) { planChange(input: $i) {
  change { id title } whatIf { collisions { change { title } } }
  errors { field message code } } }"""


async def test_what_if_a_planned_change(gql, demo, clean_db):
    sunday = datetime(2026, 11, 29, 2, 30, tzinfo=UTC)  # inside Payroll's Sun 02:00-04:00
    data = await gql.ok(WHAT_IF, ids=[demo["server123"]], s=sunday.isoformat(),
                        e=(sunday + timedelta(minutes=60)).isoformat())
    affected = {a["impact"]["item"]["name"]: a for a in data["whatIf"]["affected"]}
    assert affected["Payroll"]["insideMaintenanceWindow"] is True
    assert affected["Payroll"]["impact"]["state"] == "DOWN"
    assert data["whatIf"]["usersAffected"] == 4200
    monday = sunday + timedelta(days=1)
    outside = await gql.ok(WHAT_IF, ids=[demo["server123"]], s=monday.isoformat(),
                           e=(monday + timedelta(hours=1)).isoformat())
    assert not any(a["insideMaintenanceWindow"] for a in outside["whatIf"]["affected"]
                   if a["impact"]["item"]["name"] == "Payroll")
    # nothing stored changed
    assert await health(gql, demo["Payroll"]) == "UP"

    first = await gql.ok(PLAN, i={"title": "patch db host", "start": monday.isoformat(),
                                  "end": (monday + timedelta(hours=2)).isoformat(),
                                  "ciIds": [demo["server123"]]})
    assert first["planChange"]["errors"] == []
    second = await gql.ok(PLAN, i={"title": "db upgrade", "ciIds": [demo["payroll-db"]],
                                   "start": (monday + timedelta(hours=1)).isoformat(),
                                   "end": (monday + timedelta(hours=3)).isoformat()})
    assert [c["change"]["title"] for c in second["planChange"]["whatIf"]["collisions"]] == [
        "patch db host"]
    bad = await gql.ok(PLAN, i={"title": "x", "ciIds": ["nope"], "start": monday.isoformat(),
                                "end": monday.isoformat()})
    assert bad["planChange"]["errors"][0]["field"] == "input.end"


async def test_a_change_is_inside_windows_only_where_they_cover_it(gql):
    # Two windows over the same Wednesday hours do not add up to cover a longer change.
    svc = await make_service(gql, "Mail")
    await gql.ok("mutation($id: ID!) { updateService(id: $id, input: {sla: {maintenanceWindows:"
                 " [\"Daily 01:00-03:00\", \"Wed 01:00-03:00\"]}}) { errors { message } } }",
                 id=svc)
    host = (await create_ci(gql, name="mail-host", ciClass="SERVER", operationalState="UP"))["id"]
    await relate(gql, svc, host, "DEPENDS_ON")
    wednesday = datetime(2026, 12, 9, tzinfo=UTC)

    async def inside(start, hours):
        data = await gql.ok(WHAT_IF, ids=[host], s=start.isoformat(),
                            e=(start + timedelta(hours=hours)).isoformat())
        [fit] = data["whatIf"]["affected"]
        return fit["insideMaintenanceWindow"]

    assert await inside(wednesday, 3) is False  # 00:00-03:00: the first hour is outside
    assert await inside(wednesday + timedelta(hours=1), 2) is True


async def test_impact_is_one_round_trip(gql, demo, clean_db):
    """Traversal, items and this month's SLA history in one statement (was two)."""
    query = ("query($ids: [ID!]!) { impact(ids: $ids, affectedOnly: false) { "
             "rank minutesToSlaBreach item { name } } }")
    await gql.ok(query, ids=[demo["server123"]])  # warm
    before = clean_db.round_trips.count
    data = await gql.ok(query, ids=[demo["server123"]])
    assert clean_db.round_trips.count - before == 1
    assert "Payroll" in {e["item"]["name"] for e in data["impact"]}


# --------------------------------------------------------------- availability since existence
# Worked out by hand; the clock is pinned, so every minute is known.

AVAILABILITY = """query($id: ID!, $s: DateTime!, $e: DateTime!) {
  availability(id: $id, start: $s, end: $e) { countedFrom countedUntil minutesUp
    minutesDegraded minutesDown minutesUnknown minutesInMaintenance availabilityPercent
    targetPercent met } }"""
MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)


async def availability(gql, item_id, start, end):
    data = await gql.ok(AVAILABILITY, id=item_id, s=start.isoformat(), e=end.isoformat())
    return data["availability"]


async def service_on_a_host(gql, name="Billing"):
    svc = await make_service(gql, name)
    await gql.ok("mutation($id: ID!) { updateService(id: $id, input: {sla: "
                 "{availabilityTarget: \"99\", maintenanceWindows: [\"Sun 02:00-04:00\"]}})"
                 " { errors { message } } }", id=svc)
    host = (await create_ci(gql, name=f"{name}-host", ciClass="SERVER",
                            operationalState="UP"))["id"]
    await relate(gql, svc, host, "DEPENDS_ON")
    return svc, host


async def test_availability_of_an_item_created_mid_month(gql, pinned):
    # Created Wed 4 Mar 12:00, asked for March at Sat 14 Mar 12:00: 10 days = 14,400 min
    # count, of which Sun 8 Mar 02:00-04:00 is maintenance (120). Down Tue 10 Mar 00:00-02:00.
    created = datetime(2026, 3, 4, 12, tzinfo=UTC)
    pinned(created)
    svc, host = await service_on_a_host(gql)
    pinned(datetime(2026, 3, 10, tzinfo=UTC))
    await gql.ok(SET, ids=[host], s="DOWN")
    pinned(datetime(2026, 3, 10, 2, tzinfo=UTC))
    await gql.ok(SET, ids=[host], s="UP")
    pinned(datetime(2026, 3, 14, 12, tzinfo=UTC))
    a = await availability(gql, svc, MARCH, APRIL)
    assert a == {
        "countedFrom": "2026-03-04T12:00:00+00:00", "countedUntil": "2026-03-14T12:00:00+00:00",
        "minutesUp": 14_160.0, "minutesDegraded": 0.0, "minutesDown": 120.0,
        "minutesUnknown": 0.0, "minutesInMaintenance": 120.0,
        "availabilityPercent": 99.1597,  # 14,160 / 14,280
        "targetPercent": 99.0, "met": True,
    }
    # The host (a CI: no windows, no target) counts from its creation too.
    h = await availability(gql, host, MARCH, APRIL)
    assert (h["minutesUp"], h["minutesDown"], h["minutesInMaintenance"]) == (14_280.0, 120.0, 0.0)
    assert h["availabilityPercent"] == pytest.approx(99.1667) and h["met"] is None
    # Only February asked: the service did not exist; no figure, nothing counted.
    feb = await availability(gql, svc, datetime(2026, 2, 1, tzinfo=UTC), MARCH)
    assert feb == {"countedFrom": None, "countedUntil": None, "minutesUp": 0.0,
                   "minutesDegraded": 0.0, "minutesDown": 0.0, "minutesUnknown": 0.0,
                   "minutesInMaintenance": 0.0, "availabilityPercent": None,
                   "targetPercent": 99.0, "met": None}
    # A period still to come counts nothing yet.
    later = await availability(gql, svc, datetime(2026, 3, 20, tzinfo=UTC), APRIL)
    assert later["countedFrom"] is None and later["availabilityPercent"] is None


async def test_availability_counts_from_the_first_recorded_state(
    gql, clean_db, test_settings, pinned
):
    # Loaded in bulk on 2 Mar (no state recorded then); its first state is set a day later.
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    pinned(t0)
    await BulkService(clean_db, test_settings).upsert_items(
        [CIRow(id="bulk-host", name="bulk-host", ci_class=CIClass.SERVER,
               operational_state=OperationalState.UP)])
    pinned(t0 + timedelta(days=3))
    before = await availability(gql, "bulk-host", MARCH, APRIL)
    assert before["countedFrom"] is None and before["availabilityPercent"] is None
    pinned(t0 + timedelta(days=1))
    await gql.ok(SET, ids=["bulk-host"], s="UP")
    pinned(t0 + timedelta(days=1, hours=6))
    await gql.ok(SET, ids=["bulk-host"], s="DOWN")
    pinned(t0 + timedelta(days=1, hours=8))
    await gql.ok(SET, ids=["bulk-host"], s="UNKNOWN")
    pinned(t0 + timedelta(days=1, hours=9))
    await gql.ok(SET, ids=["bulk-host"], s="UP")
    pinned(t0 + timedelta(days=2))
    # 3 Mar 00:00 to 4 Mar 00:00: 1,440 min, 120 down and 60 unknown.
    a = await availability(gql, "bulk-host", MARCH, APRIL)
    assert a["countedFrom"] == "2026-03-03T00:00:00+00:00"
    assert (a["minutesUp"], a["minutesDown"], a["minutesUnknown"]) == (1_260.0, 120.0, 60.0)
    assert a["availabilityPercent"] == 87.5  # 1,260 / 1,440


async def test_availability_when_a_maintenance_window_overlaps_creation(gql, pinned):
    # Created Sun 8 Mar 03:00, inside the 02:00-04:00 window; asked a day later: 1,440 min
    # counted, the window's last 60 apart; up the rest.
    pinned(datetime(2026, 3, 8, 3, tzinfo=UTC))
    svc, _ = await service_on_a_host(gql)
    pinned(datetime(2026, 3, 9, 3, tzinfo=UTC))
    a = await availability(gql, svc, MARCH, APRIL)
    assert (a["countedFrom"], a["minutesInMaintenance"], a["minutesUp"]) == (
        "2026-03-08T03:00:00+00:00", 60.0, 1_380.0)
    assert a["availabilityPercent"] == 100.0 and a["met"] is True
    # Asked while still inside the window: every counted minute is maintenance, no figure.
    pinned(datetime(2026, 3, 8, 3, 30, tzinfo=UTC))
    inside = await availability(gql, svc, MARCH, APRIL)
    assert inside["minutesInMaintenance"] == 30.0 and inside["minutesUp"] == 0.0
    assert inside["availabilityPercent"] is None and inside["met"] is None


async def test_availability_ends_at_retirement(gql, pinned):
    pinned(datetime(2026, 3, 2, tzinfo=UTC))
    host = (await create_ci(gql, name="old", ciClass="SERVER", operationalState="UP"))["id"]
    pinned(datetime(2026, 3, 3, tzinfo=UTC))
    retired = await gql.ok('mutation($id: ID!) { retireConfigurationItem(id: $id, reason: "x")'
                           ' { errors { message } } }', id=host)
    assert retired["retireConfigurationItem"]["errors"] == []
    pinned(datetime(2026, 3, 10, tzinfo=UTC))
    a = await availability(gql, host, MARCH, APRIL)
    assert (a["countedUntil"], a["minutesUp"], a["availabilityPercent"]) == (
        "2026-03-03T00:00:00+00:00", 1_440.0, 100.0)


async def test_right_after_loading_the_demo_every_service_is_fully_available(
    gql, clean_db, test_settings, pinned
):
    # The reported case: loaded on 7 December, asked for 1-7 December minutes later.
    loaded = datetime(2026, 12, 7, 17, 30, tzinfo=UTC)
    await load_demo_at(gql, clean_db, test_settings, pinned, loaded)
    pinned(loaded + timedelta(minutes=5))
    services = await gql.ok("{ services(first: 100) { edges { node { id name } } } }")
    week = (datetime(2026, 12, 1, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))
    ceo = gql.as_user("erin", "executive")
    for edge in services["services"]["edges"]:
        for who in (gql, ceo):
            a = await availability(who, edge["node"]["id"], *week)
            assert a["countedFrom"] == loaded.isoformat(), edge["node"]["name"]
            assert (a["minutesUp"], a["minutesUnknown"]) == (5.0, 0.0), edge["node"]["name"]
            assert a["availabilityPercent"] == 100.0, edge["node"]["name"]
            assert a["met"] in (True, None), edge["node"]["name"]
