"""Every order status against every other: allowed moves happen and are recorded, forbidden
ones change nothing, on the real Neo4j. Also the migration runner with version gaps."""

from __future__ import annotations

import json

import pytest

from cmdb.catalog.models import TRANSITIONS, OrderStatus, sources_of
from cmdb.catalog.repository import CatalogRepository
from cmdb.catalog.service import CatalogService
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError

pytestmark = pytest.mark.integration

S = OrderStatus

# The lifecycle of the issue, written out independently of TRANSITIONS.
EXPECTED = {
    (S.SUBMITTED, S.AWAITING_APPROVAL), (S.SUBMITTED, S.APPROVED), (S.SUBMITTED, S.CANCELLED),
    (S.AWAITING_APPROVAL, S.AWAITING_APPROVAL), (S.AWAITING_APPROVAL, S.APPROVED),
    (S.AWAITING_APPROVAL, S.REJECTED), (S.AWAITING_APPROVAL, S.CANCELLED),
    (S.APPROVED, S.FULFILLING), (S.APPROVED, S.CANCELLED),
    (S.FULFILLING, S.FULFILLED), (S.FULFILLING, S.FAILED),
    (S.FAILED, S.FULFILLING), (S.FAILED, S.CANCELLED),
    (S.FULFILLED, S.DECOMMISSIONED),
}

ORDER = """
CREATE (o:Order {id: $id, idempotencyScope: $id, itemId: 'i', versionId: 'v', itemVersion: 1,
  itemName: 'x', requester: 'u', costCentreCode: 'CC', form: '{}', status: $status,
  currency: 'EUR', oneOffFee: '0', monthlyFee: '0', revision: 0, seq: 0, stepIndex: -1,
  attempts: 0, submittedAt: $now, updatedAt: $now})
"""
STATE = """
MATCH (o:Order {id: $id})
OPTIONAL MATCH (o)-[:HAS_TRANSITION]->(t)
RETURN o.status AS status, o.revision AS revision,
       collect(t {.fromStatus, .toStatus, .by, .reason}) AS transitions
"""


def test_transition_table_is_the_documented_lifecycle():
    table = {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts}
    assert table == EXPECTED
    for target in S:
        assert sources_of(target) == sorted(a.value for a, b in EXPECTED if b is target)


async def test_every_pair_of_statuses(clean_db, test_settings):
    service = CatalogService(clean_db, test_settings)
    for source in S:
        for target in S:
            order_id = f"{source.value}->{target.value}"
            await clean_db.write(ORDER, {"id": order_id, "status": source.value,
                                         "now": utcnow()})

            async def move(tx, order_id=order_id, target=target):
                order = await CatalogRepository.lock_order(tx, order_id, utcnow())
                assert order is not None
                return await service._move(tx, order, target, "tester", "because")

            if (source, target) in EXPECTED:
                moved = await clean_db.write_tx(move)
                assert moved.status is target and moved.revision == 1
                [row] = await clean_db.read(STATE, {"id": order_id})
                assert row["transitions"] == [{"fromStatus": source.value,
                                               "toStatus": target.value, "by": "tester",
                                               "reason": "because"}]
            else:
                with pytest.raises(DomainError) as e:
                    await clean_db.write_tx(move)
                assert e.value.errors[0].code == "CONFLICT", (source, target)
                [row] = await clean_db.read(STATE, {"id": order_id})
                assert row == {"status": source.value, "revision": 0, "transitions": []}


async def test_a_move_from_a_stale_read_is_refused(clean_db, test_settings):
    service = CatalogService(clean_db, test_settings)
    await clean_db.write(ORDER, {"id": "o", "status": "AWAITING_APPROVAL", "now": utcnow()})

    async def read(tx):
        return await CatalogRepository.lock_order(tx, "o", utcnow())

    stale = await clean_db.write_tx(read)
    await clean_db.write_tx(lambda tx: service._move(tx, stale, S.AWAITING_APPROVAL, "a", None))

    with pytest.raises(DomainError) as e:
        await clean_db.write_tx(lambda tx: service._move(tx, stale, S.APPROVED, "b", None))
    assert e.value.errors[0].code == "CONFLICT"
    [row] = await clean_db.read(STATE, {"id": "o"})
    assert row["status"] == "AWAITING_APPROVAL" and row["revision"] == 1
    assert json.dumps(row["transitions"]).count("APPROVED") == 0


async def test_migrations_with_gaps_run_in_version_order(db, monkeypatch):
    from cmdb.db import migrations as mig

    # Version 9998 is applied before 9997 exists (as when another branch merges first).
    first = mig.Migration(9998, "test later", ("RETURN 1",))
    late = mig.Migration(9997, "test earlier", ("RETURN 1",))
    try:
        monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, first))
        assert [m.version for m in await mig.migrate(db)] == [9998]
        monkeypatch.setattr(mig, "MIGRATIONS", (*mig.MIGRATIONS, late))
        assert [m.version for m in await mig.pending(db)] == [9997]
        assert [m.version for m in await mig.migrate(db)] == [9997]
        assert await mig.pending(db) == []
        assert {9997, 9998} <= await mig.applied_versions(db)
    finally:
        await db.write("MATCH (m:SchemaMigration) WHERE m.version IN [9997, 9998] DELETE m")


async def test_pending_lists_lower_versions_in_ascending_order(db, monkeypatch):
    from cmdb.db import migrations as mig

    monkeypatch.setattr(mig, "MIGRATIONS", (
        mig.Migration(9996, "c", ("RETURN 1",)), *mig.MIGRATIONS,
        mig.Migration(9994, "a", ("RETURN 1",)), mig.Migration(9995, "b", ("RETURN 1",))))
    assert [m.version for m in await mig.pending(db)] == [9994, 9995, 9996]


STEP_ORDER = """
CREATE (o:Order {id: 'race', idempotencyScope: 'race', itemId: 'i', versionId: 'v',
  itemVersion: 1, itemName: 'x', requester: 'u', costCentreCode: 'CC', form: '{}',
  status: 'AWAITING_APPROVAL', currency: 'EUR', oneOffFee: '0', monthlyFee: '0', revision: 1,
  seq: 2, stepIndex: 0, attempts: 0, submittedAt: $now, updatedAt: $now})
CREATE (o)-[:HAS_STEP]->(:ApprovalStep {id: 'race-0', orderId: 'race', index: 0,
  kind: 'ROLE', role: 'approver', approvers: [], status: 'PENDING'})
"""


async def test_two_open_transactions_cannot_both_decide_a_step(clean_db):
    """Without the order lock: both transactions read the PENDING step before either writes;
    the decision's unique step key lets only the first commit."""
    import asyncio

    from neo4j.exceptions import ConstraintError

    from cmdb.catalog import queries as q

    await clean_db.write(STEP_ORDER, {"now": utcnow()})

    def params(by: str) -> dict[str, object]:
        return {"id": "race", "index": 0, "revision": 1, "decision": "APPROVED", "by": by,
                "reason": None, "now": utcnow()}

    async with clean_db.driver.session() as s1, clean_db.driver.session() as s2:
        tx1 = await s1.begin_transaction()
        tx2 = await s2.begin_transaction()
        first = await (await tx1.run(q.DECIDE_STEP, params("alice"))).data()
        assert first == [{"id": "race-0"}]

        async def second() -> list[dict[str, object]]:
            result = await tx2.run(q.DECIDE_STEP, params("bob"))
            rows: list[dict[str, object]] = await result.data()
            return rows

        racing = asyncio.ensure_future(second())
        await asyncio.sleep(0.2)  # let it reach the lock (either order of events is fine)
        await tx1.commit()
        try:
            rows = await racing
        except ConstraintError:
            rows = None
        finally:
            if not tx2.closed():
                await tx2.rollback()
        assert not rows  # refused: no row (it saw the decision) or the unique key
    found = await clean_db.read("MATCH (d:ApprovalDecision) RETURN collect(d.by) AS by")
    assert found[0]["by"] == ["alice"]
    step = await clean_db.read("MATCH (s:ApprovalStep {id: 'race-0'}) RETURN s.decidedBy AS b")
    assert step[0]["b"] == "alice"
