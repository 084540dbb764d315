"""What a period's calculation reads, as the engine takes it: the items and the graph, the
subscriptions, users, cost centres, rate cards, usage and pools (``reading.read_input``
reads them through the repository; the engine only prices and allocates)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from fractions import Fraction

from cmdb.chargeback.models import (
    CostCentreRow,
    CostPool,
    RateCard,
    UsageGroup,
)
from cmdb.items.models import CostRecovery

Pricing = tuple[list[RateCard], dict[str, str]]  # rate cards, meter code -> unit


@dataclass(frozen=True)
class ItemRow:
    id: str
    name: str
    cls: str
    cost_centre: str | None
    cpu: Decimal | None = None
    size_gb: Decimal | None = None
    recovery: CostRecovery = CostRecovery.OWNER  # services: who pays their cost
    attrs: Mapping[str, Decimal] = field(default_factory=dict)  # those pools read, numbers


@dataclass(frozen=True)
class SubscriptionRow:
    id: str
    user: str
    cost_centre: str
    item_id: str
    item_name: str
    service_id: str | None
    ci_ids: tuple[str, ...]
    start: datetime
    end: datetime | None
    monthly: Decimal
    one_off: Decimal
    currency: str


@dataclass
class CalculationInput:
    period: str
    currency: str
    items: dict[str, ItemRow]
    uses: dict[str, list[str]]  # provider -> consumers
    subscriptions: list[SubscriptionRow]
    users: dict[str, tuple[str, str | None]]  # user id -> (user name, cost centre)
    cost_centres: dict[str, CostCentreRow]
    rate_cards: dict[str, RateCard]  # by id
    meter_units: dict[str, str]
    usage: list[UsageGroup]
    pools: list[CostPool]
    sessions: dict[str, dict[str, int]] = field(default_factory=dict)  # pool -> user -> n
    # SESSION_HOURS and ROLE_USERS pools: pool -> user id -> hours (or 1), read beforehand.
    pool_weights: dict[str, dict[str, Fraction]] = field(default_factory=dict)


