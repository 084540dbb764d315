"""Time arithmetic: weekly windows, monthly business periods, and minutes per state."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

from cmdb.core.models import OperationalState

_DAYS = {"Mon": 0, "Tue": 1, "Wed": 2, "Thu": 3, "Fri": 4, "Sat": 5, "Sun": 6}
_WEEKLY = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun|Daily) (\d\d):(\d\d)-(\d\d):(\d\d)$")
_MONTHLY = re.compile(r"^Monthly (\d{1,2})(?:-(\d{1,2}))?$")

Interval = tuple[datetime, datetime]


def window_intervals(spec: str, start: datetime, end: datetime) -> list[Interval]:
    """Occurrences of a window spec overlapping [start, end), clipped to it.

    Weekly "Sun 02:00-04:00" and "Daily 23:00-01:00" (crossing midnight allowed), or
    monthly "Monthly 25" / "Monthly 25-28" (whole days). Times are UTC.
    """
    out: list[Interval] = []
    for a, b in _occurrences(spec, start, end):
        lo, hi = max(a, start), min(b, end)
        if lo < hi:
            out.append((lo, hi))
    return out


def _occurrences(spec: str, start: datetime, end: datetime) -> Iterator[Interval]:
    day0 = start.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    m = _WEEKLY.match(spec)
    if m:
        day, h1, m1, h2, m2 = m.groups()
        d = day0
        while d < end:
            if day == "Daily" or d.weekday() == _DAYS[day]:
                a = d + timedelta(hours=int(h1), minutes=int(m1))
                b = d + timedelta(hours=int(h2), minutes=int(m2))
                if b <= a:
                    b += timedelta(days=1)
                yield a, b
            d += timedelta(days=1)
        return
    m = _MONTHLY.match(spec)
    if m:
        first, last = int(m.group(1)), int(m.group(2) or m.group(1))
        d = day0
        while d < end:
            if first <= d.day <= last:
                yield d, d + timedelta(days=1)
            d += timedelta(days=1)
        return
    raise ValueError(f"unrecognised period {spec!r}")


def is_valid_period(spec: str) -> bool:
    return bool(_WEEKLY.match(spec) or _MONTHLY.match(spec))


def within(specs: list[str], at: datetime) -> bool:
    probe_end = at + timedelta(microseconds=1)
    return any(window_intervals(s, at, probe_end) for s in specs)


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


def minutes_by_state(
    changes: list[tuple[datetime, OperationalState]],
    start: datetime,
    end: datetime,
    maintenance: list[Interval],
) -> dict[str, float]:
    """Minutes in each state over [start, end) from a change log (the last change before
    ``start`` gives the opening state; none means UNKNOWN), with the minutes that fell
    inside maintenance windows counted apart, not against any state."""
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
