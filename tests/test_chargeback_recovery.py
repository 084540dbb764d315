"""Who pays a service's cost, by its recovery rule, worked out by hand in cents on a small
world built through the API (October 2026: 31 days).

- CONSUMERS: the Analytics service's database costs 41.00 (an EQUAL pool whose only direct
  consumer is the service). johnW subscribed in September (active all 31 days of October),
  ann on 22 October (22nd to 31st: 10 days). The 41.00 divides by those days, 31:10:
  41 x 31/41 = 31.00 and 41 x 10/41 = 10.00, and nothing is unallocated: a share reaching a
  subscription through a service is already by days (before: 20.50 each, ann's pro-rated
  to 20.50 x 10/31 = 6.61 and 13.89 unallocated).
- PRICES: the Print service (technical) keeps its print server's 100.00 on its own cost
  centre, not invoiced, and Office (the business service built on it) gets none of it;
  johnW's print quota, ordered on 1 October, pays 25.50 a month (all 31 days: 25.50) and a
  10.00 one-off fee: 35.50 recovered, 100.00 - 35.50 = 64.50 under-recovered. Fax, also
  PRICES, has no cost and no subscriber: 0.00 all along.
- Shared CIs below subscriptions' CIs: sql-shared (usage 200 GB x 0.50 = 100.00) is consumed
  only by the SharePoint sites of two subscriptions for the Sites service (OWNER, technical,
  which Collaboration builds on) and by a file share whose subscription's service is
  retired. Sites stands in for its subscriptions' sites (once) and the retired one's share
  for nobody: 100.00 / 2 = 50.00 to Collaboration (CC-1300, invoiced) and 50.00
  unallocated. nfs-shared (20 GB x 0.50 = 10.00) is consumed only by the file share:
  10.00 unallocated, "only CIs of subscriptions for no service consume nfs-shared".
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from cmdb.core import clock
from tests.catalog_world import DECOMMISSION, add_users, create_item, submit
from tests.chargeback_world import CALCULATE, CLOSE, DEFINE_METER, POOL, POOL_AMOUNT, PUBLISH, ok

pytestmark = pytest.mark.integration

PERIOD = "2026-10"
EMPTY_FORM = {"type": "object", "properties": {}, "additionalProperties": False}
RECOVERY = """query($p: String!) { chargeRecovery(period: $p) { serviceId serviceName costCentre
  rule cost recovered overUnder currency lines feeLines } }"""
LINES = """query($p: String!) { chargeLines(period: $p, first: 1000) { lines {
  kind amount costCentre invoiced user serviceName subscriptionId recovery description path
  pool } } }"""


def at(day: int, hour: int = 9, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def cost_centre(gql: Any, code: str, name: str) -> str:
    r = await gql.ok("mutation($i: CostCentreInput!) { createCostCentre(input: $i) { "
                     "costCentre { id } } }", i={"code": code, "name": name})
    out: str = r["createCostCentre"]["costCentre"]["id"]
    return out


async def service(gql: Any, name: str, kind: str, cc: str, recovery: str) -> str:
    r = await ok(gql, "mutation($i: CreateServiceInput!) { createService(input: $i) { "
                 "service { id costRecovery } errors { field message } } }", "createService",
                 i={"name": name, "kind": kind, "operationalState": "UP",
                    "costCentreId": cc, "costRecovery": recovery})
    assert r["service"]["costRecovery"] == recovery
    out: str = r["service"]["id"]
    return out


async def ci(gql: Any, name: str, ci_class: str) -> str:
    r = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                     "input: $i) { configurationItem { id } } }",
                     i={"name": name, "ciClass": ci_class, "operationalState": "UP"})
    out: str = r["createConfigurationItem"]["configurationItem"]["id"]
    return out


async def relate(gql: Any, consumer: str, provider: str) -> None:
    r = await gql.ok("mutation($i: RelateInput!) { relate(input: $i) { errors { message } } }",
                     i={"sourceId": consumer, "targetId": provider, "type": "DEPENDS_ON"})
    assert r["relate"]["errors"] == []


async def order(gql: Any, user: str, item: str, form: dict[str, Any] | None = None) -> str:
    placed = await submit(gql.as_user(user, "requester"), item, form or {})
    assert placed["errors"] == [] and placed["order"]["status"] == "FULFILLED", placed
    sub: str = placed["order"]["subscriptionId"]
    return sub


async def pool(gql: Any, code: str, ci_id: str, amount: str) -> None:
    await ok(gql, POOL, "defineCostPool", i={"code": code, "name": code, "driver": "EQUAL",
                                             "ciIds": [ci_id]})
    await ok(gql, POOL_AMOUNT, "setCostPoolAmount", c=code, p=PERIOD, a=amount)


async def lines(gql: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = (await gql.ok(LINES, p=PERIOD))["chargeLines"]["lines"]
    return out


@pytest_asyncio.fixture
async def people(gql: Any, clean_db: Any) -> Any:
    """Two cost centres and their people; the clock in September until a test moves it."""
    clock.pin(at(10, month=9))
    try:
        ccs = {"CC-1200": await cost_centre(gql, "CC-1200", "Trading Desk"),
               "CC-1300": await cost_centre(gql, "CC-1300", "IT Operations")}
        await add_users(clean_db, [
            {"userName": "bob", "costCentre": "CC-1300", "owns": ["CC-1300"]},
            {"userName": "maryS", "costCentre": "CC-1200", "owns": ["CC-1200"],
             "manager": "bob"},
            {"userName": "johnW", "costCentre": "CC-1200", "manager": "maryS"},
            {"userName": "ann", "costCentre": "CC-1200", "manager": "maryS"},
        ])
        # As the identity contract stores them (finance scope looks users up by it).
        await clean_db.write("MATCH (u:User) SET u.userNameLower = toLower(u.userName)")
        yield ccs
    finally:
        clock.pin(None)


async def test_a_consumers_service_divides_its_cost_by_its_subscriptions_active_days(
        gql, people):
    analytics = await service(gql, "Analytics", "BUSINESS", people["CC-1300"], "CONSUMERS")
    db = await ci(gql, "analytics-db", "DATABASE")
    await relate(gql, analytics, db)
    seat = await create_item(gql, "Analytics seat", form=EMPTY_FORM,
                             price={"currency": "EUR", "oneOff": "0", "monthly": "31.00"},
                             recipe={"service": "Analytics"})
    johns = await order(gql, "johnW", seat)  # 10 September: all of October
    clock.pin(at(22))
    anns = await order(gql, "ann", seat)  # 22 October: 10 days
    await pool(gql, "analytics-db", db, "41.00")
    clock.pin(at(31, 23))
    result = (await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD))["result"]
    assert result["unallocated"] == "0.00"
    got = await lines(gql)
    # 41.00 x 31/41 = 31.00 and 41.00 x 10/41 = 10.00, invoiced to the subscribers.
    assert sorted((x["subscriptionId"], x["user"], x["amount"], x["costCentre"],
                   x["invoiced"], x["path"]) for x in got if x["kind"] == "POOL") == sorted([
        (johns, "johnW", "31.00", "CC-1200", True,
         ["analytics-db", "analytics-db", "Analytics", "Analytics seat (johnW)"]),
        (anns, "ann", "10.00", "CC-1200", True,
         ["analytics-db", "analytics-db", "Analytics", "Analytics seat (ann)"])])
    # Their fees: 31.00 x 31/31 = 31.00, 31.00 x 10/31 = 10.00.
    assert sorted((x["user"], x["amount"]) for x in got if x["kind"] == "RECURRING_FEE") == \
        [("ann", "10.00"), ("johnW", "31.00")]
    assert [x for x in got if x["kind"] == "UNALLOCATED"] == []
    assert all(x["recovery"] is None for x in got)


async def test_a_prices_service_keeps_its_cost_not_invoiced_and_shows_its_recovery(
        gql, client, people):
    office = await service(gql, "Office", "BUSINESS", people["CC-1300"], "OWNER")
    printing = await service(gql, "Print", "TECHNICAL", people["CC-1300"], "PRICES")
    fax = await service(gql, "Fax", "BUSINESS", people["CC-1300"], "PRICES")
    server = await ci(gql, "print-server", "SERVER")
    await relate(gql, printing, server)
    await relate(gql, office, printing)  # without PRICES, Print's cost would go to Office
    quota = await create_item(gql, "Print quota", form=EMPTY_FORM,
                              price={"currency": "EUR", "oneOff": "10.00",
                                     "monthly": "25.50"}, recipe={"service": "Print"})
    clock.pin(at(1))
    johns = await order(gql, "johnW", quota)
    await pool(gql, "print", server, "100.00")
    clock.pin(at(31, 23))
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    got = await lines(gql)
    assert sorted((x["kind"], x["serviceName"], x["subscriptionId"], x["costCentre"],
                   x["amount"], x["invoiced"], x["recovery"]) for x in got) == sorted([
        # The server's 100.00 stays with Print, on its cost centre, not invoiced.
        ("POOL", "Print", None, "CC-1300", "100.00", False, "PRICES"),
        # johnW's fees: 25.50 x 31/31 and the one-off 10.00, invoiced to his cost centre.
        ("RECURRING_FEE", "Print", johns, "CC-1200", "25.50", True, None),
        ("ONE_OFF_FEE", "Print", johns, "CC-1200", "10.00", True, None)])
    assert not any(x["serviceName"] == "Office" for x in got)
    # The downloads say why the service's cost is not billed.
    focus = list(csv.DictReader(io.StringIO(
        (await client.get(f"/api/chargeback/periods/{PERIOD}/focus.csv")).text)))
    assert sorted((r["x_Kind"], r["BilledCost"], r["EffectiveCost"], r["x_Recovery"])
                  for r in focus) == sorted([("POOL", "0.00", "100.00", "PRICES"),
                                             ("RECURRING_FEE", "25.50", "25.50", ""),
                                             ("ONE_OFF_FEE", "10.00", "10.00", "")])
    plain = list(csv.DictReader(io.StringIO(
        (await client.get(f"/api/chargeback/periods/{PERIOD}/lines.csv")).text)))
    assert sorted(r["recovery"] for r in plain) == ["", "", "PRICES"]
    # cost 100.00, recovered 25.50 + 10.00 = 35.50: 35.50 - 100.00 = -64.50 (under).
    want = [
        {"serviceId": fax, "serviceName": "Fax", "costCentre": "CC-1300", "rule": "PRICES",
         "cost": "0.00", "recovered": "0.00", "overUnder": "0.00", "currency": "EUR",
         "lines": 0, "feeLines": 0},
        {"serviceId": printing, "serviceName": "Print", "costCentre": "CC-1300",
         "rule": "PRICES", "cost": "100.00", "recovered": "35.50", "overUnder": "-64.50",
         "currency": "EUR", "lines": 1, "feeLines": 2}]
    assert (await gql.ok(RECOVERY, p=PERIOD))["chargeRecovery"] == want
    # Finance sees the services of their cost centres: bob owns CC-1300, maryS CC-1200.
    assert (await gql.as_user("bob", "finance").ok(RECOVERY, p=PERIOD))[
        "chargeRecovery"] == want
    assert (await gql.as_user("maryS", "finance").ok(RECOVERY, p=PERIOD))[
        "chargeRecovery"] == []
    # Anyone else is refused, and a period that is no month is named.
    refused = await gql.as_user("johnW", "requester")(RECOVERY, p=PERIOD)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert refused["data"] is None
    bad = await gql(RECOVERY, p="someday")
    assert "YYYY-MM" in bad["errors"][0]["message"]
    # Closed, the period answers the same; it answers as calculated even once Print's rule
    # changes (its lines say PRICES), and Fax, OWNER now, is no longer listed.
    closed = (await ok(gql, CLOSE, "closeChargePeriod", p=PERIOD))["result"]
    assert closed["period"]["status"] == "CLOSED"
    assert (await gql.ok(RECOVERY, p=PERIOD))["chargeRecovery"] == want
    for sid in (printing, fax):
        changed = await gql.ok("mutation($id: ID!) { updateService(id: $id, input: "
                               "{costRecovery: OWNER}) { errors { message } } }", id=sid)
        assert changed["updateService"]["errors"] == []
    assert (await gql.ok(RECOVERY, p=PERIOD))["chargeRecovery"] == want[1:]


async def test_shared_cis_below_subscriptions_cis_go_to_their_services(gql, people):
    collaboration = await service(gql, "Collaboration", "BUSINESS", people["CC-1300"],
                                  "OWNER")
    sites = await service(gql, "Sites", "TECHNICAL", people["CC-1300"], "OWNER")
    old = await service(gql, "Old shares", "TECHNICAL", people["CC-1300"], "OWNER")
    await relate(gql, collaboration, sites)
    sql = await ci(gql, "sql-shared", "DATABASE")
    nfs = await ci(gql, "nfs-shared", "STORAGE_VOLUME")
    form = {"type": "object", "properties": {"name": {"type": "string",
                                                      "pattern": "^[a-z]{2,10}$"}},
            "required": ["name"], "additionalProperties": False}
    free = {"currency": "EUR", "oneOff": "0", "monthly": "0"}
    site = await create_item(gql, "Site", form=form, price=free, recipe={
        "service": "Sites",
        "cis": [{"key": "site", "ciClass": "ApplicationInstance", "name": "site-{name}"}],
        "relationships": [{"source": "ci:site", "type": "DEPENDS_ON",
                           "target": "item:sql-shared"}]})
    share = await create_item(gql, "Share", form=form, price=free, recipe={
        "service": "Old shares",
        "cis": [{"key": "share", "ciClass": "ApplicationInstance", "name": "share-{name}"}],
        "relationships": [
            {"source": "ci:share", "type": "DEPENDS_ON", "target": "item:sql-shared"},
            {"source": "ci:share", "type": "DEPENDS_ON", "target": "item:nfs-shared"}]})
    await order(gql, "johnW", site, {"name": "fx"})
    await order(gql, "ann", site, {"name": "rates"})
    await order(gql, "ann", share, {"name": "docs"})
    retired = await gql.ok("mutation($id: ID!) { retireService(id: $id) { errors { message } "
                           "} }", id=old)
    assert retired["retireService"]["errors"] == []  # its subscription is for no service now
    # Two meters: what reaches no payer is one line per meter, each naming why.
    for meter in ("db-gb", "nfs-gb"):
        await ok(gql, DEFINE_METER, "defineMeter", i={"code": meter, "name": meter,
                                                      "unit": "GB"})
        await ok(gql, PUBLISH, "publishRateCard", i={
            "meter": meter, "effectiveFrom": "2026-10-01", "currency": "EUR",
            "tiers": [{"rate": "0.50"}]})
    clock.pin(at(31, 23))
    sent = await ok(gql, """mutation($r: [UsageRecordInput!]!) { recordUsage(records: $r) {
        created errors { field message code } } }""", "recordUsage", r=[
        {"recordId": "sql-oct", "ciId": sql, "meter": "db-gb", "quantity": "200",
         "at": at(15).isoformat(), "source": "test"},
        {"recordId": "nfs-oct", "ciId": nfs, "meter": "nfs-gb", "quantity": "20",
         "at": at(15).isoformat(), "source": "test"}])
    assert sent["created"] == 2
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    got = [x for x in await lines(gql) if x["kind"] in ("USAGE", "UNALLOCATED")]
    assert sorted((x["kind"], x["serviceName"], x["costCentre"], x["amount"], x["invoiced"],
                   x["subscriptionId"], x["path"]) for x in got) == sorted([
        # 200 x 0.50 = 100.00 over {Sites, the retired service's share}: 50.00 each.
        ("USAGE", "Collaboration", "CC-1300", "50.00", True, None,
         ["sql-shared", "Sites", "Collaboration"]),
        ("UNALLOCATED", None, None, "50.00", False, None,
         ["sql-shared", "CIs of subscriptions for no service"]),
        # 20 x 0.50 = 10.00, only the share consumes nfs-shared.
        ("UNALLOCATED", None, None, "10.00", False, None,
         ["nfs-shared", "CIs of subscriptions for no service"])])
    why = {x["path"][0]: x["description"] for x in got if x["kind"] == "UNALLOCATED"}
    assert why["sql-shared"] == ("100 GB of db-gb on sql-shared at rate card v1: CIs of "
                                 "subscriptions for no service consume sql-shared")
    assert why["nfs-shared"] == ("20 GB of nfs-gb on nfs-shared at rate card v1: only CIs of "
                                 "subscriptions for no service consume nfs-shared")


async def test_a_decommissioned_subscriptions_retired_vm_pays_its_share_for_its_days(
        gql, people):
    """johnW's VM (4 vCPUs) runs on esx-7 from 1 October until he decommissions it on the
    11th (10 days); web-1 (4 vCPUs) runs there all month for the Shop service. The host's
    pool, 310.00 by vCPU: 155.00 per VM. His VM's share for 10 of 31 days,
    155 x 10/31 = 50.00; the other 105.00 unallocated ("… was not active all month"); Shop
    155.00. (Decommissioning retired the VM; a retired CI still carries its cost for the days
    a subscription of the month held it.)"""
    shop = await service(gql, "Shop", "BUSINESS", people["CC-1300"], "OWNER")
    await service(gql, "Hosting", "TECHNICAL", people["CC-1300"], "OWNER")
    host = await ci(gql, "esx-7", "HYPERVISOR_HOST")
    web = await gql.ok("mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                       "input: $i) { configurationItem { id } } }",
                       i={"name": "web-1", "ciClass": "VIRTUAL_MACHINE", "attributes": {
                           "cpu": 4}})
    web_id = web["createConfigurationItem"]["configurationItem"]["id"]
    await gql.ok("mutation($i: RelateInput!) { relate(input: $i) { errors { message } } }",
                 i={"sourceId": web_id, "targetId": host, "type": "RUNS_ON"})
    await relate(gql, shop, web_id)
    server = await create_item(
        gql, "Virtual server", form=EMPTY_FORM,
        price={"currency": "EUR", "oneOff": "0", "monthly": "0"},
        recipe={"service": "Hosting",
                "cis": [{"key": "vm", "ciClass": "VirtualMachine", "name": "vm-johnw",
                         "attributes": {"cpu": 4}}],
                "relationships": [{"source": "ci:vm", "type": "RUNS_ON",
                                   "target": "item:esx-7"}]})
    clock.pin(at(1))
    mine = await order(gql, "johnW", server)
    await ok(gql, POOL, "defineCostPool", i={"code": "esx-7", "name": "esx-7",
                                             "driver": "VCPU", "ciIds": [host]})
    await ok(gql, POOL_AMOUNT, "setCostPoolAmount", c="esx-7", p=PERIOD, a="310.00")
    clock.pin(at(11))
    ended = await gql.as_user("johnW", "requester").ok(DECOMMISSION, id=mine)
    assert ended["decommissionSubscription"]["errors"] == []
    assert {c["lifecycleStatus"] for c in ended["decommissionSubscription"]["subscription"][
        "configurationItems"]} == {"RETIRED"}
    clock.pin(at(31, 23))
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    got = sorted((x["kind"], x["subscriptionId"] or x["serviceName"], x["amount"])
                 for x in await lines(gql) if x["pool"] == "esx-7")
    assert got == sorted([("POOL", mine, "50.00"), ("POOL", "Shop", "155.00"),
                          ("UNALLOCATED", None, "105.00")])
