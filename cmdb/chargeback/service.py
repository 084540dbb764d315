"""Use cases of chargeback: meters, rate cards, pools, usage ingestion, periods, reports.

Who may do what:
- ``chargeback:manage`` (finance_all, admin): meters, rate cards, pools and their costs,
  billing modes, calculating and closing periods, adjustments;
- ``chargeback:usage`` (metering integrations): send usage records;
- ``chargeback:read-all`` (finance_all, admin): every line; ``chargeback:read`` (finance):
  lines of the cost centres they manage or belong to, and those below; everyone else: their
  own lines (the cost of their subscriptions and desktop sessions).

Each group of use cases lives in its own module (``rates``, ``usage``, ``periods``,
``calculation``, ``reports``); ``ChargebackService`` is all of them together.
"""

from __future__ import annotations

from cmdb.chargeback.base import parse_period
from cmdb.chargeback.calculation import Calculating
from cmdb.chargeback.models import CalculationResult, ChargePeriod
from cmdb.chargeback.rates import RatesAndPools
from cmdb.chargeback.reports import MAX_LINES_PAGE, CostScope, Reports
from cmdb.chargeback.usage import UsageIngest
from cmdb.core.collector import fewer_collections
from cmdb.identity.principal import Principal

LINE_CHUNK = 2_000  # lines the engine hands to the writer at a time (about)
LINE_CHUNKS_AHEAD = 8  # chunks calculated but not yet written, at most


class ChargebackService(RatesAndPools, UsageIngest, Calculating, Reports):
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
        return await self._recalculate(parse_period(period), timings)

    async def _recalculate(self, period: ChargePeriod,
                           timings: dict[str, float] | None = None) -> CalculationResult:
        with fewer_collections():
            return await self._calculate(period, timings, LINE_CHUNK, LINE_CHUNKS_AHEAD)

    async def close(self, principal: Principal | None, period: str) -> CalculationResult:
        """Calculate the period one last time and freeze it. Usage arriving while it closes
        is billed in the next open period; a closed period never changes again."""
        p = self._manage(principal, "close charge periods")
        return await self._close(p, parse_period(period))


__all__ = ["MAX_LINES_PAGE", "ChargebackService", "CostScope"]
