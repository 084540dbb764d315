"""Use cases of chargeback: meters, rate cards, pools, usage ingestion, periods, reports.

Who may do what:
- ``chargeback:manage`` (finance_all, admin): meters, rate cards, pools and their costs,
  billing modes, calculating and closing periods, adjustments;
- ``chargeback:usage`` (metering integrations): send usage records;
- ``chargeback:read-all`` (finance_all, admin): every line; ``chargeback:read`` (finance):
  lines of the cost centres they manage or belong to, and those below; everyone else: their
  own lines (the cost of their subscriptions and desktop sessions).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import ValidationError

from cmdb.chargeback.engine import (
    Calculation,
    CalculationInput,
    CostCentreRow,
    Engine,
    UsageGroup,
)
from cmdb.chargeback.models import (
    CENT,
    AdjustmentInput,
    AssetCost,
    BillingMode,
    CalculationResult,
    ChargeLine,
    CostPool,
    CostPoolInput,
    Driver,
    LineKind,
    Meter,
    MeterInput,
    Period,
    PeriodStatus,
    RateCard,
    RateCardInput,
    Report,
    ReportDimension,
    ReportRow,
    ServiceRecovery,
    UsageIngestResult,
    UsageRecordInput,
    UsageRejection,
    next_period,
    period_bounds,
    period_of,
)
from cmdb.chargeback.repository import ChargebackRepository, settle
from cmdb.core.clock import utcnow
from cmdb.core.collector import fewer_collections
from cmdb.core.models import DomainError, FieldError, NotFound
from cmdb.core.validation import field_path, validate
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Permission, Principal, has_permission, require_permission
from cmdb.settings import Settings

DEFAULT_USAGE_BATCH = 5000
# How far ahead of our clock a usage record may be (clock skew of metering sources).
MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_LINES_PAGE = 1000
MAX_TREND_PERIODS = 24
LINE_CHUNK = 2_000  # lines the engine hands to the writer at a time (about)
LINE_CHUNKS_AHEAD = 8  # chunks calculated but not yet written, at most
_REPORT_PROPS = {ReportDimension.COST_CENTRE: "costCentre", ReportDimension.USER: "user",
                 ReportDimension.SERVICE: "serviceId",
                 ReportDimension.CATALOGUE_ITEM: "itemId", ReportDimension.METER: "meter",
                 ReportDimension.KIND: "kind"}


@dataclass(frozen=True)
class CostScope:
    """Which lines a caller may read: every line, a set of cost centres, or their own."""

    codes: list[str] | None
    user: str | None

    @property
    def everything(self) -> bool:
        return self.codes is None and self.user is None


def check_period(period: str, field: str = "period") -> str:
    try:
        period_bounds(period)
    except ValueError as e:
        raise DomainError.single(field, str(e)) from None
    return period


class ChargebackService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = ChargebackRepository(db)

    @property
    def currency(self) -> str:
        return self.settings.chargeback_currency

    def _manage(self, principal: Principal | None, action: str) -> Principal:
        return require_permission(principal, Permission.CHARGEBACK_MANAGE, action)

    # --- meters, rate cards, pools -----------------------------------------------------------

    async def define_meter(self, principal: Principal | None, data: dict[str, Any]
                           ) -> tuple[Meter, bool]:
        self._manage(principal, "define meters")
        m = validate(MeterInput, data)
        return await self.repo.create_meter({**m.model_dump(), "now": utcnow()})

    async def meters(self) -> list[Meter]:
        return await self.repo.meters()

    async def publish_rate_card(self, principal: Principal | None, data: dict[str, Any]
                                ) -> RateCard:
        """A new version of a meter's rate, in force from ``effective_from``; the version
        before it ends there. Versions only move forward: one may not start on or before a
        version that exists already (publish a later one instead)."""
        p = self._manage(principal, "publish rate cards")
        card = validate(RateCardInput, data)
        if card.currency != self.currency:
            raise DomainError.single("input.currency", f"rates are kept in {self.currency}, "
                                     f"the billing currency; {card.currency} is not accepted")
        if card.meter not in await self.repo.known_meters([card.meter]):
            raise NotFound("meter", card.meter, "input.meter")
        closed = [x for x in await self.repo.periods()
                  if x.status is PeriodStatus.CLOSED and x.end.date() > card.effective_from]
        if closed:
            raise DomainError.single(
                "input.effectiveFrom", f"period {closed[0].id} is closed: a rate may not "
                "start before its end (book a correction as an adjustment instead)",
                code="CONFLICT")
        clash = await self.repo.rate_clash(card.meter, card.effective_from)
        if clash:
            raise DomainError.single("input.effectiveFrom", f"{card.meter} has a version "
                                     f"starting on or after {card.effective_from} ({clash})",
                                     code="CONFLICT")
        tiers = json.dumps([{"upTo": None if t.up_to is None else str(t.up_to),
                             "rate": str(t.rate)} for t in card.tiers])
        out = await self.repo.publish_rate({
            "id": str(uuid.uuid4()), "meter": card.meter, "from": card.effective_from,
            "currency": card.currency, "tiers": tiers, "now": utcnow(), "by": p.user})
        if out is None:  # a version was published at the same time
            raise DomainError.single("input.effectiveFrom", "another version of "
                                     f"{card.meter} was published at the same time; retry",
                                     code="CONFLICT")
        return out

    async def rate_cards(self, meter: str | None = None) -> list[RateCard]:
        return await self.repo.rate_cards(meter)

    async def pricing_on(self, meters: Sequence[str], on: date | None = None
                         ) -> tuple[dict[str, RateCard], dict[str, str]]:
        """What usage of ``meters`` is billed at on the day ``on`` (default: today, UTC):
        meter -> the rate card version in force (meters without one are left out), and
        meter -> its unit (meters that do not exist are left out). Catalogue quotes and
        estimates read this, so they price usage as the bill does."""
        day = on or utcnow().astimezone(UTC).date()
        cards = await self.repo.rates_in_force(meters, day)
        wanted = set(meters)
        units = {m.code: m.unit for m in await self.repo.meters() if m.code in wanted}
        return cards, units

    async def define_pool(self, principal: Principal | None, data: dict[str, Any]) -> CostPool:
        self._manage(principal, "define cost pools")
        pool = validate(CostPoolInput, data)
        missing = set(pool.ci_ids) - await self.repo.known_cis(pool.ci_ids)
        if missing:
            raise DomainError.single("input.ciIds", "no such CI: " + ", ".join(sorted(missing)))
        errors = []
        if pool.meter is not None and not await self.repo.known_meters([pool.meter]):
            errors.append(FieldError(field="input.meter", message=f"no such meter: {pool.meter}"))
        role = None if pool.role is None else await self.repo.known_role(pool.role)
        if pool.role is not None and role is None:
            errors.append(FieldError(field="input.role", message=f"no such role: {pool.role}"))
        if pool.allocations:
            known = await self.repo.cost_centres()
            errors += [FieldError(field=f"input.allocations[{i}].costCentre",
                                  message=f"no such cost centre: {a.cost_centre}")
                       for i, a in enumerate(pool.allocations) if a.cost_centre not in known]
        if errors:
            raise DomainError(errors)
        return await self.repo.upsert_pool({
            "id": str(uuid.uuid4()), "code": pool.code, "name": pool.name,
            "driver": pool.driver.value, "ciIds": sorted(set(pool.ci_ids)),
            "capacity": None if pool.capacity is None else str(pool.capacity),
            "description": pool.description, "currency": self.currency, "now": utcnow(),
            "attribute": pool.attribute, "meter": pool.meter, "role": role,
            "onward": pool.onward,
            "holderClasses": sorted({c.value for c in pool.holder_classes or ()}) or None,
            "allocations": json.dumps([[a.cost_centre, str(a.percent)]
                                       for a in pool.allocations])
            if pool.allocations else None,
            "costSource": pool.cost_source.value})

    async def set_pool_cost(self, principal: Principal | None, code: str, period: str,
                            amount: Decimal) -> CostPool:
        p = self._manage(principal, "set pool costs")
        check_period(period)
        if amount < 0 or amount != amount.quantize(CENT) or amount >= Decimal("1e12"):
            raise DomainError.single("amount", "must be zero or more, in whole cents, below "
                                     "10^12")
        current = await self.repo.period(period)
        if current and current.status is PeriodStatus.CLOSED:
            raise DomainError.single("period", f"period {period} is closed", code="CONFLICT")
        out = await self.repo.set_pool_cost({"code": code, "period": period,
                                             "amount": str(amount), "now": utcnow(),
                                             "by": p.user})
        if out is None:
            raise NotFound("cost pool", code, "code")
        return out

    async def pools(self) -> list[CostPool]:
        return await self.repo.pools()

    async def asset_cost(self, pool: CostPool, period: str) -> AssetCost:
        """What the pool's assets cost in the period, to check before calculating (the
        manual amount for the period, when one is set, is what the calculation takes)."""
        check_period(period)
        return (await self.repo.asset_costs([pool], period))[pool.code]

    async def set_billing_mode(self, principal: Principal | None, code: str,
                               mode: BillingMode) -> BillingMode:
        self._manage(principal, "set billing modes")
        if not await self.repo.set_billing_mode(code, mode):
            raise NotFound("cost centre", code, "costCentre")
        return mode

    # --- usage -------------------------------------------------------------------------------

    async def ingest_usage(
        self, principal: Principal | None, records: Sequence[Any],
        batch_size: int = DEFAULT_USAGE_BATCH,
        progress: Callable[[int, int], None] | None = None,
    ) -> UsageIngestResult:
        """Store usage records, each at most once (by record id).

        Policy: per record. A record that is malformed, names an unknown CI or meter, or
        reuses a stored record id with other values is rejected with its index and reason;
        the others are stored. Each batch is one transaction: all of it or none of it.
        A record whose month is closed is billed in the first open month after it, as an
        adjustment of the closed one.
        """
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
        rejected: list[UsageRejection] = []
        good: list[tuple[int, UsageRecordInput]] = []
        for i, raw in enumerate(chunk, start=offset):
            rid = raw.get("recordId") if isinstance(raw, dict) else None
            rid = rid if isinstance(rid, str) else None
            if not isinstance(raw, dict):
                rejected.append(UsageRejection(index=i, record_id=None,
                                               reason="a record must be a JSON object"))
                continue
            if "__error__" in raw:  # a file row the reader could not take
                rejected.append(UsageRejection(index=i, record_id=rid,
                                               reason=str(raw["__error__"])))
                continue
            try:
                good.append((i, UsageRecordInput.model_validate(raw)))
            except ValidationError as e:
                reason = "; ".join(f"{field_path(err['loc'], '')}: "
                                   f"{str(err['msg']).removeprefix('Value error, ')}"
                                   for err in e.errors(include_url=False))
                rejected.append(UsageRejection(index=i, record_id=rid, reason=reason))
        meters = await self.repo.known_meters(sorted({r.meter for _, r in good}))
        cis = await self.repo.known_cis(sorted({r.ci_id for _, r in good}))
        seen: dict[str, UsageRecordInput] = {}
        rows: list[dict[str, Any]] = []
        index_of: dict[str, int] = {}
        dup_in_batch = 0
        latest = utcnow() + MAX_CLOCK_SKEW
        earliest = utcnow() - timedelta(days=self.settings.chargeback_usage_max_age_days)
        for i, r in good:
            if r.at > latest:
                rejected.append(UsageRejection(index=i, record_id=r.record_id,
                                               reason=f"at: {r.at.isoformat()} is in the future"))
            elif r.at < earliest:
                rejected.append(UsageRejection(
                    index=i, record_id=r.record_id,
                    reason=f"at: {r.at.isoformat()} is older than "
                    f"{self.settings.chargeback_usage_max_age_days} days (too old to bill)"))
            elif r.meter not in meters:
                rejected.append(UsageRejection(index=i, record_id=r.record_id,
                                               reason=f"meter: no such meter {r.meter!r}"))
            elif r.ci_id not in cis:
                rejected.append(UsageRejection(index=i, record_id=r.record_id,
                                               reason=f"ciId: no such CI {r.ci_id!r}"))
            elif r.record_id in seen:
                if seen[r.record_id] == r:
                    dup_in_batch += 1
                else:
                    rejected.append(UsageRejection(
                        index=i, record_id=r.record_id,
                        reason="recordId: sent twice in this batch with different values"))
            else:
                seen[r.record_id] = r
                index_of[r.record_id] = i
                rows.append({"recordId": r.record_id, "ciId": r.ci_id, "meter": r.meter,
                             "quantity": format(abs(r.quantity) if r.quantity == 0
                                                else r.quantity, "f"),  # "1000", not "1E+3"
                             "qtyMicros": int(r.quantity * 1_000_000), "at": r.at,
                             "source": r.source, "month": period_of(r.at)})
        if not rows:
            return 0, dup_in_batch, 0, sorted(rejected, key=lambda x: x.index)
        now = utcnow()

        async def work(tx: CountingTx) -> tuple[int, int, int, list[UsageRejection]]:
            months = sorted({row["month"] for row in rows})
            await self.repo.ensure_periods(tx, months, self.currency, now)
            shut = await self.repo.not_open_from(tx, months[0])
            late = 0
            billed: set[str] = set()
            for row in rows:
                target = row["month"]
                while target in shut:
                    target = next_period(target)
                row["billedIn"] = target
                billed.add(target)
                if target != row["month"]:
                    late += 1
            await self.repo.ensure_periods(tx, sorted(billed), self.currency, now)
            out = await self.repo.write_usage(tx, rows, now)
            created = sum(1 for o in out if o["created"])
            same = sum(1 for o in out if not o["created"] and o["same"])
            late_created = sum(1 for o, row in zip(out, rows, strict=True)
                               if o["created"] and row["billedIn"] != row["month"])
            conflicts = [UsageRejection(index=index_of[o["recordId"]], record_id=o["recordId"],
                                        reason="recordId: already stored with other values")
                         for o in out if not o["same"]]
            del late
            return created, same, late_created, conflicts

        created, same, late, conflicts = await self.db.write_tx(work)
        rejected.extend(conflicts)
        return created, same + dup_in_batch, late, sorted(rejected, key=lambda x: x.index)

    # --- periods -----------------------------------------------------------------------------

    async def periods(self) -> list[Period]:
        return await self.repo.periods()

    async def period(self, period: str) -> Period | None:
        return await self.repo.period(check_period(period))

    async def _ensure_period(self, period: str) -> Period:
        check_period(period)

        async def work(tx: CountingTx) -> None:
            await self.repo.ensure_periods(tx, [period], self.currency, utcnow())

        await self.db.write_tx(work)
        found = await self.repo.period(period)
        assert found is not None
        return found

    async def calculate(self, principal: Principal | None, period: str,
                        timings: dict[str, float] | None = None) -> CalculationResult:
        """Recalculate an open period's lines from scratch (manual adjustments stay); a
        closed period is left exactly as it was.

        ``timings``, when given, receives the seconds each stage took ("read": the input
        from Neo4j but the usage; "write": pricing and allocation with the lines written as
        they come, until the last is stored; within it, "read_usage": Neo4j summing the
        usage while fees and pools are calculated, "engine": the time pricing and
        allocating took;
        "result": making the new lines current and the totals read back); the benchmark
        uses it. The replaced lines are deleted afterwards, without waiting for it."""
        self._manage(principal, "calculate charge periods")
        with fewer_collections():
            return await self._calculate(period, timings)

    async def _calculate(self, period: str, timings: dict[str, float] | None
                         ) -> CalculationResult:
        clock = _Stages(timings)
        current = await self._ensure_period(period)
        if current.status is PeriodStatus.CLOSED:
            return await self._result(current, changed=False)
        clock.lap("prepare")
        cards, meters = await self.repo.pricing(period)
        # Neo4j sums the usage from now on, while the rest is read. The engine starts once
        # the usage is in too: decoding it while the engine runs costs the engine more (the
        # two share Python's lock) than the engine would gain by starting earlier.
        reading = asyncio.ensure_future(self.repo.usage_groups(period, cards, meters))
        try:
            data = await self.repo.calculation_input(period, self.currency, usage=False,
                                                     pricing=(cards, meters))
            await asyncio.wait({reading})
            clock.lap("read")
            run = await self.repo.start_run(period)
            if run is None:  # closed meanwhile
                latest = await self.repo.period(period)
                assert latest is not None
                return await self._result(latest, changed=False)
            try:
                calc, lines, total, unallocated = await self._compute_and_write(
                    data, run, reading, timings)
            except BaseException:
                self.repo.discard_run(period, run)
                raise
        finally:
            if not reading.done():
                reading.cancel()
            await asyncio.wait({reading})
            if not reading.cancelled():
                reading.exception()  # seen: an error of the engine or writer is raised
        clock.lap("write")
        done = await self.repo.switch_run(period, run, lines, total, calc.warnings, utcnow())
        if done is None:  # closed while we were computing
            latest = await self.repo.period(period)
            assert latest is not None
            return await self._result(latest, changed=False)
        out = await self._result(done, changed=True, unallocated_minor=unallocated)
        clock.lap("result")
        return out

    async def _compute_and_write(self, data: CalculationInput, run: str,
                                 reading: asyncio.Future[list[UsageGroup]],
                                 timings: dict[str, float] | None
                                 ) -> tuple[Calculation, int, int, int]:
        """Calculate in a worker thread and write the lines as they come: Neo4j stores one
        batch while the next is being priced and allocated."""
        engine = Engine(data)
        now = utcnow()  # an open session counts until now at the latest
        for pool in data.pools:
            if data.period not in pool.amounts:
                continue
            if pool.driver is Driver.SESSIONS:
                ids = sorted(engine.reach(pool))
                data.sessions[pool.code] = await self.repo.sessions_on(ids, data.period)
            elif pool.driver is Driver.SESSION_HOURS:
                ids = sorted(engine.reach(pool))
                seconds = await self.repo.session_seconds_on(ids, data.period, now)
                data.pool_weights[pool.code] = {u: Fraction(n, 3600)
                                                for u, n in seconds.items()}
            elif pool.driver is Driver.ROLE_USERS and pool.role is not None:
                data.pool_weights[pool.code] = {
                    u: Fraction(1) for u in await self.repo.role_holders(pool.role, data.period)}
        loop = asyncio.get_running_loop()
        # A few chunks ahead at most: when Neo4j writes slower than the engine calculates,
        # the engine waits rather than the lines piling up in memory.
        queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(LINE_CHUNKS_AHEAD)
        stop = False
        engine_s = usage_s = 0.0
        started = time.perf_counter()
        read_at = [started]
        if not reading.done():
            reading.add_done_callback(lambda _: read_at.__setitem__(0, time.perf_counter()))

        def read_usage() -> list[UsageGroup]:
            nonlocal usage_s
            t = time.perf_counter()
            out = asyncio.run_coroutine_threadsafe(_result_of(reading), loop).result()
            usage_s = time.perf_counter() - t
            return out

        def sink(rows: list[dict[str, Any]] | None) -> None:
            if stop:
                raise _Abandoned
            asyncio.run_coroutine_threadsafe(queue.put(rows), loop).result()

        def work() -> Calculation:
            nonlocal engine_s
            t = time.perf_counter()
            try:
                return engine.run(sink, LINE_CHUNK, usage=read_usage)
            finally:
                engine_s = time.perf_counter() - t
                if not stop:
                    sink(None)

        calculating = asyncio.ensure_future(asyncio.to_thread(work))

        unallocated = 0

        async def chunks() -> AsyncIterator[list[dict[str, Any]]]:
            nonlocal unallocated
            while (chunk := await queue.get()) is not None:
                unallocated += sum(r["amountMinor"] for r in chunk
                                   if r["kind"] == LineKind.UNALLOCATED.value)
                yield chunk

        try:
            lines, total = await self.repo.write_run(run, chunks())
            calc = await calculating
        finally:
            stop = True
            while not calculating.done():  # let a sink waiting for room go on, and stop
                while not queue.empty():
                    queue.get_nowait()
                await asyncio.wait({calculating}, timeout=0.05)
            if not calculating.cancelled():
                calculating.exception()  # seen: the writer's own error is the one raised
            if not reading.done():
                reading.cancel()
            await asyncio.wait({reading})
            if not reading.cancelled():
                reading.exception()
        if timings is not None:
            timings["engine"] = timings.get("engine", 0.0) + engine_s - usage_s
            timings["read_usage"] = read_at[0] - started
        return calc, lines, total, unallocated

    async def settle(self) -> None:
        """Wait for the deletion of replaced lines still going on (before shutting down)."""
        await settle()

    async def _result(self, period: Period, changed: bool,
                      unallocated_minor: int | None = None) -> CalculationResult:
        """Totals of a period; a fresh calculation passes its unallocated cents (manual
        adjustments are never unallocated), a stored period has them summed by Neo4j."""
        if unallocated_minor is None or period.total is None:
            totals = {r["key"]: int(r["minor"]) for r in
                      await self.repo.totals("kind", period.id, None, None)}
            total = sum(totals.values())
            unallocated = totals.get(LineKind.UNALLOCATED.value, 0)
        else:
            total = int(period.total / CENT)
            unallocated = unallocated_minor
        return CalculationResult(
            period=period, changed=changed, lines=period.line_count or 0,
            total=_money(total), allocated=_money(total - unallocated),
            unallocated=_money(unallocated), warnings=period.warnings)

    async def close(self, principal: Principal | None, period: str) -> CalculationResult:
        """Calculate the period one last time and freeze it. Usage arriving while it closes
        is billed in the next open period; a closed period never changes again."""
        p = self._manage(principal, "close charge periods")
        current = await self._ensure_period(period)
        if current.status is PeriodStatus.CLOSED:
            return await self._result(current, changed=False)
        opened_before = [x.id for x in await self.repo.periods()
                         if x.id < period and x.status is PeriodStatus.OPEN]
        if opened_before:
            raise DomainError.single("period", f"close {opened_before[0]} first: periods "
                                     "close in order", code="CONFLICT")
        if await self.repo.set_status(period, ["OPEN"], "CLOSING") is None:
            raise DomainError.single("period", f"period {period} is already closing",
                                     code="CONFLICT")
        try:
            await self.calculate(p, period)
            checksum = hashlib.sha256(
                "\n".join(await self.repo.checksum_rows(period)).encode()).hexdigest()
            frozen = await self.repo.freeze(period, utcnow(), p.user, checksum)
        except BaseException:
            await self.repo.set_status(period, ["CLOSING"], "OPEN")
            raise
        assert frozen is not None
        # Frozen: no calculation writes here any more; lines of runs that were replaced or
        # left half written (a calculation that failed) go now.
        await settle()
        await self.repo.sweep_runs(period)
        return await self._result(frozen, changed=True)

    async def adjust(self, principal: Principal | None, data: dict[str, Any]) -> ChargeLine:
        """A manual correction booked in an open period, referencing what it corrects."""
        p = self._manage(principal, "book adjustments")
        adj = validate(AdjustmentInput, data)
        check_period(adj.period, "input.period")
        ccs = await self.repo.cost_centres()
        if adj.cost_centre not in ccs:
            raise NotFound("cost centre", adj.cost_centre, "input.costCentre")
        corrected = None
        if adj.corrects_line:
            corrected = await self.repo.line(adj.corrects_line)
            if corrected is None:
                raise NotFound("charge line", adj.corrects_line, "input.correctsLine")
        current = await self._ensure_period(adj.period)
        if current.status is PeriodStatus.CLOSED:
            raise DomainError.single("input.period", f"period {adj.period} is closed: book the "
                                     "adjustment in an open period", code="CONFLICT")
        start, end = period_bounds(adj.period)
        cents = int(adj.amount / CENT)
        row: dict[str, Any] = {
            "id": f"{adj.period}:adj:{uuid.uuid4().hex[:20]}", "period": adj.period,
            "seq": 10**9, "kind": LineKind.ADJUSTMENT.value, "amountMinor": cents,
            "amount": str(adj.amount.quantize(CENT)), "currency": self.currency,
            "source": f"adjustment:{p.user}", "description": adj.reason,
            "costCentre": adj.cost_centre, "invoiced": ccs[adj.cost_centre].mode
            is BillingMode.CHARGEBACK, "chargeStart": start, "chargeEnd": end,
            "manual": True, "path": [], "createdBy": p.user, "createdAt": utcnow(),
        }
        if corrected:
            row |= {"correctsLine": corrected.id, "adjusts": corrected.period}
        if not await self.repo.add_adjustment(adj.period, row):
            raise DomainError.single("input.period", f"period {adj.period} closed meanwhile",
                                     code="CONFLICT")
        line = await self.repo.line(row["id"])
        assert line is not None
        return line

    # --- reading cost ------------------------------------------------------------------------

    async def scope(self, principal: Principal | None) -> CostScope:
        if principal is None:
            require_permission(principal, Permission.CHARGEBACK_READ, "read cost")
        assert principal is not None
        if has_permission(principal, Permission.CHARGEBACK_READ_ALL):
            return CostScope(None, None)
        if has_permission(principal, Permission.CHARGEBACK_READ):
            tops = await self.repo.finance_scope(principal.user)
            ccs = await self.repo.cost_centres()
            return CostScope(sorted(_with_descendants(tops, ccs)), None)
        return CostScope(None, principal.user)

    async def report(self, principal: Principal | None, period: str,
                     dimension: ReportDimension) -> Report:
        scope = await self.scope(principal)
        found = await self.repo.period(check_period(period))
        if found is None:
            raise NotFound("charge period", period, "period")
        if not scope.everything:  # the period's own totals cover cost outside the scope
            found = found.model_copy(update={"total": None, "line_count": None,
                                             "checksum": None, "warnings": []})
        rows = await self.repo.totals(_REPORT_PROPS[dimension], period, scope.codes, scope.user)
        out = [ReportRow(key=r["key"], name=r["name"], amount=_money(r["minor"]),
                         rolled_up=_money(r["minor"]), invoiced=_money(r["invoicedMinor"]),
                         lines=int(r["lines"])) for r in rows]
        if dimension is ReportDimension.COST_CENTRE:
            out = _roll_up(out, await self.repo.cost_centres())
        total = sum((r.amount for r in out), Decimal(0))
        invoiced = sum((r.invoiced for r in out), Decimal(0))
        return Report(period=found, dimension=dimension, rows=out, total=total,
                      invoiced=invoiced, currency=found.currency)

    async def recovery(self, principal: Principal | None, period: str
                       ) -> list[ServiceRecovery]:
        """Over/under-recovery of each service recovered through the prices of its
        catalogue items: the cost booked to it in the period against its subscriptions'
        fees. Finance only (finance: the services of their cost centres; finance_all and
        admin: all); it is never booked as lines."""
        if not has_permission(principal, Permission.CHARGEBACK_READ_ALL):
            # No finance role: this is not their own cost but the services'.
            require_permission(principal, Permission.CHARGEBACK_READ, "read cost recovery")
        scope = await self.scope(principal)
        found = await self.repo.period(check_period(period))
        if found is None:
            raise NotFound("charge period", period, "period")
        return await self.repo.recovery(period, scope.codes)

    async def trend(self, principal: Principal | None, first: str, last: str,
                    dimension: ReportDimension) -> list[Report]:
        """The same report for every period from ``first`` to ``last`` (at most 24)."""
        check_period(first, "from")
        check_period(last, "to")
        if last < first:
            raise DomainError.single("to", "must not be before from")
        months, at = [], first
        while at <= last:
            months.append(at)
            if len(months) > MAX_TREND_PERIODS:
                raise DomainError.single("to", f"at most {MAX_TREND_PERIODS} periods")
            at = next_period(at)
        known = {p.id for p in await self.repo.periods()}
        return [await self.report(principal, m, dimension) for m in months if m in known]

    async def lines(self, principal: Principal | None, period: str, filters: dict[str, Any],
                    first: int, after: str | None) -> tuple[list[ChargeLine], bool]:
        scope = await self.scope(principal)
        check_period(period)
        if not 1 <= first <= MAX_LINES_PAGE:
            raise DomainError.single("first", f"must be between 1 and {MAX_LINES_PAGE}")
        cursor = None
        if after:
            seq, _, ident = after.partition("|")
            if not seq.isdigit() or not ident:
                raise DomainError.single("after", "not a cursor this field gave")
            cursor = (int(seq), ident)
        allowed = {"costCentres", "forUser", "service", "item", "meter", "kind"}
        params = {k: filters.get(k) for k in allowed}
        found = await self.repo.lines(period, scope.codes, scope.user, params, first + 1,
                                      cursor)
        return found[:first], len(found) > first

    async def line(self, principal: Principal | None, line_id: str) -> ChargeLine | None:
        scope = await self.scope(principal)
        line = await self.repo.line(line_id)
        if line is None or not _visible(line, scope):
            return None
        return line

    async def export_lines(self, principal: Principal | None, period: str,
                           page: int = 10_000) -> tuple[Period, CostScope, Any]:
        """The period, the caller's scope and an async iterator of its lines in order."""
        scope = await self.scope(principal)
        found = await self.repo.period(check_period(period))
        if found is None:
            raise NotFound("charge period", period, "period")

        async def pages() -> Any:
            skip = 0
            while True:
                chunk = await self.repo.all_lines(period, scope.codes, scope.user, skip, page)
                for line in chunk:
                    yield line
                if len(chunk) < page:
                    return
                skip += page

        return found, scope, pages()

    async def cost_centre_names(self) -> dict[str, str]:
        return {c.code: c.name for c in (await self.repo.cost_centres()).values()}


async def _result_of(task: asyncio.Future[list[UsageGroup]]) -> list[UsageGroup]:
    return await task


class _Abandoned(Exception):
    """The lines' writer failed: the calculation stops."""


class _Stages:
    """Seconds per stage into ``out`` (nothing when ``out`` is None)."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.out is not None:
            now = time.perf_counter()
            self.out[stage] = self.out.get(stage, 0.0) + now - self.t
            self.t = now


def _money(minor: int | None) -> Decimal:
    return (Decimal(minor or 0) * CENT).quantize(CENT)


def _visible(line: ChargeLine, scope: CostScope) -> bool:
    if scope.everything:
        return True
    if scope.codes is not None:
        return line.cost_centre in scope.codes
    return line.user == scope.user


def _with_descendants(tops: set[str], ccs: dict[str, CostCentreRow]) -> set[str]:
    children: dict[str, list[str]] = {}
    for c in ccs.values():
        if c.parent:
            children.setdefault(c.parent, []).append(c.code)
    out: set[str] = set()
    stack = list(tops)
    while stack:
        code = stack.pop()
        if code in out:
            continue
        out.add(code)
        stack.extend(children.get(code, ()))
    return out


def _roll_up(rows: list[ReportRow], ccs: dict[str, CostCentreRow]) -> list[ReportRow]:
    """Cost-centre rows with their ancestors, each with the total of itself and below."""
    own = {r.key: r for r in rows}
    rolled: dict[str | None, Decimal] = {}
    for r in rows:
        rolled[r.key] = rolled.get(r.key, Decimal(0)) + r.amount
        seen = {r.key}
        parent = ccs[r.key].parent if r.key in ccs else None
        while parent and parent not in seen:
            seen.add(parent)
            rolled[parent] = rolled.get(parent, Decimal(0)) + r.amount
            parent = ccs[parent].parent if parent in ccs else None
    out = []
    for key in sorted(rolled, key=lambda k: (k is None, k or "")):
        cc = ccs.get(key) if key else None
        base = own.get(key)
        out.append(ReportRow(
            key=key, name=cc.name if cc else (base.name if base else None),
            amount=base.amount if base else Decimal("0.00"), rolled_up=rolled[key],
            invoiced=base.invoiced if base else Decimal("0.00"),
            lines=base.lines if base else 0, parent=cc.parent if cc else None,
            billing_mode=cc.mode if cc else None))
    return out


def utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC)


__all__ = ["ChargebackService", "CostScope", "FieldError"]
