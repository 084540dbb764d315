"""Over HTTP, against ``cmdb run`` (the demo data, served in development mode): probes,
GraphQL queries and mutations, the REST bulk endpoints and the chargeback exports, /metrics."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import httpx

from cmdb.chargeback.models import period_of
from tests.auth import auth_headers
from tests.e2e.remote import CREATE_CI, Http, create_ci, unique
from tests.served import Served


def as_role(http: Http, user: str, *roles: str) -> Http:
    return http.as_caller(auth_headers(user, *roles)["Authorization"])


def test_probes_answer_without_a_token(demo_api: Served) -> None:
    assert httpx.get(f"{demo_api.url}/healthz").json() == {"status": "ok"}
    r = httpx.get(f"{demo_api.url}/readyz", headers={"X-Request-ID": "probe-1"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] is True and body["neo4j"] is True and body["schema_current"] is True
    assert r.headers["x-request-id"] == "probe-1"


AVAILABILITY = """query($id: ID!, $start: DateTime!, $end: DateTime!) {
  availability(id: $id, start: $start, end: $end) {
    countedFrom availabilityPercent met minutesUnknown minutesDown } }"""


def test_right_after_loading_every_demo_service_is_available_since_it_was_loaded(
        demo_http: Http) -> None:
    # A new user's first look: the demo was loaded seconds ago, nothing has failed, so the
    # month so far shows 100 % for every service, counted from when it was loaded (the time
    # before it existed is not UNKNOWN), for an operator and for an executive alike.
    now = datetime.now(UTC)
    start, end = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0), now
    for caller in (as_role(demo_http, "olga", "operator"), as_role(demo_http, "erin", "executive")):
        services = caller.ok("{ services(first: 100) { edges { node { id name createdAt "
                             "sla { availabilityTarget } } } } }")["services"]["edges"]
        assert len(services) == 12
        for node in (e["node"] for e in services):
            a = caller.ok(AVAILABILITY, id=node["id"], start=start.isoformat(),
                          end=end.isoformat())["availability"]
            assert a["availabilityPercent"] == 100.0, (node["name"], a)
            assert a["minutesUnknown"] == 0 and a["minutesDown"] == 0, (node["name"], a)
            assert a["countedFrom"] >= node["createdAt"], (node["name"], a)
            assert a["met"] is (True if node["sla"]["availabilityTarget"] else None), a


def test_graphql_needs_a_bearer_token(demo_http: Http) -> None:
    r = demo_http.as_caller(None).post("/graphql", json={"query": "{ __typename }"})
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["code"] == "UNAUTHENTICATED"
    forged = demo_http.as_caller("Bearer not-a-token").post("/graphql",
                                                            json={"query": "{ __typename }"})
    assert forged.status_code == 401


def test_query_reads_the_demo_graph(demo_http: Http) -> None:
    data = demo_http.ok("""{ configurationItems(filter: {nameContains: "sharepoint-sql"}) {
        edges { node { name ciClass } } } }""")
    names = [e["node"]["name"] for e in data["configurationItems"]["edges"]]
    assert names == ["sharepoint-sql"]
    services = demo_http.ok("{ services(first: 100) { edges { node { name } } } }")
    assert "Collaboration" in {e["node"]["name"] for e in services["services"]["edges"]}


def test_mutation_reports_errors_per_field_and_writes_what_is_valid(demo_http: Http) -> None:
    bad = demo_http.ok(CREATE_CI, i={"name": "", "ciClass": "SERVER"})
    payload = bad["createConfigurationItem"]
    assert payload["configurationItem"] is None
    assert [e["field"] for e in payload["errors"]] == ["input.name"]
    assert payload["errors"][0]["code"] == "INVALID"

    name = unique("e2e-srv")
    ci_id = create_ci(demo_http, name)
    read = demo_http.ok("query($id: ID!) { configurationItem(id: $id) { name ciClass } }",
                        id=ci_id)
    assert read["configurationItem"] == {"name": name, "ciClass": "SERVER"}


def test_alarms_bulk_raise(demo_http: Http) -> None:
    ci_id = create_ci(demo_http, unique("e2e-alarmed"))
    monitor = as_role(demo_http, "zabbix", "monitoring")
    alarm = {"source": "zabbix", "ciId": ci_id, "severity": "CRITICAL", "dedupKey": "disk",
             "message": "disk full"}
    r = monitor.post("/api/alarms", json={"alarms": [
        alarm, {**alarm, "ciId": "no-such-ci", "dedupKey": "x"}, {**alarm, "message": "again"}]})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["counts"] == {"created": 1, "deduplicated": 1, "rejected": 1}
    assert report["results"][1]["errors"][0]["code"] == "NOT_FOUND"
    assert report["results"][2]["alarmId"] == report["results"][0]["alarmId"]
    state = demo_http.ok("query($id: ID!) { configurationItem(id: $id) { operationalState } }",
                         id=ci_id)
    assert state["configurationItem"]["operationalState"] == "DOWN"
    # Without the permission: refused, nothing raised.
    denied = as_role(demo_http, "someone", "requester").post("/api/alarms",
                                                             json={"alarms": [alarm]})
    assert denied.status_code == 403, denied.text


def test_discovery_batch_from_a_demo_source(demo_http: Http) -> None:
    agent = as_role(demo_http, "nmap", "discovery_agent")
    host = unique("e2e-host")
    body = {"source": "nmap-lon", "items": [
        {"key": "h", "ciClass": "Server",
         "identifiers": {"hostName": host, "domain": "corp.example"}},
        {"ciClass": "Server", "identifiers": {"macAddress": "zz"}},
    ]}
    r = agent.post("/api/discovery/batches", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["counts"]["created"] == 1
    assert [x["field"] for x in out["rejected"]] == ["identifiers.macAddress"]
    again = agent.post("/api/discovery/batches", json=body).json()
    assert again["counts"]["unchanged"] == 1
    found = demo_http.ok("query($h: String!) { configurationItems(filter: {identifier: $h}) {"
                         " edges { node { id } } } }", h=host)
    assert [e["node"]["id"] for e in found["configurationItems"]["edges"]] == [out["ids"]["h"]]
    unknown = agent.post("/api/discovery/batches", json={**body, "source": "nobody"})
    assert unknown.status_code == 404, unknown.text


def test_vdi_session_feed(demo_http: Http) -> None:
    agent = as_role(demo_http, "horizon", "discovery_agent")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    session = unique("s")
    events = [{"eventId": f"{session}-1", "eventType": "LOGON", "timestamp": start.isoformat(),
               "sessionId": session, "user": "CORP\\johnW", "machineName": "virtdesk_123"},
              {"eventId": f"{session}-2", "eventType": "LOGOFF",
               "timestamp": (start + timedelta(hours=1)).isoformat(), "sessionId": session,
               "user": "CORP\\johnW", "machineName": "virtdesk_123"}]
    r = agent.post("/api/vdi/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"stored": 2, "duplicate": 0, "rejected": 0}
    again = agent.post("/api/vdi/events", json={"events": events}).json()
    assert again["counts"] == {"stored": 0, "duplicate": 2, "rejected": 0}
    bad = agent.post("/api/vdi/events", content="<xml/>", headers={"Content-Type": "text/xml"})
    assert bad.status_code == 415


def test_chargeback_usage_calculation_and_exports(demo_http: Http) -> None:
    ci_id = create_ci(demo_http, unique("e2e-billed-vm"), "VIRTUAL_MACHINE")
    period = period_of(datetime.now(UTC))
    record_id = unique("usage")
    usage = (f"recordId,ciId,meter,quantity,at,source\n{record_id},{ci_id},vcpu-hours,100,"
             f"{datetime.now(UTC).isoformat()},e2e-meter\n")
    meter = as_role(demo_http, "metering", "monitoring")
    r = meter.post("/api/chargeback/usage", content=usage, headers={"Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["created"] == 1
    assert meter.post("/api/chargeback/usage", content=usage,
                      headers={"Content-Type": "text/csv"}).json()["counts"]["duplicates"] == 1

    calc = demo_http.ok("mutation($p: String!) { calculateChargePeriod(period: $p) { "
                        "result { lines total } errors { field message } } }", p=period)
    assert calc["calculateChargePeriod"]["errors"] == [], calc
    assert calc["calculateChargePeriod"]["result"]["lines"] > 0

    lines = demo_http.get(f"/api/chargeback/periods/{period}/lines.csv")
    assert lines.status_code == 200, lines.text
    assert lines.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(lines.text)))
    mine = [row for row in rows if ci_id in row.values()]
    assert mine, f"no line for {ci_id} in {rows[:3]}"
    focus = demo_http.get(f"/api/chargeback/periods/{period}/focus.csv")
    assert focus.status_code == 200, focus.text
    header = next(csv.reader(io.StringIO(focus.text)))
    assert {"BilledCost", "ChargePeriodStart", "ServiceName"} <= set(header)
    assert demo_http.get("/api/chargeback/periods/1999-01/lines.csv").status_code == 404


def test_metrics_need_permission_in_development(demo_api: Served, demo_http: Http) -> None:
    assert httpx.get(f"{demo_api.url}/metrics").status_code == 401
    assert as_role(demo_http, "someone", "requester").get("/metrics").status_code == 403
    r = as_role(demo_http, "prometheus", "monitoring").get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    assert "cmdb_requests_total{" in r.text
    assert "cmdb_neo4j_statement_duration_seconds" in r.text


ESTIMATE = """query($id: ID!) { catalogueItem(id: $id) { name
  estimate(quantities: [{meter: "storage-gb-month", quantity: "250"}]) {
    currency monthly monthlyTotal notes usage { meter quantity rateCardVersion amount } } } }"""


def test_the_served_demo_catalogue_estimates_with_the_rate_cards_it_bills_by(
        demo_http: Http) -> None:
    # A requester prices a SharePoint site before ordering: 15.00 a month, and 250 GB of
    # storage at the demo's rate card (0.10 a GB-month up to 1,000): 25.00; 40.00 a month.
    john = as_role(demo_http, "johnW", "requester")
    items = john.ok("{ catalogueItems { id name } }")["catalogueItems"]
    [site] = [i["id"] for i in items if i["name"] == "SharePoint collaboration site"]
    est = john.ok(ESTIMATE, id=site)["catalogueItem"]["estimate"]
    assert (est["currency"], est["monthly"], est["monthlyTotal"]) == ("EUR", "15.00", "40.00")
    assert est["usage"] == [{"meter": "storage-gb-month", "quantity": "250",
                             "rateCardVersion": 1, "amount": "25.00"}]
    # The plan names a meter the bill knows (not "nothing is billed for it").
    assert not any("no chargeback meter" in n for n in est["notes"]), est["notes"]
