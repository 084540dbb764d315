"""Alarms at the service level against the real test Neo4j: de-duplication, alarms driving CI
state and its roll-up, baselines, clear, acknowledge with permissions, batches, listing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from neo4j.exceptions import ConstraintError

from cmdb.alarms import queries as q
from cmdb.alarms.models import (
    AlarmQuery,
    AlarmSeverity,
    AlarmStatus,
    RaiseOutcome,
    alarm_state,
)
from cmdb.alarms.service import AlarmService
from cmdb.core.models import DomainError, OperationalState
from cmdb.identity.principal import (
    Permission,
    Principal,
    has_permission,
)
from cmdb.items.models import CIClass, RelationType, ServiceKind
from cmdb.services import Services
from tests.conftest import settle

OPERATOR = Principal("olga", frozenset({"operator"}))
MONITOR = Principal("zabbix", frozenset({"monitoring"}))
REQUESTER = Principal("rita", frozenset({"requester"}))


# --- principal (no database) -------------------------------------------------------------------


def test_role_permissions():
    assert has_permission(OPERATOR, Permission.ALARM_ACKNOWLEDGE)
    assert has_permission(OPERATOR, Permission.ALARM_WRITE)
    assert has_permission(Principal("a", frozenset({"admin"})), Permission.ALARM_ACKNOWLEDGE)
    for role in ("discovery_agent", "monitoring"):
        p = Principal("x", frozenset({role}))
        assert has_permission(p, Permission.ALARM_WRITE)
        assert not has_permission(p, Permission.ALARM_ACKNOWLEDGE)
    assert not has_permission(REQUESTER, Permission.ALARM_WRITE)
    assert not has_permission(Principal("x", frozenset({"nonsense"})), Permission.ALARM_WRITE)
    assert not has_permission(None, Permission.ALARM_ACKNOWLEDGE)


def test_alarm_state_is_the_worst_mapped_severity():
    up = OperationalState.UP
    assert alarm_state([], up) is up
    assert alarm_state([AlarmSeverity.WARNING, AlarmSeverity.INFO], up) is up
    assert alarm_state([AlarmSeverity.MINOR], up) is OperationalState.DEGRADED
    assert alarm_state([AlarmSeverity.MINOR, AlarmSeverity.CRITICAL, AlarmSeverity.MAJOR],
                       up) is OperationalState.DOWN


# --- against Neo4j -----------------------------------------------------------------------------

pytestmark_db = pytest.mark.integration


@pytest.fixture
def services(clean_db, test_settings):
    return Services(clean_db, test_settings)


@pytest.fixture
def alarms(clean_db, test_settings):
    return AlarmService(clean_db, test_settings)


async def _ci(services, name, state=OperationalState.UP, ci_class=CIClass.SERVER):
    return await services.inventory.create(
        {"name": name, "ci_class": ci_class, "operational_state": state})


async def _stack(services):
    """Payroll (business service) -> payroll-app -> server123."""
    server = await _ci(services, "server123")
    app = await _ci(services, "payroll-app", ci_class=CIClass.APPLICATION_INSTANCE)
    svc = await services.service_records.create({"name": "Payroll", "kind": ServiceKind.BUSINESS})
    await services.relations.relate(app.id, server.id, RelationType.DEPENDS_ON, None)
    await services.relations.relate(svc.id, app.id, RelationType.DEPENDS_ON, None)
    return server, app, svc


async def _states(db, *ids):
    await settle(db)  # health is rolled up after the write (docs/health.md)
    rows = await db.read("UNWIND $ids AS id MATCH (n:Item {id: id}) RETURN n.id AS id, "
                         "n.operationalState AS own, n.healthState AS health, "
                         "n.baselineState AS baseline", {"ids": list(ids)})
    by_id = {r["id"]: r for r in rows}
    return [by_id[i] for i in ids]


def _raise(ci_id, key="cpu", severity="CRITICAL", source="zabbix", **extra):
    return {"source": source, "ci_id": ci_id, "severity": severity, "dedup_key": key,
            "message": f"{key} is {severity.lower()}", **extra}


@pytestmark_db
async def test_same_key_twice_is_one_alarm_counted_twice(services, alarms, clean_db):
    server = await _ci(services, "server123")
    first = await alarms.raise_alarm(_raise(server.id, severity="MAJOR"), MONITOR)
    second = await alarms.raise_alarm(
        {"source": "zabbix", "ciId": server.id, "severity": "CRITICAL", "dedupKey": "cpu",
         "message": "cpu at 100%"}, MONITOR)
    assert first.outcome is RaiseOutcome.CREATED
    assert second.outcome is RaiseOutcome.DEDUPLICATED
    assert first.alarm is not None and second.alarm is not None
    assert second.alarm.id == first.alarm.id
    assert second.alarm.count == 2
    assert second.alarm.severity is AlarmSeverity.CRITICAL
    assert second.alarm.message == "cpu at 100%"
    assert second.alarm.last_occurred_at >= first.alarm.last_occurred_at
    assert second.alarm.first_occurred_at == first.alarm.first_occurred_at
    rows = await clean_db.read("MATCH (a:Alarm)-[:RAISED_ON]->(c:CI) "
                               "RETURN count(a) AS n, collect(c.id) AS cis")
    assert rows[0]["n"] == 1 and rows[0]["cis"] == [server.id]
    # Another source or key is another alarm.
    other = await alarms.raise_alarm(_raise(server.id, source="nagios"), MONITOR)
    assert other.outcome is RaiseOutcome.CREATED and other.alarm.id != first.alarm.id


@pytestmark_db
async def test_the_graph_refuses_two_open_alarms_with_one_key(alarms, services, clean_db):
    server = await _ci(services, "server123")
    await alarms.raise_alarm(_raise(server.id), MONITOR)
    with pytest.raises(ConstraintError):
        await clean_db.write("CREATE (:Alarm {id: 'x', openKey: $k})", {"k": "zabbix\u0000cpu"})


@pytestmark_db
async def test_concurrent_raises_of_one_key_make_one_alarm(alarms, services, clean_db):
    server = await _ci(services, "server123")
    results = await asyncio.gather(*[
        alarms.raise_alarm(_raise(server.id, severity="MINOR"), MONITOR) for _ in range(10)])
    assert len({r.alarm.id for r in results}) == 1
    assert [r.outcome for r in results].count(RaiseOutcome.CREATED) == 1
    rows = await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n, max(a.count) AS c")
    assert rows[0] == {"n": 1, "c": 10}
    assert (await _states(clean_db, server.id))[0]["own"] == "DEGRADED"


@pytestmark_db
async def test_critical_alarm_takes_the_ci_and_its_consumers_down(alarms, services, clean_db):
    server, app, svc = await _stack(services)
    assert [s["health"] for s in await _states(clean_db, server.id, app.id, svc.id)] == [
        "UP", "UP", "UP"]
    result = await alarms.raise_alarm(_raise(server.id), MONITOR)
    server_s, app_s, svc_s = await _states(clean_db, server.id, app.id, svc.id)
    assert server_s["own"] == "DOWN" and server_s["health"] == "DOWN"
    assert server_s["baseline"] == "UP"
    assert app_s["own"] == "UP" and app_s["health"] == "DOWN"
    assert svc_s["health"] == "DOWN"
    # The roll-up was recorded with the alarm as its cause, in the same transaction.
    rows = await clean_db.read("MATCH (sc:StateChange {itemId: $id, state: 'DOWN'}) "
                               "RETURN sc.cause AS cause", {"id": svc.id})
    assert [r["cause"] for r in rows] == [f"alarm {result.alarm.id} raised"]


@pytestmark_db
async def test_clear_restores_the_baseline_not_up(alarms, services, clean_db):
    server, app, svc = await _stack(services)
    await services.health.set_states([(server.id, OperationalState.DEGRADED)], "disk slow")
    raised = await alarms.raise_alarm(_raise(server.id), MONITOR)
    assert [s["health"] for s in await _states(clean_db, server.id, app.id, svc.id)] == [
        "DOWN", "DOWN", "DOWN"]
    cleared = await alarms.clear(MONITOR, alarm_id=raised.alarm.id)
    assert cleared.status is AlarmStatus.CLEARED
    assert cleared.cleared_by == "zabbix" and cleared.cleared_at is not None
    server_s, app_s, svc_s = await _states(clean_db, server.id, app.id, svc.id)
    assert server_s["own"] == "DEGRADED" and server_s["baseline"] is None
    assert app_s["health"] == "DEGRADED" and svc_s["health"] == "DEGRADED"
    rows = await clean_db.read("MATCH (sc:StateChange {itemId: $id}) WHERE sc.cause = $c "
                               "RETURN sc.state AS s", {"id": svc.id,
                                                        "c": f"alarm {raised.alarm.id} cleared"})
    assert [r["s"] for r in rows] == ["DEGRADED"]

    # Idempotent: clearing again (by id or by key) returns the cleared alarm, changes nothing.
    again = await alarms.clear(MONITOR, alarm_id=raised.alarm.id)
    by_key = await alarms.clear(MONITOR, source="zabbix", dedup_key="cpu")
    assert again == cleared and by_key == cleared
    # The key is free again: a new raise is a new alarm.
    new = await alarms.raise_alarm(_raise(server.id), MONITOR)
    assert new.outcome is RaiseOutcome.CREATED and new.alarm.id != raised.alarm.id
    assert (await _states(clean_db, server.id))[0]["baseline"] == "DEGRADED"


@pytestmark_db
async def test_clear_by_source_and_key(alarms, services, clean_db):
    server = await _ci(services, "server123")
    raised = await alarms.raise_alarm(_raise(server.id, key="disk"), MONITOR)
    cleared = await alarms.clear(MONITOR, source="zabbix", dedup_key="disk")
    assert cleared.id == raised.alarm.id and cleared.status is AlarmStatus.CLEARED
    assert (await _states(clean_db, server.id))[0]["own"] == "UP"
    with pytest.raises(DomainError) as e:
        await alarms.clear(MONITOR, source="zabbix", dedup_key="never")
    assert e.value.errors[0].code == "NOT_FOUND"
    with pytest.raises(DomainError) as e:
        await alarms.clear(MONITOR, alarm_id="nope")
    assert e.value.errors[0].code == "NOT_FOUND"
    with pytest.raises(DomainError):
        await alarms.clear(MONITOR, alarm_id=raised.alarm.id, source="zabbix")
    with pytest.raises(DomainError) as e:
        await alarms.clear(REQUESTER, alarm_id=raised.alarm.id)
    assert e.value.errors[0].code == "FORBIDDEN"


@pytestmark_db
async def test_worst_of_several_open_alarms(alarms, services, clean_db):
    server = await _ci(services, "server123")

    async def own():
        return (await _states(clean_db, server.id))[0]["own"]

    minor = await alarms.raise_alarm(_raise(server.id, key="disk", severity="MINOR"), MONITOR)
    assert await own() == "DEGRADED"
    critical = await alarms.raise_alarm(_raise(server.id, key="ping"), MONITOR)
    assert await own() == "DOWN"
    warning = await alarms.raise_alarm(_raise(server.id, key="temp", severity="WARNING"),
                                       MONITOR)
    assert await own() == "DOWN"
    await alarms.clear(MONITOR, alarm_id=critical.alarm.id)
    assert await own() == "DEGRADED"
    await alarms.clear(MONITOR, alarm_id=minor.alarm.id)
    assert await own() == "UP"  # only a WARNING is open: no effect, the baseline
    assert (await _states(clean_db, server.id))[0]["baseline"] == "UP"
    # A raise that lowers the severity of an open alarm lowers the state too.
    await alarms.raise_alarm(_raise(server.id, key="temp", severity="CRITICAL"), MONITOR)
    assert await own() == "DOWN"
    await alarms.raise_alarm(_raise(server.id, key="temp", severity="MAJOR"), MONITOR)
    assert await own() == "DEGRADED"
    await alarms.clear(MONITOR, alarm_id=warning.alarm.id)
    assert await _states(clean_db, server.id) == [
        {"id": server.id, "own": "UP", "health": "UP", "baseline": None}]


@pytestmark_db
async def test_an_older_occurrence_counts_but_does_not_win(alarms, services):
    server = await _ci(services, "server123")
    now = datetime.now(UTC)
    await alarms.raise_alarm(_raise(server.id, severity="MAJOR", occurred_at=now), MONITOR)
    late = await alarms.raise_alarm(
        _raise(server.id, severity="CRITICAL", occurred_at=now - timedelta(minutes=10)),
        MONITOR)
    assert late.outcome is RaiseOutcome.DEDUPLICATED
    assert late.alarm.count == 2
    assert late.alarm.severity is AlarmSeverity.MAJOR
    assert late.alarm.first_occurred_at == now - timedelta(minutes=10)
    assert late.alarm.last_occurred_at == now
    with pytest.raises(DomainError) as e:
        await alarms.raise_alarm(_raise(server.id, occurred_at=now + timedelta(hours=1)),
                                 MONITOR)
    assert e.value.errors[0].field == "input.occurredAt"


@pytestmark_db
async def test_acknowledge_records_who_and_when(alarms, services, clean_db):
    server = await _ci(services, "server123")
    raised = await alarms.raise_alarm(_raise(server.id), MONITOR)
    acked = await alarms.acknowledge(raised.alarm.id, OPERATOR)
    assert acked.status is AlarmStatus.ACKNOWLEDGED
    assert acked.acknowledged_by == "olga"
    assert acked.acknowledged_at is not None
    assert acked.acknowledged_at >= raised.alarm.created_at
    # Still open: it still holds the CI down, and a raise still de-duplicates into it.
    assert (await _states(clean_db, server.id))[0]["own"] == "DOWN"
    again = await alarms.raise_alarm(_raise(server.id), MONITOR)
    assert again.alarm.id == raised.alarm.id and again.alarm.count == 2
    assert again.alarm.status is AlarmStatus.ACKNOWLEDGED
    # Acknowledging again keeps the first who and when.
    admin = Principal("ada", frozenset({"admin"}))
    assert (await alarms.acknowledge(raised.alarm.id, admin)).acknowledged_by == "olga"
    await alarms.clear(OPERATOR, alarm_id=raised.alarm.id)
    with pytest.raises(DomainError) as e:
        await alarms.acknowledge(raised.alarm.id, OPERATOR)
    assert e.value.errors[0].code == "CONFLICT"
    with pytest.raises(DomainError) as e:
        await alarms.acknowledge("nope", OPERATOR)
    assert e.value.errors[0].code == "NOT_FOUND"


@pytestmark_db
async def test_acknowledge_is_refused_without_permission(alarms, services, clean_db):
    server = await _ci(services, "server123")
    raised = await alarms.raise_alarm(_raise(server.id), MONITOR)
    for who in (REQUESTER, MONITOR, None):
        with pytest.raises(DomainError) as e:
            await alarms.acknowledge(raised.alarm.id, who)
        assert e.value.errors[0].code == "FORBIDDEN"
    stored = await alarms.get(raised.alarm.id)
    assert stored == raised.alarm
    assert stored.status is AlarmStatus.OPEN and stored.acknowledged_by is None


@pytestmark_db
async def test_raising_needs_alarm_write(alarms, services, clean_db):
    server = await _ci(services, "server123")
    for who in (REQUESTER, None):
        with pytest.raises(DomainError) as e:
            await alarms.raise_alarm(_raise(server.id), who)
        assert e.value.errors[0].code == "FORBIDDEN"
        with pytest.raises(DomainError):
            await alarms.raise_batch([_raise(server.id)], who)
    assert (await clean_db.read("MATCH (a:Alarm) RETURN count(a) AS n"))[0]["n"] == 0


@pytestmark_db
async def test_rejections_name_the_field(alarms, services):
    server = await _ci(services, "server123")
    svc = await services.service_records.create({"name": "Payroll", "kind": ServiceKind.BUSINESS})
    retired = await _ci(services, "old")
    await services.inventory.retire(retired.id, "gone")
    cases = {
        "nope": ("input.ciId", "NOT_FOUND"),
        svc.id: ("input.ciId", "INVALID"),
        retired.id: ("input.ciId", "CONFLICT"),
    }
    for ci_id, expected in cases.items():
        with pytest.raises(DomainError) as e:
            await alarms.raise_alarm(_raise(ci_id), MONITOR)
        assert (e.value.errors[0].field, e.value.errors[0].code) == expected
    with pytest.raises(DomainError) as e:
        await alarms.raise_alarm(_raise(server.id, severity="FATAL"), MONITOR)
    assert e.value.errors[0].field == "input.severity"


@pytestmark_db
async def test_batch_reports_each_item(alarms, services, clean_db):
    small = AlarmService(clean_db, alarms.settings, batch_size=2)
    a = await _ci(services, "a")
    b = await _ci(services, "b")
    items = [
        _raise(a.id, key="k1"),                   # 0 created
        _raise("missing", key="k2"),              # 1 unknown CI
        _raise(b.id, key="k3", severity="BAD"),   # 2 bad severity
        _raise(a.id, key="k1", severity="MINOR"),  # 3 same key, next transaction: deduped
        "not an object",                          # 4
        _raise(b.id, key="k1"),                   # 5 key open on another CI
        _raise(b.id, key="k4", severity="MAJOR"),  # 6 created
        {"source": "zabbix", "ciId": b.id},       # 7 missing fields
    ]
    result = await small.raise_batch(items, MONITOR)
    outcomes = [r.outcome.value for r in result.results]
    assert outcomes == ["created", "rejected", "rejected", "deduplicated", "rejected",
                        "rejected", "created", "rejected"]
    assert result.counts == {"created": 2, "deduplicated": 1, "rejected": 5}
    assert [r.index for r in result.results] == list(range(len(items)))
    assert result.results[1].errors[0].code == "NOT_FOUND"
    assert result.results[2].errors[0].field == "severity"
    assert result.results[5].errors[0].code == "CONFLICT"
    assert a.id in result.results[5].errors[0].message
    assert {e.field for e in result.results[7].errors} == {"severity", "dedupKey", "message"}
    repeat, first = result.results[3].alarm, result.results[0].alarm
    assert repeat is not None and first is not None
    assert repeat.id == first.id
    assert repeat.count == 2
    states = await _states(clean_db, a.id, b.id)
    assert [s["own"] for s in states] == ["DEGRADED", "DEGRADED"]


@pytestmark_db
async def test_batch_dedupes_within_one_transaction(alarms, services, clean_db):
    a = await _ci(services, "a")
    result = await alarms.raise_batch(
        [_raise(a.id, severity="MINOR"), _raise(a.id, severity="CRITICAL"),
         _raise(a.id, severity="MAJOR")], MONITOR)
    assert [r.outcome for r in result.results] == [
        RaiseOutcome.CREATED, RaiseOutcome.DEDUPLICATED, RaiseOutcome.DEDUPLICATED]
    rows = await clean_db.read("MATCH (a:Alarm) RETURN a.count AS c, a.severity AS s")
    assert rows == [{"c": 3, "s": "MAJOR"}]
    assert (await _states(clean_db, a.id))[0]["own"] == "DEGRADED"


@pytestmark_db
async def test_list_filters_newest_first(alarms, services, test_settings):
    a = await _ci(services, "a")
    b = await _ci(services, "b")
    t0 = datetime.now(UTC) - timedelta(hours=1)
    for i, (ci, sev, src) in enumerate([(a, "CRITICAL", "zabbix"), (a, "MINOR", "nagios"),
                                        (b, "MAJOR", "zabbix"), (b, "INFO", "zabbix")]):
        await alarms.raise_alarm(_raise(ci.id, key=f"k{i}", severity=sev, source=src,
                                        occurred_at=t0 + timedelta(minutes=i)), MONITOR)
    newest = await alarms.list()
    assert [x.dedup_key for x in newest] == ["k3", "k2", "k1", "k0"]
    assert [x.dedup_key for x in await alarms.list(AlarmQuery(ci_id=a.id))] == ["k1", "k0"]
    assert [x.dedup_key for x in await alarms.list(
        AlarmQuery(severities=(AlarmSeverity.MAJOR, AlarmSeverity.CRITICAL)))] == ["k2", "k0"]
    assert [x.dedup_key for x in await alarms.list(AlarmQuery(source="zabbix"), first=2)] == [
        "k3", "k2"]
    await alarms.clear(MONITOR, alarm_id=newest[0].id)
    assert [x.dedup_key for x in await alarms.list(
        AlarmQuery(ci_id=b.id, statuses=(AlarmStatus.OPEN, AlarmStatus.ACKNOWLEDGED)))] == ["k2"]
    assert [x.dedup_key for x in await alarms.list(
        AlarmQuery(statuses=(AlarmStatus.CLEARED,)))] == ["k3"]
    with pytest.raises(DomainError) as e:
        await alarms.list(first=test_settings.max_page_size + 1)
    assert e.value.errors[0].field == "first"


# --- query plans -------------------------------------------------------------------------------


def _filters(flags: str) -> tuple[bool, bool, bool, bool]:
    """``list_alarms``' four filter switches from a string of 0s and 1s."""
    ci, statuses, severities, source = (c == "1" for c in flags)
    return ci, statuses, severities, source

_PLANS = {
    "lock items": q.LOCK_ITEMS,
    "upsert": q.UPSERT,
    "open severities": q.OPEN_SEVERITIES,
    "set baselines": q.SET_BASELINES,
    "get": q.GET_BY_ID,
    "open by key": q.GET_OPEN_BY_KEY,
    "latest by key": q.GET_LATEST_BY_KEY,
    "lock alarm": q.LOCK_ALARM,
    "acknowledge": q.ACKNOWLEDGE,
    "clear": q.CLEAR,
    **{f"list {flags}": q.list_alarms(*_filters(flags))
       for flags in ("0000", "1000", "1100", "0100", "0010", "0001", "0111")},
}


def _operators(plan):
    return [plan["operatorType"]] + [op for c in plan.get("children", []) for op in _operators(c)]


@pytestmark_db
@pytest.mark.parametrize("name", sorted(_PLANS))
async def test_alarm_statements_seek_by_index(db, name):
    async with db.driver.session(database=db.database) as session:
        summary = await (await session.run("EXPLAIN " + _PLANS[name], {})).consume()
    scans = [op for op in _operators(summary.plan)
             if "AllNodesScan" in op or "NodeByLabelScan" in op]
    assert scans == []
