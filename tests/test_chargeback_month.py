"""The scripted October (see ``tests/chargeback_world.py``): hand-computed totals for three cost
centres, explained lines, closing freezes, a late record lands as an adjustment in November,
and who may read what."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from cmdb.core import clock
from tests.chargeback_world import (
    CALCULATE,
    CLOSE,
    EXPECTED,
    LINES,
    PERIOD,
    PUBLISH,
    REPORT,
    USAGE,
    at,
    october,
    ok,
)

__all__ = ["october"]  # the fixture

pytestmark = pytest.mark.integration


async def report(gql, by: str = "COST_CENTRE", period: str = PERIOD) -> dict[str, Any]:
    found: dict[str, Any] = (await gql.ok(REPORT, p=period, by=by))["costReport"]
    return found


async def all_lines(gql, period: str = PERIOD, **flt) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await gql.ok(LINES, p=period, f=flt or None, first=2, after=after))["chargeLines"]
        out.extend(page["lines"])
        if not page["hasNextPage"]:
            return out
        after = page["endCursor"]


async def test_october_by_cost_centre_matches_the_hand_computed_month(gql, october):
    result = await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    assert result["result"]["warnings"] == []
    assert result["result"]["total"] == "1541.68"
    assert result["result"]["unallocated"] == "0.00"
    rep = await report(gql)
    rows = {r["key"]: r for r in rep["rows"]}
    assert {k: rows[k]["amount"] for k in EXPECTED} == EXPECTED
    assert rows["CC-1100"]["invoiced"] == "0.00" and rows["CC-1100"]["billingMode"] == "SHOWBACK"
    assert rows["CC-1200"]["invoiced"] == "786.41"
    # The hierarchy rolls up: IT Operations has nothing of its own, Corporate holds all.
    assert rows["CC-1000"]["amount"] == "0.00" and rows["CC-1000"]["rolledUp"] == "1541.68"
    assert rows["CC-1200"]["parent"] == "CC-1000"
    assert rep["total"] == "1541.68" and rep["invoiced"] == str(Decimal("1541.68")
                                                                  - Decimal("285.71"))
    assert None not in rows  # nothing unallocated


async def test_every_line_explains_itself(gql, october):
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    payroll = await all_lines(gql, costCentres=["CC-1400"])
    by_kind = {line["kind"]: line for line in payroll}
    assert set(by_kind) == {"USAGE", "POOL"}
    storage = by_kind["USAGE"]
    assert (storage["amount"], storage["meter"], storage["quantity"], storage["rateVersion"]) \
        == ("183.84", "storage-gb-month", "2048", 1)
    assert storage["path"][:3] == ["vol-payroll-data", "payroll-db", "payroll-app"]
    assert storage["path"][-1] == "Payroll" and storage["serviceName"] == "Payroll"
    assert "tiered" in storage["description"] and storage["share"] == "1/1"
    vdi = by_kind["POOL"]
    assert (vdi["amount"], vdi["user"], vdi["driver"], vdi["quantity"], vdi["share"]) == \
        ("285.72", "maryK", "SESSIONS", "2", "2/7")
    assert vdi["path"] == ["VDI platform", "maryK"]
    john = await all_lines(gql, user="johnW")
    fee = next(line for line in john if line["kind"] == "RECURRING_FEE")
    assert (fee["amount"], fee["quantity"], fee["unit"], fee["catalogueItemName"]) == \
        ("10.16", "21", "day", "SharePoint collaboration site")
    assert "21 of 31 days" in fee["description"]
    trading = next(line for line in await all_lines(gql, meter="storage-gb-month")
                   if line["costCentre"] == "CC-1200")
    assert (trading["amount"], trading["quantity"]) == ("347.68", "4096")


async def test_closing_freezes_and_a_late_record_is_adjusted_next_month(gql, october):
    # Periods close in order: the demo's own September comes first.
    early = await gql.ok(CLOSE, p=PERIOD)
    assert early["closeChargePeriod"]["errors"][0]["message"] == \
        "close 2026-09 first: periods close in order"
    await ok(gql, CLOSE, "closeChargePeriod", p="2026-09")
    closed = await ok(gql, CLOSE, "closeChargePeriod", p=PERIOD)
    period = closed["result"]["period"]
    assert period["status"] == "CLOSED" and len(period["checksum"]) == 64
    before = await all_lines(gql)

    clock.pin(at(3, month=11))
    late = await ok(gql, USAGE, "recordUsage", r=[{
        "recordId": "stor-payroll-2026-10-late", "ciId": october["vol-payroll-data"],
        "meter": "storage-gb-month", "quantity": "100", "at": at(20).isoformat(),
        "source": "pure-lon-01"}])
    assert (late["created"], late["late"]) == (1, 1)
    again = await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    assert again["result"]["changed"] is False
    assert again["result"]["period"]["checksum"] == period["checksum"]
    assert await all_lines(gql) == before
    assert {r["key"]: r["amount"] for r in (await report(gql))["rows"]
            if r["key"] in EXPECTED} == EXPECTED

    nov = await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-11")
    assert nov["result"]["changed"] is True
    [adjustment] = await all_lines(gql, "2026-11", kind="ADJUSTMENT")
    # October's tiers continue: 2,048 GB were billed, so the late 100 GB fall in the second
    # tier (1,000 to 5,000 at 0.08): 100 x 0.08 = 8.00, not 100 x 0.10 on their own.
    assert (adjustment["amount"], adjustment["adjusts"], adjustment["costCentre"]) == \
        ("8.00", "2026-10", "CC-1400")
    assert adjustment["chargeStart"].startswith("2026-10-01")
    # The subscription runs on: all 30 days of November.
    [fee] = await all_lines(gql, "2026-11", kind="RECURRING_FEE")
    assert (fee["amount"], fee["quantity"]) == ("15.00", "30")
    trend = (await gql.ok("""{ costTrend(from: "2026-10", to: "2026-12") {
        period { id status } rows { key amount } } }"""))["costTrend"]
    assert [(t["period"]["id"], t["period"]["status"]) for t in trend] == \
        [("2026-10", "CLOSED"), ("2026-11", "OPEN")]
    assert [next(r["amount"] for r in t["rows"] if r["key"] == "CC-1400") for t in trend] == \
        ["469.56", "8.00"]
    backwards = await gql("""{ costTrend(from: "2026-11", to: "2026-10") { total } }""")
    assert "must not be before from" in backwards["errors"][0]["message"]
    # A closed period takes no new pool cost and no rate card reaching back into it.
    refused = await gql.ok("""mutation { setCostPoolAmount(code: "vdi-platform",
        period: "2026-10", amount: "1.00") { errors { code message } } }""")
    assert refused["setCostPoolAmount"]["errors"][0]["code"] == "CONFLICT"


async def test_a_manual_adjustment_references_the_line_it_corrects(gql, october):
    await ok(gql, CLOSE, "closeChargePeriod", p="2026-09")
    await ok(gql, CLOSE, "closeChargePeriod", p=PERIOD)
    [storage] = await all_lines(gql, costCentres=["CC-1400"], kind="USAGE")
    booked = await gql.ok("""mutation($i: AdjustmentInput!) { bookAdjustment(input: $i) {
        line { id kind amount adjusts correctsLine costCentre invoiced }
        errors { field message code } } }""", i={
        "period": "2026-11", "costCentre": "CC-1400", "amount": "-20.00",
        "reason": "credit: storage over-reported", "correctsLine": storage["id"]})
    line = booked["bookAdjustment"]["line"]
    assert (line["amount"], line["adjusts"], line["correctsLine"]) == \
        ("-20.00", "2026-10", storage["id"])
    # Recalculating November keeps the manual adjustment.
    clock.pin(at(3, month=11))
    await ok(gql, CALCULATE, "calculateChargePeriod", p="2026-11")
    assert [x["id"] for x in await all_lines(gql, "2026-11", kind="ADJUSTMENT")] == [line["id"]]
    closed_target = await gql.ok("""mutation($i: AdjustmentInput!) { bookAdjustment(input: $i)
        { errors { field code } } }""", i={"period": PERIOD, "costCentre": "CC-1400",
                                           "amount": "5.00", "reason": "too late"})
    assert closed_target["bookAdjustment"]["errors"] == [{"field": "input.period",
                                                          "code": "CONFLICT"}]


async def test_who_may_read_what(gql, october):
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    # helenC owns CC-1000: as finance she answers for everything below it.
    helen = await report(gql.as_user("helenC", "finance"))
    assert {r["key"]: r["amount"] for r in helen["rows"] if r["key"] in EXPECTED} == EXPECTED
    # priyaS sits in CC-1100: only her cost centre.
    priya = await report(gql.as_user("priyaS", "finance"))
    assert {r["key"] for r in priya["rows"] if r["amount"] != "0.00"} == {"CC-1100"}
    assert priya["total"] == "285.71" and priya["period"]["total"] is None
    # A requester sees their own cost only: the site's fee and their desktop sessions.
    john = gql.as_user("johnW", "requester")
    mine = await report(john, by="USER")
    assert [(r["key"], r["amount"]) for r in mine["rows"]] == [("johnW", "438.73")]
    assert {line["user"] for line in await all_lines(john)} == {"johnW"}
    # Managing is for finance_all and admins.
    refused = await gql.as_user("priyaS", "finance")(CALCULATE, p=PERIOD)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_bad_input_is_refused_and_nothing_is_written(gql, october):
    bad = await gql.ok(USAGE, r=[
        {"recordId": "x1", "ciId": october["vol-payroll-data"], "meter": "no-such-meter",
         "quantity": "1", "at": at(2).isoformat(), "source": "t"},
        {"recordId": "x2", "ciId": "no-such-ci", "meter": "storage-gb-month",
         "quantity": "1", "at": at(2).isoformat(), "source": "t"},
        {"recordId": "x3", "ciId": october["vol-payroll-data"], "meter": "storage-gb-month",
         "quantity": "-1", "at": at(2).isoformat(), "source": "t"},
        {"recordId": "stor-payroll-2026-10", "ciId": october["vol-payroll-data"],
         "meter": "storage-gb-month", "quantity": "9", "at": at(2).isoformat(), "source": "t"},
        {"recordId": "stor-trading-2026-10-a", "ciId": october["vol-trading-data"],
         "meter": "storage-gb-month", "quantity": "2000", "at": at(15).isoformat(),
         "source": "pure-lon-01"},
        {"recordId": "x5", "ciId": october["vol-payroll-data"], "meter": "storage-gb-month",
         "quantity": "1", "at": at(2, month=12).isoformat(), "source": "t"},
        {"recordId": "x6", "ciId": october["vol-payroll-data"], "meter": "storage-gb-month",
         "quantity": "1", "at": "2019-03-01T00:00:00Z", "source": "t"},
    ])
    out = bad["recordUsage"]
    assert (out["created"], out["duplicates"]) == (0, 1)
    reasons = {r["index"]: r["reason"] for r in out["rejected"]}
    assert set(reasons) == {0, 1, 2, 3, 5, 6} and "in the future" in reasons[5]
    assert "older than 400 days" in reasons[6]
    periods = await gql.ok("{ chargePeriods { id } }")
    assert "2019-03" not in {p["id"] for p in periods["chargePeriods"]}
    assert "no such meter" in reasons[0] and "no such CI" in reasons[1]
    assert "quantity" in reasons[2] and "other values" in reasons[3]
    for tiers, field in (([{"upTo": "10", "rate": "1"}], "input.tiers"),
                         ([{"rate": "1"}, {"rate": "2"}], "input.tiers"),
                         ([{"rate": "-1"}], "input.tiers[0].rate")):
        refused = await gql.ok("""mutation($i: PublishRateCardInput!) { publishRateCard(input:
            $i) { rateCard { id } errors { field code } } }""", i={
            "meter": "storage-gb-month", "effectiveFrom": "2027-01-01", "currency": "EUR",
            "tiers": tiers})
        assert refused["publishRateCard"]["rateCard"] is None
        assert refused["publishRateCard"]["errors"][0]["field"] == field
    wrong = await gql.ok("""mutation { publishRateCard(input: {meter: "storage-gb-month",
        effectiveFrom: "2025-12-01", currency: "EUR", tiers: [{rate: "1"}]}) {
        errors { field code } } }""")
    assert wrong["publishRateCard"]["errors"] == [{"field": "input.effectiveFrom",
                                                   "code": "CONFLICT"}]
    nonsense = await gql(REPORT, p="October", by="COST_CENTRE")
    assert "YYYY-MM" in nonsense["errors"][0]["message"]
    # The rate card versions that exist are untouched.
    cards = await gql.ok("{ rateCards(meter: \"storage-gb-month\") { version effectiveTo } }")
    assert cards["rateCards"] == [{"version": 1, "effectiveTo": None}]


async def test_a_rate_change_mid_month_prices_each_record_by_its_own_time(gql, october):
    [vm] = [e["node"]["id"] for e in (await gql.ok(
        "{ configurationItems(filter: {nameContains: \"payroll-app-vm01\"}) "
        "{ edges { node { id } } } }"))["configurationItems"]["edges"]]
    # The demo prices vCPU-hours at 0.02 from January; 0.03 from 16 October.
    await ok(gql, PUBLISH, "publishRateCard", i={
        "meter": "vcpu-hours", "effectiveFrom": "2026-10-16", "currency": "EUR",
        "tiers": [{"rate": "0.03"}]})
    cards = (await gql.ok("{ rateCards(meter: \"vcpu-hours\") { version effectiveFrom "
                          "effectiveTo } }"))["rateCards"]
    assert cards == [{"version": 1, "effectiveFrom": "2026-01-01", "effectiveTo": "2026-10-16"},
                     {"version": 2, "effectiveFrom": "2026-10-16", "effectiveTo": None}]
    sent = await ok(gql, USAGE, "recordUsage", r=[
        {"recordId": f"cpu-{d}", "ciId": vm, "meter": "vcpu-hours", "quantity": "100",
         "at": at(d).isoformat(), "source": "vcenter"} for d in (10, 20)])
    assert sent["created"] == 2
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    lines = await all_lines(gql, meter="vcpu-hours")
    assert sorted((x["rateVersion"], x["amount"], x["costCentre"]) for x in lines) == \
        [(1, "2.00", "CC-1400"), (2, "3.00", "CC-1400")]


async def test_a_run_half_written_is_never_seen_and_is_swept_by_the_next(gql, october,
                                                                      clean_db):
    from cmdb.chargeback import queries as q
    from cmdb.chargeback.repository import settle

    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    before = await report(gql)
    # A calculation that died after writing a batch of its run, before switching to it.
    [one] = await clean_db.read("MATCH (l:ChargeLine {period: $p}) RETURN l {.*} AS l LIMIT 1",
                                {"p": PERIOD})
    await clean_db.write(q.CREATE_LINES, {"rows": [
        {**one["l"], "run": "dead-run", "amountMinor": 99_999_99, "amount": "99999.99"}]})
    assert await report(gql) == before
    assert sum(Decimal(x["amount"]) for x in await all_lines(gql)) == Decimal("1541.68")
    again = await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    assert again["result"]["total"] == "1541.68"
    await settle()  # the replaced and abandoned lines are deleted in the background
    left = await clean_db.read("MATCH (l:ChargeLine {period: $p}) "
                               "RETURN collect(DISTINCT l.run) AS runs", {"p": PERIOD})
    assert len(left[0]["runs"]) == 1 and "dead-run" not in left[0]["runs"]


async def test_a_run_still_being_written_is_left_alone_until_it_ends(gql, october, clean_db):
    from cmdb.chargeback import queries as q
    from cmdb.chargeback.repository import settle

    async def runs() -> set[str]:
        rows = await clean_db.read("MATCH (l:ChargeLine {period: $p}) "
                                   "RETURN collect(DISTINCT l.run) AS runs", {"p": PERIOD})
        return set(rows[0]["runs"])

    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    [one] = await clean_db.read("MATCH (l:ChargeLine {period: $p}) RETURN l {.*} AS l LIMIT 1",
                                {"p": PERIOD})
    # Another calculation of the month has registered its run and written a batch of it.
    assert await clean_db.write(q.START_RUN, {"period": PERIOD, "run": "other-run"})
    await clean_db.write(q.CREATE_LINES, {"rows": [{**one["l"], "run": "other-run"}]})
    again = await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    await settle()
    assert again["result"]["total"] == "1541.68"
    assert len(await runs()) == 2 and "other-run" in await runs()
    # That calculation failed: once its run is no longer being written, the next sweep takes it.
    await clean_db.write(q.END_RUN, {"period": PERIOD, "run": "other-run"})
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    await settle()
    assert len(await runs()) == 1 and "other-run" not in await runs()


async def test_a_calculation_whose_lines_fail_to_be_written_changes_nothing(
        gql, october, clean_db, test_settings, monkeypatch):
    from cmdb.chargeback import queries as q
    from cmdb.chargeback import repository
    from cmdb.chargeback.service import ChargebackService
    from cmdb.identity.principal import Principal

    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    before = await report(gql)
    svc = ChargebackService(clean_db, test_settings)
    write = clean_db.write
    batches = 0

    async def failing(query, params=None):
        nonlocal batches
        if query == q.CREATE_LINES:
            batches += 1
            if batches == 3:
                raise RuntimeError("Neo4j went away")
        return await write(query, params)

    from cmdb.chargeback import service

    # Many small batches, the engine a chunk ahead at most: it waits for the writer, which
    # fails on its third batch.
    monkeypatch.setattr(repository, "LINE_BATCH", 2)
    monkeypatch.setattr(service, "LINE_CHUNK", 1)
    monkeypatch.setattr(service, "LINE_CHUNKS_AHEAD", 1)
    monkeypatch.setattr(clean_db, "write", failing)
    with pytest.raises(RuntimeError, match="went away"):
        await svc.calculate(Principal("fin", frozenset({"admin"})), PERIOD)
    monkeypatch.undo()
    await repository.settle()
    assert await report(gql) == before
    rows = await clean_db.read("MATCH (p:ChargePeriod {id: $p}) "
                               "MATCH (l:ChargeLine {period: $p}) "
                               "RETURN count(DISTINCT l.run) AS runs, p.writing AS writing",
                               {"p": PERIOD})
    assert rows[0]["runs"] == 1 and rows[0]["writing"] == []  # the failed run is gone
