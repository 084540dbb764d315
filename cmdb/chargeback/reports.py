"""Reading cost: who may read which lines (``CostScope``), reports by a dimension with the
cost-centre tree rolled up, trends over periods, cost recovery of services, lines page by
page and the export of a period's lines.

``chargeback:read-all`` (finance_all, admin): every line; ``chargeback:read`` (finance):
lines of the cost centres they manage or belong to, and those below; everyone else: their
own lines (the cost of their subscriptions and desktop sessions).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cmdb.chargeback.base import ServiceBase, money, parse_period
from cmdb.chargeback.models import (
    ChargeLine,
    ChargePeriod,
    CostCentreRow,
    Period,
    Report,
    ReportDimension,
    ReportRow,
    ServiceRecovery,
)
from cmdb.core.models import DomainError, NotFound
from cmdb.identity.principal import Permission, Principal, has_permission, require_permission

MAX_LINES_PAGE = 1000
MAX_TREND_PERIODS = 24
_REPORT_PROPS = {ReportDimension.COST_CENTRE: "costCentre", ReportDimension.USER: "user",
                 ReportDimension.SERVICE: "serviceId",
                 ReportDimension.CATALOGUE_ITEM: "itemId", ReportDimension.METER: "meter",
                 ReportDimension.KIND: "kind"}
_LINE_FILTERS = ("costCentres", "forUser", "service", "item", "meter", "kind")


@dataclass(frozen=True)
class CostScope:
    """Which lines a caller may read: every line, a set of cost centres, or their own."""

    codes: list[str] | None
    user: str | None

    @property
    def everything(self) -> bool:
        return self.codes is None and self.user is None

    def sees(self, line: ChargeLine) -> bool:
        if self.everything:
            return True
        if self.codes is not None:
            return line.cost_centre in self.codes
        return line.user == self.user


class Reports(ServiceBase):
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

    async def _existing(self, period: ChargePeriod) -> Period:
        found = await self.repo.period(period)
        if found is None:
            raise NotFound("charge period", period.id, "period")
        return found

    async def report(self, principal: Principal | None, period: str,
                     dimension: ReportDimension) -> Report:
        scope = await self.scope(principal)
        return await self._report(scope, parse_period(period), dimension)

    async def _report(self, scope: CostScope, period: ChargePeriod,
                      dimension: ReportDimension) -> Report:
        found = await self._existing(period)
        if not scope.everything:  # the period's own totals cover cost outside the scope
            found = found.model_copy(update={"total": None, "line_count": None,
                                             "checksum": None, "warnings": []})
        rows = await self.repo.totals(_REPORT_PROPS[dimension], period, scope.codes, scope.user)
        out = [ReportRow(key=r["key"], name=r["name"], amount=money(r["minor"]),
                         rolled_up=money(r["minor"]), invoiced=money(r["invoicedMinor"]),
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
        month = parse_period(period)
        await self._existing(month)
        return await self.repo.recovery(month, scope.codes)

    async def trend(self, principal: Principal | None, first: str, last: str,
                    dimension: ReportDimension) -> list[Report]:
        """The same report for every period from ``first`` to ``last`` (at most 24)."""
        start, end = parse_period(first, "from"), parse_period(last, "to")
        if end < start:
            raise DomainError.single("to", "must not be before from")
        months, at = [], start
        while at <= end:
            months.append(at)
            if len(months) > MAX_TREND_PERIODS:
                raise DomainError.single("to", f"at most {MAX_TREND_PERIODS} periods")
            at = at.next()
        known = {p.id for p in await self.repo.periods()}
        wanted = [m for m in months if m.id in known]
        if not wanted:
            return []
        scope = await self.scope(principal)
        return [await self._report(scope, m, dimension) for m in wanted]

    async def lines(self, principal: Principal | None, period: str, filters: dict[str, Any],
                    first: int, after: str | None) -> tuple[list[ChargeLine], bool]:
        scope = await self.scope(principal)
        month = parse_period(period)
        if not 1 <= first <= MAX_LINES_PAGE:
            raise DomainError.single("first", f"must be between 1 and {MAX_LINES_PAGE}")
        cursor = None
        if after:
            seq, _, ident = after.partition("|")
            if not seq.isdigit() or not ident:
                raise DomainError.single("after", "not a cursor this field gave")
            cursor = (int(seq), ident)
        params = {k: filters.get(k) for k in _LINE_FILTERS}
        found = await self.repo.lines(month, scope.codes, scope.user, params, first + 1,
                                      cursor)
        return found[:first], len(found) > first

    async def line(self, principal: Principal | None, line_id: str) -> ChargeLine | None:
        scope = await self.scope(principal)
        line = await self.repo.line(line_id)
        if line is None or not scope.sees(line):
            return None
        return line

    async def export_lines(self, principal: Principal | None, period: str,
                           page: int = 10_000
                           ) -> tuple[Period, CostScope, AsyncIterator[ChargeLine]]:
        """The period, the caller's scope and an async iterator of its lines in order."""
        scope = await self.scope(principal)
        month = parse_period(period)
        found = await self._existing(month)

        async def pages() -> AsyncIterator[ChargeLine]:
            skip = 0
            while True:
                chunk = await self.repo.all_lines(month, scope.codes, scope.user, skip, page)
                for line in chunk:
                    yield line
                if len(chunk) < page:
                    return
                skip += page

        return found, scope, pages()

    async def cost_centre_names(self) -> dict[str, str]:
        return {c.code: c.name for c in (await self.repo.cost_centres()).values()}


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
