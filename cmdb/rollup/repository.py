"""The health roll-up, run inside a caller's transaction, so a state change, its propagation
and its history commit (or roll back) together."""


from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import OperationalState
from cmdb.db.driver import CountingTx, Database
from cmdb.rollup import queries as q
from cmdb.rollup.models import StateChange

log = logging.getLogger("cmdb.health")
MAX_CLOSURE = 200_000


async def upward_closure(tx: CountingTx, ids: list[str]) -> list[str]:
    """The items and everything that consumes them, transitively (cycles visited once)."""
    seen = dict.fromkeys(ids)
    frontier = list(ids)
    while frontier and len(seen) < MAX_CLOSURE:
        row = await tx.one(q.CONSUMERS, {"ids": frontier})
        found = [i for i in (row["ids"] if row else []) if i not in seen]
        seen.update(dict.fromkeys(found))
        frontier = found
    return list(seen)


async def recompute(
    tx: CountingTx, closure: list[str], cause: str | None, now: datetime
) -> list[StateChange]:
    """Least fixpoint over ``closure``: reset to own states, then worsen until stable.

    Starting from own states makes every step monotone (states only get worse), so cycles
    end after at most three changes per item and cannot keep each other down.
    """
    if not closure:
        return []
    before = await tx.rows(q.RESET, {"ids": closure})
    limit = 3 * len(closure) + 2
    for _ in range(limit):
        row = await tx.one(q.STEP, {"ids": closure})
        if not row or row["changed"] == 0:
            break
    else:  # pragma: no cover - monotonicity makes this unreachable
        log.error("health roll-up did not settle over %d items", len(closure))
    rows = await tx.rows(q.RECORD_CHANGES, {"before": before, "now": now, "cause": cause})
    return [
        StateChange(item_id=r["id"], state=r["state"], previous=r["previous"], at=now,
                    cause=cause, id=r["changeId"])
        for r in rows
    ]


async def propagate(
    tx: CountingTx, ids: list[str], cause: str | None, now: datetime
) -> list[StateChange]:
    return await recompute(tx, await upward_closure(tx, ids), cause, now)


async def set_own_states(
    tx: CountingTx, rows: list[tuple[str, OperationalState]], now: datetime
) -> list[str]:
    found = await tx.rows(q.SET_OWN_STATE, {
        "rows": [{"id": i, "state": s.value} for i, s in rows], "now": now})
    return [r["id"] for r in found]


async def recompute_all(
    db: Database, batch: int = 5000, echo: Any = None
) -> tuple[int, int]:
    """Roll up every live item, e.g. after a bulk load: (items, items whose state changed).

    Batched, one transaction per batch: every item is reset to its own state, then passes of
    the roll-up step run over all batches until a pass changes nothing. Each step only makes
    states worse, so the passes end at the same least fixpoint a single transaction would.
    """
    ids: list[str] = []
    after = ""
    while True:
        rows = await db.read(q.ITEM_IDS_PAGE, {"after": after, "limit": 50_000})
        if not rows:
            break
        ids += [r["id"] for r in rows]
        after = ids[-1]
    chunks = [ids[i:i + batch] for i in range(0, len(ids), batch)]
    before: dict[str, Any] = {}
    for chunk in chunks:
        rows = await db.write(q.RESET, {"ids": chunk})
        before.update({r["id"]: r["before"] for r in rows})
    passes = 0
    while True:
        passes += 1
        changed = 0
        for chunk in chunks:
            rows = await db.write(q.STEP, {"ids": chunk})
            changed += rows[0]["changed"] if rows else 0
        if echo:
            echo(f"pass {passes}: {changed} items changed")
        if changed == 0:
            break
    now = utcnow()
    recorded = 0
    for chunk in chunks:
        rows = await db.write(q.RECORD_CHANGES, {
            "before": [{"id": i, "before": before.get(i)} for i in chunk],
            "now": now, "cause": "recompute"})
        recorded += len(rows)
    return len(ids), recorded
