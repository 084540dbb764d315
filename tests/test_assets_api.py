"""Asset records on CIs and cost pools that take their month from them, through the API.

The world: cluster "vsphere-a" (its own asset: a licence) with two member hosts bought in
the middle of October 2026, each with a support contract; a VM (4 vCPUs) runs on the cluster
and the business service Trading (cost centre CC-T) depends on it, so the whole pool reaches
one line. The VM carries an asset too, which the pool must NOT count (it runs on the cluster,
it is not a member of it).

Worked out by hand (straight-line daily; spans from the purchase day included to the same
day so many months later excluded; support by the days of the month covered):

- esx-a: 36,600.00 on 2026-10-16, 36 months: span 2026-10-16 -> 2029-10-16 = 365 + 366
  (February 2028) + 365 = 1,096 days. Support 310.00 a month from the purchase, open.
  October: 16 days (16th-31st): 36600 x 16 / 1096 = 534.306569...; support 310 x 16/31 = 160.
  November: 30 days: 36600 x 30 / 1096 = 1,001.824817...; support 310.
- esx-b: 24,000.00 less 2,400.00 residual = 21,600.00 on 2026-10-21, 60 months: span to
  2031-10-21 = 365 + 366 + 365 + 365 + 365 = 1,826 days. Support 150.00 from the purchase
  to 2026-11-11 (excluded).
  October: 11 days (21st-31st): 21600 x 11 / 1826 = 130.120481...; support 150 x 11/31 =
  53.225806...
  November: 21600 x 30 / 1826 = 354.874041...; support 10 days (1st-10th): 150 x 10/30 = 50.
- vsphere-a licence: 1,200.00 on 2026-10-01, 12 months: 365 days.
  October: 1200 x 31 / 365 = 101.917808...; November: 1200 x 30 / 365 = 98.630136...

October: 534.306569 + 160 + 130.120481 + 53.225806 + 101.917808 = 979.570665... -> 979.57
November: 1001.824817 + 310 + 354.874041 + 50 + 98.630136 = 1815.328996... -> 1815.33
November without esx-b (retired): 1001.824817 + 310 + 98.630136 = 1410.454954... -> 1410.45
(Counting the VM's asset, 1,000.00 over 12 months from 2026-10-01, would add 84.93 in
October: 1000 x 31 / 365.)
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.chargeback_world import CALCULATE, CLOSE, LINES, POOL, POOL_AMOUNT, ok
from tests.test_ci_api import create_ci
from tests.test_relations_api import make_service, relate

pytestmark = pytest.mark.integration

ASSET_FIELDS = """purchasePrice currency purchaseDate depreciationMonths residualValue
  supportMonthly supportStart supportEnd warrantyEnd assetTag serialNumber vendor updatedBy
  depreciationEnd monthlyDepreciation"""
SET_ASSET = """mutation($id: ID!, $i: AssetInput!) { setAsset(ciId: $id, input: $i) {
  asset { """ + ASSET_FIELDS + """ } configurationItem { id name }
  errors { field message code } } }"""
CLEAR_ASSET = """mutation($id: ID!) { clearAsset(ciId: $id) { cleared
  configurationItem { id } errors { field message code } } }"""
READ_ASSET = """query($id: ID!, $at: Date) { configurationItem(id: $id) { name lifecycleStatus
  asset { """ + ASSET_FIELDS + """ bookValue(at: $at) } } }"""
POOLS = """query($p: String!) { costPools { code costSource costs { period amount }
  assetCost(period: $p) { period amount currency assets overriddenBy
    items { ciName assetTag depreciation support } } } }"""

HOST_A = {"purchasePrice": "36600.00", "purchaseDate": "2026-10-16", "depreciationMonths": 36,
          "supportMonthly": "310.00", "assetTag": "AT-0001", "serialNumber": "CZ1234",
          "vendor": "HPE", "warrantyEnd": "2029-10-15"}
HOST_B = {"purchasePrice": "24000.00", "residualValue": "2400.00",
          "purchaseDate": "2026-10-21", "depreciationMonths": 60, "supportMonthly": "150.00",
          "supportEnd": "2026-11-11", "assetTag": "AT-0002"}
LICENCE = {"purchasePrice": "1200.00", "purchaseDate": "2026-10-01", "depreciationMonths": 12}
VM_LICENCE = {"purchasePrice": "1000.00", "purchaseDate": "2026-10-01",
              "depreciationMonths": 12}


async def set_asset(gql: Any, ci: str, data: dict[str, Any]) -> dict[str, Any]:
    out = (await gql.ok(SET_ASSET, id=ci, i=data))["setAsset"]
    assert out["errors"] == [], out["errors"]
    asset: dict[str, Any] = out["asset"]
    return asset


async def errors_of(gql: Any, ci: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    out = (await gql.ok(SET_ASSET, id=ci, i=data))["setAsset"]
    assert out["asset"] is None
    return [(e["field"], e["code"]) for e in out["errors"]]


async def asset_of(gql: Any, ci: str, at: str | None = None) -> dict[str, Any] | None:
    found: dict[str, Any] | None = (await gql.ok(READ_ASSET, id=ci, at=at))[
        "configurationItem"]["asset"]
    return found


async def test_an_asset_record_is_set_read_replaced_and_cleared(gql):
    host = (await create_ci(gql, name="esx-a", ciClass="HYPERVISOR_HOST"))["id"]
    assert await asset_of(gql, host) is None
    operator = gql.as_user("olga", "operator")
    written = await set_asset(operator, host, HOST_A)
    assert written == {
        "purchasePrice": "36600.00", "currency": "EUR", "purchaseDate": "2026-10-16",
        "depreciationMonths": 36, "residualValue": "0.00", "supportMonthly": "310.00",
        "supportStart": "2026-10-16", "supportEnd": None, "warrantyEnd": "2029-10-15",
        "assetTag": "AT-0001", "serialNumber": "CZ1234", "vendor": "HPE", "updatedBy": "olga",
        "depreciationEnd": "2029-10-16",
        # 36600 / 36 = 1016.666... -> 1016.67
        "monthlyDepreciation": "1016.67"}
    read = await asset_of(gql, host, "2026-11-01")
    assert read is not None
    # 36600 - 36600 x 16 / 1096 (October's 16 days) = 36065.693430... -> 36065.69
    assert read["bookValue"] == "36065.69"
    assert {k: v for k, v in read.items() if k != "bookValue"} == written
    early = await asset_of(gql, host, "2026-10-16")
    assert early is not None and early["bookValue"] == "36600.00"
    late = await asset_of(gql, host, "2030-01-01")
    assert late is not None and late["bookValue"] == "0.00"

    # Setting it again replaces the whole record: what is left out takes its default.
    again = await set_asset(gql, host, {**LICENCE, "currency": "EUR"})
    assert (again["purchasePrice"], again["vendor"], again["assetTag"], again["supportMonthly"],
            again["supportStart"]) == ("1200.00", None, None, "0.00", "2026-10-01")

    cleared = (await gql.ok(CLEAR_ASSET, id=host))["clearAsset"]
    assert (cleared["cleared"], cleared["configurationItem"]["id"]) == (True, host)
    assert await asset_of(gql, host) is None
    twice = (await gql.ok(CLEAR_ASSET, id=host))["clearAsset"]
    assert (twice["cleared"], twice["errors"]) == (False, [])

    # Only those who may edit CIs may set or clear a record.
    refused = await gql.as_user("rita", "requester")(SET_ASSET, id=host, i=HOST_A)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    refused = await gql.as_user("fiona", "finance_all")(CLEAR_ASSET, id=host)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_bad_values_are_refused_by_field_and_nothing_is_written(gql, clean_db):
    host = (await create_ci(gql, name="esx-a", ciClass="HYPERVISOR_HOST"))["id"]
    other = (await create_ci(gql, name="esx-b", ciClass="HYPERVISOR_HOST"))["id"]
    await set_asset(gql, host, HOST_A)
    before = await asset_of(gql, host)

    assert await errors_of(gql, host, {**HOST_A, "purchasePrice": "-1.00"}) == [
        ("input.purchasePrice", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "purchasePrice": "100.005"}) == [
        ("input.purchasePrice", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "depreciationMonths": 0}) == [
        ("input.depreciationMonths", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "depreciationMonths": 601}) == [
        ("input.depreciationMonths", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "residualValue": "36600.00"}) == [
        ("input.residualValue", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "supportMonthly": "-5"}) == [
        ("input.supportMonthly", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "supportStart": "2026-12-01",
                                       "supportEnd": "2026-12-01"}) == [
        ("input.supportEnd", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "warrantyEnd": "2026-10-15"}) == [
        ("input.warrantyEnd", "INVALID")]
    assert await errors_of(gql, host, {**HOST_A, "assetTag": "  "}) == [
        ("input.assetTag", "INVALID")]
    # Two problems at once: both are named.
    assert sorted(await errors_of(gql, host, {**HOST_A, "residualValue": "99999.00",
                                              "currency": "USD"})) == [
        ("input.currency", "INVALID"), ("input.residualValue", "INVALID")]
    usd = (await gql.ok(SET_ASSET, id=host, i={**HOST_A, "currency": "USD"}))["setAsset"]
    assert "kept in EUR" in usd["errors"][0]["message"]
    # Another CI's asset tag.
    assert await errors_of(gql, other, {**HOST_B, "assetTag": "AT-0001"}) == [
        ("input.assetTag", "CONFLICT")]
    # An unknown CI, and a service (not a CI).
    nowhere = "00000000-0000-4000-8000-000000000000"
    assert await errors_of(gql, nowhere, HOST_A) == [("ciId", "NOT_FOUND")]
    service = await make_service(gql, "Trading")
    assert await errors_of(gql, service, HOST_B) == [("ciId", "NOT_FOUND")]
    cleared = (await gql.ok(CLEAR_ASSET, id=nowhere))["clearAsset"]
    assert [(e["field"], e["code"]) for e in cleared["errors"]] == [("ciId", "NOT_FOUND")]

    assert await asset_of(gql, host) == before
    assert await asset_of(gql, other) is None
    rows = await clean_db.read("MATCH (a:Asset) RETURN count(a) AS n")
    assert rows[0]["n"] == 1


async def build_cluster(gql: Any) -> dict[str, str]:
    cc = (await gql.ok('mutation { createCostCentre(input: {code: "CC-T", name: "Trading"}) '
                       "{ costCentre { id } errors { message } } }"))
    cc_id = cc["createCostCentre"]["costCentre"]["id"]
    ids = {
        "cluster": (await create_ci(gql, name="vsphere-a", ciClass="CLUSTER"))["id"],
        "a": (await create_ci(gql, name="esx-a", ciClass="HYPERVISOR_HOST"))["id"],
        "b": (await create_ci(gql, name="esx-b", ciClass="HYPERVISOR_HOST"))["id"],
        "vm": (await create_ci(gql, name="trade-vm", ciClass="VIRTUAL_MACHINE",
                               attributes={"cpu": 4}))["id"],
    }
    svc = await gql.ok("mutation($i: CreateServiceInput!) { createService(input: $i) "
                       "{ service { id } errors { message } } }",
                       i={"name": "Trading", "kind": "BUSINESS", "costCentreId": cc_id})
    ids["svc"] = svc["createService"]["service"]["id"]
    await relate(gql, ids["a"], ids["cluster"], "MEMBER_OF")
    await relate(gql, ids["b"], ids["cluster"], "MEMBER_OF")
    await relate(gql, ids["vm"], ids["cluster"], "RUNS_ON")
    await relate(gql, ids["svc"], ids["vm"], "DEPENDS_ON")
    await set_asset(gql, ids["a"], HOST_A)
    await set_asset(gql, ids["b"], HOST_B)
    await set_asset(gql, ids["cluster"], LICENCE)
    await set_asset(gql, ids["vm"], VM_LICENCE)
    await ok(gql, POOL, "defineCostPool", i={
        "code": "vsphere-a", "name": "vSphere cluster A", "driver": "VCPU",
        "ciIds": [ids["cluster"]], "costSource": "ASSETS"})
    return ids


async def pool_lines(gql: Any, period: str) -> list[dict[str, Any]]:
    page = (await gql.ok(LINES, p=period, f={"kind": "POOL"}, first=100))["chargeLines"]
    return list(page["lines"])


@pytest.fixture
async def cluster(gql):
    return await build_cluster(gql)


async def test_an_assets_pool_costs_what_its_cluster_and_hosts_depreciate(gql, cluster):
    listed = (await gql.ok("{ configurationItems { edges { node { name asset { assetTag "
                           "purchasePrice } } } } }"))["configurationItems"]["edges"]
    assert {e["node"]["name"]: e["node"]["asset"] for e in listed} == {
        "esx-a": {"assetTag": "AT-0001", "purchasePrice": "36600.00"},
        "esx-b": {"assetTag": "AT-0002", "purchasePrice": "24000.00"},
        "vsphere-a": {"assetTag": None, "purchasePrice": "1200.00"},
        "trade-vm": {"assetTag": None, "purchasePrice": "1000.00"}}
    pools = (await gql.ok(POOLS, p="2026-10"))["costPools"]
    [pool] = pools
    assert (pool["costSource"], pool["costs"]) == ("ASSETS", [])
    check = pool["assetCost"]
    assert (check["amount"], check["assets"], check["currency"], check["overriddenBy"]) == \
        ("979.57", 3, "EUR", None)
    # Each asset's exact part, shown to six places, by CI name (the VM is not there).
    assert [(i["ciName"], i["depreciation"], i["support"]) for i in check["items"]] == [
        ("esx-a", "534.306569", "160.000000"), ("esx-b", "130.120482", "53.225806"),
        ("vsphere-a", "101.917808", "0.000000")]

    october = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-10")
    assert (october["result"]["total"], october["result"]["unallocated"]) == ("979.57", "0.00")
    [line] = await pool_lines(gql, "2026-10")
    assert (line["amount"], line["costCentre"], line["pool"], line["driver"]) == \
        ("979.57", "CC-T", "vsphere-a", "VCPU")
    assert line["description"] == ("vSphere cluster A: 979.57 EUR from the depreciation and "
                                   "support of 3 assets, shared by VCPU")

    november = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-11")
    assert november["result"]["total"] == "1815.33"
    [line] = await pool_lines(gql, "2026-11")
    assert line["amount"] == "1815.33"
    # Before the first purchase there is nothing to share: no pool line at all.
    september = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-09")
    assert (september["result"]["total"], september["result"]["lines"]) == ("0.00", 0)


async def test_an_amount_set_by_hand_overrides_the_assets_for_its_period(gql, cluster):
    await ok(gql, POOL_AMOUNT, "setCostPoolAmount", c="vsphere-a", p="2026-11", a="2000.00")
    [pool] = (await gql.ok(POOLS, p="2026-11"))["costPools"]
    assert (pool["assetCost"]["amount"], pool["assetCost"]["overriddenBy"]) == \
        ("1815.33", "2000.00")
    november = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-11")
    assert november["result"]["total"] == "2000.00"
    [line] = await pool_lines(gql, "2026-11")
    assert line["description"] == "vSphere cluster A: 2000.00 EUR shared by VCPU"
    # Other periods still take the assets.
    october = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-10")
    assert october["result"]["total"] == "979.57"


async def test_a_retired_host_drops_out_and_a_closed_month_keeps_its_lines(gql, cluster):
    await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-10")
    closed = await ok(gql, CLOSE, "closeChargePeriod", p="2026-10")
    assert closed["result"]["total"] == "979.57"
    retired = await gql.ok("mutation($id: ID!) { retireConfigurationItem(id: $id) "
                           "{ errors { message } } }", id=cluster["b"])
    assert retired["retireConfigurationItem"]["errors"] == []

    november = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-11")
    assert november["result"]["total"] == "1410.45"
    [line] = await pool_lines(gql, "2026-11")
    assert "support of 2 assets" in line["description"]
    # October is closed: recalculating changes nothing.
    again = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-10")
    assert (again["result"]["changed"], again["result"]["total"]) == (False, "979.57")
    [line] = await pool_lines(gql, "2026-10")
    assert line["amount"] == "979.57"

    # The retired host keeps its record, which no longer changes.
    kept = await asset_of(gql, cluster["b"])
    assert kept is not None and kept["assetTag"] == "AT-0002"
    assert await errors_of(gql, cluster["b"], HOST_B) == [("ciId", "CONFLICT")]
    refused = (await gql.ok(CLEAR_ASSET, id=cluster["b"]))["clearAsset"]
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [("ciId", "CONFLICT")]
    assert await asset_of(gql, cluster["b"]) == kept


async def test_a_manual_pool_ignores_its_assets_and_asset_cost_checks_its_period(gql, cluster):
    await ok(gql, POOL, "defineCostPool", i={
        "code": "vsphere-a", "name": "vSphere cluster A", "driver": "VCPU",
        "ciIds": [cluster["cluster"]]})
    [pool] = (await gql.ok(POOLS, p="2026-10"))["costPools"]
    assert (pool["costSource"], pool["assetCost"]["amount"]) == ("MANUAL", "979.57")
    october = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-10")
    assert october["result"]["total"] == "0.00"
    bad = await gql(POOLS, p="2026-13")
    assert bad["errors"][0]["extensions"]["fields"][0]["field"] == "period"
