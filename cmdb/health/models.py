"""Health read models: availability against SLA targets. The states, their precedence and
the roll-up rules are in ``cmdb.rollup.models``."""

from __future__ import annotations

from datetime import datetime

from cmdb.core.models import FrozenModel


class Availability(FrozenModel):
    """Minutes in each state over the counted part of a period, and the SLA attainment that
    follows. The counted part runs from the latest of the period's start, the item's creation
    and its first recorded state to the earliest of the period's end, now and its retirement
    (``counted_from``/``counted_until``, None when nothing counts); ``availability_percent``
    and ``met`` are None when no minute counts."""

    item_id: str
    start: datetime
    end: datetime
    counted_from: datetime | None
    counted_until: datetime | None
    minutes_up: float
    minutes_degraded: float
    minutes_down: float
    minutes_unknown: float
    minutes_in_maintenance: float
    availability_percent: float | None
    target_percent: float | None
    met: bool | None
