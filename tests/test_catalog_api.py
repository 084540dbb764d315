"""The self-service catalogue through GraphQL: ordering, approvals, fulfilment, subscriptions,
decommission, versions, entitlement and form validation, against the real Neo4j."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import pytest_asyncio

from tests.catalog_world import (
    APPROVE,
    CANCEL,
    DECOMMISSION,
    GET_ORDER,
    REJECT,
    RETRY,
    SUBMIT,
    SUBSCRIPTION,
    UPDATE_ITEM,
    add_membership,
    add_users,
    build_world,
    create_item,
    key,
    submit,
)

pytestmark = pytest.mark.integration

JOHN = ("johnW", "requester")
MARY = ("maryS", "approver")
ANN = ("ann", "approver")
BOB = ("bob", "approver")


@pytest_asyncio.fixture
async def world(gql, clean_db) -> dict[str, str]:
    return await build_world(gql, clean_db)


def moves(order: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(t["fromStatus"], t["toStatus"]) for t in order["transitions"]]


async def ci_names(gql, order_id: str) -> list[str]:
    data = await gql.ok("query($v: JSON!) { configurationItems(filter: {includeRetired: true,"
                        " attributes: [{key: \"catalogueOrderId\", value: $v}]}) { edges { node"
                        " { name } } } }", v=order_id)
    return sorted(e["node"]["name"] for e in data["configurationItems"]["edges"])


async def test_order_waits_for_the_manager_then_is_fulfilled_and_decommissioned(gql, world):
    john, mary = gql.as_user(*JOHN), gql.as_user(*MARY)
    items = await john.ok("{ catalogueItems { id name price { oneOff monthly firstYear } "
                          "formSchema } }")
    [site] = items["catalogueItems"]
    assert site["price"] == {"oneOff": "100.00", "monthly": "25.50", "firstYear": "406.00"}
    assert site["formSchema"]["required"] == ["siteName"]

    placed = await submit(john, world["site"], {"siteName": "team-alpha"})
    assert placed["errors"] == [] and placed["created"] is True
    order = placed["order"]
    assert order["status"] == "AWAITING_APPROVAL"
    assert order["costCentreCode"] == "CC-1200" and order["form"]["quotaGb"] == 10
    assert order["approvalSteps"] == [{"index": 0, "kind": "MANAGER", "status": "PENDING",
                                       "approvers": ["maryS"], "decidedBy": None,
                                       "reason": None, "origin": "POLICY",
                                       "why": "the item's approval policy",
                                       "approversOnly": False}]
    assert moves(order) == [(None, "SUBMITTED"), ("SUBMITTED", "AWAITING_APPROVAL")]

    queue = await mary.ok("{ approvalQueue { id } }")
    assert [o["id"] for o in queue["approvalQueue"]] == [order["id"]]
    assert (await gql.as_user(*ANN).ok("{ approvalQueue { id } }"))["approvalQueue"] == []
    # An approver not named on the step may not decide it.
    denied = (await gql.as_user(*ANN).ok(APPROVE, id=order["id"]))["approveOrder"]
    assert denied["errors"][0]["code"] == "FORBIDDEN" and denied["order"] is None

    done = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]
    assert done["errors"] == []
    order = done["order"]
    assert order["status"] == "FULFILLED" and order["attempts"] == 1
    assert moves(order) == [(None, "SUBMITTED"), ("SUBMITTED", "AWAITING_APPROVAL"),
                            ("AWAITING_APPROVAL", "APPROVED"), ("APPROVED", "FULFILLING"),
                            ("FULFILLING", "FULFILLED")]
    assert [t["by"] for t in order["transitions"]][:3] == ["johnW", "johnW", "maryS"]
    assert order["approvalSteps"][0]["status"] == "APPROVED"
    assert order["approvalSteps"][0]["decidedBy"] == "maryS"

    subs = await john.ok("{ mySubscriptions { " + SUBSCRIPTION + " } }")
    [sub] = subs["mySubscriptions"]
    assert sub["id"] == order["subscriptionId"] and sub["status"] == "ACTIVE"
    assert sub["consumer"] == "johnW" and sub["costCentreCode"] == "CC-1200"
    assert sub["service"]["name"] == "SharePoint Platform"
    [ci] = sub["configurationItems"]
    assert ci["name"] == "sp-site-team-alpha" and ci["lifecycleStatus"] == "IN_SERVICE"

    # The site is linked under the SharePoint Platform, which the Collaboration service uses.
    model = await gql.ok("query($id: ID!) { service(id: $id) { relationships(direction: "
                         "OUTGOING, depth: 2) { item { name } } } }", id=world["Collaboration"])
    assert "sp-site-team-alpha" in {r["item"]["name"]
                                    for r in model["service"]["relationships"]}
    site = await gql.ok("query($id: ID!) { configurationItem(id: $id) { attributes "
                        "relationships(direction: OUTGOING) { type item { name } } } }",
                        id=ci["id"])
    assert site["configurationItem"]["attributes"]["url"].endswith("/sites/team-alpha")
    assert [r["item"]["name"] for r in site["configurationItem"]["relationships"]] == [
        "sharepoint-sql"]

    # Someone else cannot end it; its consumer can, once.
    other = (await gql.as_user("ann", "requester").ok(DECOMMISSION, id=sub["id"]))
    assert other["decommissionSubscription"]["errors"][0]["code"] == "NOT_FOUND"
    ended = (await john.ok(DECOMMISSION, id=sub["id"]))["decommissionSubscription"]
    assert ended["errors"] == []
    sub = ended["subscription"]
    assert sub["status"] == "ENDED" and sub["endAt"] is not None and sub["endedBy"] == "johnW"
    assert [c["lifecycleStatus"] for c in sub["configurationItems"]] == ["RETIRED"]
    again = (await john.ok(DECOMMISSION, id=sub["id"]))["decommissionSubscription"]
    assert again["errors"][0]["code"] == "CONFLICT"
    final = (await john.ok(GET_ORDER, id=order["id"]))["order"]
    assert final["status"] == "DECOMMISSIONED"
    assert moves(final)[-1] == ("FULFILLED", "DECOMMISSIONED")


async def test_requester_cannot_approve_own_order(gql, world):
    # maryS (an approver) orders; her manager is bob. She cannot decide her own order.
    mary = gql.as_user("maryS", "approver", "requester")
    order = (await submit(mary, world["site"], {"siteName": "mary-site"}))["order"]
    assert order["approvalSteps"][0]["approvers"] == ["bob"]
    own = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]
    assert own["errors"][0]["code"] == "FORBIDDEN"
    assert own["errors"][0]["message"] == "you cannot approve or reject your own order"
    admin_own = (await gql.as_user("maryS", "admin").ok(APPROVE, id=order["id"]))
    assert admin_own["approveOrder"]["errors"][0]["code"] == "FORBIDDEN"
    assert (await mary.ok("{ approvalQueue { id } }"))["approvalQueue"] == []
    ok = (await gql.as_user(*BOB).ok(APPROVE, id=order["id"]))["approveOrder"]
    assert ok["order"]["status"] == "FULFILLED"


async def test_rejected_order_allows_no_other_move(gql, world):
    john, mary = gql.as_user(*JOHN), gql.as_user(*MARY)
    order = (await submit(john, world["site"], {"siteName": "team-beta"}))["order"]
    no_reason = (await mary.ok(REJECT, id=order["id"], r="  "))["rejectOrder"]
    assert no_reason["errors"][0]["field"] == "reason"
    rejected = (await mary.ok(REJECT, id=order["id"], r="use the team site"))["rejectOrder"]
    order = rejected["order"]
    assert order["status"] == "REJECTED"
    assert order["approvalSteps"][0]["status"] == "REJECTED"
    assert order["transitions"][-1]["reason"] == "step 1 (MANAGER) rejected: use the team site"
    assert (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["errors"][0]["code"] \
        == "CONFLICT"
    assert (await john.ok(CANCEL, id=order["id"]))["cancelOrder"]["errors"][0]["code"] \
        == "CONFLICT"
    assert (await john.ok(RETRY, id=order["id"]))["retryFulfilment"]["errors"][0]["code"] \
        == "CONFLICT"
    assert await ci_names(gql, order["id"]) == []


async def test_cancel_before_fulfilment_only_by_its_requester(gql, world):
    john, mary = gql.as_user(*JOHN), gql.as_user(*MARY)
    order = (await submit(john, world["site"], {"siteName": "team-gamma"}))["order"]
    stranger = (await gql.as_user("ann", "requester").ok(CANCEL, id=order["id"]))
    assert stranger["cancelOrder"]["errors"][0]["code"] == "NOT_FOUND"
    cancelled = (await john.ok(CANCEL, id=order["id"]))["cancelOrder"]["order"]
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["approvalSteps"][0]["status"] == "CANCELLED"
    assert moves(cancelled)[-1] == ("AWAITING_APPROVAL", "CANCELLED")
    assert (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["errors"][0]["code"] \
        == "CONFLICT"
    assert (await mary.ok("{ approvalQueue { id } }"))["approvalQueue"] == []
    # A fulfilled order cannot be cancelled.
    auto = await create_item(gql, "Mailbox", recipe={"service": "SharePoint Platform"})
    done = (await submit(john, auto, {"siteName": "mail-box"}))["order"]
    assert done["status"] == "FULFILLED"
    assert (await john.ok(CANCEL, id=done["id"]))["cancelOrder"]["errors"][0]["code"] \
        == "CONFLICT"
    assert (await john.ok(RETRY, id=done["id"]))["retryFulfilment"]["errors"][0]["code"] \
        == "CONFLICT"


async def test_idempotent_submit(gql, world):
    john = gql.as_user(*JOHN)
    idem = key()
    first = await submit(john, world["site"], {"siteName": "team-delta"}, idem)
    again = await submit(john, world["site"], {"siteName": "team-delta"}, idem)
    assert first["created"] is True and again["created"] is False
    assert again["order"]["id"] == first["order"]["id"]
    # The same key from another user is another order.
    ann = await submit(gql.as_user("ann", "requester"), world["site"],
                       {"siteName": "team-delta"}, idem)
    assert ann["created"] is True and ann["order"]["id"] != first["order"]["id"]
    # The same key for a different request is refused, naming the key.
    other = await submit(john, world["site"], {"siteName": "team-epsilon"}, idem)
    assert other["errors"][0]["field"] == "input.idempotencyKey"
    assert other["errors"][0]["code"] == "CONFLICT"

    # Many at once with one key: one order.
    idem2 = key()
    results = await asyncio.gather(*(submit(john, world["site"], {"siteName": "team-zeta"},
                                            idem2) for _ in range(6)))
    assert all(r["errors"] == [] for r in results), results
    assert len({r["order"]["id"] for r in results}) == 1
    assert sum(r["created"] for r in results) == 1
    mine = await john.ok("{ myOrders { id form } }")
    assert sum(o["form"]["siteName"] == "team-zeta" for o in mine["myOrders"]) == 1


async def test_concurrent_approvals_move_a_step_once(gql, world):
    john = gql.as_user(*JOHN)
    item = await create_item(gql, "Role-approved site", approval=[{"kind": "ROLE",
                                                                   "role": "approver"}])
    for n in range(4):
        order = (await submit(john, item, {"siteName": f"race-{n}"}))["order"]
        assert order["status"] == "AWAITING_APPROVAL"
        deciders = [gql.as_user(*ANN), gql.as_user(*MARY), gql.as_user(*BOB)]
        if n % 2:
            calls = [d.ok(APPROVE, id=order["id"], step=0) for d in deciders]
        else:  # approve and reject racing
            calls = [deciders[0].ok(APPROVE, id=order["id"], step=0),
                     deciders[1].ok(REJECT, id=order["id"], r="no"),
                     deciders[2].ok(APPROVE, id=order["id"], step=0)]
        results = [next(iter(r.values())) for r in await asyncio.gather(*calls)]
        winners = [r for r in results if not r["errors"]]
        assert len(winners) == 1, results
        assert all(r["errors"][0]["code"] == "CONFLICT" for r in results if r["errors"])
        final = (await john.ok(GET_ORDER, id=order["id"]))["order"]
        decided = [m for m in moves(final) if m[0] == "AWAITING_APPROVAL"]
        assert len(decided) == 1
        assert final["approvalSteps"][0]["status"] in ("APPROVED", "REJECTED")
        assert final["status"] in ("FULFILLED", "REJECTED")
        assert len(await ci_names(gql, order["id"])) == (1 if final["status"] == "FULFILLED"
                                                        else 0)


async def test_approval_steps_in_order_with_cost_centre_threshold(gql, world):
    ann = gql.as_user("ann", "requester")
    steps = [{"kind": "MANAGER"}, {"kind": "COST_CENTRE_OWNER", "above": "1000.00"}]
    cheap = await create_item(gql, "Small database", approval=steps,
                              price={"oneOff": "0", "monthly": "50.00"})
    dear = await create_item(gql, "Large database", approval=steps,
                             price={"oneOff": "500.00", "monthly": "80.00"})
    # 600/year: the cost-centre owner is skipped; the manager decides alone.
    small = (await submit(ann, cheap, {"siteName": "db-small"}))["order"]
    assert [s["status"] for s in small["approvalSteps"]] == ["PENDING", "SKIPPED"]
    small = (await gql.as_user(*MARY).ok(APPROVE, id=small["id"]))["approveOrder"]["order"]
    assert small["status"] == "FULFILLED"

    # 1460/year: the manager (maryS) first, then the owner of CC-1300 (bob).
    big = (await submit(ann, dear, {"siteName": "db-large"},
                        costCentreCode="CC-1300"))["order"]
    assert [(s["kind"], s["status"], s["approvers"]) for s in big["approvalSteps"]] == [
        ("MANAGER", "PENDING", ["maryS"]), ("COST_CENTRE_OWNER", "WAITING", ["bob"])]
    # ann is not in CC-1300: the policy's owner step, not skipped, is also bob's consent to
    # the charge, so no step is added and only bob may decide it.
    owner_step = big["approvalSteps"][1]
    assert owner_step["origin"] == "POLICY" and owner_step["approversOnly"] is True
    assert "above 1000.00" in owner_step["why"] and "CC-1300" in owner_step["why"]
    assert (await gql.as_user(*BOB).ok(APPROVE, id=big["id"]))["approveOrder"]["errors"][0][
        "code"] == "FORBIDDEN"
    big = (await gql.as_user(*MARY).ok(APPROVE, id=big["id"]))["approveOrder"]["order"]
    assert big["status"] == "AWAITING_APPROVAL" and big["currentStep"] == 1
    assert moves(big)[-1] == ("AWAITING_APPROVAL", "AWAITING_APPROVAL")
    # An approval meant for step 0 that arrives late does not decide step 1.
    late = (await gql.as_user(*BOB).ok(APPROVE, id=big["id"], step=0))["approveOrder"]
    assert late["errors"][0]["code"] == "CONFLICT"
    assert [o["id"] for o in (await gql.as_user(*BOB).ok("{ approvalQueue { id } }"))[
        "approvalQueue"]] == [big["id"]]
    big = (await gql.as_user(*BOB).ok(APPROVE, id=big["id"], step=1))["approveOrder"]["order"]
    assert big["status"] == "FULFILLED" and big["costCentreCode"] == "CC-1300"
    assert [s["decidedBy"] for s in big["approvalSteps"]] == ["maryS", "bob"]


async def test_missing_manager_is_an_error_not_a_stuck_order(gql, world):
    newbie = gql.as_user("newbie", "requester")
    r = await submit(newbie, world["site"], {"siteName": "lonely"})
    assert r["order"] is None
    assert r["errors"][0]["field"] == "input" and "no manager" in r["errors"][0]["message"]
    assert (await newbie.ok("{ myOrders { id } }"))["myOrders"] == []
    unknown_cc = await submit(gql.as_user(*JOHN), world["site"], {"siteName": "x-site"},
                              costCentreCode="CC-9999")
    assert unknown_cc["errors"][0]["field"] == "input.costCentreCode"


async def add_cost_centre(gql, code: str, name: str) -> None:
    r = await gql.ok("mutation($i: CostCentreInput!) { createCostCentre(input: $i) { "
                     "errors { message } } }", i={"code": code, "name": name})
    assert r["createCostCentre"]["errors"] == []


@pytest_asyncio.fixture
async def hr(gql, world: dict[str, str], clean_db) -> dict[str, str]:
    """CC-1400 (HR), owned by paulH; maryK works there; olga is in CC-1300 but owns CC-1400
    too. CC-1500 has no owner."""
    await add_cost_centre(gql, "CC-1400", "HR")
    await add_cost_centre(gql, "CC-1500", "Facilities")
    await add_users(clean_db, [
        {"userName": "paulH", "costCentre": "CC-1400", "owns": ["CC-1400"], "manager": "bob"},
        {"userName": "maryK", "costCentre": "CC-1400", "manager": "paulH"},
        {"userName": "olga", "costCentre": "CC-1300", "owns": ["CC-1400"], "manager": "bob"},
    ])
    return world


async def test_an_order_charged_to_another_cost_centre_waits_for_its_owner(gql, hr):
    john, mary, paul = (gql.as_user(*JOHN), gql.as_user(*MARY),
                        gql.as_user("paulH", "approver"))
    # On his own cost centre: the item's policy alone.
    own = (await submit(john, hr["site"], {"siteName": "own-site"}))["order"]
    assert [(s["kind"], s["origin"]) for s in own["approvalSteps"]] == [("MANAGER", "POLICY")]

    placed = await submit(john, hr["site"], {"siteName": "hr-site"}, costCentreCode="CC-1400")
    assert placed["errors"] == []
    order = placed["order"]
    assert order["status"] == "AWAITING_APPROVAL" and order["costCentreCode"] == "CC-1400"
    manager, consent = order["approvalSteps"]
    assert (manager["kind"], manager["status"], manager["approvers"], manager["origin"]) == (
        "MANAGER", "PENDING", ["maryS"], "POLICY")
    assert (consent["index"], consent["kind"], consent["status"], consent["approvers"],
            consent["origin"], consent["approversOnly"]) == (
        1, "COST_CENTRE_OWNER", "WAITING", ["olga", "paulH"], "CROSS_CHARGE", True)
    assert "CC-1400" in consent["why"] and "johnW" in consent["why"]

    order = (await mary.ok(APPROVE, id=order["id"]))["approveOrder"]["order"]
    assert order["status"] == "AWAITING_APPROVAL" and order["currentStep"] == 1
    # Nobody but CC-1400's owner decides the consent: not another approver of CC-1400, not
    # the requester's manager (owner of CC-1200), not a catalogue admin.
    for who in (gql.as_user("maryK", "approver"), mary, gql.as_user(*BOB),
                gql.as_user("cat", "catalogue_admin"), gql):
        denied = (await who.ok(APPROVE, id=order["id"]))["approveOrder"]
        assert denied["order"] is None and denied["errors"][0]["code"] == "FORBIDDEN"
        queue = (await who.ok("{ approvalQueue { id } }"))["approvalQueue"]
        assert order["id"] not in [o["id"] for o in queue]
    assert "CC-1400" in denied["errors"][0]["message"]
    assert (await john.ok(GET_ORDER, id=order["id"]))["order"]["status"] == \
        "AWAITING_APPROVAL"

    assert [o["id"] for o in (await paul.ok("{ approvalQueue { id } }"))["approvalQueue"]] \
        == [order["id"]]
    order = (await paul.ok(APPROVE, id=order["id"], step=1))["approveOrder"]["order"]
    assert order["status"] == "FULFILLED"
    assert [s["decidedBy"] for s in order["approvalSteps"]] == ["maryS", "paulH"]
    sub = await john.ok("query($id: ID!) { subscription(id: $id) { costCentreCode } }",
                        id=order["subscriptionId"])
    assert sub["subscription"]["costCentreCode"] == "CC-1400"


async def test_a_cross_charge_needs_consent_whatever_the_policy_and_price(gql, hr):
    john, paul = gql.as_user(*JOHN), gql.as_user("paulH", "approver")
    free = await create_item(gql, "Team mailbox", price={"oneOff": "0", "monthly": "1.00"})
    cheap = await create_item(gql, "Small share", price={"oneOff": "0", "monthly": "1.00"},
                              approval=[{"kind": "COST_CENTRE_OWNER", "above": "1000.00"}])
    # No approval on his own cost centre...
    mine = (await submit(john, free, {"siteName": "mbx-own"}))["order"]
    assert mine["status"] == "FULFILLED" and mine["approvalSteps"] == []
    # ...but charged to CC-1400, its owner must agree.
    theirs = (await submit(john, free, {"siteName": "mbx-hr"},
                           costCentreCode="CC-1400"))["order"]
    assert theirs["status"] == "AWAITING_APPROVAL" and theirs["currentStep"] == 0
    assert [(s["kind"], s["status"], s["approvers"], s["origin"])
            for s in theirs["approvalSteps"]] == [
        ("COST_CENTRE_OWNER", "PENDING", ["olga", "paulH"], "CROSS_CHARGE")]
    # Under the policy's threshold its owner step is skipped; the consent is added after it.
    under = (await submit(john, cheap, {"siteName": "share-hr"},
                          costCentreCode="CC-1400"))["order"]
    assert [(s["status"], s["origin"]) for s in under["approvalSteps"]] == [
        ("SKIPPED", "POLICY"), ("PENDING", "CROSS_CHARGE")]
    assert under["status"] == "AWAITING_APPROVAL" and under["currentStep"] == 1
    rejected = (await paul.ok(REJECT, id=under["id"], r="not our budget"))["rejectOrder"]
    assert rejected["order"]["status"] == "REJECTED"

    # An owner of CC-1400 who works elsewhere charges it without a further step.
    olga = (await submit(gql.as_user("olga", "requester"), free, {"siteName": "mbx-olga"},
                         costCentreCode="CC-1400"))["order"]
    assert olga["status"] == "FULFILLED" and olga["approvalSteps"] == []
    # So does someone who works there.
    kay = (await submit(gql.as_user("maryK", "requester"), free, {"siteName": "mbx-kay"},
                        costCentreCode="CC-1400"))["order"]
    assert kay["status"] == "FULFILLED"


async def test_a_cross_charge_to_a_cost_centre_without_owner_is_refused(gql, hr):
    john = gql.as_user(*JOHN)
    free = await create_item(gql, "Team mailbox", price={"oneOff": "0", "monthly": "1.00"})
    for item in (free, hr["site"]):
        refused = await submit(john, item, {"siteName": "nobody"}, costCentreCode="CC-1500")
        assert refused["order"] is None
        [error] = refused["errors"]
        assert (error["field"], error["code"]) == ("input.costCentreCode", "FORBIDDEN")
        assert "CC-1500" in error["message"] and "owner" in error["message"]
    assert (await john.ok("{ myOrders { id } }"))["myOrders"] == []
    # A catalogue admin ordering for a team is held to the same rule.
    admin = await submit(gql, free, {"siteName": "adm-box"}, costCentreCode="CC-1500")
    assert admin["errors"][0]["code"] == "FORBIDDEN"
    held = (await submit(gql, free, {"siteName": "adm-hr"}, costCentreCode="CC-1400"))["order"]
    assert held["status"] == "AWAITING_APPROVAL"
    assert held["approvalSteps"][0]["approvers"] == ["olga", "paulH"]


FAILING_RECIPE = {
    "service": "SharePoint Platform",
    "cis": [
        {"key": "vm", "ciClass": "VirtualMachine", "name": "vm-{order}",
         "hostName": "vm-{order}", "domain": "corp.example"},
        {"key": "db", "ciClass": "Database", "name": "db-{order}",
         "hostName": "db-fixed", "domain": "corp.example"},
    ],
    "relationships": [
        {"source": "ci:db", "type": "RUNS_ON", "target": "ci:vm"},
        {"source": "service:SharePoint Platform", "type": "DEPENDS_ON", "target": "ci:db",
         "properties": {"impact": "INFORMATIONAL"}},
    ],
}


async def test_failed_fulfilment_leaves_nothing_and_can_be_retried(gql, world):
    legacy = await gql.ok("mutation($i: CreateConfigurationItemInput!) { "
                          "createConfigurationItem(input: $i) { configurationItem { id } } }",
                          i={"name": "legacy-db", "ciClass": "SERVER",
                             "identifiers": {"hostName": "db-fixed", "domain": "corp.example"}})
    legacy_id = legacy["createConfigurationItem"]["configurationItem"]["id"]
    item = await create_item(gql, "Linux VM with database", form={"type": "object"},
                             recipe=FAILING_RECIPE)
    john = gql.as_user(*JOHN)
    order = (await submit(john, item, {}))["order"]
    # The VM was made first, then the database's host name clashed: all rolled back.
    assert order["status"] == "FAILED", order
    assert "already identifies" in order["lastError"]
    assert order["subscriptionId"] is None
    assert await ci_names(gql, order["id"]) == []
    assert (await john.ok("{ mySubscriptions { id } }"))["mySubscriptions"] == []
    assert moves(order)[-2:] == [("APPROVED", "FULFILLING"), ("FULFILLING", "FAILED")]

    # Fix the clash, then retry.
    await gql.ok("mutation($id: ID!) { updateConfigurationItem(id: $id, input: {identifiers: "
                 "{hostName: \"db-old\"}}) { errors { message } } }", id=legacy_id)
    stranger = await gql.as_user("ann", "requester").ok(RETRY, id=order["id"])
    assert stranger["retryFulfilment"]["errors"][0]["code"] == "NOT_FOUND"
    retried = (await john.ok(RETRY, id=order["id"]))["retryFulfilment"]["order"]
    assert retried["status"] == "FULFILLED" and retried["attempts"] == 2
    assert retried["lastError"] is None
    short = order["id"][:8]
    assert await ci_names(gql, order["id"]) == [f"db-{short}", f"vm-{short}"]
    assert moves(retried)[-2:] == [("FAILED", "FULFILLING"), ("FULFILLING", "FULFILLED")]


async def test_missing_service_fails_then_retry_succeeds(gql, world):
    recipe = {"service": "Virtual Desktop", "cis": [
        {"key": "desk", "ciClass": "VirtualDesktop", "name": "vd-{user}-{order}"}]}
    item = await create_item(gql, "VDI desktop", form={"type": "object"}, recipe=recipe)
    john = gql.as_user(*JOHN)
    order = (await submit(john, item, {}))["order"]
    assert order["status"] == "FAILED" and "service:Virtual Desktop" in order["lastError"]
    await gql.ok("mutation { createService(input: {name: \"Virtual Desktop\", kind: BUSINESS})"
                 " { errors { message } } }")
    retried = (await john.ok(RETRY, id=order["id"]))["retryFulfilment"]["order"]
    assert retried["status"] == "FULFILLED"
    assert await ci_names(gql, order["id"]) == [f"vd-johnW-{order['id'][:8]}"]


async def test_price_change_is_a_new_version_and_keeps_old_orders(gql, world):
    john = gql.as_user(*JOHN)
    item = await create_item(gql, "Storage site", recipe={"service": "SharePoint Platform"},
                             price={"oneOff": "10.00", "monthly": "5.00"})
    old = (await submit(john, item, {"siteName": "files-one"}))["order"]
    assert old["itemVersion"] == 1 and old["price"]["monthly"] == "5.00"

    changed = (await gql.ok(UPDATE_ITEM, id=item, i={"price": {"oneOff": "20.00",
                                                                "monthly": "7.25"}}))
    assert changed["updateCatalogueItem"]["item"]["currentVersion"]["version"] == 2
    assert changed["updateCatalogueItem"]["item"]["price"] == {"oneOff": "20.00",
                                                               "monthly": "7.25"}
    new = (await submit(john, item, {"siteName": "files-two"}))["order"]
    assert new["itemVersion"] == 2 and new["price"] == {"currency": "EUR", "oneOff": "20.00",
                                                        "monthly": "7.25"}
    before = (await john.ok(GET_ORDER, id=old["id"]))["order"]
    assert before["itemVersion"] == 1
    assert before["price"] == {"currency": "EUR", "oneOff": "10.00", "monthly": "5.00"}
    sub = await john.ok("query($id: ID!) { subscription(id: $id) { " + SUBSCRIPTION + " } }",
                        id=before["subscriptionId"])
    assert sub["subscription"]["version"] == {"version": 1,
                                              "price": {"oneOff": "10.00", "monthly": "5.00"}}
    versions = await john.ok("query($id: ID!) { catalogueItem(id: $id) { versions { version "
                             "price { monthly } } } }", id=item)
    assert [(v["version"], v["price"]["monthly"])
            for v in versions["catalogueItem"]["versions"]] == [(1, "5.00"), (2, "7.25")]
    bad = await gql.ok(UPDATE_ITEM, id=item, i={"price": {"monthly": "-1"}})
    assert bad["updateCatalogueItem"]["errors"][0]["field"] == "input.pricePlan.monthly"

    # Retired: not offered, not orderable; the subscriptions go on.
    await gql.ok("mutation($id: ID!) { retireCatalogueItem(id: $id) { errors { message } } }",
                 id=item)
    names = [i["name"] for i in (await john.ok("{ catalogueItems { name } }"))[
        "catalogueItems"]]
    assert "Storage site" not in names
    refused = await submit(john, item, {"siteName": "files-three"})
    assert refused["errors"][0]["field"] == "input.itemId"
    subs = (await john.ok("{ mySubscriptions { status itemVersion } }"))["mySubscriptions"]
    assert sorted((s["status"], s["itemVersion"]) for s in subs) == [("ACTIVE", 1),
                                                                     ("ACTIVE", 2)]


async def test_entitlement_by_token_role_and_business_role(gql, world, clean_db):
    await create_item(gql, "Trader workstation", roles=["traders"],
                      recipe={"service": "SharePoint Platform"})
    await create_item(gql, "Admin console", roles=["catalogue_admin"],
                      recipe={"service": "SharePoint Platform"})
    await add_membership(clean_db, "fin", "traders", since="2020-01-01")
    await add_membership(clean_db, "ann", "traders", since="2020-01-01", until="2021-01-01")

    async def visible(user: str, *roles: str) -> list[str]:
        data = await gql.as_user(user, *roles).ok("{ catalogueItems { name } }")
        return sorted(i["name"] for i in data["catalogueItems"])

    site = "SharePoint collaboration site"
    assert await visible("johnW", "requester") == [site]
    assert await visible("fin", "requester") == [site, "Trader workstation"]
    assert await visible("ann", "requester") == [site]  # membership ended
    # Tokens carry access roles only: a business role named in a token grants nothing (it
    # comes from a dated membership in the graph).
    assert await visible("someone", "requester", "traders") == [site]
    assert await visible("boss", "catalogue_admin") == ["Admin console", site,
                                                        "Trader workstation"]
    search = await gql.as_user("fin", "requester").ok(
        "{ catalogueItems(search: \"TRADER\") { name } }")
    assert [i["name"] for i in search["catalogueItems"]] == ["Trader workstation"]

    trader_item = (await gql.ok("{ catalogueItems(search: \"trader\") { id } }"))[
        "catalogueItems"][0]["id"]
    refused = await submit(gql.as_user(*JOHN), trader_item, {})
    assert refused["errors"][0]["code"] == "NOT_FOUND"
    assert refused["errors"][0]["field"] == "input.itemId"
    allowed = await submit(gql.as_user("fin", "requester"), trader_item, {"siteName": "desk"})
    assert allowed["order"]["status"] == "FULFILLED"


async def test_form_errors_name_the_field(gql, world):
    john = gql.as_user(*JOHN)

    async def errors(form: dict[str, Any]) -> dict[str, str]:
        r = await submit(john, world["site"], form)
        assert r["order"] is None
        return {e["field"]: e["message"] for e in r["errors"]}

    assert list(await errors({})) == ["input.form.siteName"]
    assert "siteName" in (await errors({}))["input.form.siteName"]
    assert list(await errors({"siteName": "Bad Name!"})) == ["input.form.siteName"]
    assert list(await errors({"siteName": "ok-name", "quotaGb": 500})) == ["input.form.quotaGb"]
    assert list(await errors({"siteName": "ok-name", "colour": "red"})) == ["input.form.colour"]
    assert sorted(await errors({"siteName": 5, "quotaGb": "many"})) == [
        "input.form.quotaGb", "input.form.siteName"]
    assert (await john.ok("{ myOrders { id } }"))["myOrders"] == []

    bad_schema = await gql.ok("mutation($i: CatalogueItemInput!) { createCatalogueItem(input:"
                              " $i) { errors { field message } } }", i={
                                  "name": "Broken", "formSchema": {"type": "object",
                                  "properties": {"x": {"type": "nonsense"}}},
                                  "roles": ["requester"],
                                  "recipe": {"service": "SharePoint Platform"}})
    assert bad_schema["createCatalogueItem"]["errors"][0]["field"].startswith(
        "input.formSchema")
    bad_recipe = await gql.ok("mutation($i: CatalogueItemInput!) { createCatalogueItem(input:"
                              " $i) { errors { field message } } }", i={
                                  "name": "Broken", "formSchema": {"type": "object"},
                                  "roles": ["requester"], "recipe": {
                                      "service": "SharePoint Platform",
                                      "cis": [{"key": "a", "ciClass": "VirtualMachine",
                                               "name": "vm-{nope}"}]}})
    err = bad_recipe["createCatalogueItem"]["errors"][0]
    assert err["field"] == "input.recipe.cis" and "nope" in err["message"]
    bad_rule = await gql.ok("mutation($i: CatalogueItemInput!) { createCatalogueItem(input:"
                            " $i) { errors { field message } } }", i={
                                "name": "Broken", "formSchema": {"type": "object"},
                                "roles": ["requester"], "recipe": {
                                    "service": "SharePoint Platform",
                                    "cis": [{"key": "a", "ciClass": "VirtualMachine",
                                             "name": "vm-{order}"}],
                                    "relationships": [{"source": "ci:a", "type": "MEMBER_OF",
                                                       "target": "service:X"}]}})
    assert bad_rule["createCatalogueItem"]["errors"][0]["field"] == "input.recipe"


TASK_RECIPE = {"service": "SharePoint Platform", "tasks": [
    {"name": "Order licence", "group": "Collaboration Team"}],
    "cis": [{"key": "site", "ciClass": "ApplicationInstance", "name": "licensed-{order}"}]}


async def test_manual_tasks_gate_fulfilment(gql, world):
    john = gql.as_user(*JOHN)
    item = await create_item(gql, "Licensed site", form={"type": "object"}, recipe=TASK_RECIPE)
    order = (await submit(john, item, {}))["order"]
    assert order["status"] == "FULFILLING"
    [task] = order["tasks"]
    assert task["status"] == "OPEN" and await ci_names(gql, order["id"]) == []
    queue = await gql.as_user("cat", "catalogue_admin").ok("{ fulfilmentTasks(status: [OPEN])"
                                                           " { id orderId } }")
    assert [t["id"] for t in queue["fulfilmentTasks"]] == [task["id"]]
    hidden = await john("{ fulfilmentTasks { id } }")
    assert hidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    failed = await gql.ok("mutation($id: ID!) { failFulfilmentTask(id: $id, note: \"no "
                          "licences left\") { task { status } errors { code } } }",
                          id=task["id"])
    assert failed["failFulfilmentTask"]["task"]["status"] == "FAILED"
    order = (await john.ok(GET_ORDER, id=order["id"]))["order"]
    assert order["status"] == "FAILED" and "no licences left" in order["lastError"]
    order = (await john.ok(RETRY, id=order["id"]))["retryFulfilment"]["order"]
    assert order["status"] == "FULFILLING" and order["tasks"][0]["status"] == "OPEN"
    denied = await john("mutation($id: ID!) { completeFulfilmentTask(id: $id) { "
                        "errors { code } } }", id=task["id"])
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # refused at the root
    done = await gql.ok("mutation($id: ID!) { completeFulfilmentTask(id: $id, note: \"bought\")"
                        " { task { status doneBy } errors { code } } }", id=task["id"])
    assert done["completeFulfilmentTask"]["task"]["status"] == "DONE"
    order = (await john.ok(GET_ORDER, id=order["id"]))["order"]
    assert order["status"] == "FULFILLED"
    assert await ci_names(gql, order["id"]) == [f"licensed-{order['id'][:8]}"]
    twice = await gql.ok("mutation($id: ID!) { completeFulfilmentTask(id: $id) { errors { code"
                         " } } }", id=task["id"])
    assert twice["completeFulfilmentTask"]["errors"][0]["code"] == "CONFLICT"


async def test_who_may_read_and_do_what(gql, world):
    john = gql.as_user(*JOHN)
    order = (await submit(john, world["site"], {"siteName": "private"}))["order"]
    no_role = await gql.as_user("nobody")("{ catalogueItems { id } }")
    assert no_role["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    exec_submit = await gql.as_user("eve", "executive")(
        SUBMIT, i={"itemId": world["site"], "form": {"siteName": "exec"},
                   "idempotencyKey": "exec-1"})
    assert exec_submit["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # Another requester cannot see it; the approver named on it and admins can.
    assert (await gql.as_user("ann", "requester").ok(GET_ORDER, id=order["id"]))[
        "order"] is None
    assert (await gql.as_user(*MARY).ok(GET_ORDER, id=order["id"]))["order"]["id"] \
        == order["id"]
    assert (await gql.as_user(*BOB).ok(GET_ORDER, id=order["id"]))["order"] is None
    assert (await gql.ok(GET_ORDER, id=order["id"]))["order"]["id"] == order["id"]
    queue = await john("{ approvalQueue { id } }")
    assert queue["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    everyone = await john("{ orders { id } }")
    assert everyone["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert [o["id"] for o in (await gql.ok("{ orders { id } }"))["orders"]] == [order["id"]]
    made = await john("mutation { createCatalogueCategory(input: {name: \"X\"}) { "
                      "errors { code } } }")
    assert made["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_order_status_subscription_follows_the_order(gql, world, clean_db,
                                                           test_settings):
    from strawberry.types import ExecutionResult

    from cmdb.api.schema import build_schema
    from cmdb.identity.principal import Principal
    from cmdb.schema.context import Context
    from cmdb.services import Services

    def status(result: ExecutionResult) -> Any:
        assert result.data is not None, result.errors
        return result.data["orderStatus"]

    order = (await submit(gql.as_user(*JOHN), world["site"], {"siteName": "watched"}))["order"]
    schema = build_schema(test_settings)
    ctx = Context(Services(clean_db, test_settings), "test",
                  Principal(user="johnW", roles=frozenset({"requester"})))
    stream = await schema.subscribe(
        "subscription($id: ID!) { orderStatus(id: $id) { status currentStep } }",
        variable_values={"id": order["id"]}, context_value=ctx)
    first = await asyncio.wait_for(stream.__anext__(), timeout=10)
    assert status(first) == {"status": "AWAITING_APPROVAL", "currentStep": 0}
    nxt = asyncio.ensure_future(stream.__anext__())
    await gql.as_user(*MARY).ok(APPROVE, id=order["id"])
    seen = [status(await asyncio.wait_for(nxt, timeout=10))]
    # Each change seen is reported (FULFILLING may or may not be caught); it ends when the
    # order is fulfilled.
    while seen[-1]["status"] != "FULFILLED":
        seen.append(status(await asyncio.wait_for(stream.__anext__(), timeout=10)))
    assert {s["status"] for s in seen} <= {"APPROVED", "FULFILLING", "FULFILLED"}
    assert seen[-1] == {"status": "FULFILLED", "currentStep": None}
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(stream.__anext__(), timeout=10)


async def test_an_approved_order_whose_fulfilment_never_started_can_be_started(gql, world,
                                                                               clean_db):
    john = gql.as_user(*JOHN)
    order = (await submit(john, world["site"], {"siteName": "stuck"}))["order"]
    # As if the approval committed and the process stopped before fulfilment began.
    await clean_db.write("MATCH (o:Order {id: $id}) SET o.status = 'APPROVED'", {"id": order["id"]})
    started = (await john.ok(RETRY, id=order["id"]))["retryFulfilment"]["order"]
    assert started["status"] == "FULFILLED" and started["attempts"] == 1
    assert await ci_names(gql, order["id"]) == ["sp-site-stuck"]


async def test_listing_items_with_versions_is_batched(gql, world, clean_db):
    for n in range(3):
        await create_item(gql, f"Extra item {n}", recipe={"service": "SharePoint Platform"})
    before = clean_db.round_trips.count
    data = await gql.ok("{ catalogueItems { name versions { version price { monthly } } } }")
    assert len(data["catalogueItems"]) == 4
    assert all(len(i["versions"]) == 1 for i in data["catalogueItems"])
    assert clean_db.round_trips.count - before == 2  # the items, then all their versions
