"""The demo catalogue on the demo enterprise: johnW's SharePoint site waits for maryS, is
fulfilled under the Collaboration service, and is decommissioned; every demo item fulfils."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_asyncio

from cmdb.demo.catalogue import ITEMS
from cmdb.demo.loader import load_demo, load_demo_report
from tests.catalog_world import APPROVE, DECOMMISSION, SUBSCRIPTION, submit

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def demo(gql, clean_db, test_settings):
    # The demo's own people: johnW (CC-1200) reports to maryS, who owns CC-1200.
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    data = await gql.as_user("johnW", "requester").ok("{ catalogueItems { id name } }")
    return {i["name"]: i["id"] for i in data["catalogueItems"]}


def sample(schema: dict[str, Any], n: int) -> dict[str, Any]:
    """A valid answer to a demo form: its required fields filled in."""
    out: dict[str, Any] = {}
    for name in schema.get("required", []):
        spec = schema["properties"][name]
        out[name] = f"demo-{name.lower()}-{n}" if "pattern" in spec else f"Demo {name} {n}"
    return out


async def test_demo_catalogue_is_offered_and_loaded_once(demo, clean_db, test_settings):
    assert set(demo) == {i["name"] for i in ITEMS}
    again = await load_demo_report(clean_db, test_settings, echo=lambda _: None)
    assert again.catalogue.created == 0 and again.catalogue.present == len(ITEMS)


async def test_johns_sharepoint_site_waits_for_mary(gql, demo):
    john, mary = gql.as_user("johnW", "requester"), gql.as_user("maryS", "approver")
    placed = await submit(john, demo["SharePoint collaboration site"],
                          {"siteName": "fx-desk", "title": "FX desk"})
    order = placed["order"]
    assert order["status"] == "AWAITING_APPROVAL"
    assert order["approvalSteps"][0]["approvers"] == ["maryS"]
    assert order["price"] == {"currency": "EUR", "oneOff": "0.00", "monthly": "15.00"}
    assert [o["id"] for o in (await mary.ok("{ approvalQueue { id } }"))["approvalQueue"]] \
        == [order["id"]]
    order = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["order"]
    assert order["status"] == "FULFILLED"

    [sub] = (await john.ok("{ mySubscriptions { " + SUBSCRIPTION + " } }"))["mySubscriptions"]
    assert sub["service"]["name"] == "Collaboration"
    [site] = sub["configurationItems"]
    assert site["name"] == "sp-site-fx-desk"
    collab = await gql.ok("{ services(filter: {nameContains: \"Collaboration\"}) { edges { node"
                          " { healthState relationships(direction: OUTGOING, depth: 2) { "
                          "path item { name } } } } } }")
    node = collab["services"]["edges"][0]["node"]
    assert "sp-site-fx-desk" in {r["item"]["name"] for r in node["relationships"]}
    assert node["healthState"] == "UP"

    ended = (await john.ok(DECOMMISSION, id=sub["id"]))["decommissionSubscription"]
    assert ended["subscription"]["status"] == "ENDED"
    assert ended["subscription"]["configurationItems"][0]["lifecycleStatus"] == "RETIRED"


async def test_johns_site_charged_to_hr_waits_for_hrs_owner(gql, demo):
    """The demo's cross-charge: johnW (CC-1200) charging HR (CC-1400) needs paulH, who owns
    CC-1400, after maryS; IT Operations (CC-1300) has no owner, so it cannot be charged."""
    john, mary = gql.as_user("johnW", "requester"), gql.as_user("maryS", "approver")
    paul = gql.as_user("paulH", "approver")
    item = demo["SharePoint collaboration site"]
    placed = await submit(john, item, {"siteName": "hr-portal", "title": "HR portal"},
                          costCentreCode="CC-1400")
    order = placed["order"]
    assert [(s["kind"], s["approvers"], s["status"], s["origin"])
            for s in order["approvalSteps"]] == [
        ("MANAGER", ["maryS"], "PENDING", "POLICY"),
        ("COST_CENTRE_OWNER", ["paulH"], "WAITING", "CROSS_CHARGE")]
    order = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["order"]
    assert order["status"] == "AWAITING_APPROVAL" and order["currentStep"] == 1
    denied = (await gql.as_user("maryK", "approver").ok(APPROVE, id=order["id"]))
    assert denied["approveOrder"]["errors"][0]["code"] == "FORBIDDEN"
    order = (await paul.ok(APPROVE, id=order["id"]))["approveOrder"]["order"]
    assert order["status"] == "FULFILLED"

    refused = await submit(john, item, {"siteName": "it-portal", "title": "IT portal"},
                           costCentreCode="CC-1300")
    assert refused["order"] is None
    assert [(e["field"], e["code"]) for e in refused["errors"]] == [
        ("input.costCentreCode", "FORBIDDEN")]


async def test_every_demo_item_fulfils_with_real_cis(gql, demo):
    john, mary = gql.as_user("johnW", "requester"), gql.as_user("maryS", "approver")
    for n, spec in enumerate(ITEMS):
        order = (await submit(john, demo[spec["name"]], sample(spec["form_schema"], n)))
        assert order["errors"] == [], (spec["name"], order)
        order = order["order"]
        while order["status"] == "AWAITING_APPROVAL":
            order = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["order"]
        assert order["status"] == "FULFILLED", (spec["name"], order)
        sub = await john.ok("query($id: ID!) { subscription(id: $id) { " + SUBSCRIPTION
                            + " } }", id=order["subscriptionId"])
        cis = sub["subscription"]["configurationItems"]
        assert len(cis) == len(spec["recipe"]["cis"]) >= 1
        assert sub["subscription"]["service"]["name"] == spec["recipe"]["service"]
    states = await gql.ok("{ services { edges { node { name healthState } } } }")
    assert {e["node"]["healthState"] for e in states["services"]["edges"]} == {"UP"}
