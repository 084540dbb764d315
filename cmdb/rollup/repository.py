"""The health roll-up, run inside a caller's transaction: either at once (``propagate``:
the change, its propagation and its history commit together) or deferred (``mark_pending``
in the writer's transaction, ``drain`` later in the roll-up worker's; docs/health.md)."""


from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.mapping import as_datetime
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


# ------------------------------------------------------------------- the deferred roll-up

# Marks per roll-up transaction. A roll-up holds the locks of every item it recomputes until
# it commits, and a write to one of them waits: small transactions keep those waits short
# (10,000 let a backlog become one transaction over thousands of items, seconds long).
DRAIN_LIMIT = 100
Mark = dict[str, Any]


async def set_own_states_pending(
    tx: CountingTx, rows: list[tuple[str, OperationalState]], now: datetime, cause: str
) -> list[str]:
    """Set own states and mark them pending, in one statement; the ids found."""
    found = await tx.rows(q.SET_OWN_STATE_PENDING, {
        "rows": [{"id": i, "state": s.value} for i, s in rows], "now": now, "cause": cause})
    return [r["id"] for r in found]


async def mark_pending(
    tx: CountingTx, ids: list[str], now: datetime, cause: str,
    state: OperationalState | None = None,
) -> None:
    """Mark ``ids`` for the roll-up worker. ``state``: the own state this transaction is
    about to give the (one) item, so the worker can replay it in commit order."""
    if ids:
        await tx.rows(q.MARK_PENDING, {"ids": ids, "now": now, "cause": cause,
                                       "state": state.value if state else None})


async def direct_consumers(tx: CountingTx, ids: list[str]) -> list[str]:
    """The items one step up from ``ids`` (over relationships that carry impact)."""
    row = await tx.one(q.CONSUMERS, {"ids": ids})
    return list(row["ids"]) if row else []


async def pending_count(db: Database) -> int:
    rows = await db.read(q.PENDING_COUNT)
    return int(rows[0]["n"]) if rows else 0


@dataclass
class Drained:
    """What one ``drain`` did: marks taken, roll-ups run, changes recorded."""

    marks: int = 0
    rollups: int = 0
    changes: list[StateChange] = field(default_factory=list)


async def drain(tx: CountingTx, now: datetime, limit: int = DRAIN_LIMIT) -> Drained:
    """Roll up what is pending (the oldest ``limit`` marks), serialised by the lock node.

    All marks are rolled up at once over the union of their upward closures, unless one
    item's own state changed more than once: then the marks are replayed in commit order,
    in as few roll-ups as keep each item's states apart (see ``_batches``). Each roll-up's
    changes are recorded at the latest commit time of the marks it rolls up."""
    await tx.rows(q.TAKE_LOCK, {"now": now})
    marks = await tx.rows(q.PENDING_MARKS, {"limit": limit})
    done = Drained(marks=len(marks))
    if not marks:
        return done
    batches = _batches(marks)
    if len(batches) == 1:
        done.changes = await _roll_batch(tx, marks)
    else:
        done.changes = await _replay(tx, marks, batches)
    done.rollups = len(batches)
    await tx.rows(q.CLEAR_MARKS, {"marks": [m["mark"] for m in marks]})
    return done


def _batches(marks: list[Mark]) -> list[list[Mark]]:
    """Marks in commit order, cut where an item's own state changes a second time."""
    batches: list[list[Mark]] = [[]]
    seen: set[str] = set()
    for m in marks:
        replayed = m["state"] is not None
        if replayed and m["id"] in seen:
            batches.append([])
            seen = set()
        batches[-1].append(m)
        if replayed:
            seen.add(m["id"])
    return batches


async def _replay(tx: CountingTx, marks: list[Mark], batches: list[list[Mark]]
                  ) -> list[StateChange]:
    """Own states back to before the first mark, then each batch's states in turn (an
    item's last one is what it holds now), rolled up after each batch."""
    first: dict[str, Mark] = {}
    last: dict[str, Mark] = {}
    for m in marks:
        if m["state"] is not None:
            first.setdefault(m["id"], m)
            last[m["id"]] = m
    current = {r["id"]: r["state"] for r in await tx.rows(q.OWN_STATES, {"ids": list(last)})}
    await tx.rows(q.PUT_OWN_STATE, {
        "rows": [{"id": i, "state": m["previous"]} for i, m in first.items()]})
    changes: list[StateChange] = []
    for batch in batches:
        await tx.rows(q.PUT_OWN_STATE, {"rows": [
            {"id": m["id"], "state": current.get(m["id"]) if m is last[m["id"]] else m["state"]}
            for m in batch if m["state"] is not None]})
        changes += await _roll_batch(tx, batch)
    return changes


async def _roll_batch(tx: CountingTx, batch: list[Mark]) -> list[StateChange]:
    # Back to a fixed UTC offset: the driver reads `at` with a zone id, and history times
    # must compare (and print) like every other recorded time.
    at = max((as_datetime(m["at"]) or utcnow()).astimezone(UTC) for m in batch)
    causes = list(dict.fromkeys(m["cause"] for m in batch if m["cause"]))
    cause = causes[0] if len(causes) == 1 else (
        f"{causes[0]} (+{len(causes) - 1} more)" if causes else None)
    ids = list(dict.fromkeys(m["id"] for m in batch))
    return await recompute(tx, await upward_closure(tx, ids), cause, at)
