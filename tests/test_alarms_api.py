"""Alarms over HTTP: the GraphQL mutations and query with permissions, and the bulk endpoint
POST /api/alarms (JSON and NDJSON) for monitoring tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cmdb.alarms.http import MAX_ALARMS, MAX_BODY_BYTES
from cmdb.app import create_app
from tests.auth import ADMIN, auth_headers
from tests.conftest import settled_over_http

pytestmark = pytest.mark.integration

OPERATOR = auth_headers("olga", "operator")
MONITOR = auth_headers("zabbix", "monitoring")
REQUESTER = auth_headers("rita", "requester", "approver")
NO_ROLES = auth_headers("nora", "finance")  # authenticated; no alarm permission
ADMIN_H = auth_headers(*ADMIN[:1], *ADMIN[1])
ANONYMOUS: dict[str, str] = {}

ALARM_FIELDS = """id source dedupKey ciId severity status message count firstOccurredAt
  lastOccurredAt acknowledgedBy acknowledgedAt clearedBy clearedAt"""

RAISE = ("mutation($input: RaiseAlarmInput!) { raiseAlarm(input: $input) { alarm { "
         + ALARM_FIELDS + " } deduplicated errors { field message code } } }")
CLEAR = ("mutation($input: ClearAlarmInput!) { clearAlarm(input: $input) { alarm { "
         + ALARM_FIELDS + " } errors { field message code } } }")
ACK = ("mutation($id: ID!) { acknowledgeAlarm(id: $id) { alarm { "
       + ALARM_FIELDS + " } errors { field message code } } }")
LIST = ("query($filter: AlarmFilter, $first: Int) { alarms(filter: $filter, first: $first) { "
        + ALARM_FIELDS + " configurationItem { name } } }")


@pytest_asyncio.fixture
async def api(clean_db, test_settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(test_settings, db=clean_db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def gql(api, headers: dict[str, str], query: str, **variables: Any) -> dict[str, Any]:
    r = await api.post("/graphql", json={"query": query, "variables": variables},
                       headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert "errors" not in body, body["errors"]
    data: dict[str, Any] = body["data"]
    return data


async def create_ci(api, name: str, state: str = "UP", ci_class: str = "SERVER") -> str:
    data = await gql(api, ADMIN_H, """mutation($input: CreateConfigurationItemInput!) {
        createConfigurationItem(input: $input) { configurationItem { id } errors { message } } }""",
                     input={"name": name, "ciClass": ci_class, "operationalState": state})
    return str(data["createConfigurationItem"]["configurationItem"]["id"])


async def health(api, item_id: str) -> tuple[str, str]:
    await settled_over_http(api, ADMIN_H)  # health follows the write (docs/health.md)
    data = await gql(api, ADMIN_H, "query($id: ID!) { node(id: $id) { operationalState "
                     "healthState } }", id=item_id)
    return data["node"]["operationalState"], data["node"]["healthState"]


async def stack(api) -> tuple[str, str, str]:
    """Payroll -> payroll-app -> server123 (DEPENDS_ON), all up."""
    server = await create_ci(api, "server123")
    app = await create_ci(api, "payroll-app", ci_class="APPLICATION_INSTANCE")
    svc = await gql(api, ADMIN_H, 'mutation { createService(input: {name: "Payroll", '
                    'kind: BUSINESS}) { service { id } } }')
    svc_id = svc["createService"]["service"]["id"]
    for source, target in ((app, server), (svc_id, app)):
        rel = await gql(api, ADMIN_H, """mutation($s: ID!, $t: ID!) { relate(input: {
            sourceId: $s, targetId: $t, type: DEPENDS_ON}) { errors { message } } }""",
                        s=source, t=target)
        assert rel["relate"]["errors"] == []
    return server, app, svc_id


def raise_input(ci_id: str, key: str = "cpu", severity: str = "CRITICAL", **extra: Any):
    return {"source": "zabbix", "ciId": ci_id, "severity": severity, "dedupKey": key,
            "message": f"{key} {severity.lower()}", **extra}


# --- GraphQL --------------------------------------------------------------------------------


async def test_raise_twice_is_one_alarm_and_takes_consumers_down(api):
    server, app, svc = await stack(api)
    first = (await gql(api, MONITOR, RAISE, input=raise_input(server, severity="MAJOR")))
    payload = first["raiseAlarm"]
    assert payload["errors"] == [] and payload["deduplicated"] is False
    alarm = payload["alarm"]
    assert (alarm["status"], alarm["count"], alarm["severity"]) == ("OPEN", 1, "MAJOR")
    assert (await health(api, svc))[1] == "DEGRADED"

    second = (await gql(api, MONITOR, RAISE, input=raise_input(server)))["raiseAlarm"]
    assert second["deduplicated"] is True
    assert second["alarm"]["id"] == alarm["id"]
    assert (second["alarm"]["count"], second["alarm"]["severity"]) == (2, "CRITICAL")
    assert await health(api, server) == ("DOWN", "DOWN")
    assert await health(api, app) == ("UP", "DOWN")
    assert (await health(api, svc))[1] == "DOWN"

    listed = (await gql(api, ADMIN_H, LIST, filter={"ciId": server}))["alarms"]
    assert [(a["id"], a["count"]) for a in listed] == [(alarm["id"], 2)]
    assert listed[0]["configurationItem"] == {"name": "server123"}


async def test_clear_restores_the_state_before_the_alarms(api):
    server = await create_ci(api, "server123", state="DEGRADED")
    raised = (await gql(api, MONITOR, RAISE, input=raise_input(server)))["raiseAlarm"]["alarm"]
    assert await health(api, server) == ("DOWN", "DOWN")
    cleared = (await gql(api, MONITOR, CLEAR,
                         input={"source": "zabbix", "dedupKey": "cpu"}))["clearAlarm"]
    assert cleared["errors"] == []
    assert cleared["alarm"]["id"] == raised["id"]
    assert (cleared["alarm"]["status"], cleared["alarm"]["clearedBy"]) == ("CLEARED", "zabbix")
    assert await health(api, server) == ("DEGRADED", "DEGRADED")
    again = (await gql(api, MONITOR, CLEAR, input={"id": raised["id"]}))["clearAlarm"]
    assert again == cleared
    open_ = (await gql(api, ADMIN_H, LIST,
                       filter={"status": ["OPEN", "ACKNOWLEDGED"]}))["alarms"]
    assert open_ == []
    bad = (await gql(api, MONITOR, CLEAR, input={"source": "zabbix"}))["clearAlarm"]
    assert bad["alarm"] is None and bad["errors"][0]["code"] == "INVALID"


async def test_acknowledge_records_who_and_when(api):
    server = await create_ci(api, "server123")
    raised = (await gql(api, MONITOR, RAISE, input=raise_input(server)))["raiseAlarm"]["alarm"]
    acked = (await gql(api, OPERATOR, ACK, id=raised["id"]))["acknowledgeAlarm"]
    assert acked["errors"] == []
    assert acked["alarm"]["status"] == "ACKNOWLEDGED"
    assert acked["alarm"]["acknowledgedBy"] == "olga"
    assert acked["alarm"]["acknowledgedAt"] >= raised["firstOccurredAt"]


@pytest.mark.parametrize("headers", [REQUESTER, NO_ROLES, MONITOR],
                         ids=["requester", "finance", "monitoring"])
async def test_acknowledge_is_forbidden_without_permission(api, headers):
    server = await create_ci(api, "server123")
    raised = (await gql(api, MONITOR, RAISE, input=raise_input(server)))["raiseAlarm"]["alarm"]
    denied = (await gql(api, headers, ACK, id=raised["id"]))["acknowledgeAlarm"]
    assert denied["alarm"] is None
    assert [e["code"] for e in denied["errors"]] == ["FORBIDDEN"]
    (stored,) = (await gql(api, ADMIN_H, LIST))["alarms"]
    stored.pop("configurationItem")
    assert stored == raised  # nothing changed


async def test_raise_and_clear_need_alarm_write(api, clean_db):
    server = await create_ci(api, "server123")
    for headers in (REQUESTER, NO_ROLES):
        denied = (await gql(api, headers, RAISE, input=raise_input(server)))["raiseAlarm"]
        assert denied["alarm"] is None and denied["errors"][0]["code"] == "FORBIDDEN"
    assert (await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n"))[0]["n"] == 0
    raised = (await gql(api, OPERATOR, RAISE, input=raise_input(server)))["raiseAlarm"]["alarm"]
    denied = (await gql(api, REQUESTER, CLEAR, input={"id": raised["id"]}))["clearAlarm"]
    assert denied["errors"][0]["code"] == "FORBIDDEN"
    assert await health(api, server) == ("DOWN", "DOWN")


async def test_raise_errors_name_the_field(api):
    data = await gql(api, MONITOR, RAISE, input=raise_input("nope"))
    assert data["raiseAlarm"]["errors"] == [
        {"field": "input.ciId", "message": "CI 'nope' not found", "code": "NOT_FOUND"}]
    server = await create_ci(api, "server123")
    data = await gql(api, MONITOR, RAISE, input=raise_input(server, key="  "))
    assert data["raiseAlarm"]["errors"][0]["field"] == "input.dedupKey"


async def test_list_is_capped(api, test_settings):
    r = await api.post("/graphql", json={"query": LIST,
                                         "variables": {"first": test_settings.max_page_size + 1}},
                       headers=OPERATOR)
    errors = r.json()["errors"]
    assert errors[0]["extensions"]["fields"][0]["field"] == "first"


# --- bulk endpoint ----------------------------------------------------------------------------


async def test_bulk_reports_each_item(api, clean_db):
    a = await create_ci(api, "a")
    b = await create_ci(api, "b")
    body = {"alarms": [
        raise_input(a, key="k1"),
        raise_input("missing", key="k2"),
        raise_input(b, key="k3", severity="FATAL"),
        raise_input(a, key="k1", severity="MINOR"),
        42,
        {"source": "zabbix", "ciId": b, "severity": "MAJOR", "dedupKey": "k4",
         "message": "m", "occurredAt": "not a time"},
        raise_input(b, key="k5", severity="MAJOR", occurredAt="2024-01-01T10:00:00Z"),
    ]}
    r = await api.post("/api/alarms", json=body, headers=MONITOR)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["counts"] == {"created": 2, "deduplicated": 1, "rejected": 4}
    assert [x["outcome"] for x in report["results"]] == [
        "created", "rejected", "rejected", "deduplicated", "rejected", "rejected", "created"]
    results = report["results"]
    assert results[3]["alarmId"] == results[0]["alarmId"] and results[3]["count"] == 2
    assert results[1]["errors"][0]["code"] == "NOT_FOUND"
    assert results[2]["errors"][0]["field"] == "severity"
    assert results[5]["errors"][0]["field"] == "occurredAt"
    assert await health(api, a) == ("DEGRADED", "DEGRADED")
    assert await health(api, b) == ("DEGRADED", "DEGRADED")


async def test_bulk_ndjson(api):
    a = await create_ci(api, "a")
    lines = [json.dumps(raise_input(a, key=f"k{i % 2}", severity=s))
             for i, s in enumerate(["WARNING", "INFO", "CRITICAL"])]
    body = "\n".join([lines[0], "", lines[1], lines[2]]) + "\n"
    r = await api.post("/api/alarms", content=body.encode(),
                       headers={**MONITOR, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.json()["counts"] == {"created": 2, "deduplicated": 1, "rejected": 0}
    assert await health(api, a) == ("DOWN", "DOWN")


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/json", b'{"alarms": [', "malformed JSON at line 1"),
    ("application/json", b"[]", '{"alarms": [...]}'),
    ("application/json", b'{"alarms": {}}', '{"alarms": [...]}'),
    ("application/json", b"", "empty"),
    ("application/json", b'{"alarms": [NaN]}', "NaN"),
    ("application/json", b"\xff\xfe", "UTF-8"),
    ("application/x-ndjson", b'{"source": "x"}\n{oops}\n', "line 2"),
])
async def test_bulk_malformed_body_is_400(api, clean_db, content_type, body, expected):
    r = await api.post("/api/alarms", content=body,
                       headers={**MONITOR, "Content-Type": content_type})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "INVALID"
    assert expected in r.json()["error"]
    assert (await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n"))[0]["n"] == 0


async def test_bulk_other_content_type_is_415(api):
    r = await api.post("/api/alarms", content=b"alarms", headers={**MONITOR,
                                                                  "Content-Type": "text/csv"})
    assert r.status_code == 415


@pytest.mark.parametrize("headers", [REQUESTER, ANONYMOUS], ids=["requester", "anonymous"])
async def test_bulk_not_allowed_is_403(api, clean_db, headers):
    a = await create_ci(api, "a")
    r = await api.post("/api/alarms", json={"alarms": [raise_input(a)]}, headers=headers)
    assert (r.status_code, r.json()["code"]) in {(403, "FORBIDDEN"), (401, "UNAUTHENTICATED")}
    assert r.status_code == (401 if headers is ANONYMOUS else 403)
    assert (await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n"))[0]["n"] == 0


async def test_bulk_limits_are_413(api):
    item = {"source": "s", "ciId": "c", "severity": "INFO", "dedupKey": "k", "message": "m"}
    r = await api.post("/api/alarms", json={"alarms": [item] * (MAX_ALARMS + 1)},
                       headers=MONITOR)
    assert r.status_code == 413 and str(MAX_ALARMS) in r.json()["error"]
    ndjson = (json.dumps(item) + "\n") * (MAX_ALARMS + 1)
    r = await api.post("/api/alarms", content=ndjson.encode(),
                       headers={**MONITOR, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 413
    big = b'{"alarms": [], "pad": "' + b"x" * MAX_BODY_BYTES + b'"}'
    r = await api.post("/api/alarms", content=big, headers=MONITOR)
    assert r.status_code == 413


async def test_anonymous_graphql_is_401_and_writes_nothing(api, clean_db):
    server = await create_ci(api, "server123")
    r = await api.post("/graphql", json={"query": RAISE, "variables": {
        "input": raise_input(server)}})
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHENTICATED"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert (await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n"))[0]["n"] == 0
