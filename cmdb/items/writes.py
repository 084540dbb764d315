"""The one place where items and relationships are created, changed and retired.

Every function runs inside the caller's transaction (``tx``), so a write and its history
commit or roll back together. Health is rolled up after the commit, by the roll-up worker
(``cmdb.rollup.worker``): a write that can move states marks the items to roll up from as
pending in its transaction (``cause`` names the change in the state history) and does not
wait for the roll-up of everything above them. A caller that makes several writes and rolls
up once passes ``cause=None`` to each and then calls ``roll_up`` itself. Only
``set_known_states`` (``setOperationalState`` and what-ifs) rolls up at once. History: a
person's edit of a CI is recorded here (``update_item`` with ``stored``); a writer that
collects its own records (``History``, e.g. discovery) keeps them with ``record_history``.
Bulk batches (``create_many`` and co.) keep neither history nor roll-up (see there).

Validation and reference checks stay with the use cases (they differ per caller); the
statements are in ``queries`` and run through ``repository``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any

from cmdb.core.models import DomainError, LifecycleStatus, NotFound, OperationalState
from cmdb.db.driver import CountingTx
from cmdb.items.history import History, record_manual_change
from cmdb.items.models import Relation, RelationType
from cmdb.items.repository import (
    HistoryRepository,
    InventoryRepository,
    ItemBatchRepository,
    RelationRepository,
)
from cmdb.rollup.models import StateChange
from cmdb.rollup.repository import (
    DRAIN_LIMIT,
    direct_consumers,
    drain,
    mark_pending,
    propagate,
    set_own_states,
    set_own_states_pending,
)

Row = dict[str, Any]

# Changes to these fields change health, so they are rolled up.
STATE_FIELDS = frozenset({"operational_state", "lifecycle_status"})


async def roll_up(tx: CountingTx, ids: list[str], cause: str, now: datetime) -> None:
    """Have health rolled up from ``ids`` (their own states or relationships changed)."""
    await mark_pending(tx, ids, now, cause)


async def _roll(tx: CountingTx, ids: list[str], cause: str | None, now: datetime) -> None:
    if cause is not None:
        await mark_pending(tx, ids, now, cause)


# ------------------------------------------------------------------------------ items


async def create_item(
    tx: CountingTx, item_id: str, labels: str, props: Row, refs: Row, now: datetime,
    cause: str | None = "created",
) -> Row:
    """A new CI or service (``labels`` from ``class_labels``/``SERVICE_LABELS``) with
    ``props`` and references ``refs`` (see ``properties.ref_params``); returns its row."""
    row = await InventoryRepository.create_item(tx, item_id, labels, props, refs, now)
    await _roll(tx, [item_id], cause, now)
    return row


async def update_item(
    tx: CountingTx, item_id: str, label: str, props: Row, refs: Row, now: datetime, *,
    fields: Collection[str], stored: Mapping[str, Any] | None = None, who: str = "api",
) -> Row:
    """Set ``props`` (and re-point ``refs``) on a CI or service (``label``); rolled up when
    the edit gives a state field (``fields``: the write fields it gives). Given the row
    ``stored`` (read in this transaction), the edit is kept in the item's history, by
    ``who`` (CIs; services keep none yet)."""
    if stored is not None:
        await record_manual_change(tx, item_id, stored, props, now, who)
    pending = None
    if STATE_FIELDS & set(fields):  # marked for the roll-up by the update statement itself
        state = props.get("operationalState") if "operational_state" in fields else None
        pending = {"state": OperationalState(state).value if state else None,
                   "cause": "updated"}
    return await InventoryRepository.update_item(tx, item_id, label, props, refs, now,
                                                 pending)


async def retire_item(
    tx: CountingTx, item_id: str, kind: str, reason: str | None, now: datetime
) -> Row:
    """Retire one CI (``kind`` "CI") or service ("SERVICE"), checked to exist and be live."""
    what = "CI" if kind == "CI" else "service"
    row = await InventoryRepository.get_in_tx(tx, item_id)
    if row is None or row["kind"] != kind:
        raise NotFound(what, item_id)
    if row["lifecycleStatus"] == LifecycleStatus.RETIRED.value:
        raise DomainError.single("id", f"{what} {item_id!r} is already retired", "CONFLICT")
    (retired,) = await retire_items(tx, [item_id], reason, now)
    return retired


async def retire_items(
    tx: CountingTx, ids: list[str], reason: str | None, now: datetime,
    cause: str = "retired",
) -> list[Row]:
    """Retire live items (never delete), one statement each: they and their history stay,
    their relationships end, and whatever consumed them rolls up again without them."""
    await mark_pending(tx, await _consumers(tx, ids), now, cause)
    return [await InventoryRepository.retire(tx, i, reason, now) for i in ids]


async def retire_batch(
    tx: CountingTx, rows: list[Row], now: datetime, cause: str = "retired",
    history: History | None = None,
) -> int:
    """``retire_items`` for many items in one statement, each with its reason (``rows``:
    ``{id, reason}``), keeping ``history`` (the caller's records of them); returns how
    many were retired."""
    await mark_pending(tx, await _consumers(tx, [r["id"] for r in rows]), now, cause)
    retired = await InventoryRepository.retire_many(tx, rows, now)
    if history is not None:
        await record_history(tx, history, now)
    return retired


async def _consumers(tx: CountingTx, ids: list[str]) -> list[str]:
    """What consumes the items directly, outside them: found before their relationships
    end (the roll-up goes on upward from there)."""
    gone = set(ids)
    return [i for i in await direct_consumers(tx, ids) if i not in gone]


async def record_history(tx: CountingTx, history: History, now: datetime) -> None:
    """Keep the records a writer collected (``History``) in its transaction."""
    await HistoryRepository.write(tx, history.records, now)


async def set_states(
    tx: CountingTx, rows: list[tuple[str, OperationalState]], now: datetime,
    cause: Callable[[list[str]], str],
) -> list[str]:
    """Set the own state of items, marked for the roll-up (``cause`` names them); returns
    the ids found."""
    if not rows:
        return []
    return await set_own_states_pending(tx, rows, now, cause([i for i, _ in rows]))


async def set_known_states(
    tx: CountingTx, rows: list[tuple[str, OperationalState]], now: datetime,
    cause: str | None, field: str = "id",
) -> list[StateChange]:
    """Set the own state of items that must all exist (``field`` names the input refused
    when some do not) and roll up from them at once; the recorded changes. What is pending
    is rolled up first, under the workers' lock, so history stays in commit order."""
    while (await drain(tx, now)).marks == DRAIN_LIMIT:
        pass
    found = await set_own_states(tx, rows, now)
    missing = sorted({i for i, _ in rows} - set(found))
    if missing:
        raise DomainError.single(field, f"items not found: {', '.join(missing)}", "NOT_FOUND")
    return await propagate(tx, found, cause, now)


# ------------------------------------------------------------------------------ relations


async def relate(
    tx: CountingTx, rel_type: RelationType, source_id: str, target_id: str, props: Row,
    now: datetime, cause: str | None = "related",
) -> Relation:
    """Make the live relationship, or update it (one per source, type and target)."""
    rel = await RelationRepository.upsert(tx, rel_type, source_id, target_id, props, now)
    await _roll(tx, [source_id, target_id], cause, now)
    return rel


async def unrelate(
    tx: CountingTx, rel_type: RelationType, source_id: str, target_id: str,
    reason: str | None, now: datetime, cause: str | None = "unrelated",
) -> Relation | None:
    """End the live relationship; None when there is none."""
    rel = await RelationRepository.retire(tx, rel_type, source_id, target_id, reason, now)
    if rel is not None:
        await _roll(tx, [source_id, target_id], cause, now)
    return rel


# ------------------------------------------------------------------------------ batches

# Bulk loads write many items in one statement per label set and neither keep history nor
# roll up: a load is followed by a full recompute (``recompute_all``), far cheaper than one
# roll-up per batch.


async def create_many(tx: CountingTx, labels: str, rows: list[Row], now: datetime) -> int:
    """New items of one label set (``labels`` from ``class_labels``/``SERVICE_LABELS``);
    rows: ``{id, props, setOwner, owner, ...}`` as ``ref_params`` gives them."""
    await ItemBatchRepository.create(tx, labels, rows, now)
    return len(rows)


async def update_many(tx: CountingTx, rows: list[Row], now: datetime) -> int:
    """Changed properties (and re-pointed references) of existing items."""
    if rows:
        await ItemBatchRepository.update(tx, rows, now)
    return len(rows)


async def relate_many(
    tx: CountingTx, rel_type: RelationType, rows: list[Row], now: datetime
) -> dict[str, int]:
    """Relationships ``{s, t, props}`` of one type made, updated or left alone (counted by
    outcome), as ``relate`` would."""
    return await ItemBatchRepository.relate(tx, rel_type, rows, now)
