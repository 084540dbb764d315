"""Health states, their precedence, and the roll-up rules a relationship can carry.

The full rules, with examples, are in docs/health.md; in short:

Precedence (worst first): DOWN > DEGRADED > UNKNOWN > UP. A service's own state UNKNOWN is
neutral (services are not monitored; UNKNOWN means nothing was asserted). An item whose
lifecycle status is MAINTENANCE passes UP on to its consumers; a service inside one of its
SLA maintenance windows passes its real state on (the window only keeps its minutes out of
that service's SLA accounting).

Rules live on relationships as properties (set with ``relate``):
- ``impact``: REQUIRED (default), OPTIONAL (a provider down only degrades the consumer, one
  unknown does not affect it; ``required: false`` means the same) or INFORMATIONAL (no
  effect).
- ``redundancyGroup``: providers of one consumer that stand in for each other; the group is
  down when fewer than ``minUp`` (or ``minUpPercent`` % of its members, rounded up) are not
  down, else degraded while any member is down or degraded, else unknown when the unknown
  members decide. Without minUp/minUpPercent a group needs one member. A provider counts
  once per group however many edges join it; retired ones do not count.
Direction: a consumer DEPENDS_ON / RUNS_ON / USES / INSTALLED_ON a provider; for MEMBER_OF the
group (cluster, pool) is the consumer of its members, which form one redundancy group
("members") by default. CONNECTS_TO and CONTAINS are informational unless ``impact`` says
otherwise (``required`` does not apply to them).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from cmdb.core.models import FrozenModel, OperationalState

PRECEDENCE: dict[OperationalState, int] = {
    OperationalState.UP: 0,
    OperationalState.UNKNOWN: 1,
    OperationalState.DEGRADED: 2,
    OperationalState.DOWN: 3,
}


class ImpactRule(StrEnum):
    REQUIRED = "REQUIRED"
    OPTIONAL = "OPTIONAL"
    INFORMATIONAL = "INFORMATIONAL"


class StateChange(FrozenModel):
    item_id: str
    state: OperationalState
    previous: OperationalState | None
    at: datetime
    cause: str | None = None
    # The recorded change's identity (the change feed de-duplicates by it); None for
    # changes recorded before ids were given, and for history read back.
    id: str | None = None


RULE_KEYS = {"impact", "required", "redundancyGroup", "minUp", "minUpPercent"}


def rule_property_errors(props: dict[str, object]) -> dict[str, str]:
    """Problems with roll-up rule properties on a relationship, by key (empty: fine)."""
    errors: dict[str, str] = {}
    impact = props.get("impact")
    if impact is not None and (not isinstance(impact, str)
                               or impact.upper() not in ImpactRule.__members__):
        errors["impact"] = "impact must be REQUIRED, OPTIONAL or INFORMATIONAL"
    if "required" in props and props["required"] is not None \
            and not isinstance(props["required"], bool):
        errors["required"] = "required must be true or false"
    group = props.get("redundancyGroup")
    if group is not None and (not isinstance(group, str) or not group.strip()):
        errors["redundancyGroup"] = "redundancyGroup must be a non-empty string"
    k = props.get("minUp")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        errors["minUp"] = "minUp must be a whole number, 0 or more"
    pct = props.get("minUpPercent")
    if pct is not None and (isinstance(pct, bool) or not isinstance(pct, int | float)
                            or not 0 <= pct <= 100):
        errors["minUpPercent"] = "minUpPercent must be a number from 0 to 100"
    return errors
