"""A scripted October 2026 over the demo enterprise, worked out by hand.

- Storage is metered in GB-months at the demo's tiered rate card: the first 1,000 GB at 0.10, up to
  5,000 at 0.08, above at 0.05 (per CI and month).
  - vol-payroll-data, 2,048 GB: 1000 x 0.10 + 1048 x 0.08 = 183.84 -> Payroll (CC-1400);
  - vol-trading-data, 4,096 GB sent as 2,000 + 2,096: tiers apply to the sum:
    1000 x 0.10 + 3096 x 0.08 = 347.68 -> Trading (CC-1200).
- johnW (CC-1200) orders a SharePoint site (15.00 a month) on 11 October: 21 of 31 days,
  15 x 21 / 31 = 10.161... -> 10.16.
- The VDI platform pool costs 1,000.00 in October, shared by desktop sessions: johnW 3,
  priyaS 2 (CC-1100), maryK 2 (CC-1400). 1000 x 3/7 = 428.571..., 1000 x 2/7 = 285.714...
  twice: floors 428.57 + 285.71 + 285.71 = 999.99; the cent left goes to the largest
  remainder, a tie between maryK and priyaS broken by name: maryK 285.72.
- CC-1100 is showback: shown 285.71, invoiced 0.

Totals: CC-1200 347.68 + 10.16 + 428.57 = 786.41; CC-1400 183.84 + 285.72 = 469.56;
CC-1100 285.71; the whole company (CC-1000, rolled up) 1,541.68; nothing unallocated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio

from cmdb.core import clock
from cmdb.demo.loader import load_demo
from tests.auth import auth_headers
from tests.catalog_world import APPROVE, submit

PERIOD = "2026-10"
AGENT = auth_headers("horizon-export", "discovery_agent")
EXPECTED = {"CC-1200": "786.41", "CC-1400": "469.56", "CC-1100": "285.71"}

DEFINE_METER = """mutation($i: DefineMeterInput!) { defineMeter(input: $i) {
  created meter { code unit } errors { field message code } } }"""
PUBLISH = """mutation($i: PublishRateCardInput!) { publishRateCard(input: $i) {
  rateCard { id version effectiveFrom effectiveTo tiered } errors { field message code } } }"""
POOL = """mutation($i: DefineCostPoolInput!) { defineCostPool(input: $i) {
  pool { code } errors { field message code } } }"""
POOL_AMOUNT = """mutation($c: String!, $p: String!, $a: Decimal!) {
  setCostPoolAmount(code: $c, period: $p, amount: $a) { pool { code costs { period amount } }
  errors { field message code } } }"""
USAGE = """mutation($r: [UsageRecordInput!]!) { recordUsage(records: $r) {
  received created duplicates late rejected { index recordId reason }
  errors { field message code } } }"""
CALCULATE = """mutation($p: String!) { calculateChargePeriod(period: $p) {
  result { changed lines total allocated unallocated warnings
           period { id status checksum total lineCount } }
  errors { field message code } } }"""
CLOSE = """mutation($p: String!) { closeChargePeriod(period: $p) {
  result { changed lines total period { id status checksum closedBy } }
  errors { field message code } } }"""
REPORT = """query($p: String!, $by: CostReportDimension!) { costReport(period: $p, by: $by) {
  total invoiced currency period { id status total }
  rows { key name amount rolledUp invoiced lines parent billingMode } } }"""
LINE_FIELDS = """id kind amount costCentre invoiced user serviceName catalogueItemName
  subscriptionId ciName meter unit quantity rateVersion unitPrice pool driver share path
  adjusts correctsLine description chargeStart chargeEnd"""
LINES = ("""query($p: String!, $f: ChargeLineFilter, $first: Int, $after: String) {
  chargeLines(period: $p, filter: $f, first: $first, after: $after) { endCursor hasNextPage
  lines { """ + LINE_FIELDS + " } } }")


def at(day: int, hour: int = 9, month: int = 10) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


async def ids_by_name(gql: Any, *names: str) -> dict[str, str]:
    out = {}
    for name in names:
        data = await gql.ok("query($n: String!) { configurationItems(filter: {nameContains: $n})"
                            " { edges { node { id name } } } }", n=name)
        [found] = [e["node"] for e in data["configurationItems"]["edges"]
                   if e["node"]["name"] == name]
        out[name] = found["id"]
    return out


def sessions(user: str, desktop: str, pool: str, host: str, days: list[int]
             ) -> list[dict[str, Any]]:
    events = []
    for d in days:
        sid = f"oct-{user}-{d}"
        common = {"sessionId": sid, "user": f"CORP\\{user}", "desktop": desktop,
                  "pool": pool, "host": host}
        events.append({**common, "eventId": f"{sid}-on", "eventType": "LOGON",
                       "timestamp": at(d, 8).isoformat()})
        events.append({**common, "eventId": f"{sid}-off", "eventType": "LOGOFF",
                       "timestamp": (at(d, 8) + timedelta(hours=8)).isoformat()})
    return events


async def ok(gql: Any, query: str, field: str, **variables: Any) -> dict[str, Any]:
    data = await gql.ok(query, **variables)
    out: dict[str, Any] = data[field]
    assert out.get("errors") in (None, []), out
    return out


async def script_october(gql: Any, client: Any, db: Any, settings: Any) -> dict[str, Any]:
    """Load the demo (in September) and script October as the module text says."""
    clock.pin(at(10, month=9))
    await load_demo(db, settings, echo=lambda _: None)
    cis = await ids_by_name(gql, "vol-payroll-data", "vol-trading-data", "pool-standard",
                            "pool-trader")
    # The demo's meters and rate cards are used as they are; their storage tiers are the ones
    # worked out above.
    cards = await gql.ok("{ rateCards(meter: \"storage-gb-month\") { version tiers { upTo rate }"
                         " } }")
    assert cards["rateCards"] == [{"version": 1, "tiers": [
        {"upTo": "1000", "rate": "0.10"}, {"upTo": "5000", "rate": "0.08"},
        {"upTo": None, "rate": "0.05"}]}]
    items = await gql.as_user("johnW", "requester").ok("{ catalogueItems { id name } }")
    site = next(i["id"] for i in items["catalogueItems"]
                if i["name"] == "SharePoint collaboration site")
    clock.pin(at(11))
    placed = await submit(gql.as_user("johnW", "requester"), site,
                          {"siteName": "fx-desk", "title": "FX desk"})
    approved = await gql.as_user("maryS", "approver").ok(APPROVE, id=placed["order"]["id"])
    assert approved["approveOrder"]["order"]["status"] == "FULFILLED"
    clock.pin(at(31, 23))
    events = (sessions("johnW", "virtdesk_123", "pool-standard", "vdi-esx-01", [5, 6, 7])
              + sessions("priyaS", "virtdesk_311", "pool-standard", "vdi-esx-02", [12, 13])
              + sessions("maryK", "virtdesk_204", "pool-standard", "vdi-esx-01", [19, 20]))
    r = await client.post("/api/vdi/events", json={"events": events}, headers=AGENT)
    assert r.status_code == 200 and r.json()["counts"]["stored"] == len(events), r.text
    await ok(gql, POOL, "defineCostPool", i={
        "code": "vdi-platform", "name": "VDI platform", "driver": "SESSIONS",
        "ciIds": [cis["pool-standard"], cis["pool-trader"]]})
    await ok(gql, POOL_AMOUNT, "setCostPoolAmount", c="vdi-platform", p=PERIOD, a="1000.00")
    usage = await ok(gql, USAGE, "recordUsage", r=[
        {"recordId": "stor-payroll-2026-10", "ciId": cis["vol-payroll-data"],
         "meter": "storage-gb-month", "quantity": "2048", "at": at(31, 22).isoformat(),
         "source": "pure-lon-01"},
        {"recordId": "stor-trading-2026-10-a", "ciId": cis["vol-trading-data"],
         "meter": "storage-gb-month", "quantity": "2000", "at": at(15).isoformat(),
         "source": "pure-lon-01"},
        {"recordId": "stor-trading-2026-10-b", "ciId": cis["vol-trading-data"],
         "meter": "storage-gb-month", "quantity": "2096", "at": at(31, 22).isoformat(),
         "source": "pure-lon-01"},
    ])
    assert (usage["created"], usage["rejected"]) == (3, [])
    mode = await gql.ok("""mutation { setBillingMode(costCentre: "CC-1100", mode: SHOWBACK) {
        billingMode errors { message } } }""")
    assert mode["setBillingMode"]["billingMode"] == "SHOWBACK"
    return cis


@pytest_asyncio.fixture
async def october(gql: Any, client: Any, clean_db: Any, test_settings: Any) -> Any:
    try:
        yield await script_october(gql, client, clean_db, test_settings)
    finally:
        clock.pin(None)
