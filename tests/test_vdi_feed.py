"""The VDI broker's session feed: sessions stored against the user, idempotent ingest in any
order, per-record rejections, JSON / NDJSON / CSV over REST and the CLI; and the done-when
story: johnW's history is complete after ten days on ten desktops that were each torn down.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.auth import auth_headers

pytestmark = pytest.mark.integration

AGENT = auth_headers("horizon-export", "discovery_agent")

SESSION_FIELDS = """id sessionKey userName desktopName hostName poolName start end active
  logonSeconds profileLoadSeconds groupPolicySeconds protocol clientName sampleCount
  roundTripMsAvg roundTripMsMax cpuPercentAvg
  desktop { id name lifecycleStatus } host { name } pool { name }"""

HISTORY = ("query($u: String!, $s: DateTime, $e: DateTime) { user(userName: $u) { "
           "sessions(start: $s, end: $e) { " + SESSION_FIELDS + " } "
           "currentDesktops { desktop { name } host { name } pool { name } since } } }")


async def create_user(gql, user_name: str, display: str) -> str:
    data = await gql.ok("""mutation($i: CreateUserInput!) { createUser(input: $i) {
        user { id } errors { field message } } }""",
                        i={"userName": user_name, "displayName": display})
    assert data["createUser"]["errors"] == []
    return str(data["createUser"]["user"]["id"])


async def create_ci(gql, name: str, ci_class: str) -> str:
    data = await gql.ok("""mutation($i: CreateConfigurationItemInput!) {
        createConfigurationItem(input: $i) { configurationItem { id } errors { message } } }""",
                        i={"name": name, "ciClass": ci_class, "operationalState": "UP"})
    assert data["createConfigurationItem"]["errors"] == []
    return str(data["createConfigurationItem"]["configurationItem"]["id"])


async def relate(gql, source: str, rel: str, target: str) -> None:
    data = await gql.ok("""mutation($i: RelateInput!) { relate(input: $i) {
        errors { message } } }""", i={"sourceId": source, "targetId": target, "type": rel})
    assert data["relate"]["errors"] == []


async def post(client, events: list[dict[str, Any]], headers: dict[str, str] = AGENT
               ) -> dict[str, Any]:
    r = await client.post("/api/vdi/events", json={"events": events}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def event(event_id: str, kind: str, at: datetime, session: str, user: str = "CORP\\johnW",
          **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "eventType": kind, "timestamp": at.isoformat(),
            "sessionId": session, "user": user, **extra}


async def history(gql, user: str = "johnW", **period: Any) -> dict[str, Any]:
    data = await gql.ok(HISTORY, u=user, **period)
    found: dict[str, Any] = data["user"]
    return found


async def test_ten_days_on_ten_torn_down_desktops_keep_the_whole_history(gql, client,
                                                                       clean_db):
    await create_user(gql, "johnW", "John Walker")
    hosts = [await create_ci(gql, f"vdi-esx-0{i}", "HYPERVISOR_HOST") for i in (1, 2, 3)]
    pool = await create_ci(gql, "pool-trader", "DESKTOP_POOL")
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    feed: list[dict[str, Any]] = []
    expected = []
    for day in range(10):
        name = f"virtdesk_{900 + day}"
        desktop = await create_ci(gql, name, "VIRTUAL_DESKTOP")
        host_name = f"vdi-esx-0{day % 3 + 1}"
        await relate(gql, desktop, "RUNS_ON", hosts[day % 3])
        await relate(gql, desktop, "MEMBER_OF", pool)
        start = today - timedelta(days=10 - day) + timedelta(hours=8, minutes=day)
        session = f"s-{day}"
        events = [
            # the broker names the desktop and pool; the host comes from where it runs
            event(f"e-{day}-on", "LOGON", start, session, desktop=name, pool="pool-trader",
                  logonDurationMs=10_000 + 1_000 * day, protocol="BLAST"),
            event(f"e-{day}-off", "LOGOFF", start + timedelta(hours=8), session),
        ]
        feed += events
        body = await post(client, events)
        assert body["counts"] == {"stored": 2, "duplicate": 0, "rejected": 0}
        # the desktop is torn down at the end of the day: retired, or gone from the graph
        if day % 2:
            retired = await gql.ok('mutation($id: ID!) { retireConfigurationItem(id: $id, '
                                   'reason: "instant clone refreshed") { errors { message } } }',
                                   id=desktop)
            assert retired["retireConfigurationItem"]["errors"] == []
        else:
            await clean_db.write(
                "MATCH (d:Item {id: $id}) DETACH DELETE d", {"id": desktop})
        expected.append((name, host_name, start, 10.0 + day, day % 2 == 1))

    period = {"s": (today - timedelta(days=11)).isoformat(), "e": today.isoformat()}
    found = await history(gql, **period)
    sessions = sorted(found["sessions"], key=lambda s: s["start"])
    assert len(sessions) == 10
    for s, (name, host_name, start, logon, retired) in zip(sessions, expected, strict=True):
        assert (s["desktopName"], s["hostName"], s["poolName"]) == (name, host_name,
                                                                    "pool-trader")
        assert datetime.fromisoformat(s["start"]) == start
        assert datetime.fromisoformat(s["end"]) == start + timedelta(hours=8)
        assert s["logonSeconds"] == logon and s["active"] is False
        assert s["userName"] == "johnW" and s["protocol"] == "BLAST"
        assert s["host"] == {"name": host_name} and s["pool"] == {"name": "pool-trader"}
        if retired:
            assert s["desktop"]["name"] == name
            assert s["desktop"]["lifecycleStatus"] == "RETIRED"
        else:
            assert s["desktop"] is None
    assert found["currentDesktops"] == []

    # The same feed again (a broker re-export) changes nothing.
    again = await post(client, feed)
    assert again["counts"] == {"stored": 0, "duplicate": 20, "rejected": 0}
    assert await history(gql, **period) == found

    # A period picks its sessions.
    window = {"s": (today - timedelta(days=3)).isoformat(), "e": today.isoformat()}
    recent = await history(gql, **window)
    assert [s["desktopName"] for s in recent["sessions"]] == [
        "virtdesk_909", "virtdesk_908", "virtdesk_907"]


async def test_logoff_before_logon_and_samples_fold_into_one_session(gql, client):
    await create_user(gql, "johnW", "John Walker")
    host = await create_ci(gql, "vdi-esx-01", "HYPERVISOR_HOST")
    desktop = await create_ci(gql, "virtdesk_123", "VIRTUAL_DESKTOP")
    await relate(gql, desktop, "RUNS_ON", host)
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    logoff = event("x-3", "LOGOFF", t0 + timedelta(hours=4), "s1", desktop="virtdesk_123")
    body = await post(client, [logoff])
    assert body["counts"]["stored"] == 1
    pending = (await history(gql))["sessions"]
    assert len(pending) == 1 and pending[0]["start"] is None and pending[0]["end"] is not None

    sample1 = event("x-2a", "SAMPLE", t0 + timedelta(hours=1), "s1", roundTripMs=20,
                    cpuPercent=30)
    sample2 = event("x-2b", "SAMPLE", t0 + timedelta(hours=2), "s1", roundTripMs=40)
    logon = event("x-1", "LOGON", t0, "s1", user="johnw@corp.example",
                  desktop="virtdesk_123", logonDurationMs=12_345, profileLoadMs=4_000,
                  groupPolicyMs=1_500, clientName="LT-JW-01")
    body = await post(client, [sample2, logon, sample1])
    assert body["counts"] == {"stored": 3, "duplicate": 0, "rejected": 0}
    (s,) = (await history(gql))["sessions"]
    assert datetime.fromisoformat(s["start"]) == t0
    assert datetime.fromisoformat(s["end"]) == t0 + timedelta(hours=4)
    assert (s["logonSeconds"], s["profileLoadSeconds"], s["groupPolicySeconds"]) == (
        12.345, 4.0, 1.5)
    assert (s["sampleCount"], s["roundTripMsAvg"], s["roundTripMsMax"], s["cpuPercentAvg"]) == (
        2, 30.0, 40.0, 30.0)
    assert (s["hostName"], s["clientName"], s["active"]) == ("vdi-esx-01", "LT-JW-01", False)
    ids = {r["sessionId"] for r in body["results"]}
    assert ids == {s["id"]}

    # An open session makes the desktop current, on the host it runs on now.
    open_logon = event("y-1", "LOGON", t0 + timedelta(hours=4, minutes=30), "s2",
                       desktop="virtdesk_123")
    assert (await post(client, [open_logon]))["counts"]["stored"] == 1
    current = (await history(gql))["currentDesktops"]
    assert [(c["desktop"]["name"], c["host"]["name"]) for c in current] == [
        ("virtdesk_123", "vdi-esx-01")]


async def test_rejections_name_the_record_field_and_reason_and_store_nothing(gql, client):
    await create_user(gql, "johnW", "John Walker")
    await create_user(gql, "maryS", "Mary Shaw")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    good = event("ok-1", "LOGON", t0, "s1", desktop="virtdesk_1")
    records: list[Any] = [
        good,
        event("bad-user", "LOGON", t0, "s2", user="nobody", desktop="virtdesk_2"),
        {"eventId": "bad-type", "eventType": "REBOOT", "timestamp": t0.isoformat(),
         "sessionId": "s3", "user": "johnW"},
        {"eventId": "bad-time", "eventType": "LOGOFF", "timestamp": "yesterday",
         "sessionId": "s1", "user": "johnW"},
        event("no-desk", "LOGON", t0, "s4"),
        event("future", "LOGOFF", t0 + timedelta(days=2), "s1"),
        event("early-off", "LOGOFF", t0 - timedelta(hours=1), "s1"),
        event("other-user", "LOGOFF", t0 + timedelta(hours=1), "s1", user="maryS"),
        "not an object",
        good,  # the same event twice in one feed
    ]
    body = await post(client, records)
    assert body["counts"] == {"stored": 1, "duplicate": 1, "rejected": 8}, body
    by_index = {r["index"]: r for r in body["results"]}
    assert by_index[0]["outcome"] == "stored", body
    assert (by_index[1]["field"], by_index[1]["reason"]) == ("user", "user 'nobody' not found")
    assert by_index[2]["field"] == "eventType" and "REBOOT" in by_index[2]["reason"]
    assert by_index[3]["field"] == "timestamp"
    assert "desktop" in by_index[4]["reason"]
    assert by_index[5]["reason"] == "timestamp is in the future"
    assert by_index[6]["field"] == "timestamp" and "before the session's logon" in \
        by_index[6]["reason"]
    assert by_index[7]["field"] == "sessionId" and "johnW" in by_index[7]["reason"]
    assert by_index[8]["reason"] == "a record must be an object"
    assert by_index[9]["outcome"] == "duplicate"
    assert by_index[9]["sessionId"] == by_index[0]["sessionId"]

    # Nothing of the rejected records was kept: corrected, they are taken.
    (s,) = (await history(gql))["sessions"]
    assert s["end"] is None
    fixed = event("early-off", "LOGOFF", t0 + timedelta(hours=2), "s1")
    assert (await post(client, [fixed]))["counts"]["stored"] == 1
    (s,) = (await history(gql))["sessions"]
    assert datetime.fromisoformat(s["end"]) == t0 + timedelta(hours=2)
    assert (await history(gql, "maryS"))["sessions"] == []


CSV_FEED = (
    "Event ID,Event Type,Time,Session ID,User Name,Machine Name,Host Name,Pool Name,"
    "Logon Duration (ms),Protocol\n"
    """c-1,AGENT_CONNECTED,{t0},h-77,CORP\\johnW,virtdesk_555,vdi-esx-02,pool-standard,15200,PCOIP
c-2,AGENT_ENDED,{t1},h-77,CORP\\johnW,virtdesk_555,vdi-esx-02,pool-standard,,PCOIP
c-3,LOGON,{t0},h-78,CORP\\ghost,virtdesk_556,vdi-esx-02,pool-standard,1,PCOIP
""")


async def test_csv_and_ndjson_over_rest_and_permissions(gql, client):
    await create_user(gql, "johnW", "John Walker")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=9)
    text = CSV_FEED.format(t0=t0.isoformat(), t1=(t0 + timedelta(hours=8)).isoformat())
    r = await client.post("/api/vdi/events", content=text,
                          headers={**AGENT, "Content-Type": "text/csv"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["counts"] == {"stored": 2, "duplicate": 0, "rejected": 1}
    rejected = body["results"][2]
    assert (rejected["line"], rejected["eventId"], rejected["field"]) == (4, "c-3", "user")
    (s,) = (await history(gql))["sessions"]
    assert (s["desktopName"], s["hostName"], s["poolName"], s["protocol"],
            s["logonSeconds"]) == ("virtdesk_555", "vdi-esx-02", "pool-standard", "PCOIP", 15.2)
    assert s["desktop"] is None  # the broker named a desktop the CMDB does not know

    nd = "\n".join(json.dumps(event(f"n-{i}", "SAMPLE", t0 + timedelta(hours=i), "h-77",
                                    roundTripMs=10 * i)) for i in (1, 2)) + "\n"
    r = await client.post("/api/vdi/events", content=nd,
                          headers={**AGENT, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json()["counts"]["stored"] == 2
    (s,) = (await history(gql))["sessions"]
    assert (s["sampleCount"], s["roundTripMsMax"]) == (2, 20.0)

    bad = await client.post("/api/vdi/events", content="{not json",
                            headers={**AGENT, "Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["code"] == "INVALID"
    xml = await client.post("/api/vdi/events", content="<a/>",
                            headers={**AGENT, "Content-Type": "application/xml"})
    assert xml.status_code == 415
    for headers, status in ((auth_headers("rita", "requester"), 403),
                            (auth_headers("olga", "operator"), 403),
                            ({"Authorization": ""}, 401)):  # no token at all
        r = await client.post("/api/vdi/events", json={"events": []}, headers=headers)
        assert r.status_code == status, headers
    admin = await client.post("/api/vdi/events", json={"events": []})
    assert admin.status_code == 200


async def test_cli_import_reports_counts_and_rejections(tmp_path: Path, test_settings, gql,
                                                        monkeypatch):
    import asyncio

    from cmdb.cli import app
    from cmdb.settings import get_settings

    await create_user(gql, "johnW", "John Walker")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=9)
    path = tmp_path / "broker.csv"
    path.write_text(CSV_FEED.format(t0=t0.isoformat(),
                                    t1=(t0 + timedelta(hours=8)).isoformat()))
    monkeypatch.setenv("CMDB_NEO4J_URI", test_settings.neo4j_uri)
    monkeypatch.setenv("CMDB_NEO4J_PASSWORD", test_settings.neo4j_password.get_secret_value())
    get_settings.cache_clear()

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["vdi", "import", *args])

    try:
        first = await asyncio.to_thread(run, str(path))
        assert first.exit_code == 1, first.output
        assert "rejected line 4 (event c-3): user: user 'ghost' not found" in first.output
        assert "3 records; 2 stored, 0 duplicate, 1 rejected" in first.output
        again = await asyncio.to_thread(run, str(path))
        assert "0 stored, 2 duplicate, 1 rejected" in again.output
        missing = await asyncio.to_thread(run, str(tmp_path / "none.json"))
        assert missing.exit_code == 1 and "cannot read" in missing.output
    finally:
        get_settings.cache_clear()
    (s,) = (await history(gql))["sessions"]
    assert s["desktopName"] == "virtdesk_555"


async def test_the_same_feed_sent_twice_at_once_is_stored_once(gql, client):
    import asyncio

    for u in range(3):
        await create_user(gql, f"user{u}", f"User {u}")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    events = []
    for u in range(3):
        for d in range(5):
            start = t0 - timedelta(days=d)
            events += [event(f"{u}-{d}-on", "LOGON", start, f"{u}-{d}", user=f"user{u}",
                             desktop=f"vd-{u}-{d}"),
                       event(f"{u}-{d}-off", "LOGOFF", start + timedelta(hours=8), f"{u}-{d}",
                             user=f"user{u}")]
    first, second = await asyncio.gather(post(client, events), post(client, events[::-1]))
    stored = first["counts"]["stored"] + second["counts"]["stored"]
    duplicates = first["counts"]["duplicate"] + second["counts"]["duplicate"]
    assert (stored, duplicates) == (len(events), len(events))
    for u in range(3):
        sessions = (await history(gql, f"user{u}", s=(t0 - timedelta(days=6)).isoformat(),
                                  e=datetime.now(UTC).isoformat()))["sessions"]
        assert len(sessions) == 5
        assert all(s["start"] and s["end"] for s in sessions)
