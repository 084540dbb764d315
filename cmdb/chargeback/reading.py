"""Reading a period's calculation input through the repository: Neo4j's rows made into the
engine's rows (``snapshot``), and the pools with the cost of their assets."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from cmdb.chargeback.assets import asset_cost, pool_asset
from cmdb.chargeback.models import (
    AssetCost,
    ChargePeriod,
    CostPool,
    CostSource,
    PricePlan,
)
from cmdb.chargeback.repository import ChargebackRepository
from cmdb.chargeback.snapshot import CalculationInput, ItemRow, Pricing, SubscriptionRow
from cmdb.core.mapping import as_datetime
from cmdb.items.models import CostRecovery


async def read_input(repo: ChargebackRepository, period: ChargePeriod, currency: str,
                     pricing: Pricing) -> CalculationInput:
    """Everything a period's calculation reads but the usage (``repo.usage_groups`` reads
    it, so the engine can start on fees and pools meanwhile); ``pricing``: what
    ``repo.pricing`` answered."""
    pools = await pools_for(repo, period)
    # The CI attributes the period's pools share by or pass onward by, read with the items.
    attrs = sorted({a for p in pools if period.id in p.amounts
                    for a in (p.attribute, p.onward) if a is not None})
    item_rows, pairs, sub_rows = await repo.graph_rows(period, attrs)
    items = {row[0]: _item_row(row, attrs) for row in item_rows}
    uses: dict[str, list[str]] = {}
    _add_uses(uses, pairs)
    subs = _subscriptions(sub_rows, currency)
    # What ended subscriptions provisioned was retired when they ended: it still carries
    # its cost (pool shares by its driver) for the days they held it.
    held = sorted({ci for x in subs if x.end is not None for ci in x.ci_ids} - items.keys())
    if held:
        held_items, held_pairs = await repo.held_rows(held, attrs)
        items.update((row[0], _item_row(row, attrs)) for row in held_items)
        _add_uses(uses, held_pairs)
    cards, meters = pricing
    return CalculationInput(
        period=period.id, currency=currency, items=items, uses=uses, subscriptions=subs,
        users=await repo.users(), cost_centres=await repo.cost_centres(),
        rate_cards={c.id: c for c in cards}, meter_units=meters, usage=[], pools=pools)


async def asset_costs(repo: ChargebackRepository, pools: Sequence[CostPool],
                      period: ChargePeriod) -> dict[str, AssetCost]:
    """Per pool code, what its assets cost in the period (whatever its cost source)."""
    if not pools:
        return {}
    found = await repo.pool_assets([p.code for p in pools])
    return {p.code: asset_cost(p, period.id, [pool_asset(a) for a in found.get(p.code, [])])
            for p in pools}


async def pools_for(repo: ChargebackRepository, period: ChargePeriod) -> list[CostPool]:
    """The pools as a period's calculation takes them: an ASSETS pool without a manual
    amount for the period costs what its assets cost in it (none when that is zero)."""
    pools = await repo.pools()
    wanted = [p for p in pools
              if p.cost_source is CostSource.ASSETS and period.id not in p.amounts]
    costs = await asset_costs(repo, wanted, period)
    out = []
    for p in pools:
        cost = costs.get(p.code)
        if cost is not None and cost.amount:
            p = p.model_copy(update={"amounts": {**p.amounts, period.id: cost.amount},
                                     "asset_counts": {**p.asset_counts,
                                                      period.id: cost.assets}})
        out.append(p)
    return out


def _add_uses(uses: dict[str, list[str]], pairs: Iterable[Sequence[str]]) -> None:
    for provider, consumer in pairs:
        uses.setdefault(provider, []).append(consumer)


def _subscriptions(rows: Iterable[Sequence[Any]], currency: str) -> list[SubscriptionRow]:
    """Subscriptions as ``queries.SUBSCRIPTIONS`` returns them, with their fees: those
    quoted when they were ordered, or else their item version's price plan."""
    subs = []
    plans: dict[str, PricePlan] = {}  # versions are shared by many subscriptions
    for (sid, user, cc, item_id, item_name, service_id, ci_ids, start_at, end_at,
         plan_text, (quoted_currency, quoted_one_off, quoted_monthly)) in rows:
        if quoted_monthly is not None:  # the fees quoted when it was ordered
            one_off, monthly = Decimal(quoted_one_off), Decimal(quoted_monthly)
            fee_currency = quoted_currency
        else:  # ordered before fees were quoted: its item version's price plan
            plan = None
            if plan_text:
                plan = plans.get(plan_text) or plans.setdefault(
                    plan_text, PricePlan.model_validate_json(plan_text))
            one_off = plan.one_off if plan else Decimal(0)
            monthly = plan.monthly if plan else Decimal(0)
            fee_currency = plan.currency if plan else currency
        start = as_datetime(start_at)
        assert start is not None
        subs.append(SubscriptionRow(
            id=sid, user=user, cost_centre=cc, item_id=item_id, item_name=item_name,
            service_id=service_id, ci_ids=tuple(ci_ids or ()), start=start,
            end=as_datetime(end_at), monthly=monthly, one_off=one_off,
            currency=fee_currency,
        ))
    return subs


_NO_ATTRS: dict[str, Decimal] = {}


def _item_row(row: Sequence[Any], attrs: Sequence[str]) -> ItemRow:
    """An item as ``queries.ITEMS`` returns it: id, name, class, cost centre, cpu, sizeGb,
    recovery rule and the values of ``attrs``."""
    i, name, cls, cc, cpu, size, recovery, values = row
    return ItemRow(i, name, cls, cc, _num(cpu), _num(size),
                   CostRecovery(recovery) if recovery in CostRecovery.__members__
                   else CostRecovery.OWNER, _attrs(attrs, values))


def _attrs(names: Sequence[str], values: Sequence[Any]) -> dict[str, Decimal]:
    """An item's values of the attributes pools read, those that are numbers."""
    if not names:
        return _NO_ATTRS
    out = {a: n for a, v in zip(names, values, strict=True) if (n := _num(v)) is not None}
    return out or _NO_ATTRS


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float | str):
        try:
            return Decimal(str(v))
        except ArithmeticError:
            return None
    return None
