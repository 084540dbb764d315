"""Chargeback over REST and the CLI: usage files in three formats, exports (plain CSV and
FOCUS 1.2, validated with the FinOps validator), scope of downloads, and bad input."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cmdb.chargeback.export import (
    FOCUS_NUMERIC_COLUMNS,
    LINE_CSV_NUMERIC_COLUMNS,
    formula_like,
    unneutralise,
)
from tests.auth import auth_headers
from tests.chargeback_world import CALCULATE, PERIOD, POOL, at, october, ok
from tests.test_chargeback_focus import NUMBER, _real_failures, focus_problems, run_validator
from tests.test_chargeback_month import all_lines

pytestmark = pytest.mark.integration
__all__ = ["october"]  # the fixture

METER = auth_headers("pure-exporter", "monitoring")


def usage(record_id: str, ci: str, quantity: str = "10", day: int = 2) -> dict[str, str]:
    return {"recordId": record_id, "ciId": ci, "meter": "storage-gb-month",
            "quantity": quantity, "at": at(day).isoformat(), "source": "pure-lon-01"}


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_focus_export_of_october_passes_the_validator(client, gql, october,
                                                                tmp_path: Path):
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    r = await client.get(f"/api/chargeback/periods/{PERIOD}/focus.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    got = rows(r.text)
    header = next(csv.reader(io.StringIO(r.text)))
    assert focus_problems(header, got) == []
    assert sum(Decimal(x["EffectiveCost"]) for x in got) == Decimal("1541.68")
    assert sum(Decimal(x["BilledCost"]) for x in got) == Decimal("1541.68") - Decimal("285.71")
    path = tmp_path / "focus-2026-10.csv"
    path.write_text(r.text)
    _passed, failed, out = run_validator(path)
    assert _real_failures(failed) == set(), out[-3000:]


async def test_lines_csv_is_scoped_to_the_caller(client, gql, october):
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    everything = rows((await client.get(f"/api/chargeback/periods/{PERIOD}/lines.csv")).text)
    assert sum(Decimal(x["amount"]) for x in everything) == Decimal("1541.68")
    john = await client.get(f"/api/chargeback/periods/{PERIOD}/lines.csv",
                            headers=auth_headers("johnW", "requester"))
    mine = rows(john.text)
    assert {x["user"] for x in mine} == {"johnW"}
    assert sum(Decimal(x["amount"]) for x in mine) == Decimal("438.73")
    anonymous = await client.get(f"/api/chargeback/periods/{PERIOD}/lines.csv",
                                 headers={"Authorization": ""})
    assert anonymous.status_code == 401
    missing = await client.get("/api/chargeback/periods/2030-01/lines.csv")
    assert missing.status_code == 404 and "2030-01" in missing.json()["error"]
    nonsense = await client.get("/api/chargeback/periods/someday/focus.csv")
    assert nonsense.status_code == 400 and "YYYY-MM" in nonsense.json()["error"]


async def test_usage_in_json_ndjson_and_csv_with_per_record_rejections(client, october):
    vol = october["vol-payroll-data"]
    r = await client.post("/api/chargeback/usage", headers=METER,
                          json={"records": [usage("j1", vol), usage("j2", "nope")]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"received": 2, "created": 1, "duplicates": 0, "late": 0,
                              "rejected": 1}
    assert body["rejected"] == [{"index": 1, "recordId": "j2",
                                 "reason": "ciId: no such CI 'nope'"}]
    nd = "\n".join(json.dumps(x) for x in (usage("j1", vol), usage("n1", vol, "0.125")))
    r = await client.post("/api/chargeback/usage", content=nd,
                          headers={**METER, "Content-Type": "application/x-ndjson"})
    assert r.json()["counts"] | {} == {"received": 2, "created": 1, "duplicates": 1,
                                       "late": 0, "rejected": 0}
    text = ("recordId,ciId,meter,quantity,at,source\n"
            f"c1,{vol},storage-gb-month,1.5,{at(3).isoformat()},csv\n"
            f"c2,{vol},storage-gb-month,lots,{at(3).isoformat()},csv\n"
            f"c3,{vol},storage-gb-month,2,yesterday,csv\n")
    r = await client.post("/api/chargeback/usage", content=text,
                          headers={**METER, "Content-Type": "text/csv"})
    body = r.json()
    assert body["counts"]["created"] == 1
    reasons = {x["index"]: x["reason"] for x in body["rejected"]}
    assert set(reasons) == {1, 2} and "quantity" in reasons[1] and "at" in reasons[2]
    # The stored quantities are exact: 10 + 0.125 + 1.5 on top of October's 2,048.
    lines = await client.post("/graphql", json={"query": CALCULATE,
                                                "variables": {"p": PERIOD}})
    assert lines.status_code == 200
    got = await client.post("/graphql", json={"query": """{ chargeLines(period: "2026-10",
        filter: {costCentres: ["CC-1400"], kind: USAGE}) { lines { quantity amount } } }"""})
    [line] = got.json()["data"]["chargeLines"]["lines"]
    assert line["quantity"] == "2059.625"
    # 1000 x 0.10 + 1059.625 x 0.08 = 184.77
    assert line["amount"] == "184.77"


async def test_usage_endpoint_refuses_bad_bodies_and_callers(client, october):
    vol = october["vol-payroll-data"]
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"content": "not json", "headers": {**METER, "Content-Type": "application/json"}},
         400, "malformed JSON"),
        ({"content": "<x/>", "headers": {**METER, "Content-Type": "application/xml"}}, 415,
         "text/csv"),
        ({"content": "recordId,ciId\nx,y\n", "headers": {**METER, "Content-Type": "text/csv"}},
         400, "missing columns: meter"),
        ({"json": {"records": [], "extra": 1}, "headers": METER}, 400, "unknown fields"),
        ({"json": {"records": [usage("r", vol)]},
          "headers": auth_headers("johnW", "requester")}, 403, "chargeback:usage"),
    ]
    for kwargs, status, text in cases:
        r = await client.post("/api/chargeback/usage", **kwargs)
        assert r.status_code == status, (kwargs, r.text)
        assert text in r.text
    stored = await client.post("/graphql", json={"query": "{ chargePeriods { id } }"})
    assert stored.status_code == 200


async def test_cli_imports_a_usage_file_with_progress(tmp_path: Path, test_settings,
                                                      monkeypatch, october):
    from cmdb.cli import app
    from cmdb.settings import get_settings

    vol = october["vol-payroll-data"]
    path = tmp_path / "usage.ndjson"
    path.write_text("\n".join(json.dumps(usage(f"cli-{i}", vol, "1", 1 + i % 28))
                              for i in range(12)) + "\n" + json.dumps(usage("bad", "nope")))
    monkeypatch.setenv("CMDB_NEO4J_URI", test_settings.neo4j_uri)
    monkeypatch.setenv("CMDB_NEO4J_PASSWORD", test_settings.neo4j_password.get_secret_value())
    get_settings.cache_clear()

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["chargeback", "import-usage", str(path), *args])

    try:
        result = await asyncio.to_thread(run, "--batch-size", "5")
        assert result.exit_code == 0, result.output
        assert "5/13 records" in result.output and "13/13 records" in result.output
        assert "created 12, duplicates 0, late 0, rejected 1" in result.output
        assert "rejected 12 (bad): ciId: no such CI 'nope'" in result.output
        again = await asyncio.to_thread(run)
        assert "created 0, duplicates 12" in again.output
        bad = tmp_path / "usage.csv"
        bad.write_text("recordId,ci,meter\nx,y,z\n")
        refused = await asyncio.to_thread(
            lambda: CliRunner().invoke(app, ["chargeback", "import-usage", str(bad)]))
        assert refused.exit_code == 1
        assert "CSV header: missing columns: ciId, quantity, at, source; unknown columns: ci" \
            in refused.output
    finally:
        get_settings.cache_clear()


# --- names a spreadsheet would run as formulas ----------------------------------------------------

CI_NAME = '=HYPERLINK("http://x","y")'
SERVICE_NAME = "+SUM(1,2) Payroll"
CC_NAME = "-Research & payroll"
POOL_NAME = "@SUM(1+1)*cmd|' /C calc'!A0"
CREDIT = "-20.00 credit: storage over-reported"
SPACED = " \t=1+1 rounding"


async def name_everything_dangerously(gql, cis: dict[str, str]) -> None:
    """The payroll volume, the Payroll service, a new cost centre it is moved to, the VDI pool
    and two manual adjustments (negative) named with the prefixes a spreadsheet runs."""
    ci = await gql.ok("""mutation($id: ID!, $n: String!) { updateConfigurationItem(id: $id,
        input: {name: $n}) { configurationItem { name } errors { message } } }""",
                      id=cis["vol-payroll-data"], n=CI_NAME)
    assert ci["updateConfigurationItem"]["configurationItem"]["name"] == CI_NAME
    cc = await ok(gql, """mutation($n: String!) { createCostCentre(input: {code: "CC-9000",
        name: $n}) { costCentre { id name } errors { field message } } }""", "createCostCentre",
                  n=CC_NAME)
    assert cc["costCentre"]["name"] == CC_NAME
    found = await gql.ok("""{ services(filter: {nameContains: "Payroll"}) { edges { node {
        id name } } } }""")
    [payroll] = [e["node"]["id"] for e in found["services"]["edges"]
                 if e["node"]["name"] == "Payroll"]
    moved = await ok(gql, """mutation($id: ID!, $n: String!, $cc: ID!) { updateService(id: $id,
        input: {name: $n, costCentreId: $cc}) { service { name } errors { field message } } }""",
                     "updateService", id=payroll, n=SERVICE_NAME, cc=cc["costCentre"]["id"])
    assert moved["service"]["name"] == SERVICE_NAME
    await ok(gql, POOL, "defineCostPool", i={
        "code": "vdi-platform", "name": POOL_NAME, "driver": "SESSIONS",
        "ciIds": [cis["pool-standard"], cis["pool-trader"]]})
    for amount, reason in (("-20.00", CREDIT), ("-0.50", SPACED)):
        await ok(gql, """mutation($i: AdjustmentInput!) { bookAdjustment(input: $i) {
            line { id } errors { field message code } } }""", "bookAdjustment", i={
            "period": PERIOD, "costCentre": "CC-9000", "amount": amount, "reason": reason})


def read_back(text: str, numeric: frozenset[str]) -> tuple[list[dict[str, str]], int]:
    """The rows of an export with the one escape taken off each text cell, and how many
    cells had one; every text cell is checked to be safe to open in a spreadsheet."""
    header, *raw = list(csv.reader(io.StringIO(text)))
    escaped, out = 0, []
    for row in raw:
        record = {}
        for column, cell in zip(header, row, strict=True):
            if column in numeric:
                assert cell == "" or NUMBER.fullmatch(cell), (column, cell)
                record[column] = cell
                continue
            assert not formula_like(cell), (column, cell)
            text_ = unneutralise(cell)
            if text_ != cell:
                # the escape is there only for text that needs it
                assert formula_like(text_) or text_.startswith("'"), (column, cell)
                escaped += 1
            record[column] = text_
        out.append(record)
    return out, escaped


async def test_exports_neutralise_names_a_spreadsheet_would_run(client, gql, october,
                                                                tmp_path: Path):
    await name_everything_dangerously(gql, october)
    await ok(gql, CALCULATE, "calculateChargePeriod", p=PERIOD)
    lines = {x["id"]: x for x in await all_lines(gql)}
    total = sum((Decimal(x["amount"]) for x in lines.values()), Decimal(0))
    # the month as scripted, less the two credits
    assert total == Decimal("1541.68") - Decimal("20.50")

    r = await client.get(f"/api/chargeback/periods/{PERIOD}/lines.csv")
    assert r.status_code == 200
    raw = rows(r.text)
    got, escaped = read_back(r.text, LINE_CSV_NUMERIC_COLUMNS)
    assert escaped >= 8
    assert [x["id"] for x in got] == [x["id"] for x in raw] and set(lines) == \
        {x["id"] for x in got}
    for rec, cells in zip(got, raw, strict=True):
        line = lines[rec["id"]]
        # after taking one quote off, the text is the line's own
        assert rec["description"] == line["description"]
        assert rec["path"] == " > ".join(line["path"])
        assert rec["ci_name"] == (line["ciName"] or "")
        assert rec["service_name"] == (line["serviceName"] or "")
        assert rec["amount"] == cells["amount"] == line["amount"]  # numbers as they are
    by_text = {x["description"]: x for x in raw}
    assert by_text["'" + CREDIT]["amount"] == "-20.00"
    assert by_text["'" + SPACED]["amount"] == "-0.50"
    assert by_text["'" + CREDIT]["cost_centre"] == "CC-9000"
    [storage] = [x for x in raw if x["ci_name"]
                 and unneutralise(x["ci_name"]) == CI_NAME]
    assert storage["ci_name"] == "'" + CI_NAME
    assert storage["service_name"] == "'" + SERVICE_NAME
    assert storage["path"].startswith("'" + CI_NAME + " > ")
    assert storage["cost_centre"] == "CC-9000" and storage["amount"] == "183.84"
    pooled = [x for x in raw if x["kind"] == "POOL"]
    assert len(pooled) == 3 and all(x["description"].startswith("'" + POOL_NAME + ": ")
                                    and x["path"].startswith("'" + POOL_NAME) for x in pooled)
    assert sum(Decimal(x["amount"]) for x in raw) == total

    r = await client.get(f"/api/chargeback/periods/{PERIOD}/focus.csv")
    assert r.status_code == 200
    raw = rows(r.text)
    header = next(csv.reader(io.StringIO(r.text)))
    got, escaped = read_back(r.text, FOCUS_NUMERIC_COLUMNS)
    assert escaped >= 12
    for rec in got:
        line = lines[rec["x_LineId"]]
        assert rec["ChargeDescription"] == line["description"]
        assert rec["x_Path"] == " > ".join(line["path"])
        assert rec["x_ServiceName"] == (line["serviceName"] or "")
        assert rec["ResourceName"] == (line["ciName"] or "")
    credit = next(x for x in raw if x["ChargeDescription"] == "'" + CREDIT)
    assert (credit["EffectiveCost"], credit["BilledCost"], credit["ChargeCategory"]) == \
        ("-20.00", "-20.00", "Adjustment")
    assert credit["BillingAccountId"] == "CC-9000"
    assert credit["BillingAccountName"] == "'" + CC_NAME
    assert any(x["ResourceName"] == "'" + CI_NAME and x["x_ServiceName"] == "'" + SERVICE_NAME
               for x in raw)
    assert sum(Decimal(x["EffectiveCost"]) for x in raw) == total
    assert focus_problems(header, raw) == []
    path = tmp_path / "focus-2026-10.csv"
    path.write_text(r.text)
    _passed, failed, out = run_validator(path)
    assert _real_failures(failed) == set(), out[-3000:]
