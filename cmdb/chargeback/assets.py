"""What an asset costs in a month: straight-line daily depreciation and its support contract.

Pure functions on dates and exact fractions, so that every figure can be reproduced in a
spreadsheet (``docs/chargeback.md``, "Asset-based pools"):

- the *depreciation span* runs from the purchase date (included) to the purchase date plus
  ``months`` calendar months (excluded); adding months keeps the day of the month, or takes the
  month's last day when it is shorter (31 January + 1 month = 28 or 29 February);
- the depreciable amount (purchase price - residual value) accrues evenly over the days of the
  span: a month's depreciation = depreciable x (days of the month inside the span) / (days in
  the span);
- support: monthly fee x (days of the month inside [support start, support end)) / (days in
  the month), the end excluded and an open end running for ever;
- nothing is rounded here: a pool's month is the exact sum over its assets, rounded once to
  the cent (half to even, like every charge).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction
from typing import Any

from cmdb.chargeback.models import CENT, AssetCost, AssetCostItem, CostPool


@dataclass(frozen=True)
class AssetTerms:
    """The figures of an asset record that its cost depends on."""

    purchase_price: Decimal
    purchase_date: date
    depreciation_months: int
    residual_value: Decimal = Decimal(0)
    support_monthly: Decimal = Decimal(0)
    support_start: date | None = None  # None: the purchase date
    support_end: date | None = None  # excluded; None: open

    @property
    def depreciable(self) -> Decimal:
        return self.purchase_price - self.residual_value

    @property
    def depreciation_end(self) -> date:
        return add_months(self.purchase_date, self.depreciation_months)


def add_months(d: date, months: int) -> date:
    """``d`` plus calendar months: the same day, or the last day of a shorter month."""
    index = d.year * 12 + d.month - 1 + months
    year, month = divmod(index, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return date(year, month + 1, min(d.day, last))


def month_bounds(period: str) -> tuple[date, date]:
    """First day of the month ``YYYY-MM`` and first day of the next."""
    year, month = int(period[:4]), int(period[5:7])
    start = date(year, month, 1)
    return start, add_months(start, 1)


def overlap_days(a_start: date, a_end: date, b_start: date, b_end: date | None) -> int:
    """Days in both [a_start, a_end) and [b_start, b_end) (b_end None: open)."""
    start = max(a_start, b_start)
    end = a_end if b_end is None else min(a_end, b_end)
    return max((end - start).days, 0)


def month_depreciation(terms: AssetTerms, period: str) -> Fraction:
    """The exact depreciation of the month: depreciable x days inside the span / span days."""
    span_end = terms.depreciation_end
    span = (span_end - terms.purchase_date).days
    start, end = month_bounds(period)
    days = overlap_days(start, end, terms.purchase_date, span_end)
    if not days or not terms.depreciable:
        return Fraction(0)
    return Fraction(terms.depreciable) * days / span


def month_support(terms: AssetTerms, period: str) -> Fraction:
    """The exact support cost of the month: monthly fee x covered days / days in the month."""
    if not terms.support_monthly:
        return Fraction(0)
    start, end = month_bounds(period)
    covered = overlap_days(start, end, terms.support_start or terms.purchase_date,
                           terms.support_end)
    return Fraction(terms.support_monthly) * covered / (end - start).days


def month_cost(terms: AssetTerms, period: str) -> tuple[Fraction, Fraction]:
    """(depreciation, support) of the month, exact."""
    return month_depreciation(terms, period), month_support(terms, period)


def nominal_monthly_depreciation(terms: AssetTerms) -> Decimal:
    """The depreciable amount over the months, to the cent: what an average month carries
    (a month's own figure follows its days)."""
    return cents(Fraction(terms.depreciable) / terms.depreciation_months)


def book_value(terms: AssetTerms, at: date) -> Decimal:
    """The value at the start of ``at``, to the cent: the purchase price less what accrued
    over the days of the span before ``at`` (the purchase price until the purchase date, the
    residual value from the end of the span)."""
    span_end = terms.depreciation_end
    span = (span_end - terms.purchase_date).days
    elapsed = overlap_days(terms.purchase_date, span_end, date.min, at)
    return cents(Fraction(terms.purchase_price) - Fraction(terms.depreciable) * elapsed / span)


def cents(x: Fraction | Decimal) -> Decimal:
    """Rounded once to the cent, half to even, exactly (no intermediate rounding)."""
    hundredths = Fraction(x) * 100
    whole = round(hundredths)  # Fraction rounds half to even, exactly
    return Decimal(whole) * CENT


def decimal_text(x: Fraction, places: int = 6) -> Decimal:
    """An exact amount shown to ``places`` decimals (half to even), for explanations."""
    q = Decimal(1).scaleb(-places)
    return (Decimal(x.numerator) / Decimal(x.denominator)).quantize(q, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class PoolAsset:
    """An asset record as a pool reads it: the CI it is on, and its terms."""

    ci_id: str
    ci_name: str
    asset_tag: str | None
    currency: str
    terms: AssetTerms


def pool_month(assets: list[PoolAsset], period: str
               ) -> tuple[Fraction, list[tuple[PoolAsset, Fraction, Fraction]]]:
    """The exact cost of a pool's assets in the month, and each asset's (depreciation,
    support) where it has any, by CI name."""
    total = Fraction(0)
    parts = []
    for a in sorted(assets, key=lambda a: (a.ci_name, a.ci_id)):
        dep, sup = month_cost(a.terms, period)
        if dep or sup:
            parts.append((a, dep, sup))
            total += dep + sup
    return total, parts


def pool_asset(row: list[Any]) -> PoolAsset:
    """A ``POOL_ASSETS`` row as the asset arithmetic takes it."""
    (ci, name, tag, currency, price, purchase, months, residual, support, start, end) = row
    bought = date.fromisoformat(purchase)
    return PoolAsset(ci_id=ci, ci_name=name, asset_tag=tag, currency=currency,
                     terms=AssetTerms(
                         purchase_price=Decimal(price), purchase_date=bought,
                         depreciation_months=int(months),
                         residual_value=Decimal(residual or "0"),
                         support_monthly=Decimal(support or "0"),
                         support_start=date.fromisoformat(start) if start else bought,
                         support_end=date.fromisoformat(end) if end else None))


def asset_cost(pool: CostPool, period: str, assets: list[PoolAsset]) -> AssetCost:
    """What the pool's assets (those in its currency) cost in the period, rounded once."""
    total, parts = pool_month([a for a in assets if a.currency == pool.currency], period)
    return AssetCost(
        period=period, amount=cents(total), currency=pool.currency, assets=len(parts),
        items=[AssetCostItem(ci_id=a.ci_id, ci_name=a.ci_name, asset_tag=a.asset_tag,
                             depreciation=decimal_text(dep), support=decimal_text(sup))
               for a, dep, sup in parts],
        overridden_by=pool.amounts.get(period))
