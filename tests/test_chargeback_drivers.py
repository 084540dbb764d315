"""Cost pools shared by the drivers finance defines: a CI attribute, a meter's usage, session
hours, a role's users, subscriptions' active days and fixed percentages per cost centre, and
shares passed onward by an attribute. Each October 2026 is worked out by hand in cents.

The world (over the demo's users, roles and cost centres), built through the API:

    drv-cluster  <- MEMBER_OF - drv-esx (memoryGb 512)
    drv-esx      <- RUNS_ON - drv-vm-a (memoryGb 16), drv-vm-b (memoryGb 8),
                              drv-db (a Database, memoryGb 4)
    drv-vm-a     <- RUNS_ON - drv-app-1 (load 3), drv-app-2 (load 1)
    drv-vm-b     <- RUNS_ON - drv-app-3
    Drv Shop (business service, CC-1200)  DEPENDS_ON drv-app-1, drv-app-3
    Drv Mail (business service, CC-1400)  DEPENDS_ON drv-app-2
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from cmdb.chargeback.engine import CalculationInput, Engine, ItemRow
from cmdb.chargeback.models import CostPool, Driver, PoolAllocation
from cmdb.core import clock
from cmdb.demo.loader import load_demo
from tests.auth import auth_headers
from tests.catalog_world import APPROVE, SUBSCRIPTION, submit
from tests.chargeback_world import (
    CALCULATE,
    DEFINE_METER,
    LINES,
    POOL_AMOUNT,
    USAGE,
    at,
    ok,
)
from tests.test_chargeback_allocation import active, acyclic, pays, worlds

PERIOD = "2026-10"
AGENT = auth_headers("horizon-export", "discovery_agent")
POOL = """mutation($i: DefineCostPoolInput!) { defineCostPool(input: $i) {
  pool { code driver attribute holderClasses meter role onward capacity
         allocations { costCentre percent } }
  errors { field message code } } }"""
CREATE_CI = """mutation($i: CreateConfigurationItemInput!) { createConfigurationItem(input: $i)
  { configurationItem { id } errors { field message } } }"""
CREATE_SERVICE = """mutation($i: CreateServiceInput!) { createService(input: $i)
  { service { id } errors { field message } } }"""
RELATE = """mutation($i: RelateInput!) { relate(input: $i) { errors { field message } } }"""


async def _ci(gql: Any, name: str, cls: str, **attrs: Any) -> str:
    data = await gql.ok(CREATE_CI, i={"name": name, "ciClass": cls, "attributes": attrs})
    out = data["createConfigurationItem"]
    assert not out["errors"], out
    return str(out["configurationItem"]["id"])


async def _relate(gql: Any, source: str, target: str, kind: str) -> None:
    data = await gql.ok(RELATE, i={"sourceId": source, "targetId": target, "type": kind})
    assert not data["relate"]["errors"], data


@pytest_asyncio.fixture
async def world(gql: Any, clean_db: Any, test_settings: Any) -> Any:
    clock.pin(at(10, month=9))
    try:
        await load_demo(clean_db, test_settings, echo=lambda _: None)
        ccs = {c["code"]: c["id"] for c in (await gql.ok(
            "{ costCentres { id code } }"))["costCentres"]}
        ids = {
            "cluster": await _ci(gql, "drv-cluster", "CLUSTER"),
            "esx": await _ci(gql, "drv-esx", "HYPERVISOR_HOST", memoryGb=512),
            "vm-a": await _ci(gql, "drv-vm-a", "VIRTUAL_MACHINE", memoryGb=16),
            "vm-b": await _ci(gql, "drv-vm-b", "VIRTUAL_MACHINE", memoryGb=8),
            "db": await _ci(gql, "drv-db", "DATABASE", memoryGb=4),
            "app-1": await _ci(gql, "drv-app-1", "APPLICATION_INSTANCE", load=3),
            "app-2": await _ci(gql, "drv-app-2", "APPLICATION_INSTANCE", load=1),
            "app-3": await _ci(gql, "drv-app-3", "APPLICATION_INSTANCE"),
        }
        for name, cc in (("shop", "CC-1200"), ("mail", "CC-1400")):
            data = await gql.ok(CREATE_SERVICE, i={
                "name": f"Drv {name.title()}", "kind": "BUSINESS", "costCentreId": ccs[cc]})
            assert not data["createService"]["errors"], data
            ids[name] = data["createService"]["service"]["id"]
        await _relate(gql, ids["esx"], ids["cluster"], "MEMBER_OF")
        for vm in ("vm-a", "vm-b", "db"):
            await _relate(gql, ids[vm], ids["esx"], "RUNS_ON")
        for app, vm in (("app-1", "vm-a"), ("app-2", "vm-a"), ("app-3", "vm-b")):
            await _relate(gql, ids[app], ids[vm], "RUNS_ON")
        for svc, app in (("shop", "app-1"), ("shop", "app-3"), ("mail", "app-2")):
            await _relate(gql, ids[svc], ids[app], "DEPENDS_ON")
        yield ids
    finally:
        clock.pin(None)


async def define(gql: Any, amount: str, **pool: Any) -> dict[str, Any]:
    out = await ok(gql, POOL, "defineCostPool", i={"name": pool["code"].title(), **pool})
    await ok(gql, POOL_AMOUNT, "setCostPoolAmount", c=pool["code"], p=PERIOD, a=amount)
    return dict(out["pool"])


async def pool_lines(gql: Any, code: str) -> list[dict[str, Any]]:
    """The period's lines of one pool (after calculating it)."""
    result = await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    assert result["result"]["changed"]
    out: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await gql.ok(LINES, p=PERIOD, first=500, after=after))["chargeLines"]
        out.extend(line for line in page["lines"] if line["pool"] == code)
        if not page["hasNextPage"]:
            return out
        after = page["endCursor"]


def who(lines: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    """(kind, cost centre, service or user, amount) of each line."""
    return {(x["kind"], x["costCentre"], x["serviceName"] or x["user"], x["amount"])
            for x in lines}


def total(lines: list[dict[str, Any]]) -> Decimal:
    return sum((Decimal(x["amount"]) for x in lines), Decimal(0))


pytestmark = pytest.mark.integration


async def test_attribute_pool_shares_by_memory_of_vms_with_idle_capacity(gql, world):
    """640.00 by memoryGb among VMs (holderClasses: the host's 512 GB and the database's 4 GB
    do not count), capacity 32 GB: vm-a 16, vm-b 8, 8 idle.
    vm-a 640 x 16/32 = 320.00, equally to app-1 (Shop) and app-2 (Mail): 160.00 each;
    vm-b 640 x 8/32 = 160.00 to app-3 (Shop); idle 640 x 8/32 = 160.00.
    Shop 160 + 160 = 320.00, Mail 160.00, unallocated 160.00: 640.00 in all."""
    pool = await define(gql, "640.00", code="drv-memory", driver="ATTRIBUTE",
                        attribute="memoryGb", holderClasses=["VIRTUAL_MACHINE"],
                        capacity="32", ciIds=[world["cluster"]])
    assert (pool["attribute"], pool["holderClasses"], pool["capacity"]) == \
        ("memoryGb", ["VIRTUAL_MACHINE"], "32")
    lines = await pool_lines(gql, "drv-memory")
    assert who(lines) == {("POOL", "CC-1200", "Drv Shop", "320.00"),
                          ("POOL", "CC-1400", "Drv Mail", "160.00"),
                          ("UNALLOCATED", None, None, "160.00")}
    assert total(lines) == Decimal("640.00")
    shop = next(x for x in lines if x["serviceName"] == "Drv Shop")
    assert (shop["driver"], shop["unit"], shop["quantity"]) == ("ATTRIBUTE", "memoryGb", "16")
    assert "shared by ATTRIBUTE memoryGb" in shop["description"]
    idle = next(x for x in lines if x["kind"] == "UNALLOCATED")
    assert idle["quantity"] == "8" and "idle capacity" in idle["description"]


async def test_onward_attribute_passes_a_vms_share_3_to_1_to_its_apps(gql, world):
    """480.00 by memoryGb among VMs, no capacity: vm-a 480 x 16/24 = 320.00, vm-b 160.00.
    Onward by load: vm-a's 320.00 goes 3:1 to app-1 (Shop) 240.00 and app-2 (Mail) 80.00;
    vm-b's 160.00 to its only app, app-3 (Shop). Shop 240 + 160 = 400.00, Mail 80.00.
    (Equally, it would be Shop 320.00 and Mail 160.00.)"""
    await define(gql, "480.00", code="drv-onward", driver="ATTRIBUTE", attribute="memoryGb",
                 holderClasses=["VIRTUAL_MACHINE"], onward="load", ciIds=[world["cluster"]])
    lines = await pool_lines(gql, "drv-onward")
    assert who(lines) == {("POOL", "CC-1200", "Drv Shop", "400.00"),
                          ("POOL", "CC-1400", "Drv Mail", "80.00")}
    mail = next(x for x in lines if x["serviceName"] == "Drv Mail")
    assert mail["share"] == "1/6"  # 16/24 x 1/4
    assert mail["path"] == ["Drv-Onward", "drv-cluster", "drv-esx", "drv-vm-a", "drv-app-2",
                            "Drv Mail"]
    assert "onward by load" in mail["description"]


async def test_meter_pool_shares_by_the_months_usage(gql, world):
    """100.00 by the October usage of drv-net-gb: vm-a 20 + 10 = 30 GB, vm-b 10 GB; drv-esx's
    usage is in September (not this month) and vm-b's other 50 GB in November.
    vm-a 100 x 30/40 = 75.00, equally to Shop and Mail: 37.50 each; vm-b 25.00 to Shop.
    Shop 37.50 + 25.00 = 62.50, Mail 37.50."""
    await ok(gql, DEFINE_METER, "defineMeter", i={"code": "drv-net-gb", "name": "Network",
                                                 "unit": "GB"})
    clock.pin(at(1, 12, month=11))

    def rec(rid: str, ci: str, q: str, when: datetime) -> dict[str, str]:
        return {"recordId": rid, "ciId": world[ci], "meter": "drv-net-gb", "quantity": q,
                "at": when.isoformat(), "source": "netflow"}
    usage = await ok(gql, USAGE, "recordUsage", r=[
        rec("n1", "vm-a", "20", at(3)), rec("n2", "vm-a", "10", at(30)),
        rec("n3", "vm-b", "10", at(15)), rec("n4", "esx", "999", at(20, month=9)),
        rec("n5", "vm-b", "50", at(1, 9, month=11))])
    assert usage["rejected"] == []
    pool = await define(gql, "100.00", code="drv-net", driver="METER", meter="drv-net-gb",
                        ciIds=[world["cluster"]])
    assert pool["meter"] == "drv-net-gb"
    lines = await pool_lines(gql, "drv-net")
    assert who(lines) == {("POOL", "CC-1200", "Drv Shop", "62.50"),
                          ("POOL", "CC-1400", "Drv Mail", "37.50")}
    mail = next(x for x in lines if x["serviceName"] == "Drv Mail")
    assert (mail["unit"], mail["quantity"], mail["driver"]) == ("GB", "15", "METER")


async def test_session_hours_clip_sessions_to_the_month_and_the_calculation(gql, client,
                                                                            world):
    """150.00 by hours of sessions on pool-standard in October, calculated on 31 October at
    23:00: johnW 30 Sep 22:00 - 1 Oct 04:00 counts 4 h (from the month's start); priyaS
    12 Oct 08:00 - 16:00, 8 h; maryK's session opened 31 Oct 20:00 and still open counts
    until the calculation, 3 h. 15 h: 10.00 an hour: johnW 40.00, priyaS 80.00, maryK 30.00.
    (By SESSIONS, johnW's session would not count: it started in September.)"""
    pools = await gql.ok("{ configurationItems(filter: {nameContains: \"pool-standard\"}) "
                         "{ edges { node { id name } } } }")
    [standard] = [e["node"]["id"] for e in pools["configurationItems"]["edges"]
                  if e["node"]["name"] == "pool-standard"]

    def event(sid: str, user: str, desk: str, kind: str, when: datetime) -> dict[str, str]:
        return {"sessionId": sid, "user": f"CORP\\{user}", "desktop": desk,
                "pool": "pool-standard", "host": "vdi-esx-01", "eventId": f"{sid}-{kind}",
                "eventType": kind, "timestamp": when.isoformat()}

    clock.pin(at(31, 23))
    # The demo leaves johnW and maryK logged on since 10 September: they log off that day.
    events = [{**event(f"demo-{u}-20260910", u, d, "LOGOFF", at(10, 17, month=9)),
               "eventId": f"drv-{u}-off"}
              for u, d in (("johnW", "virtdesk_123"), ("maryK", "virtdesk_204"))]
    events += [event("s1", "johnW", "virtdesk_123", "LOGON", at(30, 22, month=9)),
              event("s1", "johnW", "virtdesk_123", "LOGOFF", at(1, 4)),
              event("s2", "priyaS", "virtdesk_311", "LOGON", at(12, 8)),
              event("s2", "priyaS", "virtdesk_311", "LOGOFF", at(12, 16)),
              event("s3", "maryK", "virtdesk_204", "LOGON", at(31, 20))]
    r = await client.post("/api/vdi/events", json={"events": events}, headers=AGENT)
    assert r.status_code == 200, r.text
    await define(gql, "150.00", code="drv-vdi-hours", driver="SESSION_HOURS",
                 ciIds=[standard])
    lines = await pool_lines(gql, "drv-vdi-hours")
    assert {(x["user"], x["amount"], x["quantity"], x["unit"]) for x in lines} == {
        ("johnW", "40.00", "4", "hour"), ("priyaS", "80.00", "8", "hour"),
        ("maryK", "30.00", "3", "hour")}
    assert {x["costCentre"] for x in lines} == {"CC-1200", "CC-1100", "CC-1400"}


async def test_role_users_share_equally_among_the_roles_members_in_the_month(gql, world):
    """100.00 among the members of "Drv Analyst" in October: johnW (from 5 Oct) and priyaS
    (from 20 Sep); maryK's membership ended on 25 Sep, so she is not one. 50.00 each."""
    clock.pin(at(20, month=9))
    made = await gql.ok("mutation { createRole(input: {name: \"Drv Analyst\"}) "
                        "{ errors { message } } }")
    assert not made["createRole"]["errors"]
    member = ("mutation($u: String!, $s: DateTime) { addRoleMembership(userName: $u, "
              "roleName: \"Drv Analyst\", since: $s) { errors { message } } }")
    for user in ("priyaS", "maryK"):
        assert not (await gql.ok(member, u=user, s=None))["addRoleMembership"]["errors"]
    clock.pin(at(25, month=9))
    ended = await gql.ok("mutation { endRoleMembership(userName: \"maryK\", roleName: "
                         "\"Drv Analyst\") { errors { message } } }")
    assert not ended["endRoleMembership"]["errors"]
    clock.pin(at(5))
    assert not (await gql.ok(member, u="johnW", s=None))["addRoleMembership"]["errors"]
    pool = await define(gql, "100.00", code="drv-analysts", driver="ROLE_USERS",
                        role="drv analyst", ciIds=[world["cluster"]])
    assert pool["role"] == "Drv Analyst"  # as the role spells it
    lines = await pool_lines(gql, "drv-analysts")
    assert {(x["user"], x["costCentre"], x["amount"], x["unit"]) for x in lines} == {
        ("johnW", "CC-1200", "50.00", "user"), ("priyaS", "CC-1100", "50.00", "user")}


async def test_subscriptions_pool_weighs_active_days_without_prorating_twice(gql, world):
    """520.00 among the subscriptions of the two SharePoint sites the pool is on: site A
    ordered 1 October (31 days), site B 11 October (21 of 31 days). 520 x 31/52 = 310.00 and
    520 x 21/52 = 210.00. (Pro-rated a second time, B would pay 210 x 21/31 = 142.26.)"""
    john, mary = gql.as_user("johnW", "requester"), gql.as_user("maryS", "approver")
    items = (await john.ok("{ catalogueItems { id name } }"))["catalogueItems"]
    site = next(i["id"] for i in items if i["name"] == "SharePoint collaboration site")
    subs = []
    for day, name in ((1, "drv-a"), (11, "drv-b")):
        clock.pin(at(day, 10))
        placed = await submit(john, site, {"siteName": name, "title": name})
        order = (await mary.ok(APPROVE, id=placed["order"]["id"]))["approveOrder"]["order"]
        assert order["status"] == "FULFILLED"
        sub = (await john.ok("query($id: ID!) { subscription(id: $id) { " + SUBSCRIPTION
                             + " } }", id=order["subscriptionId"]))["subscription"]
        subs.append(sub)
    cis = [ci["id"] for s in subs for ci in s["configurationItems"]]
    assert len(cis) == 2
    clock.pin(at(31, 23))
    await define(gql, "520.00", code="drv-sites", driver="SUBSCRIPTIONS", ciIds=cis)
    lines = await pool_lines(gql, "drv-sites")
    assert {(x["subscriptionId"], x["costCentre"], x["amount"], x["quantity"], x["unit"])
            for x in lines} == {
        (subs[0]["id"], "CC-1200", "310.00", "31", "subscription-day"),
        (subs[1]["id"], "CC-1200", "210.00", "21", "subscription-day")}


async def test_fixed_percentages_leave_the_rest_unallocated(gql, world):
    """333.33 fixed: CC-1200 60 %, CC-1400 30 %, 10 % left. Exact cents 19999.8, 9999.9 and
    3333.3: floors 199.99 + 99.99 + 33.33 = 333.31; the 2 cents left go to the largest
    remainders, CC-1400 (.9) and CC-1200 (.8): CC-1200 200.00, CC-1400 100.00, unallocated
    33.33; 333.33 in all."""
    pool = await define(gql, "333.33", code="drv-licences", driver="FIXED",
                        ciIds=[world["cluster"]],
                        allocations=[{"costCentre": "CC-1200", "percent": "60"},
                                     {"costCentre": "CC-1400", "percent": "30.00"}])
    assert pool["allocations"] == [{"costCentre": "CC-1200", "percent": "60"},
                                   {"costCentre": "CC-1400", "percent": "30.00"}]
    lines = await pool_lines(gql, "drv-licences")
    assert {(x["kind"], x["costCentre"], x["amount"], x["quantity"], x["unit"])
            for x in lines} == {("POOL", "CC-1200", "200.00", "60", "percent"),
                                ("POOL", "CC-1400", "100.00", "30", "percent"),
                                ("UNALLOCATED", None, "33.33", "10.00", "percent")}
    assert total(lines) == Decimal("333.33")
    left = next(x for x in lines if x["kind"] == "UNALLOCATED")
    assert "percentages leave it unallocated" in left["description"]


async def test_bad_pool_definitions_name_the_field_and_write_nothing(gql, world):
    cluster = [world["cluster"]]
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"driver": "ATTRIBUTE"}, "input.attribute", "required"),
        ({"driver": "ATTRIBUTE", "attribute": "memory-gb"}, "input.attribute", "attribute"),
        ({"driver": "METER", "meter": "no-such-meter"}, "input.meter", "no such meter"),
        ({"driver": "ROLE_USERS", "role": "Nobody"}, "input.role", "no such role"),
        ({"driver": "FIXED", "allocations": [{"costCentre": "CC-9999", "percent": "5"}]},
         "input.allocations[0].costCentre", "no such cost centre"),
        ({"driver": "FIXED", "allocations": [{"costCentre": "CC-1200", "percent": "60"},
                                             {"costCentre": "CC-1400", "percent": "40.01"}]},
         "input.allocations", "100.01, more than 100"),
        ({"driver": "FIXED", "capacity": "10",
          "allocations": [{"costCentre": "CC-1200", "percent": "60"}]},
         "input.capacity", "takes no capacity"),
        ({"driver": "FIXED", "allocations": [{"costCentre": "CC-1200", "percent": "0.001"}]},
         "input.allocations[0].percent", "decimal places"),
        ({"driver": "VCPU", "meter": "vcpu-hours"}, "input.meter", "only for the METER"),
        ({"driver": "SUBSCRIPTIONS", "onward": "load"}, "input.onward", "payers"),
    ]
    for extra, field, message in cases:
        data = await gql.ok(POOL, i={"code": "drv-bad", "name": "Bad", "ciIds": cluster,
                                     **extra})
        errors = data["defineCostPool"]["errors"]
        assert data["defineCostPool"]["pool"] is None, extra
        assert [e["field"] for e in errors] == [field], (extra, errors)
        assert message in errors[0]["message"], (extra, errors)
    pools = (await gql.ok("{ costPools { code } }"))["costPools"]
    assert "drv-bad" not in {p["code"] for p in pools}
    # Redefining a pool under another driver replaces its settings.
    first = await define(gql, "10.00", code="drv-redo", driver="ATTRIBUTE",
                         attribute="memoryGb", ciIds=cluster)
    again = (await ok(gql, POOL, "defineCostPool", i={
        "code": "drv-redo", "name": "Redo", "driver": "VCPU", "ciIds": cluster}))["pool"]
    assert (first["attribute"], again["attribute"], again["driver"]) == \
        ("memoryGb", None, "VCPU")


def test_an_attribute_holder_is_not_walked_through():
    """Without a class filter, the first CI on each path with the attribute holds it: vm
    (4 GB) holds 100.00 whole; the container under it (2 GB) is not a holder. The host has
    no value and is walked through."""
    items = {"h": ItemRow("h", "host", "HYPERVISOR_HOST", None),
             "vm": ItemRow("vm", "vm", "VirtualMachine", "CC-A",
                           attrs={"memoryGb": Decimal(4)}),
             "c": ItemRow("c", "container", "APPLICATION_INSTANCE", "CC-B",
                          attrs={"memoryGb": Decimal(2)}),
             "bs": ItemRow("bs", "Shop", "BUSINESS_SERVICE", "CC-B")}
    pool = CostPool(id="p", code="mem", name="Memory", driver=Driver.ATTRIBUTE, ci_ids=["h"],
                    capacity=None, description=None, amounts={PERIOD: Decimal("100.00")},
                    currency="EUR", attribute="memoryGb")
    data = CalculationInput(period=PERIOD, currency="EUR", items=items,
                            uses={"h": ["vm"], "vm": ["c"], "c": ["bs"]}, subscriptions=[],
                            users={}, cost_centres={}, rate_cards={}, meter_units={},
                            usage=[], pools=[pool])
    engine = Engine(data)
    assert set(engine.reach(pool)) == {"h", "vm"}
    [line] = engine.run().rows
    assert (line["amountMinor"], line["ciId"], line["quantity"], line["serviceId"]) == \
        (10000, "vm", "4", "bs")
    assert line["path"] == ["Memory", "host", "vm", "container", "Shop"]



@settings(max_examples=150, deadline=None)
@given(world=worlds(), seed=st.integers(0, 10**6))
def test_attribute_pools_onward_fixed_and_subscriptions_allocate_exactly(world, seed):
    """Random clusters: an ATTRIBUTE pool over the VMs' memory passed onward by the apps'
    load matches the weighted rule worked out independently (a subscription paying its
    active days); a SUBSCRIPTIONS pool and a FIXED pool book exactly their amount, the FIXED
    one its percentages of it; a second run gives the same lines."""
    rnd = random.Random(seed)
    items = {i: replace(x, attrs={"memoryGb": Decimal(rnd.randint(1, 16))})
             if x.cls == "VirtualMachine" else
             replace(x, attrs={"load": Decimal(rnd.choice([0, 1, 3]))})
             if x.cls == "ApplicationInstance" else x for i, x in world.items.items()}
    # A second app on each VM (so a VM's share has apps to divide among by load), serving
    # a service when there is one.
    uses = {k: list(v) for k, v in world.uses.items()}
    services = sorted(i for i, x in items.items() if x.cls == "BUSINESS_SERVICE")
    for vm in sorted(i for i, x in world.items.items() if x.cls == "VirtualMachine"):
        app = "x" + vm
        items[app] = ItemRow(app, app, "ApplicationInstance", None,
                             attrs={"load": Decimal(rnd.choice([1, 2, 3]))})
        uses.setdefault(vm, []).append(app)
        if services:
            uses[app] = [rnd.choice(services)]
    cluster = sorted(i for i in items if i.startswith("cl"))[0]
    base = dict(ci_ids=[cluster], capacity=None, description=None, currency="EUR")
    amounts = {PERIOD: Decimal(rnd.randint(0, 10**6)) / 100}
    pools = [CostPool(id="a", code="mem", name="Memory", driver=Driver.ATTRIBUTE,
                      amounts=amounts, attribute="memoryGb",
                      holder_classes=["VirtualMachine"], onward="load", **base),
             CostPool(id="s", code="subs", name="Subs", driver=Driver.SUBSCRIPTIONS,
                      amounts=amounts, **base),
             CostPool(id="f", code="fixed", name="Fixed", driver=Driver.FIXED,
                      amounts=amounts, allocations=[
                          PoolAllocation(cost_centre="CC-A", percent=Decimal("33.33")),
                          PoolAllocation(cost_centre="CC-B", percent=Decimal("50"))], **base)]
    data = replace(world, items=items, uses=uses, pools=pools)
    rows = Engine(data).run().rows
    cents = int(amounts[PERIOD] * 100)
    for code in ("mem", "subs", "fixed"):
        mine = [r for r in rows if r["pool"] == code]
        assert sum(r["amountMinor"] for r in mine) == cents and \
            all(r["amountMinor"] >= 0 for r in mine)
    fixed = {r.get("costCentre"): Fraction(r["share"]) for r in rows if r["pool"] == "fixed"}
    assert fixed == {"CC-A": Fraction(3333, 10000), "CC-B": Fraction(1, 2),
                     None: Fraction(1667, 10000)}
    again = Engine(replace(data, items=dict(items))).run().rows
    assert [(r["id"], r["amountMinor"]) for r in again] == \
        [(r["id"], r["amountMinor"]) for r in rows]
    if not acyclic(data):
        return
    host_of = {vm: h for h, cs in data.uses.items() if h.startswith("h") for vm in cs
               if vm.startswith("vm")}
    cluster_of = {h: c for c, cs in data.uses.items() if c.startswith("cl") for h in cs}
    mem = {vm: Fraction(items[vm].attrs["memoryGb"]) for vm, h in host_of.items()
           if cluster_of[h] == cluster}
    load = {i: Fraction(x.attrs["load"]) for i, x in items.items() if x.attrs.get("load")}
    used = sum(mem.values(), Fraction(0))
    want: dict[str, Fraction] = {}
    for vm, w in mem.items():
        for payer, f in pays(data, vm, load).items():
            sub = next((s for s in data.subscriptions if s.id == payer), None)
            if sub is not None:  # through a CI it provisioned: for the days it was active
                f *= Fraction(active(sub), 31)
            elif payer is not None and payer.endswith("@svc"):  # through a service
                payer = payer.removesuffix("@svc")
            if payer is not None and f:
                want[payer] = want.get(payer, Fraction(0)) + w / used * f
    got = {r.get("subscriptionId") or r["serviceId"]: Fraction(r["share"]) for r in rows
           if r["pool"] == "mem" and (r.get("subscriptionId") or r.get("serviceId"))}
    assert got == want
