"""johnW's SharePoint order on the demo, worked out by hand: a subscription pays for what it
consumes (its fee, pro-rated; the usage of its own site), not for the Collaboration service it
is for, whose cost stays with the service's owning cost centre (IT Operations, CC-1300).

The demo is loaded on 7 December 2026 (its December pools and storage usage), johnW (CC-1200)
orders "SharePoint collaboration site" (15.00 a month) that day and maryS approves it:
- active from 7 December to the end of the month: 25 of 31 days (the start day counts),
  15 x 25 / 31 = 12.0967... -> 12.10;
- the site has no usage in the demo and holds no driver (no vCPU, no GB): nothing else;
- decommissioned the same day: one day (a subscription started and ended on one day counts
  one day), 15 x 1 / 31 = 0.4838... -> 0.48, and nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

from cmdb.core import clock
from cmdb.demo.loader import load_demo
from tests.catalog_world import APPROVE, DECOMMISSION, SUBSCRIPTION, submit
from tests.chargeback_world import CALCULATE, LINES, REPORT, ok

pytestmark = pytest.mark.integration

PERIOD = "2026-12"
ORDERED = datetime(2026, 12, 7, 10, tzinfo=UTC)


@pytest_asyncio.fixture
async def december(gql: Any, clean_db: Any, test_settings: Any) -> Any:
    clock.pin(ORDERED)
    try:
        await load_demo(clean_db, test_settings, echo=lambda _: None)
        yield
    finally:
        clock.pin(None)


async def lines(gql: Any, **flt: Any) -> list[dict[str, Any]]:
    out, after = [], None
    while True:
        page = (await gql.ok(LINES, p=PERIOD, f=flt or None, first=500,
                             after=after))["chargeLines"]
        out.extend(page["lines"])
        if not page["hasNextPage"]:
            return out
        after = page["endCursor"]


async def month(gql: Any) -> tuple[dict[str, str], list[dict[str, Any]]]:
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    rep = (await gql.ok(REPORT, p=PERIOD, by="COST_CENTRE"))["costReport"]
    return {r["key"]: r["amount"] for r in rep["rows"]}, await lines(gql)


def plus(report: dict[str, str], fee: str) -> str:
    """johnW's cost centre, CC-1200, with his fee added."""
    return str(Decimal(report.get("CC-1200", "0.00")) + Decimal(fee))


def collaboration(rows: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    return sorted((r["costCentre"], r["amount"]) for r in rows
                  if r["serviceName"] == "Collaboration" and not r["subscriptionId"])


async def test_johns_sharepoint_order_pays_its_fee_and_collaboration_keeps_its_cost(
        gql, december):
    john, mary = gql.as_user("johnW", "requester"), gql.as_user("maryS", "approver")
    before, before_lines = await month(gql)
    kept = collaboration(before_lines)
    assert kept and {cc for cc, _ in kept} == {"CC-1300"}  # the service's own cost centre

    items = (await john.ok("{ catalogueItems { id name } }"))["catalogueItems"]
    site = next(i["id"] for i in items if i["name"] == "SharePoint collaboration site")
    placed = await submit(john, site, {"siteName": "fx-desk", "title": "FX desk"})
    order = (await mary.ok(APPROVE, id=placed["order"]["id"]))["approveOrder"]["order"]
    assert order["status"] == "FULFILLED"
    sub_id = order["subscriptionId"]

    after, after_lines = await month(gql)
    mine = [(r["kind"], r["amount"], r["quantity"]) for r in after_lines
            if r["subscriptionId"] == sub_id]
    assert mine == [("RECURRING_FEE", "12.10", "25")]  # 15 x 25 / 31
    # Nothing of Exchange, the clusters or the SAN reaches him: Collaboration keeps its cost
    # on CC-1300, line for line, and every other cost centre is as before but for his fee.
    assert collaboration(after_lines) == kept
    assert after == {**before, "CC-1200": plus(before, "12.10")}

    sub = (await john.ok("query($id: ID!) { subscription(id: $id) { " + SUBSCRIPTION
                         + " } }", id=sub_id))["subscription"]
    assert sub["service"]["name"] == "Collaboration"
    ended = (await john.ok(DECOMMISSION, id=sub_id))["decommissionSubscription"]
    assert ended["subscription"]["status"] == "ENDED"

    gone, gone_lines = await month(gql)
    mine = [(r["kind"], r["amount"], r["quantity"]) for r in gone_lines
            if r["subscriptionId"] == sub_id]
    assert mine == [("RECURRING_FEE", "0.48", "1")]  # 15 x 1 / 31
    assert collaboration(gone_lines) == kept
    assert gone == {**before, "CC-1200": plus(before, "0.48")}


async def test_a_services_recovery_rule_is_read_and_set_through_graphql(gql, december):
    found = await gql.ok("{ services(filter: {nameContains: \"Collaboration\"}) { edges { node"
                         " { id name costRecovery } } } }")
    [node] = [e["node"] for e in found["services"]["edges"] if e["node"]["name"] ==
              "Collaboration"]
    assert node["costRecovery"] == "OWNER"  # the default: kept by its owning cost centre
    changed = await gql.ok("mutation($id: ID!) { updateService(id: $id, input: "
                           "{costRecovery: CONSUMERS}) { service { costRecovery } errors "
                           "{ message } } }", id=node["id"])
    assert changed["updateService"] == {"service": {"costRecovery": "CONSUMERS"},
                                        "errors": []}
