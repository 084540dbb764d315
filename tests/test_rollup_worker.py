"""The deferred roll-up against Neo4j: pending marks written with the write, one roll-up per
storm, workers that take turns, history at the cause's time, marks that survive a restart."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest

from cmdb.core import clock
from cmdb.core.models import OperationalState
from cmdb.db.driver import Database
from cmdb.items.models import CIClass, RelationType, ServiceKind
from cmdb.rollup.worker import RollupWorker
from cmdb.services import Services
from tests.conftest import settle

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
DOWN, UP = OperationalState.DOWN, OperationalState.UP


@pytest.fixture
def services(clean_db, test_settings):
    return Services(clean_db, test_settings)


@pytest.fixture(autouse=True)
def _clock():
    clock.pin(T0 - timedelta(hours=1))  # items are made an hour before T0
    yield
    clock.pin(None)


async def _ci(services, name, ci_class=CIClass.SERVER):
    return (await services.inventory.create(
        {"name": name, "ci_class": ci_class, "operational_state": UP})).id


async def _service_on(services, *providers):
    svc = (await services.service_records.create(
        {"name": "Payroll", "kind": ServiceKind.BUSINESS})).id
    for p in providers:
        await services.relations.relate(svc, p, RelationType.DEPENDS_ON, None)
    return svc


async def _set(services, ci_id, state):
    await services.inventory.update(ci_id, {"operational_state": state})


async def _health(db, item_id):
    rows = await db.read("MATCH (x:Item {id: $id}) RETURN x.healthState AS h", {"id": item_id})
    return rows[0]["h"]


async def _history(services, item_id):
    changes = await services.health.history(item_id, T0 - timedelta(days=1),
                                            T0 + timedelta(days=1))
    return [(c.state.value, c.at) for c in changes]


async def test_a_state_write_commits_its_pending_mark_and_does_not_roll_up(services, clean_db):
    server = await _ci(services, "server123")
    svc = await _service_on(services, server)
    await settle(clean_db)
    await _set(services, server, DOWN)
    marks = await clean_db.read("MATCH (p:RollupPending) RETURN p.itemId AS id, "
                                "p.state AS state, p.previous AS previous")
    assert marks == [{"id": server, "state": "DOWN", "previous": "UP"}]
    assert await services.rollup.pending() == 1
    # The own state is immediate; health follows with the roll-up.
    assert await _health(clean_db, server) == "UP" and await _health(clean_db, svc) == "UP"
    done = await services.rollup.settle()
    assert done.marks == 1 and done.rollups == 1
    assert await _health(clean_db, server) == "DOWN" and await _health(clean_db, svc) == "DOWN"
    assert await services.rollup.pending() == 0


async def test_a_storm_under_one_cluster_is_rolled_up_once(services, clean_db):
    cluster = await _ci(services, "cluster", CIClass.CLUSTER)
    hosts = [await _ci(services, f"h{i}", CIClass.HYPERVISOR_HOST) for i in range(6)]
    for h in hosts:
        await services.relations.relate(h, cluster, RelationType.MEMBER_OF, {"minUp": 3})
    svc = await _service_on(services, cluster)
    await settle(clean_db)
    clock.pin(T0)
    for h in hosts:  # six transactions, as six alarms would make
        await _set(services, h, DOWN)
    clock.pin(T0 + timedelta(minutes=5))
    done = await services.rollup.settle()
    assert done.marks == 6 and done.rollups == 1
    # One roll-up: the cluster goes straight to DOWN (rolled up host by host it would have
    # been DEGRADED first), and the service with it, once each.
    made = T0 - timedelta(hours=1)
    assert await _history(services, cluster) == [("UP", made), ("DOWN", T0)]
    assert await _history(services, svc) == [("UP", made), ("DOWN", T0)]


async def test_two_workers_record_each_change_once(services, clean_db, test_settings):
    servers = [await _ci(services, f"s{i}") for i in range(5)]
    svc = await _service_on(services, *servers)
    await settle(clean_db)
    pw = test_settings.neo4j_password.get_secret_value() if test_settings.neo4j_password else ""
    other_db = Database.connect(test_settings.neo4j_uri or "", test_settings.neo4j_user, pw)
    try:
        for round_ in range(3):
            state = DOWN if round_ % 2 == 0 else UP
            await asyncio.gather(*[_set(services, s, state) for s in servers])
            # Two workers, as two replicas run them: each over its own driver.
            await asyncio.gather(RollupWorker(clean_db).drain(),
                                 RollupWorker(other_db).drain())
    finally:
        await other_db.close()
    await settle(clean_db)
    history = [s for s, _ in await _history(services, svc)]
    assert history == ["UP", "DOWN", "UP", "DOWN"]  # created, then one change per round
    rows = await clean_db.read("MATCH (c:StateChange {itemId: $id}) RETURN count(c) AS n",
                               {"id": svc})
    assert rows[0]["n"] == 4


async def test_history_carries_the_time_of_the_cause_and_replays_each_change(
        services, clean_db):
    server = await _ci(services, "server123")
    svc = await _service_on(services, server)
    await settle(clean_db)
    t1, t2 = T0, T0 + timedelta(seconds=7)
    clock.pin(t1)
    await _set(services, server, DOWN)
    clock.pin(t2)
    await _set(services, server, UP)  # back up before the roll-up runs
    clock.pin(T0 + timedelta(hours=1))  # the worker runs late
    done = await services.rollup.settle()
    assert done.rollups == 2  # one item changed twice: replayed in commit order
    assert (await _history(services, svc))[1:] == [("DOWN", t1), ("UP", t2)]
    assert (await _history(services, server))[1:] == [("DOWN", t1), ("UP", t2)]
    assert await _health(clean_db, server) == "UP"
    record = await services.service_records.get(svc)
    avail = await services.health.availability(record, T0 - timedelta(seconds=53),
                                               T0 + timedelta(seconds=67))
    assert avail.minutes_down == pytest.approx(7 / 60, abs=1e-3)


async def test_marks_survive_a_worker_that_dies(services, clean_db):
    server = await _ci(services, "server123")
    svc = await _service_on(services, server)
    await settle(clean_db)
    await _set(services, server, DOWN)  # committed; its process "dies" before rolling up
    assert await services.rollup.pending() == 1
    worker = RollupWorker(clean_db, delay_s=0.01)  # the next process starts
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while await worker.pending():
            assert time.monotonic() < deadline, "the new worker did not take the mark"
            await asyncio.sleep(0.01)
    finally:
        await worker.close()
    assert await _health(clean_db, svc) == "DOWN"
    assert worker.runs >= 1
