"""November 2026 worked out by hand, the way a finance analyst would in a spreadsheet.

Every figure below was worked out on paper from the rules in docs/chargeback.md; the test
fixes them as literals and never asks the engine's own code for an expected value.

The estate (built through the API on an empty graph):
- cost centres CC-A Sales (sam), CC-B Finance (tess), CC-IT IT services;
- two ESX hosts with asset records, and three VMs on them: vm-sites 32 GB of memory and
  vm-intranet 24 GB on esx-1, vm-db 64 GB on esx-2;
- three business services on the VMs, each with its own recovery rule:
  Team sites (CONSUMERS) on vm-sites, Managed database (PRICES) on vm-db, Intranet (OWNER,
  CC-B) on vm-intranet; Team sites and Managed database belong to CC-IT;
- catalogue items "Team site" (10.00 a month) for Team sites and "Database" (50.00 a month,
  20.00 one-off) for Managed database.

1. The hosts' pool takes its cost from their assets (straight-line by the day):
   - esx-1: 7,300.00 over 24 months from 2025-11-01, a span of 730 days, all 30 of
     November inside it: 7300 x 30/730 = 300.00; support 120.00 a month: 120.00;
   - esx-2: 3,650.00 over 12 months from 2026-11-17, a span of 365 days, 14 days of
     November inside it (17th to 30th): 3650 x 14/365 = 140.00; support 60.00 a month from
     the 17th: 60 x 14/30 = 28.00.
   Pool cost: 300 + 120 + 140 + 28 = 588.00.
2. It is shared by the VMs' memory (a weighted driver, ATTRIBUTE memoryGb) with a capacity of
   160 GB: 32 + 64 + 24 = 120 GB used, 40 GB idle.
   | holder | share | amount |
   | vm-sites | 32/160 | 588 x 0.2 = 117.60 |
   | vm-db | 64/160 | 235.20 |
   | vm-intranet | 24/160 | 88.20 |
   | idle | 40/160 | 147.00 (unallocated) |
3. vm-sites' 117.60 reaches Team sites (CONSUMERS): its subscriptions pay by subscription-days.
   sam's site, ordered 20 October: 30 days; tess's site, ordered 1 November and
   decommissioned on the 17th: 16 days (the 1st to the 16th). 117.60 x 30/46 = 76.6956...,
   117.60 x 16/46 = 40.9043... Floors 76.69 + 40.90 leave one cent of the pool: it goes to the
   largest remainder (.5652 against .4347 and the whole-cent shares): sam 76.70, tess 40.90.
4. vm-db's 235.20 reaches Managed database (PRICES): the service keeps it, not invoiced, and
   recovers through its catalogue price. Fees: tess's database (ordered 1 September) 50.00;
   sam's (ordered 10 November, 21 days) 50 x 21/30 = 35.00 and the one-off 20.00.
   Recovered 105.00 against a cost of 235.20: under-recovered by 130.20.
5. vm-intranet's 88.20 reaches Intranet (OWNER): its own cost centre, CC-B.
6. Fees of the team sites: sam 10.00 (30 days), tess 10 x 16/30 = 5.333... -> 5.33.
7. Usage: sam's database stores 250 GB-months; rate card 0.10 up to 100, 0.08 above:
   100 x 0.10 + 150 x 0.08 = 22.00, to sam (his subscription provisioned the CI).

| cost centre | lines | amount | invoiced |
| CC-A (sam) | 10.00 + 76.70 + 35.00 + 20.00 + 22.00 | 163.70 | 163.70 |
| CC-B (tess, Intranet) | 5.33 + 40.90 + 50.00 + 88.20 | 184.43 | 184.43 |
| CC-IT (Managed database) | 235.20 | 235.20 | 0.00 |
| unallocated | 147.00 | 147.00 | 0.00 |
| total | fees 120.33 + usage 22.00 + pool 588.00 | 730.33 | 348.13 |
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from cmdb.core import clock
from tests.catalog_world import DECOMMISSION, add_users, create_item
from tests.chargeback_world import CALCULATE, DEFINE_METER, POOL, PUBLISH, REPORT, USAGE, ok
from tests.test_chargeback_recovery import ci, cost_centre, order, relate, service

pytestmark = pytest.mark.integration

PERIOD = "2026-11"
SET_ASSET = """mutation($id: ID!, $i: AssetInput!) { setAsset(ciId: $id, input: $i) {
  errors { field message } } }"""
RECOVERY = """query($p: String!) { chargeRecovery(period: $p) { serviceName costCentre rule
  cost recovered overUnder } }"""
LINES = """query($p: String!) { chargeLines(period: $p, first: 1000) { lines {
  kind amount costCentre invoiced user serviceName subscriptionId catalogueItemName ciName
  recovery pool quantity description } } }"""
DB_FORM = {"type": "object", "properties": {"dbName": {"type": "string"}},
           "required": ["dbName"], "additionalProperties": False}


def at(month: int, day: int, hour: int = 9) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def vm(gql: Any, name: str, memory_gb: int, host: str) -> str:
    r = await ok(gql, "mutation($i: CreateConfigurationItemInput!) { createConfigurationItem("
                 "input: $i) { configurationItem { id } errors { message } } }",
                 "createConfigurationItem",
                 i={"name": name, "ciClass": "VIRTUAL_MACHINE", "operationalState": "UP",
                    "attributes": {"memoryGb": memory_gb}})
    vm_id: str = r["configurationItem"]["id"]
    await gql.ok("mutation($i: RelateInput!) { relate(input: $i) { errors { message } } }",
                 i={"sourceId": vm_id, "targetId": host, "type": "RUNS_ON"})
    return vm_id


@pytest_asyncio.fixture
async def november(gql: Any, clean_db: Any) -> Any:
    """The estate of the module text, orders placed on their days, the month calculated."""
    clock.pin(at(9, 1))
    try:
        ccs = {code: await cost_centre(gql, code, name) for code, name in (
            ("CC-A", "Sales"), ("CC-B", "Finance"), ("CC-IT", "IT services"))}
        await add_users(clean_db, [
            {"userName": "alice", "costCentre": "CC-A", "owns": ["CC-A"]},
            {"userName": "bea", "costCentre": "CC-B", "owns": ["CC-B"]},
            {"userName": "sam", "costCentre": "CC-A", "manager": "alice"},
            {"userName": "tess", "costCentre": "CC-B", "manager": "bea"}])
        esx1, esx2 = await ci(gql, "esx-1", "HYPERVISOR_HOST"), await ci(gql, "esx-2",
                                                                          "HYPERVISOR_HOST")
        sites_vm, db_vm = await vm(gql, "vm-sites", 32, esx1), await vm(gql, "vm-db", 64, esx2)
        intranet_vm = await vm(gql, "vm-intranet", 24, esx1)
        for host, asset in ((esx1, {"purchasePrice": "7300.00", "purchaseDate": "2025-11-01",
                                    "depreciationMonths": 24, "supportMonthly": "120.00"}),
                            (esx2, {"purchasePrice": "3650.00", "purchaseDate": "2026-11-17",
                                    "depreciationMonths": 12, "supportMonthly": "60.00"})):
            assert (await gql.ok(SET_ASSET, id=host, i=asset))["setAsset"]["errors"] == []
        for name, rule, cc, on in (("Team sites", "CONSUMERS", "CC-IT", sites_vm),
                                   ("Managed database", "PRICES", "CC-IT", db_vm),
                                   ("Intranet", "OWNER", "CC-B", intranet_vm)):
            await relate(gql, await service(gql, name, "BUSINESS", ccs[cc], rule), on)
        site = await create_item(gql, "Team site", form={"type": "object", "properties": {},
                                                         "additionalProperties": False},
                                 price={"currency": "EUR", "oneOff": "0", "monthly": "10.00"},
                                 recipe={"service": "Team sites"})
        database = await create_item(
            gql, "Database", form=DB_FORM,
            price={"currency": "EUR", "oneOff": "20.00", "monthly": "50.00"},
            recipe={"service": "Managed database",
                    "cis": [{"key": "db", "ciClass": "Database", "name": "db-{dbName}"}]})
        await ok(gql, DEFINE_METER, "defineMeter", i={"code": "db-gb-month",
                                                      "name": "Database storage",
                                                      "unit": "GB-month"})
        await ok(gql, PUBLISH, "publishRateCard", i={
            "meter": "db-gb-month", "effectiveFrom": "2026-01-01", "currency": "EUR",
            "tiers": [{"upTo": "100", "rate": "0.10"}, {"upTo": None, "rate": "0.08"}]})
        await ok(gql, POOL, "defineCostPool", i={
            "code": "esx-hosts", "name": "ESX hosts", "driver": "ATTRIBUTE",
            "attribute": "memoryGb", "holderClasses": ["VIRTUAL_MACHINE"],
            "capacity": "160", "ciIds": [esx1, esx2], "costSource": "ASSETS"})

        subs = {"tess-db": await order(gql, "tess", database, {"dbName": "ledger"})}
        clock.pin(at(10, 20))
        subs["sam-site"] = await order(gql, "sam", site)
        clock.pin(at(11, 1))
        subs["tess-site"] = await order(gql, "tess", site)
        clock.pin(at(11, 10))
        subs["sam-db"] = await order(gql, "sam", database, {"dbName": "pipeline"})
        clock.pin(at(11, 17))
        ended = await gql.as_user("tess", "requester").ok(DECOMMISSION, id=subs["tess-site"])
        assert ended["decommissionSubscription"]["errors"] == []
        clock.pin(at(11, 30, 22))
        sam_db = (await gql.ok("query($id: ID!) { subscription(id: $id) { configurationItems"
                               " { id } } }", id=subs["sam-db"]))
        [db_ci] = sam_db["subscription"]["configurationItems"]
        usage = await ok(gql, USAGE, "recordUsage", r=[{
            "recordId": "db-pipeline-2026-11", "ciId": db_ci["id"], "meter": "db-gb-month",
            "quantity": "250", "at": at(11, 30, 21).isoformat(), "source": "dbaas"}])
        assert (usage["created"], usage["rejected"]) == (1, [])
        result = (await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD))["result"]
        yield subs, result
    finally:
        clock.pin(None)


async def test_the_month_matches_the_analysts_sheet_to_the_cent(gql, november):
    subs, result = november
    assert (result["total"], result["unallocated"], result["warnings"]) == \
        ("730.33", "147.00", [])
    rows = (await gql.ok(LINES, p=PERIOD))["chargeLines"]["lines"]
    who = {v: k for k, v in subs.items()}
    got = sorted((r["kind"], who.get(r["subscriptionId"]) or r["serviceName"]
                  or r["costCentre"], r["amount"], r["costCentre"], r["invoiced"])
                 for r in rows)
    assert got == sorted([
        # 6. Team site fees: sam all 30 days, tess the 1st to the 16th.
        ("RECURRING_FEE", "sam-site", "10.00", "CC-A", True),
        ("RECURRING_FEE", "tess-site", "5.33", "CC-B", True),
        # 4. Database fees: tess all month; sam from the 10th (21 days) and the one-off.
        ("RECURRING_FEE", "tess-db", "50.00", "CC-B", True),
        ("RECURRING_FEE", "sam-db", "35.00", "CC-A", True),
        ("ONE_OFF_FEE", "sam-db", "20.00", "CC-A", True),
        # 7. sam's database's own usage.
        ("USAGE", "sam-db", "22.00", "CC-A", True),
        # 2.-5. The hosts' 588.00 by memory, then by each service's rule.
        ("POOL", "sam-site", "76.70", "CC-A", True),
        ("POOL", "tess-site", "40.90", "CC-B", True),
        ("POOL", "Managed database", "235.20", "CC-IT", False),
        ("POOL", "Intranet", "88.20", "CC-B", True),
        ("UNALLOCATED", None, "147.00", None, False),
    ])
    [pool_line] = [r for r in rows if r["serviceName"] == "Intranet" and r["pool"]]
    assert "588.00 EUR from the depreciation and support of 2 assets" in \
        pool_line["description"]
    [kept] = [r for r in rows if r["serviceName"] == "Managed database" and r["pool"]]
    assert kept["recovery"] == "PRICES"
    [idle] = [r for r in rows if r["kind"] == "UNALLOCATED"]
    assert idle["quantity"] == "40" and "idle capacity" in idle["description"]

    report = (await gql.ok(REPORT, p=PERIOD, by="COST_CENTRE"))["costReport"]
    assert {r["key"]: (r["amount"], r["invoiced"]) for r in report["rows"]} == {
        "CC-A": ("163.70", "163.70"), "CC-B": ("184.43", "184.43"),
        "CC-IT": ("235.20", "0.00"), None: ("147.00", "0.00")}
    assert (report["total"], report["invoiced"]) == ("730.33", "348.13")
    assert sum(Decimal(r["amount"]) for r in report["rows"]) == Decimal("730.33")

    recovery = (await gql.ok(RECOVERY, p=PERIOD))["chargeRecovery"]
    assert recovery == [{"serviceName": "Managed database", "costCentre": "CC-IT",
                         "rule": "PRICES", "cost": "235.20", "recovered": "105.00",
                         "overUnder": "-130.20"}]
