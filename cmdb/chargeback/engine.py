"""One period's charge lines from data already read in bulk (``snapshot.CalculationInput``).

Neo4j does the heavy reading (usage summed per CI, meter and rate card; the graph as edge
lists); this module prices, allocates and rounds, and returns the lines as node properties.

Where cost goes (documented in ``docs/chargeback.md``):
- a subscription's fees go to the subscription (its cost centre and consumer);
- a CI's usage goes to whoever consumes the CI: the subscriptions that provisioned it, or else
  its direct consumers in the graph (what depends on it, runs on it, uses it; a cluster's or
  pool's members) other than CIs that subscriptions provisioned, each an equal share, level
  by level, until a *payer* is reached: a subscription, a business service (its own cost
  centre) or a user;
- a subscription *for* a service pays that service's cost only when the service recovers its
  cost from its consumers (``costRecovery`` ``CONSUMERS``); by default (``OWNER``) a business
  service keeps its cost, on its own cost centre, whoever subscribes to it;
- a subscription's share of a pool is pro-rated by the days it was active in the month (the
  rest of its CIs' share is unallocated);
- a cost pool is first shared among its *driver holders* under the pool's CIs by the driver
  (vCPUs, GB, desktop sessions or their hours in the month, equal split, a CI attribute, a
  meter's usage in the month), or among payers directly (a role's users, subscriptions by
  active days, cost centres by fixed percentages); then each holder's share travels on like
  usage, equally or, when the pool names an ``onward`` attribute, by the consumers' values;
- cost that reaches no payer, and the idle share of a pool with a capacity, is unallocated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

from cmdb.chargeback.allocation import Share, to_cents
from cmdb.chargeback.lines import SUB
from cmdb.chargeback.models import HOLDER_FIELDS, CostCentreRow, LineKind, UsageGroup
from cmdb.chargeback.pool_shares import PoolSharing
from cmdb.chargeback.snapshot import CalculationInput, ItemRow, SubscriptionRow
from cmdb.chargeback.usage_lines import UsagePricing


@dataclass
class Calculation:
    rows: list[dict[str, Any]]
    warnings: list[str]


class Engine(PoolSharing, UsagePricing):
    """One period's lines: fees, then pools, then usage (``run``)."""

    def fees(self) -> None:
        days_in_period = self.days_in_period
        for s in self.d.subscriptions:
            if s.currency != self.d.currency:
                self.warnings.append(f"subscription {s.id} is priced in {s.currency}, the "
                                     f"period in {self.d.currency}: its fees are left out")
                continue
            payer = SUB + s.id
            days = self.active_days(s)
            share = Share(Fraction(1), (payer,))
            base = {"quantity": str(days), "unit": "day", "itemId": s.item_id}
            if s.monthly and days:
                exact = Fraction(s.monthly) * days / days_in_period
                self._lines(LineKind.RECURRING_FEE, to_cents(exact), f"subscription:{s.id}",
                            f"{s.item_name}: {s.monthly} {s.currency} a month, {days} of "
                            f"{days_in_period} days", base
                            | {"unitPrice": str((s.monthly / days_in_period).quantize(
                                Decimal("0.000001")))},
                            [(payer, share, (payer,), "")])
            self._flush()
            if s.one_off and self.start <= s.start < self.end:
                self._lines(LineKind.ONE_OFF_FEE, to_cents(s.one_off), f"order:{s.id}",
                            f"{s.item_name}: one-off fee", {"quantity": "1", "unit": "order",
                                                            "unitPrice": str(s.one_off)},
                            [(payer, share, (payer,), "")])
            self._flush()

    def run(self, sink: Callable[[list[dict[str, Any]]], None] | None = None,
            chunk: int = 2_000,
            usage: Callable[[], list[UsageGroup]] | None = None) -> Calculation:
        """All lines of the period: fees, pools, the pools shared by usage (METER) once the
        usage is read, then usage. ``sink``, when given, receives
        them as they are final, in order, about ``chunk`` at a time (so they can be written
        while the rest is calculated), and the result's rows are then empty; ``usage``,
        when given, is called for the usage groups once fees and pools are done (so they
        can be read meanwhile)."""
        self._sink, self._chunk = sink, chunk
        self.fees()
        self.pools()
        if usage is not None:
            self.d.usage = usage()
        self.pools(after_usage=True)
        self.usage()
        self._flush(final=True)
        return Calculation(self.rows, self.warnings)


__all__ = [
    "HOLDER_FIELDS",
    "Calculation",
    "CalculationInput",
    "CostCentreRow",
    "Engine",
    "ItemRow",
    "SubscriptionRow",
    "UsageGroup",
]
