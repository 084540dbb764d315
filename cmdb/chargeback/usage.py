"""Usage records stored, each at most once (by record id), with a reason for each refused.

Policy: per record. A record that is malformed, names an unknown CI or meter, or reuses a
stored record id with other values is rejected with its index and reason; the others are
stored. Each batch is one transaction: all of it or none of it. A record whose month is
closed is billed in the first open month after it, as an adjustment of the closed one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from cmdb.chargeback.base import ServiceBase
from cmdb.chargeback.inputs import UsageRecordInput
from cmdb.chargeback.models import (
    ChargePeriod,
    UsageIngestResult,
    UsageRejection,
    period_of,
)
from cmdb.core.clock import utcnow
from cmdb.core.validation import field_path
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Permission, Principal, require_permission

DEFAULT_USAGE_BATCH = 5000
# How far ahead of our clock a usage record may be (clock skew of metering sources).
MAX_CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class _Batch:
    """One batch's records on their way: those to store (by record id, with their index),
    the refused and the repeats within the batch."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    index_of: dict[str, int] = field(default_factory=dict)
    rejected: list[UsageRejection] = field(default_factory=list)
    repeats: int = 0

    def reject(self, index: int, record_id: str | None, reason: str) -> None:
        self.rejected.append(UsageRejection(index=index, record_id=record_id, reason=reason))


class UsageIngest(ServiceBase):
    async def ingest_usage(
        self, principal: Principal | None, records: Sequence[Any],
        batch_size: int = DEFAULT_USAGE_BATCH,
        progress: Callable[[int, int], None] | None = None,
    ) -> UsageIngestResult:
        """Store usage records (see the module's policy)."""
        require_permission(principal, Permission.USAGE_INGEST, "send usage records")
        rejected: list[UsageRejection] = []
        created = duplicates = late = 0
        total = len(records)
        for start in range(0, total, batch_size):
            chunk = records[start:start + batch_size]
            c, d, lt, rej = await self._usage_batch(chunk, start)
            created, duplicates, late = created + c, duplicates + d, late + lt
            rejected.extend(rej)
            if progress:
                progress(min(start + batch_size, total), total)
        return UsageIngestResult(received=total, created=created, duplicates=duplicates,
                                 rejected=rejected, late=late)

    async def _usage_batch(self, chunk: Sequence[Any], offset: int
                           ) -> tuple[int, int, int, list[UsageRejection]]:
        batch = _Batch()
        good = _parse(chunk, offset, batch)
        meters = await self.repo.known_meters(sorted({r.meter for _, r in good}))
        cis = await self.repo.known_cis(sorted({r.ci_id for _, r in good}))
        max_age = self.settings.chargeback_usage_max_age_days
        now = utcnow()
        latest, earliest = now + MAX_CLOCK_SKEW, now - timedelta(days=max_age)
        seen: dict[str, UsageRecordInput] = {}
        for i, r in good:
            reason = _refusal(r, latest, earliest, max_age, meters, cis)
            if reason is None and r.record_id in seen:
                if seen[r.record_id] == r:
                    batch.repeats += 1
                    continue
                reason = "recordId: sent twice in this batch with different values"
            if reason is not None:
                batch.reject(i, r.record_id, reason)
                continue
            seen[r.record_id] = r
            batch.index_of[r.record_id] = i
            batch.rows.append(_stored(r))
        created = same = late = 0
        if batch.rows:
            created, same, late = await self._store(batch)
        return (created, same + batch.repeats, late,
                sorted(batch.rejected, key=lambda x: x.index))

    async def _store(self, batch: _Batch) -> tuple[int, int, int]:
        """Write a batch's rows in one transaction, each billed in its month or, when that
        is closed, the first open one after it: (created, same as stored, created late)."""
        rows, now = batch.rows, utcnow()

        async def work(tx: CountingTx) -> tuple[int, int, int, list[UsageRejection]]:
            months = [ChargePeriod.parse(m) for m in sorted({row["month"] for row in rows})]
            await self.repo.ensure_periods(tx, months, self.currency, now)
            shut = await self.repo.not_open_from(tx, months[0])
            billed = {m.id: _open_from(m, shut) for m in months}
            for row in rows:
                row["billedIn"] = billed[row["month"]].id
            await self.repo.ensure_periods(tx, billed.values(), self.currency, now)
            out = await self.repo.write_usage(tx, rows, now)
            created = sum(1 for o in out if o["created"])
            same = sum(1 for o in out if not o["created"] and o["same"])
            late = sum(1 for o, row in zip(out, rows, strict=True)
                       if o["created"] and row["billedIn"] != row["month"])
            conflicts = [UsageRejection(index=batch.index_of[o["recordId"]],
                                        record_id=o["recordId"],
                                        reason="recordId: already stored with other values")
                         for o in out if not o["same"]]
            return created, same, late, conflicts

        created, same, late, conflicts = await self.db.write_tx(work)
        batch.rejected.extend(conflicts)
        return created, same, late


def _parse(chunk: Sequence[Any], offset: int, batch: _Batch
           ) -> list[tuple[int, UsageRecordInput]]:
    """The records that are well formed, with their index; the others refused."""
    good: list[tuple[int, UsageRecordInput]] = []
    for i, raw in enumerate(chunk, start=offset):
        if not isinstance(raw, dict):
            batch.reject(i, None, "a record must be a JSON object")
            continue
        rid = raw.get("recordId")
        rid = rid if isinstance(rid, str) else None
        if "__error__" in raw:  # a file row the reader could not take
            batch.reject(i, rid, str(raw["__error__"]))
            continue
        try:
            good.append((i, UsageRecordInput.model_validate(raw)))
        except ValidationError as e:
            batch.reject(i, rid, "; ".join(
                f"{field_path(err['loc'], '')}: "
                f"{str(err['msg']).removeprefix('Value error, ')}"
                for err in e.errors(include_url=False)))
    return good


def _refusal(r: UsageRecordInput, latest: datetime, earliest: datetime, max_age: int,
             meters: Collection[str], cis: Collection[str]) -> str | None:
    """Why a well-formed record cannot be billed (None: it can)."""
    if r.at > latest:
        return f"at: {r.at.isoformat()} is in the future"
    if r.at < earliest:
        return f"at: {r.at.isoformat()} is older than {max_age} days (too old to bill)"
    if r.meter not in meters:
        return f"meter: no such meter {r.meter!r}"
    if r.ci_id not in cis:
        return f"ciId: no such CI {r.ci_id!r}"
    return None


def _stored(r: UsageRecordInput) -> dict[str, Any]:
    return {"recordId": r.record_id, "ciId": r.ci_id, "meter": r.meter,
            "quantity": format(abs(r.quantity) if r.quantity == 0
                               else r.quantity, "f"),  # "1000", not "1E+3"
            "qtyMicros": int(r.quantity * 1_000_000), "at": r.at,
            "source": r.source, "month": period_of(r.at)}


def _open_from(month: ChargePeriod, shut: Collection[str]) -> ChargePeriod:
    """The first period from ``month`` on that is not closed."""
    while month.id in shut:
        month = month.next()
    return month
