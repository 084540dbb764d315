"""Time arithmetic: weekly windows, monthly business periods, and minutes per state."""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator
from datetime import datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple

from cmdb.core.models import OperationalState

_DAYS = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}
_WEEKLY = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) (\d\d):(\d\d)-(\d\d):(\d\d)$")
_MONTHLY = re.compile(r"^Monthly (\d{1,2})(?:-(\d{1,2}))?$")

Interval = tuple[datetime, datetime]
_DAY = timedelta(days=1)


def window_intervals(spec: str, start: datetime, end: datetime) -> list[Interval]:
    """Occurrences of a window spec overlapping [start, end), clipped to it.

    Weekly "Sun 02:00-04:00" and "Daily 23:00-01:00" (crossing midnight allowed), or
    monthly "Monthly 25" / "Monthly 25-28" (whole days). Times are UTC.
    """
    # Equal instants in other zones give other day boundaries: the zones are in the key
    # (a zone that cannot be a key, such as dateutil's, is worked out each time).
    zones = (start.tzinfo, end.tzinfo)
    if all(isinstance(z, Hashable) for z in zones):
        return list(_clipped(spec, start, end, *zones))
    return list(_clip(spec, start, end))


# The same windows over the same month are asked for by every impact answer that reaches
# a service (SLA minutes left): worked out once per spec and period.
@lru_cache(maxsize=2048)
def _clipped(spec: str, start: datetime, end: datetime, *_zones: tzinfo | None
             ) -> tuple[Interval, ...]:
    return _clip(spec, start, end)


def _clip(spec: str, start: datetime, end: datetime) -> tuple[Interval, ...]:
    out: list[Interval] = []
    for a, b in _occurrences(spec, start, end):
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            out.append((lo, hi))
    return tuple(out)


class _Spec(NamedTuple):
    """A parsed window: weekly (weekday, None for daily; offsets from midnight) or monthly
    (first and last day of the month)."""

    weekly: bool
    weekday: int | None = None
    opens: timedelta = timedelta(0)
    closes: timedelta = timedelta(0)
    first: int = 0
    last: int = 0


@lru_cache(maxsize=512)
def _parse(spec: str) -> _Spec:
    m = _WEEKLY.match(spec)
    if m:
        day, h1, m1, h2, m2 = m.groups()
        a = timedelta(hours=int(h1), minutes=int(m1))
        b = timedelta(hours=int(h2), minutes=int(m2))
        if b <= a:
            b += _DAY
        return _Spec(True, None if day == "Daily" else _DAYS[day], a, b)
    m = _MONTHLY.match(spec)
    if m:
        return _Spec(False, first=int(m.group(1)), last=int(m.group(2) or m.group(1)))
    raise ValueError(f"unrecognised period {spec!r}")


def _occurrences(spec: str, start: datetime, end: datetime) -> Iterator[Interval]:
    p = _parse(spec)
    d = start.replace(hour=0, minute=0, second=0, microsecond=0) - _DAY
    while d < end:
        if p.weekly:
            if p.weekday is None or d.weekday() == p.weekday:
                yield d + p.opens, d + p.closes
        elif p.first <= d.day <= p.last:
            yield d, d + _DAY
        d += _DAY


def is_valid_period(spec: str) -> bool:
    try:
        _parse(spec)
    except ValueError:
        return False
    return True


def within(specs: list[str], at: datetime) -> bool:
    probe_end = at + timedelta(microseconds=1)
    return any(a <= at < b for s in specs for a, b in _occurrences(s, at, probe_end))


def merge(intervals: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def overlap_minutes(a: Interval, windows: list[Interval]) -> float:
    total = 0.0
    for lo, hi in windows:
        x, y = max(a[0], lo), min(a[1], hi)
        if x < y:
            total += (y - x).total_seconds() / 60
    return total


def counted_interval(
    start: datetime, end: datetime, created: datetime | None,
    first_change: datetime | None,
) -> Interval | None:
    """The part of [start, end) that availability figures count: from the latest of
    ``start``, the item's creation and its first recorded state (no recorded state: nothing
    counts), to ``end`` (which the caller has already cut at now, or at retirement). None
    when that leaves nothing: the item did not exist, or had no state, in the interval."""
    if first_change is None:
        return None
    lo = max(start, first_change) if created is None else max(start, created, first_change)
    return (lo, end) if lo < end else None


def counted_minutes(
    changes: list[tuple[datetime, OperationalState]], start: datetime, end: datetime,
    created: datetime | None, maintenance: list[Interval],
) -> tuple[Interval | None, dict[str, float]]:
    """The counted part of [start, end) (``counted_interval``, the first change being the
    earliest of ``changes``) and the minutes per state over it (``minutes_by_state``)."""
    first = min((at for at, _ in changes), default=None)
    counted = counted_interval(start, end, created, first)
    if counted is None:
        return None, minutes_by_state([], start, start, [])
    return counted, minutes_by_state(changes, counted[0], counted[1], maintenance)


def minutes_by_state(
    changes: list[tuple[datetime, OperationalState]],
    start: datetime,
    end: datetime,
    maintenance: list[Interval],
) -> dict[str, float]:
    """Minutes in each state over [start, end) from a change log (the last change before
    ``start`` gives the opening state; none means UNKNOWN), with the minutes that fell
    inside maintenance windows counted apart, not against any state.

    Availability figures start ``start`` where ``counted_interval`` says, at or after the
    first change, so the opening state is always one that was recorded."""
    totals = {s.value: 0.0 for s in OperationalState}
    totals["MAINTENANCE"] = 0.0
    windows = merge(maintenance)
    state = OperationalState.UNKNOWN
    cursor = start
    for at, new_state in sorted(changes, key=lambda c: c[0]):
        if at <= start:
            state = new_state
            continue
        if at >= end:
            break
        _add(totals, state, (cursor, at), windows)
        cursor, state = at, new_state
    _add(totals, state, (cursor, end), windows)
    return totals


def _add(totals: dict[str, float], state: OperationalState, span: Interval,
         windows: list[Interval]) -> None:
    if span[0] >= span[1]:
        return
    whole = (span[1] - span[0]).total_seconds() / 60
    in_maintenance = overlap_minutes(span, windows)
    totals["MAINTENANCE"] += in_maintenance
    totals[state.value] += whole - in_maintenance
