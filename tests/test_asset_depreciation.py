"""Straight-line daily depreciation and support of an asset, month by month (pure functions).

The worked asset: 12,000.00 bought on 16 March 2026, 36 months, no residual value. Its span
runs from 2026-03-16 (included) to 2029-03-16 (excluded): 365 + 366 (February 2028 has 29
days) + 365 = 1,096 days, so each day carries 12,000 / 1,096 = 10.948905...
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from cmdb.chargeback.assets import (
    AssetTerms,
    add_months,
    book_value,
    cents,
    month_cost,
    month_depreciation,
    month_support,
    nominal_monthly_depreciation,
)

SERVER = AssetTerms(purchase_price=Decimal("12000.00"), purchase_date=date(2026, 3, 16),
                    depreciation_months=36, support_monthly=Decimal("100.00"))


def test_the_span_ends_the_same_day_so_many_calendar_months_later():
    assert SERVER.depreciation_end == date(2029, 3, 16)
    assert (SERVER.depreciation_end - SERVER.purchase_date).days == 1096
    # A day the later month lacks becomes its last day.
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2027, 1, 31), 13) == date(2028, 2, 29)
    assert add_months(date(2026, 11, 30), 3) == date(2027, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


def test_a_mid_month_purchase_depreciates_the_days_from_the_purchase():
    # March 2026: the 16th to the 31st, 16 days: 12000 x 16 / 1096 = 175.182481... -> 175.18
    assert month_depreciation(SERVER, "2026-03") == Fraction(12000 * 16, 1096)
    assert cents(month_depreciation(SERVER, "2026-03")) == Decimal("175.18")
    # April 2026, a whole month of 30 days: 12000 x 30 / 1096 = 328.467153... -> 328.47
    assert cents(month_depreciation(SERVER, "2026-04")) == Decimal("328.47")
    # Nothing before the purchase.
    assert month_depreciation(SERVER, "2026-02") == 0


def test_a_leap_february_carries_its_29_days():
    # February 2028: 12000 x 29 / 1096 = 317.518248... -> 317.52
    assert cents(month_depreciation(SERVER, "2028-02")) == Decimal("317.52")
    # February 2027: 12000 x 28 / 1096 = 306.569343... -> 306.57
    assert cents(month_depreciation(SERVER, "2027-02")) == Decimal("306.57")


def test_the_last_month_and_after_full_depreciation():
    # March 2029: the 1st to the 15th (the 16th is excluded), 15 days:
    # 12000 x 15 / 1096 = 164.233576... -> 164.23
    assert cents(month_depreciation(SERVER, "2029-03")) == Decimal("164.23")
    assert month_depreciation(SERVER, "2029-04") == 0
    assert month_depreciation(SERVER, "2035-01") == 0


def test_a_residual_value_is_not_depreciated():
    kept = AssetTerms(purchase_price=Decimal("12000.00"), purchase_date=date(2026, 3, 16),
                      depreciation_months=36, residual_value=Decimal("1040.00"))
    # (12000 - 1040) x 16 / 1096 = 10960 x 16 / 1096 = 160.00 exactly.
    assert month_depreciation(kept, "2026-03") == Fraction(160)
    assert book_value(kept, date(2029, 3, 16)) == Decimal("1040.00")
    assert book_value(kept, date(2040, 1, 1)) == Decimal("1040.00")


def test_support_runs_by_the_days_of_each_month_it_covers():
    # From the purchase date, open-ended. March 2026: 100 x 16 / 31 = 51.612903... -> 51.61
    assert cents(month_support(SERVER, "2026-03")) == Decimal("51.61")
    assert month_support(SERVER, "2026-04") == 100
    assert month_support(SERVER, "2031-07") == 100  # no end: for ever
    assert month_support(SERVER, "2026-02") == 0
    ended = AssetTerms(purchase_price=Decimal("0"), purchase_date=date(2026, 3, 16),
                       depreciation_months=1, support_monthly=Decimal("100.00"),
                       support_start=date(2026, 4, 1), support_end=date(2026, 6, 10))
    assert month_support(ended, "2026-03") == 0
    # June 2026: the 1st to the 9th (the end, the 10th, is excluded): 100 x 9 / 30 = 30.00
    assert month_support(ended, "2026-06") == 30
    assert month_support(ended, "2026-07") == 0
    assert month_cost(ended, "2026-06") == (Fraction(0), Fraction(30))  # nothing to depreciate


def test_book_value_and_the_nominal_month():
    assert book_value(SERVER, date(2026, 1, 1)) == Decimal("12000.00")
    assert book_value(SERVER, date(2026, 3, 16)) == Decimal("12000.00")
    # After March's 16 days: 12000 - 175.182481... = 11824.817518... -> 11824.82
    assert book_value(SERVER, date(2026, 4, 1)) == Decimal("11824.82")
    assert book_value(SERVER, date(2029, 3, 16)) == Decimal("0.00")
    # 12000 / 36 = 333.333... -> 333.33
    assert nominal_monthly_depreciation(SERVER) == Decimal("333.33")


def test_rounding_is_half_to_even_and_exact():
    assert cents(Fraction(1, 200)) == Decimal("0.00")  # 0.005 -> 0.00
    assert cents(Fraction(3, 200)) == Decimal("0.02")  # 0.015 -> 0.02
    assert cents(Fraction(1, 200) + Fraction(1, 10**30)) == Decimal("0.01")


def months_between(first: date, last: date) -> list[str]:
    out, at = [], date(first.year, first.month, 1)
    while at <= last:
        out.append(f"{at.year:04d}-{at.month:02d}")
        at = add_months(at, 1)
    return out


money = st.integers(min_value=0, max_value=10**11).map(lambda c: Decimal(c) / 100)


@settings(max_examples=200, deadline=None)
@given(purchase=st.dates(min_value=date(1990, 1, 1), max_value=date(2060, 12, 31)),
       months=st.integers(min_value=1, max_value=600), price=money,
       residual_share=st.fractions(min_value=0, max_value=1))
def test_over_the_whole_life_the_months_sum_to_the_depreciable_amount(
        purchase, months, price, residual_share):
    residual = cents(Fraction(price) * residual_share)
    if residual >= price and price:
        residual = price - Decimal("0.01")
    terms = AssetTerms(purchase_price=price, purchase_date=purchase,
                       depreciation_months=months, residual_value=residual)
    life = months_between(purchase, terms.depreciation_end)
    parts = [month_depreciation(terms, p) for p in life]
    assert sum(parts, Fraction(0)) == Fraction(price - residual)
    assert all(p >= 0 for p in parts)
    # Nothing outside the life: the month before the purchase and the one after the end.
    assert month_depreciation(terms, months_between(add_months(purchase, -1),
                                                    add_months(purchase, -1))[0]) == 0
    after = add_months(terms.depreciation_end, 1)
    assert month_depreciation(terms, f"{after.year:04d}-{after.month:02d}") == 0
