"""Window arithmetic: weekly and monthly windows, and the cache of worked-out windows."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from dateutil.tz import tzutc

from cmdb.health import periods


def test_weekly_windows_over_a_month_cross_midnight_and_clip_to_the_period():
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    sundays = periods.window_intervals("Sun 02:00-04:00", start, end)
    assert [a.day for a, _ in sundays] == [1, 8, 15, 22, 29]
    assert all(b - a == timedelta(hours=2) and a.weekday() == 6 for a, b in sundays)
    nights = periods.window_intervals("Daily 23:00-01:00", start, end)
    # The night before the period reaches into it (clipped), the last night is cut at the end.
    assert nights[0] == (start, start + timedelta(hours=1))
    assert nights[-1] == (datetime(2026, 11, 30, 23, tzinfo=UTC), end)
    assert len(nights) == 31


def test_monthly_windows_are_whole_days():
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    assert periods.window_intervals("Monthly 25-26", start, end) == [
        (datetime(2026, 11, 25, tzinfo=UTC), datetime(2026, 11, 26, tzinfo=UTC)),
        (datetime(2026, 11, 26, tzinfo=UTC), datetime(2026, 11, 27, tzinfo=UTC)),
    ]


def test_the_same_instant_in_another_zone_is_not_answered_from_the_cache():
    utc_start = datetime(2026, 11, 1, tzinfo=UTC)
    plus2 = timezone(timedelta(hours=2))
    here = periods.window_intervals("Sun 02:00-04:00", utc_start, utc_start + timedelta(days=7))
    there = periods.window_intervals("Sun 02:00-04:00", utc_start.astimezone(plus2),
                                     utc_start.astimezone(plus2) + timedelta(days=7))
    assert here == [(datetime(2026, 11, 1, 2, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC))]
    # Day boundaries follow the zone of the period given: 02:00 at +02:00 is midnight UTC.
    assert there[0][0] == datetime(2026, 11, 1, 0, tzinfo=UTC)
    assert there[0][0].utcoffset() == timedelta(hours=2)


def test_a_zone_that_cannot_be_a_cache_key_still_works():
    start = datetime(2026, 11, 1, tzinfo=tzutc())
    assert periods.window_intervals("Sun 02:00-04:00", start, start + timedelta(days=2)) == [
        (datetime(2026, 11, 1, 2, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC))]


def test_within_and_validity():
    assert periods.within(["Sun 02:00-04:00"], datetime(2026, 11, 1, 2, tzinfo=UTC))
    assert not periods.within(["Sun 02:00-04:00"], datetime(2026, 11, 1, 4, tzinfo=UTC))
    assert periods.within(["Daily 23:00-01:00"], datetime(2026, 11, 3, 0, 30, tzinfo=UTC))
    assert periods.within(["Monthly 1"], datetime(2026, 11, 1, 23, 59, tzinfo=UTC))
    assert periods.is_valid_period("Monthly 25-28")
    assert not periods.is_valid_period("Sunday 02:00-04:00")
    with pytest.raises(ValueError, match="unrecognised period"):
        periods.window_intervals("Sunday 02:00-04:00", datetime(2026, 11, 1, tzinfo=UTC),
                                 datetime(2026, 11, 2, tzinfo=UTC))
