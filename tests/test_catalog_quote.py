"""The price at order time is what the bill says, and the catalogue's estimate uses the same
rules; through GraphQL against the real Neo4j, amounts worked out by hand.

The world (November 2026, 30 days; the clock pinned to the 10th, 09:00 UTC):
- meters storage-gb (GB-month): v1 from 1 January, flat 0.10; v2 from 1 November, graduated
  0.10 up to 100 and 0.08 above; backup-gb (GB-month): v1 from 1 January, flat 0.05;
  cpu-hours (vCPU-hour): no rate card at all. archive-gb is no meter.
- "Team storage" costs 50.00 once and 20.00 a month; its plan lists storage-gb 0.10,
  backup-gb 0.05, cpu-hours 0.02 and archive-gb 0.01 (what people ordering used to be shown).
- An order on 10 November is active 21 of 30 days (10 to 30, the start day counts):
  20.00 x 21 / 30 = 14.00.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from cmdb.core import clock
from tests.catalog_world import UPDATE_ITEM, build_world, create_item, submit
from tests.chargeback_world import CALCULATE, DEFINE_METER, LINES, PUBLISH, USAGE, ok

pytestmark = pytest.mark.integration

PERIOD = "2026-11"
NOW = datetime(2026, 11, 10, 9, tzinfo=UTC)
JOHN = ("johnW", "requester")

PLAN = {"currency": "EUR", "oneOff": "50.00", "monthly": "20.00", "usage": [
    {"meter": "storage-gb", "unit": "GB-month", "rate": "0.10"},
    {"meter": "backup-gb", "unit": "GB-month", "rate": "0.05"},
    {"meter": "cpu-hours", "unit": "vCPU-hour", "rate": "0.02"},
    {"meter": "archive-gb", "unit": "GB-month", "rate": "0.01"},
]}
QUOTE = """quote { currency oneOff monthly notes quotedAt
  usage { meter unit listedRate rateCardId rateCardVersion tiers { upTo rate } note } }"""
ORDER_QUOTE = "query($id: ID!) { order(id: $id) { submittedAt price { monthly } " + QUOTE + " } }"
ESTIMATE = """query($id: ID!, $q: [EstimateQuantityInput!]) { catalogueItem(id: $id) {
  estimate(quantities: $q) { currency oneOff monthly monthlyTotal firstMonth notes ratesOn
    usage { meter unit quantity rateCardId rateCardVersion tiers { upTo rate } amount } } } }"""

TWO_TIERS = [{"upTo": "100", "rate": "0.10"}, {"upTo": None, "rate": "0.08"}]
STORAGE_NOTE = ("storage-gb: the plan lists 0.10, billed at rate card v2: 0.10 up to 100, "
                "0.08 above 100")
CPU_NOTE = ("cpu-hours: the plan lists 0.02 a vCPU-hour, but no rate card is in force on "
            "2026-11-10: its usage is not charged")
ARCHIVE_NOTE = ("archive-gb: the plan lists 0.01 a GB-month, but there is no chargeback meter "
                "of that code: nothing is billed for it")


@pytest_asyncio.fixture
async def world(gql: Any, clean_db: Any) -> Any:
    clock.pin(NOW)
    try:
        ids = await build_world(gql, clean_db)
        for code, unit in (("storage-gb", "GB-month"), ("backup-gb", "GB-month"),
                           ("cpu-hours", "vCPU-hour")):
            await ok(gql, DEFINE_METER, "defineMeter",
                     i={"code": code, "name": code, "unit": unit})
        cards = {}
        for meter, start, tiers in (
                ("storage-gb", "2026-01-01", [{"upTo": None, "rate": "0.10"}]),
                ("storage-gb", "2026-11-01", TWO_TIERS),
                ("backup-gb", "2026-01-01", [{"upTo": None, "rate": "0.05"}])):
            made = await ok(gql, PUBLISH, "publishRateCard", i={
                "meter": meter, "effectiveFrom": start, "currency": "EUR", "tiers": tiers})
            cards[f"{meter}@{start}"] = made["rateCard"]["id"]
        ids["item"] = await create_item(gql, "Team storage", price=PLAN)
        yield {**ids, **cards}
    finally:
        clock.pin(None)


async def lines(gql: Any) -> list[dict[str, Any]]:
    out, after = [], None
    while True:
        page = (await gql.ok(LINES, p=PERIOD, f=None, first=500, after=after))["chargeLines"]
        out.extend(page["lines"])
        if not page["hasNextPage"]:
            return out
        after = page["endCursor"]


async def bill(gql: Any, subscription: str) -> list[tuple[str, str]]:
    """The month's lines of one subscription: (kind, amount), sorted."""
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    return sorted((r["kind"], r["amount"]) for r in await lines(gql)
                  if r["subscriptionId"] == subscription)


async def order(gql: Any, item: str, site: str) -> dict[str, Any]:
    placed = await submit(gql.as_user(*JOHN), item, {"siteName": site})
    assert placed["errors"] == [], placed
    assert placed["order"]["status"] == "FULFILLED"  # no approval step: fulfilled at once
    found: dict[str, Any] = placed["order"]
    return found


async def test_the_quote_is_recorded_when_the_order_is_submitted(gql, world):
    john = gql.as_user(*JOHN)
    placed = await order(gql, world["item"], "quoted")
    read = (await john.ok(ORDER_QUOTE, id=placed["id"]))["order"]
    quote = read["quote"]
    assert quote["quotedAt"] == read["submittedAt"]
    assert {k: quote[k] for k in ("currency", "oneOff", "monthly", "notes")} == {
        "currency": "EUR", "oneOff": "50.00", "monthly": "20.00", "notes": []}
    assert quote["usage"] == [
        # In force on 10 November: storage v2 (from 1 November), not v1; its tiers are not
        # the plan's flat 0.10, and the note says so.
        {"meter": "storage-gb", "unit": "GB-month", "listedRate": "0.10",
         "rateCardId": world["storage-gb@2026-11-01"], "rateCardVersion": 2,
         "tiers": TWO_TIERS, "note": STORAGE_NOTE},
        # The plan lists what the rate card charges: nothing to say.
        {"meter": "backup-gb", "unit": "GB-month", "listedRate": "0.05",
         "rateCardId": world["backup-gb@2026-01-01"], "rateCardVersion": 1,
         "tiers": [{"upTo": None, "rate": "0.05"}], "note": None},
        {"meter": "cpu-hours", "unit": "vCPU-hour", "listedRate": "0.02", "rateCardId": None,
         "rateCardVersion": None, "tiers": [], "note": CPU_NOTE},
        {"meter": "archive-gb", "unit": "GB-month", "listedRate": "0.01", "rateCardId": None,
         "rateCardVersion": None, "tiers": [], "note": ARCHIVE_NOTE},
    ]

    # A rate card published afterwards does not change what was quoted.
    await ok(gql, PUBLISH, "publishRateCard", i={
        "meter": "cpu-hours", "effectiveFrom": "2026-11-10", "currency": "EUR",
        "tiers": [{"upTo": None, "rate": "0.03"}]})
    again = (await john.ok(ORDER_QUOTE, id=placed["id"]))["order"]["quote"]
    assert again == quote
    later = (await order(gql, world["item"], "quoted-later"))["id"]
    cpu = (await john.ok(ORDER_QUOTE, id=later))["order"]["quote"]["usage"][2]
    assert (cpu["rateCardVersion"], cpu["tiers"], cpu["note"]) == (
        1, [{"upTo": None, "rate": "0.03"}],
        "cpu-hours: the plan lists 0.02, billed at rate card v1: 0.03")


async def test_the_bill_uses_the_quoted_fees_after_the_price_changes(gql, world, clean_db):
    first = await order(gql, world["item"], "before-change")
    sub = first["subscriptionId"]
    # 20.00 x 21 / 30 = 14.00; the one-off 50.00 in the month the subscription starts.
    assert await bill(gql, sub) == [("ONE_OFF_FEE", "50.00"), ("RECURRING_FEE", "14.00")]

    # Item versions are not changed in place: a price change is the item's next version.
    changed = (await gql.ok(UPDATE_ITEM, id=world["item"], i={"price": {
        **PLAN, "oneOff": "80.00", "monthly": "31.00"}}))["updateCatalogueItem"]
    assert changed["item"]["currentVersion"]["version"] == 2
    # Still the quoted 50.00 and 14.00, not 80.00 and 31.00 x 21 / 30 = 21.70.
    assert await bill(gql, sub) == [("ONE_OFF_FEE", "50.00"), ("RECURRING_FEE", "14.00")]
    second = await order(gql, world["item"], "after-change")
    assert second["price"] == {"currency": "EUR", "oneOff": "80.00", "monthly": "31.00"}
    # An order made now pays the new price: 80.00 once, 31.00 x 21 / 30 = 21.70.
    assert await bill(gql, second["subscriptionId"]) == [("ONE_OFF_FEE", "80.00"),
                                                         ("RECURRING_FEE", "21.70")]

    # Even were the version's plan rewritten in place (no API does it; a data fix might),
    # the subscription is billed what was quoted: chargeback reads the subscription's fees.
    await clean_db.write(
        "MATCH (v:CatalogueItemVersion {itemId: $item, version: 1}) SET v.pricePlan = $plan",
        {"item": world["item"], "plan": '{"currency": "EUR", "one_off": "60.00", '
                                        '"monthly": "99.00", "usage": []}'})
    assert await bill(gql, sub) == [("ONE_OFF_FEE", "50.00"), ("RECURRING_FEE", "14.00")]

    # A subscription made before fees were quoted (none on it) and its order (no quote):
    # billed at its version's plan, here the rewritten one: 60.00 once,
    # 99.00 x 21 / 30 = 69.30 a month.
    await clean_db.write(
        "MATCH (o:Order {id: $order})-[:BECAME]->(s:Subscription) "
        "REMOVE o.quote, s.currency, s.oneOffFee, s.monthlyFee", {"order": first["id"]})
    assert await bill(gql, sub) == [("ONE_OFF_FEE", "60.00"), ("RECURRING_FEE", "69.30")]
    old = (await gql.as_user(*JOHN).ok(ORDER_QUOTE, id=first["id"]))["order"]
    assert old["quote"] is None and old["price"] == {"monthly": "20.00"}


async def test_the_estimate_prices_usage_at_the_rate_cards_as_the_bill_does(gql, world):
    john = gql.as_user(*JOHN)
    got = (await john.ok(ESTIMATE, id=world["item"], q=[
        {"meter": "storage-gb", "quantity": "250"},
        {"meter": "backup-gb", "quantity": "33.3"},
        {"meter": "cpu-hours", "quantity": "10"}]))["catalogueItem"]["estimate"]
    assert got["usage"] == [
        # 100 x 0.10 = 10.00, then 150 x 0.08 = 12.00: 22.00.
        {"meter": "storage-gb", "unit": "GB-month", "quantity": "250",
         "rateCardId": world["storage-gb@2026-11-01"], "rateCardVersion": 2,
         "tiers": TWO_TIERS, "amount": "22.00"},
        # 33.3 x 0.05 = 1.665, rounded half to even: 1.66.
        {"meter": "backup-gb", "unit": "GB-month", "quantity": "33.3",
         "rateCardId": world["backup-gb@2026-01-01"], "rateCardVersion": 1,
         "tiers": [{"upTo": None, "rate": "0.05"}], "amount": "1.66"},
        # No rate card: not charged, so no amount.
        {"meter": "cpu-hours", "unit": "vCPU-hour", "quantity": "10", "rateCardId": None,
         "rateCardVersion": None, "tiers": [], "amount": None},
        {"meter": "archive-gb", "unit": "GB-month", "quantity": None, "rateCardId": None,
         "rateCardVersion": None, "tiers": [], "amount": None},
    ]
    # A month: 20.00 + 22.00 + 1.66 = 43.66; the first adds the one-off: 50.00 + 43.66.
    assert {k: got[k] for k in ("currency", "oneOff", "monthly", "monthlyTotal",
                                "firstMonth", "ratesOn")} == {
        "currency": "EUR", "oneOff": "50.00", "monthly": "20.00", "monthlyTotal": "43.66",
        "firstMonth": "93.66", "ratesOn": "2026-11-10"}
    assert got["notes"] == [STORAGE_NOTE, CPU_NOTE, ARCHIVE_NOTE]

    # Without quantities: the rates, no amounts; the totals are the fees.
    bare = (await john.ok(ESTIMATE, id=world["item"]))["catalogueItem"]["estimate"]
    assert [(u["meter"], u["quantity"], u["rateCardVersion"], u["amount"])
            for u in bare["usage"]] == [("storage-gb", None, 2, None),
                                        ("backup-gb", None, 1, None),
                                        ("cpu-hours", None, None, None),
                                        ("archive-gb", None, None, None)]
    assert (bare["monthlyTotal"], bare["firstMonth"]) == ("20.00", "70.00")

    # The bill agrees: 250 GB-month on the site an order provisions is billed 22.00.
    placed = await order(gql, world["item"], "estimated")
    [site] = (await john.ok("query($id: ID!) { subscription(id: $id) { configurationItems "
                            "{ id } } }", id=placed["subscriptionId"]))["subscription"][
        "configurationItems"]
    await ok(gql, USAGE, "recordUsage", r=[
        {"recordId": "site-storage-2026-11", "ciId": site["id"], "meter": "storage-gb",
         "quantity": "250", "at": datetime(2026, 11, 10, 8, tzinfo=UTC).isoformat(),
         "source": "array"}])
    assert await bill(gql, placed["subscriptionId"]) == [
        ("ONE_OFF_FEE", "50.00"), ("RECURRING_FEE", "14.00"), ("USAGE", "22.00")]


async def test_the_estimate_says_where_the_listed_rate_is_not_what_is_billed(gql, world):
    john = gql.as_user(*JOHN)
    placed = await order(gql, world["item"], "in-november")
    await ok(gql, PUBLISH, "publishRateCard", i={
        "meter": "backup-gb", "effectiveFrom": "2026-12-01", "currency": "EUR",
        "tiers": [{"upTo": None, "rate": "0.06"}]})
    # Before 1 December the plan's 0.05 is what backup is billed at: no note about it.
    notes = (await john.ok(ESTIMATE, id=world["item"]))["catalogueItem"]["estimate"]["notes"]
    assert not [n for n in notes if n.startswith("backup-gb")]

    clock.pin(datetime(2026, 12, 2, 9, tzinfo=UTC))
    got = (await john.ok(ESTIMATE, id=world["item"], q=[
        {"meter": "backup-gb", "quantity": "100"}]))["catalogueItem"]["estimate"]
    [backup] = [u for u in got["usage"] if u["meter"] == "backup-gb"]
    # 100 x 0.06 = 6.00 (not the listed 100 x 0.05 = 5.00); 20.00 + 6.00 = 26.00 a month.
    assert (backup["rateCardVersion"], backup["amount"]) == (2, "6.00")
    assert (got["monthlyTotal"], got["firstMonth"], got["ratesOn"]) == (
        "26.00", "76.00", "2026-12-02")
    assert "backup-gb: the plan lists 0.05, billed at rate card v2: 0.06" in got["notes"]
    # The November order keeps what it was quoted.
    quoted = (await john.ok(ORDER_QUOTE, id=placed["id"]))["order"]["quote"]["usage"][1]
    assert (quoted["rateCardVersion"], quoted["note"]) == (1, None)


async def test_bad_estimate_quantities_are_errors_naming_the_field(gql, world):
    john = gql.as_user(*JOHN)
    for quantities, field, code, words in (
            ([{"meter": "storage-gb", "quantity": "1"}, {"meter": "gpu-hours",
                                                          "quantity": "5"}],
             "quantities[1].meter", "NOT_FOUND",
             "the item's price plan has no meter 'gpu-hours' (its meters: storage-gb, "
             "backup-gb, cpu-hours, archive-gb)"),
            ([{"meter": "storage-gb", "quantity": "-1"}], "quantities[0].quantity", "INVALID",
             "greater than or equal to 0"),
            ([{"meter": "storage-gb", "quantity": "1"}, {"meter": "storage-gb",
                                                          "quantity": "2"}],
             "quantities", "INVALID", "meter 'storage-gb' is given twice")):
        body = await john(ESTIMATE, id=world["item"], q=quantities)
        assert body["data"] is None or body["data"]["catalogueItem"] is None, body
        [error] = body["errors"]
        assert error["extensions"]["code"] == code, error
        assert [f["field"] for f in error["extensions"]["fields"]] == [field], error
        assert words in error["message"], error


async def test_listed_orders_carry_their_quote(gql, world):
    placed = await order(gql, world["item"], "listed")
    mine = (await gql.as_user(*JOHN).ok("{ myOrders { id quote { monthly usage { meter } } }"
                                         " }"))["myOrders"]
    assert mine == [{"id": placed["id"], "quote": {"monthly": "20.00", "usage": [
        {"meter": "storage-gb"}, {"meter": "backup-gb"}, {"meter": "cpu-hours"},
        {"meter": "archive-gb"}]}}]


async def test_estimates_of_a_page_of_items_read_the_rate_cards_once(gql, world, clean_db):
    for n in range(3):
        await create_item(gql, f"Storage {n}", price={**PLAN, "monthly": f"{n}.00"})
    before = clean_db.round_trips.count
    found = (await gql.as_user(*JOHN).ok(
        "{ catalogueItems(search: \"storage\") { name estimate(quantities: "
        "[{meter: \"storage-gb\", quantity: \"250\"}]) { monthlyTotal } } }"))["catalogueItems"]
    # n.00 + 22.00 for "Storage n"; 20.00 + 22.00 for Team storage.
    assert sorted((i["name"], i["estimate"]["monthlyTotal"]) for i in found) == [
        ("Storage 0", "22.00"), ("Storage 1", "23.00"), ("Storage 2", "24.00"),
        ("Team storage", "42.00")]
    assert clean_db.round_trips.count - before == 3  # the items, the rate cards, the meters


async def test_a_plan_in_another_currency_than_the_bills_is_noted(gql, world):
    item = await create_item(gql, "Dollar storage", price={
        "currency": "USD", "oneOff": "5.00", "monthly": "10.00",
        "usage": [{"meter": "storage-gb", "unit": "GB-month", "rate": "0.10"}]})
    got = (await gql.as_user(*JOHN).ok(ESTIMATE, id=item, q=[
        {"meter": "storage-gb", "quantity": "250"}]))["catalogueItem"]["estimate"]
    # The usage is billed in EUR (22.00, as above) and is not added to the USD fees:
    # 10.00 a month, 5.00 + 10.00 the first.
    assert [u["amount"] for u in got["usage"]] == ["22.00"]
    assert (got["currency"], got["monthlyTotal"], got["firstMonth"]) == ("USD", "10.00",
                                                                         "15.00")
    assert got["notes"] == [
        "the plan is priced in USD and bills are kept in EUR: its fees are left out of the "
        "bill (the period warns), and usage is charged in EUR", STORAGE_NOTE]
    placed = await order(gql, item, "dollars")
    quote = (await gql.as_user(*JOHN).ok(ORDER_QUOTE, id=placed["id"]))["order"]["quote"]
    assert quote["notes"] == got["notes"][:1] and quote["currency"] == "USD"
