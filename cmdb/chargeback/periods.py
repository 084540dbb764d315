"""Charge periods: opened when first needed, their totals, manual adjustments booked in an
open one, and closing (``close``: calculated one last time, then frozen with a checksum)."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from cmdb.chargeback.base import ServiceBase, money, parse_period
from cmdb.chargeback.inputs import AdjustmentInput
from cmdb.chargeback.models import (
    CENT,
    BillingMode,
    CalculationResult,
    ChargeLine,
    ChargePeriod,
    LineKind,
    Period,
    PeriodStatus,
)
from cmdb.chargeback.repository import settle
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, NotFound
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx
from cmdb.identity.principal import Principal


class Periods(ServiceBase):
    async def periods(self) -> list[Period]:
        return await self.repo.periods()

    async def period(self, period: str) -> Period | None:
        return await self.repo.period(parse_period(period))

    async def _ensure_period(self, period: ChargePeriod) -> Period:
        async def work(tx: CountingTx) -> None:
            await self.repo.ensure_periods(tx, [period], self.currency, utcnow())

        await self.db.write_tx(work)
        found = await self.repo.period(period)
        assert found is not None
        return found

    async def _recalculate(self, period: ChargePeriod) -> CalculationResult:
        """Recalculate an open period's lines (the service's calculation)."""
        raise NotImplementedError

    async def _close(self, principal: Principal, period: ChargePeriod) -> CalculationResult:
        """Calculate the period one last time and freeze it. Usage arriving while it closes
        is billed in the next open period; a closed period never changes again."""
        current = await self._ensure_period(period)
        if current.status is PeriodStatus.CLOSED:
            return await self._result(period, current, changed=False)
        opened_before = [x.id for x in await self.repo.periods()
                         if x.id < period.id and x.status is PeriodStatus.OPEN]
        if opened_before:
            raise DomainError.single("period", f"close {opened_before[0]} first: periods "
                                     "close in order", code="CONFLICT")
        if await self.repo.set_status(period, ["OPEN"], "CLOSING") is None:
            raise DomainError.single("period", f"period {period} is already closing",
                                     code="CONFLICT")
        try:
            await self._recalculate(period)
            checksum = hashlib.sha256(
                "\n".join(await self.repo.checksum_rows(period)).encode()).hexdigest()
            frozen = await self.repo.freeze(period, utcnow(), principal.user, checksum)
        except BaseException:
            await self.repo.set_status(period, ["CLOSING"], "OPEN")
            raise
        assert frozen is not None
        # Frozen: no calculation writes here any more; lines of runs that were replaced or
        # left half written (a calculation that failed) go now.
        await settle()
        await self.repo.sweep_runs(period)
        return await self._result(period, frozen, changed=True)

    async def adjust(self, principal: Principal | None, data: dict[str, Any]) -> ChargeLine:
        """A manual correction booked in an open period, referencing what it corrects."""
        p = self._manage(principal, "book adjustments")
        adj = validate(AdjustmentInput, data)
        month = parse_period(adj.period, "input.period")
        ccs = await self.repo.cost_centres()
        if adj.cost_centre not in ccs:
            raise NotFound("cost centre", adj.cost_centre, "input.costCentre")
        corrected = None
        if adj.corrects_line:
            corrected = await self.repo.line(adj.corrects_line)
            if corrected is None:
                raise NotFound("charge line", adj.corrects_line, "input.correctsLine")
        current = await self._ensure_period(month)
        if current.status is PeriodStatus.CLOSED:
            raise DomainError.single("input.period", f"period {adj.period} is closed: book the "
                                     "adjustment in an open period", code="CONFLICT")
        row: dict[str, Any] = {
            "id": f"{adj.period}:adj:{uuid.uuid4().hex[:20]}", "period": adj.period,
            "seq": 10**9, "kind": LineKind.ADJUSTMENT.value,
            "amountMinor": int(adj.amount / CENT),
            "amount": str(adj.amount.quantize(CENT)), "currency": self.currency,
            "source": f"adjustment:{p.user}", "description": adj.reason,
            "costCentre": adj.cost_centre, "invoiced": ccs[adj.cost_centre].mode
            is BillingMode.CHARGEBACK, "chargeStart": month.start, "chargeEnd": month.end,
            "manual": True, "path": [], "createdBy": p.user, "createdAt": utcnow(),
        }
        if corrected:
            row |= {"correctsLine": corrected.id, "adjusts": corrected.period}
        if not await self.repo.add_adjustment(month, row):
            raise DomainError.single("input.period", f"period {adj.period} closed meanwhile",
                                     code="CONFLICT")
        line = await self.repo.line(row["id"])
        assert line is not None
        return line

    async def settle(self) -> None:
        """Wait for the deletion of replaced lines still going on (before shutting down)."""
        await settle()

    async def _result(self, month: ChargePeriod, period: Period, changed: bool,
                      unallocated_minor: int | None = None) -> CalculationResult:
        """Totals of a period; a fresh calculation passes its unallocated cents (manual
        adjustments are never unallocated), a stored period has them summed by Neo4j."""
        if unallocated_minor is None or period.total is None:
            totals = {r["key"]: int(r["minor"]) for r in
                      await self.repo.totals("kind", month, None, None)}
            total = sum(totals.values())
            unallocated = totals.get(LineKind.UNALLOCATED.value, 0)
        else:
            total = int(period.total / CENT)
            unallocated = unallocated_minor
        return CalculationResult(
            period=period, changed=changed, lines=period.line_count or 0,
            total=money(total), allocated=money(total - unallocated),
            unallocated=money(unallocated), warnings=period.warnings)
