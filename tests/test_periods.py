"""Window arithmetic: weekly and monthly windows, and the cache of worked-out windows."""

from datetime import UTC, datetime, timedelta, timezone
from functools import cache

import pytest
from dateutil.tz import tzutc
from hypothesis import given, settings
from hypothesis import strategies as st

from cmdb.core.models import OperationalState
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


# ------------------------------------------------- the counted part of a period, by hand

UP, DOWN = OperationalState.UP, OperationalState.DOWN
D1 = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday


def hours(n: float) -> timedelta:
    return timedelta(hours=n)


def test_an_item_created_mid_interval_counts_from_its_creation():
    created = D1 + hours(36)  # Mon 2 Mar 12:00, state recorded then
    counted, m = periods.counted_minutes([(created, UP), (created + hours(12), DOWN)],
                                         D1, D1 + hours(72), created, [])
    assert counted == (created, D1 + hours(72))
    assert (m["UP"], m["DOWN"], m["UNKNOWN"]) == (720.0, 1_440.0, 0.0)


def test_a_history_that_starts_after_creation_counts_from_its_first_change():
    created, first = D1 - timedelta(days=3), D1 + hours(6)
    counted, m = periods.counted_minutes([(first, DOWN), (first + hours(1), UP)],
                                         D1, D1 + hours(24), created, [])
    assert counted == (first, D1 + hours(24))
    assert (m["DOWN"], m["UP"], m["UNKNOWN"]) == (60.0, 17 * 60.0, 0.0)


def test_a_history_that_began_before_the_interval_gives_the_opening_state():
    counted, m = periods.counted_minutes([(D1 - hours(5), DOWN), (D1 + hours(2), UP)],
                                         D1, D1 + hours(4), D1 - hours(6), [])
    assert counted == (D1, D1 + hours(4)) and (m["DOWN"], m["UP"]) == (120.0, 120.0)


def test_an_item_created_after_the_interval_has_nothing_counted():
    created = D1 + timedelta(days=40)
    counted, m = periods.counted_minutes([(created, UP)], D1, D1 + timedelta(days=31),
                                         created, [])
    assert counted is None and set(m.values()) == {0.0}
    # No recorded state at all: nothing counts either.
    assert periods.counted_minutes([], D1, D1 + hours(1), D1 - hours(1), [])[0] is None
    # Created exactly at the end: nothing.
    assert periods.counted_interval(D1, D1 + hours(1), D1 + hours(1), D1 + hours(1)) is None


def test_a_maintenance_window_overlapping_creation_counts_only_its_part_after_it():
    windows = periods.window_intervals("Sun 02:00-04:00", D1, D1 + timedelta(days=8))
    created = D1 + hours(3)  # inside Sun 1 Mar 02:00-04:00
    counted, m = periods.counted_minutes([(created, UP)], D1, D1 + timedelta(days=8),
                                         created, windows)
    # 8 days less 3 hours counted; the first window's last hour and all of Sun 8 Mar's.
    assert counted == (created, D1 + timedelta(days=8))
    assert m["MAINTENANCE"] == 60.0 + 120.0
    assert m["UP"] == 8 * 24 * 60 - 180.0 - 180.0


# ----------------------------------------------- the same, against a minute-by-minute walk

_DAY_NAMES = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
SPECS = ["Sun 02:00-04:00", "Daily 23:00-01:00", "Wed 22:30-00:15", "Monthly 3", "Monthly 5-6"]


def covers(spec: str, t: datetime) -> bool:
    """Whether the window ``spec`` covers minute ``t``, read from the spec afresh."""
    kind, rest = spec.split(" ", 1)
    if kind == "Monthly":
        first, _, last = rest.partition("-")
        return int(first) <= t.day <= int(last or first)
    opens, closes = (int(x[:2]) * 60 + int(x[3:]) for x in rest.split("-"))
    minute = t.hour * 60 + t.minute
    day = t.weekday()
    if closes > opens:
        return (kind == "Daily" or _DAY_NAMES[day] == kind) and opens <= minute < closes
    # Crosses midnight: the evening of the named day, or the morning after it.
    evening = (kind == "Daily" or _DAY_NAMES[day] == kind) and minute >= opens
    morning = (kind == "Daily" or _DAY_NAMES[(day - 1) % 7] == kind) and minute < closes
    return evening or morning


def walk(changes, start, end, created, specs):
    """Minutes per state, one minute at a time: a minute counts once the item exists and
    has a recorded state; its state is the last change at or before it."""
    totals = dict.fromkeys(["UP", "DEGRADED", "DOWN", "UNKNOWN", "MAINTENANCE"], 0.0)
    t = start
    while t < end:
        known = [s for at, s in sorted(changes) if at <= t]
        if t >= created and known:
            key = "MAINTENANCE" if any(covers(s, t) for s in specs) else known[-1].value
            totals[key] += 1
        t += timedelta(minutes=1)
    return totals


SPAN = 4 * 24 * 60  # minutes: a window of days around 1 March


@settings(max_examples=150, deadline=None)
@given(
    start=st.integers(0, SPAN), length=st.integers(1, 2 * 24 * 60),
    created=st.integers(-600, SPAN + 600),
    changes=st.lists(st.tuples(st.integers(-600, SPAN + 600),
                               st.sampled_from(list(OperationalState))),
                     max_size=6, unique_by=lambda c: c[0]),
    specs=st.lists(st.sampled_from(SPECS), max_size=2, unique=True),
)
def test_counted_minutes_agree_with_a_minute_by_minute_walk(start, length, created, changes,
                                                            specs):
    base = datetime(2026, 2, 28, tzinfo=UTC)
    at = [(base + timedelta(minutes=m), s) for m, s in changes]
    lo, hi = base + timedelta(minutes=start), base + timedelta(minutes=start + length)
    born = base + timedelta(minutes=created)
    windows = [iv for s in specs for iv in periods.window_intervals(s, lo, hi)]
    counted, got = periods.counted_minutes(at, lo, hi, born, windows)
    want = walk(at, lo, hi, born, specs)
    assert got == want
    assert (counted is None) == (sum(want.values()) == 0)


# ------------------------------------------- SLA minutes left, against a minute-by-minute walk

SLA_SPECS = ["Sun 02:00-04:00", "Daily 23:00-01:00", "Wed 22:30-00:15"]
FEB, MAR = datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)
FEB_MINUTES = 28 * 24 * 60


@cache
def week_minutes(spec: str) -> frozenset[int]:
    """The minutes of the week (0 = Monday 00:00) a weekly or daily window covers."""
    monday = datetime(2026, 3, 2, tzinfo=UTC)
    return frozenset(m for m in range(7 * 24 * 60)
                     if covers(spec, monday + timedelta(minutes=m)))


def minutes_left_by_walking(changes, at, created, specs, target):
    """Walk February minute by minute: a minute counts once the service exists and has a
    recorded state, and is outside its windows; the budget is those minutes times the
    allowed share, the used ones those before ``at`` spent down or unknown."""
    ordered = sorted(changes)
    covered = frozenset().union(*(week_minutes(s) for s in specs))
    budget = used = 0
    first_counted = None
    state, nxt = None, 0
    for m in range(FEB_MINUTES):
        t = FEB + timedelta(minutes=m)
        while nxt < len(ordered) and ordered[nxt][0] <= t:
            state, nxt = ordered[nxt][1], nxt + 1
        if state is None or t < created:
            continue
        first_counted = t if first_counted is None else first_counted
        if (t.weekday() * 1440 + t.hour * 60 + t.minute) in covered:
            continue
        budget += 1
        if t < at and state in (OperationalState.DOWN, OperationalState.UNKNOWN):
            used += 1
    if first_counted is None or first_counted > at:
        return None
    return round(max(budget * (1 - float(target) / 100) - used, 0.0), 1)


def test_overlapping_windows_are_left_out_of_the_sla_budget_once():
    # February 2026, up all along: 40,320 min. Daily 23:00-01:00 covers 3,360 of them (the
    # first and last hour, 27 whole nights); Wed 22:30-00:15 adds only its 22:30-23:00 on the
    # four Wednesdays: 3,480 apart, 36,840 left, 0.1 % of which is 36.84.
    from decimal import Decimal

    from cmdb.health.service import HealthService

    history = [{"at": FEB - timedelta(days=1), "state": "UP"}]
    assert HealthService._minutes_to_breach(
        Decimal("99.9"), ["Daily 23:00-01:00", "Wed 22:30-00:15"], FEB, history,
        FEB - timedelta(days=2)) == 36.8


@settings(max_examples=100, deadline=None)
@given(
    at=st.integers(0, FEB_MINUTES - 1), created=st.integers(-3000, FEB_MINUTES + 100),
    changes=st.lists(st.tuples(st.integers(-3000, FEB_MINUTES + 100),
                               st.sampled_from(list(OperationalState))),
                     max_size=8, unique_by=lambda c: c[0]),
    specs=st.lists(st.sampled_from(SLA_SPECS), max_size=2, unique=True),
    target=st.sampled_from(["99.9", "99.5", "99", "95"]),
)
def test_sla_minutes_left_agree_with_a_minute_by_minute_walk(at, created, changes, specs,
                                                             target):
    from decimal import Decimal

    from cmdb.health.service import HealthService

    when = sorted((FEB + timedelta(minutes=m), s) for m, s in changes)
    moment = FEB + timedelta(minutes=at)
    born = FEB + timedelta(minutes=created)
    # As the impact statement reads them: the last change before the month, then the month's.
    opening = [c for c in when if c[0] < FEB][-1:]
    inside = [c for c in when if FEB <= c[0] < MAR]
    history = [{"at": a, "state": s.value} for a, s in opening + inside]
    got = HealthService._minutes_to_breach(Decimal(target), specs, moment, history, born)
    assert got == minutes_left_by_walking(when, moment, born, specs, target)
