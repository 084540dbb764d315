"""Use cases for alarms: raise (one or many), clear, acknowledge, list.

Every raise or clear sets the CI's own state from its open alarms and rolls it up
(``writes.set_states``) in the same transaction, so the alarm, the state, the roll-up and
the state history commit (or roll back) together. Permissions are checked here, before anything is
read: ``alarm:write`` to raise and clear, ``alarm:acknowledge`` to acknowledge.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from neo4j.exceptions import ClientError

from cmdb.alarms.models import (
    Alarm,
    AlarmQuery,
    AlarmRaise,
    AlarmStatus,
    BatchResult,
    RaiseOutcome,
    RaiseResult,
    alarm_state,
    open_key,
)
from cmdb.alarms.repository import AlarmRepository
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError, LifecycleStatus, NotFound, OperationalState
from cmdb.core.pagination import check_page_size
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.identity.scope import EVERYTHING, Visibility
from cmdb.items import writes
from cmdb.settings import Settings

log = logging.getLogger("cmdb.alarms")

DEFAULT_BATCH_SIZE = 500
# How far ahead of our clock an occurrence may be (clock skew of monitoring sources).
MAX_CLOCK_SKEW = timedelta(minutes=5)
_CAUSE_IDS = 5
_CLEAR_ATTEMPTS = 3


def _rejected(index: int, errors: list[FieldError]) -> RaiseResult:
    return RaiseResult(index=index, outcome=RaiseOutcome.REJECTED, errors=errors)


def _error(field: str | None, message: str, code: str = "INVALID") -> list[FieldError]:
    return [FieldError(field=field, message=message, code=code)]


def _cause(verb: str, alarm_ids: list[str]) -> str:
    if len(alarm_ids) == 1:
        return f"alarm {alarm_ids[0]} {verb}"
    shown = ", ".join(alarm_ids[:_CAUSE_IDS])
    more = f" and {len(alarm_ids) - _CAUSE_IDS} more" if len(alarm_ids) > _CAUSE_IDS else ""
    return f"alarms {verb}: {shown}{more}"


def _target_refused(ci_id: str, item: dict[str, Any] | None) -> list[FieldError]:
    """Why an alarm cannot be raised on the item (its locked row), if it cannot."""
    if item is None:
        return _error("ciId", f"CI {ci_id!r} not found", "NOT_FOUND")
    if not item["isCi"]:
        return _error("ciId", f"{ci_id!r} is a service; alarms are raised on configuration "
                      "items")
    if item["lifecycleStatus"] == LifecycleStatus.RETIRED.value:
        return _error("ciId", f"CI {ci_id!r} is retired", "CONFLICT")
    return []


def _fixed_cause(verb: str, alarm_ids: list[str]) -> Callable[[list[str]], str]:
    text = _cause(verb, alarm_ids)
    return lambda _changed: text


class AlarmService:
    def __init__(
        self, db: Database, settings: Settings, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        self.db = db
        self.settings = settings
        self.batch_size = batch_size
        self.repo = AlarmRepository(db)

    # --- reading ----------------------------------------------------------------------------

    async def get(self, alarm_id: str) -> Alarm | None:
        return await self.repo.get(alarm_id)

    # --- raising ----------------------------------------------------------------------------

    async def raise_alarm(self, data: dict[str, Any], principal: Principal | None) -> RaiseResult:
        """Raise one alarm (or update the open one with its source and dedup key).

        Raises ``DomainError`` (fields prefixed ``input.``) when it is rejected."""
        require_permission(principal, Permission.ALARM_WRITE, "raise alarms")
        spec = validate(AlarmRaise, data)
        now = utcnow()
        problem = self._check_time(spec, now)
        if problem:
            raise DomainError(_error("input.occurredAt", problem))
        (result,) = await self.db.write_tx(lambda tx: self._raise_in_tx(tx, [(0, spec)], now))
        if result.outcome is RaiseOutcome.REJECTED:
            raise DomainError([
                e.model_copy(update={"field": f"input.{e.field}" if e.field else None})
                for e in result.errors
            ])
        return result

    async def raise_batch(
        self, items: Sequence[Any], principal: Principal | None
    ) -> BatchResult:
        """Raise many alarms, one transaction per ``batch_size`` items.

        Each item is validated on its own: an invalid item, an unknown CI or a key open on
        another CI rejects that item, with its reason, not the batch."""
        require_permission(principal, Permission.ALARM_WRITE, "raise alarms")
        now = utcnow()
        results: dict[int, RaiseResult] = {}
        valid: list[tuple[int, AlarmRaise]] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                results[index] = _rejected(index, _error(None, "an alarm must be an object"))
                continue
            try:
                spec = validate(AlarmRaise, item, prefix="")
            except DomainError as e:
                results[index] = _rejected(index, e.errors)
                continue
            problem = self._check_time(spec, now)
            if problem:
                results[index] = _rejected(index, _error("occurredAt", problem))
                continue
            valid.append((index, spec))
        for start in range(0, len(valid), self.batch_size):
            chunk = valid[start : start + self.batch_size]
            try:
                done = await self.db.write_tx(functools.partial(
                    self._raise_in_tx, specs=chunk, now=utcnow()))
            except ClientError as e:
                log.error("alarm batch refused by the database: %s", e.code)
                done = [_rejected(i, _error(None, "not stored: the database refused the batch "
                                                  "of this alarm", "CONFLICT"))
                        for i, _ in chunk]
            results.update((r.index, r) for r in done)
        return BatchResult(results=[results[i] for i in range(len(items))])

    @staticmethod
    def _check_time(spec: AlarmRaise, now: datetime) -> str | None:
        if spec.occurred_at is not None and spec.occurred_at > now + MAX_CLOCK_SKEW:
            return "occurredAt is in the future"
        return None

    async def _raise_in_tx(
        self, tx: CountingTx, specs: list[tuple[int, AlarmRaise]], now: datetime
    ) -> list[RaiseResult]:
        items = await self.repo.lock_items(tx, [s.ci_id for _, s in specs])
        # Read after the locks: a twin of a raise on the same CI has committed by now.
        seen = await self.repo.seen_events(
            tx, sorted({key for _, s in specs if (key := s.event_key) is not None}))
        out: dict[int, RaiseResult] = {}
        rows: list[dict[str, Any]] = []
        first_of: dict[str, int] = {}  # event key -> index of its first raise in this batch
        repeats: list[tuple[int, str]] = []  # later raises of an event of this batch
        for index, spec in specs:
            key = spec.event_key
            if key is not None:
                if key in seen:
                    outcome, counted_on = seen[key]
                    out[index] = RaiseResult(index=index, outcome=RaiseOutcome(outcome),
                                             alarm=counted_on, replayed=True)
                    continue
                if key in first_of:
                    repeats.append((index, key))
                    continue
                first_of[key] = index
            refused = _target_refused(spec.ci_id, items.get(spec.ci_id))
            if refused:
                out[index] = _rejected(index, refused)
            else:
                rows.append({
                    "index": index, "id": str(uuid.uuid4()), "source": spec.source,
                    "dedupKey": spec.dedup_key, "openKey": spec.key, "ciId": spec.ci_id,
                    "severity": spec.severity.value, "message": spec.message,
                    "at": spec.occurred_at or now,
                })
        accepted: list[Alarm] = []
        for r in await self.repo.upsert(tx, rows, now) if rows else []:
            if not r["accepted"]:
                out[r["index"]] = _rejected(r["index"], _error(
                    "dedupKey", "an alarm with this source and dedup key is open on CI "
                    f"{r['heldBy']!r}", "CONFLICT"))
                continue
            alarm: Alarm = r["alarm"]
            accepted.append(alarm)
            out[r["index"]] = RaiseResult(
                index=r["index"], alarm=alarm,
                outcome=RaiseOutcome.CREATED if r["created"] else RaiseOutcome.DEDUPLICATED)
        await self.repo.record_events(tx, [
            {"key": key, "alarmId": done.alarm.id, "outcome": done.outcome.value}
            for key, i in first_of.items()
            if (done := out[i]).alarm is not None and done.outcome is not RaiseOutcome.REJECTED
        ], now)
        for index, key in repeats:
            first = out[first_of[key]]
            out[index] = first.model_copy(update={
                "index": index, "replayed": first.outcome is not RaiseOutcome.REJECTED})
        def cause(changed: list[str]) -> str:
            return _cause("raised", list(dict.fromkeys(
                a.id for a in accepted if a.ci_id in changed)))

        await self._apply_states(tx, sorted({a.ci_id for a in accepted}), items, now, cause)
        return [out[i] for i, _ in specs]

    # --- clearing and acknowledging ---------------------------------------------------------

    async def clear(
        self,
        principal: Principal | None,
        alarm_id: str | None = None,
        source: str | None = None,
        dedup_key: str | None = None,
    ) -> Alarm:
        """Clear an alarm by id, or the open one of (source, dedup key). Idempotent: an alarm
        already cleared is returned as it is; by key, with none open, the latest one is."""
        user = require_permission(principal, Permission.ALARM_WRITE, "clear alarms").user
        source = source.strip() if source is not None else None
        dedup_key = dedup_key.strip() if dedup_key is not None else None
        by_key = source is not None or dedup_key is not None
        if (alarm_id is None) == (not by_key) or (by_key and not (source and dedup_key)):
            raise DomainError.single(
                "input", "give either an alarm id, or both a source and a dedup key")
        now = utcnow()

        async def work(tx: CountingTx) -> Alarm:
            for _ in range(_CLEAR_ATTEMPTS):
                if alarm_id is not None:
                    alarm = await self.repo.get_in_tx(tx, alarm_id)
                    if alarm is None:
                        raise NotFound("alarm", alarm_id, "input.id")
                else:
                    assert source is not None and dedup_key is not None
                    alarm = await self.repo.get_open_by_key(tx, open_key(source, dedup_key))
                    if alarm is None:
                        latest = await self.repo.get_latest_by_key(tx, source, dedup_key)
                        if latest is None:
                            raise DomainError.single(
                                "input.dedupKey", "no alarm with this source and dedup key",
                                "NOT_FOUND")
                        return latest
                if not alarm.is_open:
                    return alarm
                before = await self.repo.lock_items(tx, [alarm.ci_id])
                found = await self.repo.clear(tx, alarm.id, user, now)
                assert found is not None
                cleared, did = found
                if did:
                    await self._apply_states(tx, [alarm.ci_id], before, now,
                                             _fixed_cause("cleared", [alarm.id]))
                    return cleared
                if alarm_id is not None:
                    return cleared
                # Cleared by someone else meanwhile; a new one may be open under the key.
            raise DomainError.single("input", "the alarm keeps changing; try again", "CONFLICT")

        return await self.db.write_tx(work)

    async def acknowledge(self, alarm_id: str, principal: Principal | None) -> Alarm:
        """Record who acknowledged an open alarm and when. Acknowledging again changes
        nothing; a cleared alarm cannot be acknowledged."""
        user = require_permission(
            principal, Permission.ALARM_ACKNOWLEDGE, "acknowledge alarms").user
        now = utcnow()

        async def work(tx: CountingTx) -> Alarm:
            status = await self.repo.lock_alarm(tx, alarm_id)
            if status is None:
                raise NotFound("alarm", alarm_id)
            if status == AlarmStatus.CLEARED.value:
                raise DomainError.single("id", f"alarm {alarm_id!r} is cleared", "CONFLICT")
            if status == AlarmStatus.OPEN.value:
                acked = await self.repo.acknowledge(tx, alarm_id, user, now)
                if acked is not None:
                    return acked
            alarm = await self.repo.get_in_tx(tx, alarm_id)
            assert alarm is not None
            return alarm

        return await self.db.write_tx(work)

    # --- CI state ---------------------------------------------------------------------------

    async def _apply_states(
        self, tx: CountingTx, ci_ids: list[str], before: dict[str, dict[str, Any]],
        now: datetime, cause: Callable[[list[str]], str],
    ) -> None:
        """Set the own state of CIs from their open alarms (``before``: their locked rows,
        read before this transaction changed anything) and roll up from those that changed
        (``cause`` names the alarms that changed them)."""
        if not ci_ids:
            return
        severities = await self.repo.open_severities(tx, ci_ids)
        baselines: list[tuple[str, str | None]] = []
        states: list[tuple[str, OperationalState]] = []
        for ci_id in ci_ids:
            row = before[ci_id]
            current = OperationalState(row["state"] or OperationalState.UNKNOWN.value)
            stored = OperationalState(row["baseline"]) if row["baseline"] else None
            baseline = stored or current
            open_severities = severities.get(ci_id, [])
            keep = baseline if open_severities else None
            wanted = alarm_state(open_severities, baseline)
            if keep != stored:
                baselines.append((ci_id, keep.value if keep else None))
            if wanted != current:
                states.append((ci_id, wanted))
        await self.repo.set_baselines(tx, baselines)
        await writes.set_states(tx, states, now, cause)

    # --- listing (last: the name shadows the builtin in the class body) ----------------

    async def list(self, f: AlarmQuery | None = None, first: int | None = None,
                   visible: Visibility = EVERYTHING) -> list[Alarm]:
        """Alarms matching the filters, newest (last occurrence) first, at most ``first``;
        only alarms on CIs inside ``visible``."""
        size = check_page_size(first if first is not None else self.settings.default_page_size,
                               self.settings.max_page_size)
        return await self.repo.list(f or AlarmQuery(), size, visible)
