"""Meters, rate cards, cost pools and billing modes: what cost is made of (managed by
``chargeback:manage``), and the prices in force that catalogue quotes read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date
from decimal import Decimal
from typing import Any

from cmdb.chargeback.base import ServiceBase, parse_period
from cmdb.chargeback.inputs import CostPoolInput, MeterInput, RateCardInput
from cmdb.chargeback.models import (
    CENT,
    AssetCost,
    BillingMode,
    CostPool,
    Meter,
    PeriodStatus,
    RateCard,
)
from cmdb.chargeback.reading import asset_costs
from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError, NotFound
from cmdb.core.validation import validate
from cmdb.identity.principal import Principal


class RatesAndPools(ServiceBase):
    async def define_meter(self, principal: Principal | None, data: dict[str, Any]
                           ) -> tuple[Meter, bool]:
        self._manage(principal, "define meters")
        m = validate(MeterInput, data)
        return await self.repo.create_meter({**m.model_dump(), "now": utcnow()})

    async def meters(self) -> list[Meter]:
        return await self.repo.meters()

    async def publish_rate_card(self, principal: Principal | None, data: dict[str, Any]
                                ) -> RateCard:
        """A new version of a meter's rate, in force from ``effective_from``; the version
        before it ends there. Versions only move forward: one may not start on or before a
        version that exists already (publish a later one instead)."""
        p = self._manage(principal, "publish rate cards")
        card = validate(RateCardInput, data)
        if card.currency != self.currency:
            raise DomainError.single("input.currency", f"rates are kept in {self.currency}, "
                                     f"the billing currency; {card.currency} is not accepted")
        if card.meter not in await self.repo.known_meters([card.meter]):
            raise NotFound("meter", card.meter, "input.meter")
        closed = [x for x in await self.repo.periods()
                  if x.status is PeriodStatus.CLOSED and x.end.date() > card.effective_from]
        if closed:
            raise DomainError.single(
                "input.effectiveFrom", f"period {closed[0].id} is closed: a rate may not "
                "start before its end (book a correction as an adjustment instead)",
                code="CONFLICT")
        clash = await self.repo.rate_clash(card.meter, card.effective_from)
        if clash:
            raise DomainError.single("input.effectiveFrom", f"{card.meter} has a version "
                                     f"starting on or after {card.effective_from} ({clash})",
                                     code="CONFLICT")
        tiers = json.dumps([{"upTo": None if t.up_to is None else str(t.up_to),
                             "rate": str(t.rate)} for t in card.tiers])
        out = await self.repo.publish_rate({
            "id": str(uuid.uuid4()), "meter": card.meter, "from": card.effective_from,
            "currency": card.currency, "tiers": tiers, "now": utcnow(), "by": p.user})
        if out is None:  # a version was published at the same time
            raise DomainError.single("input.effectiveFrom", "another version of "
                                     f"{card.meter} was published at the same time; retry",
                                     code="CONFLICT")
        return out

    async def rate_cards(self, meter: str | None = None) -> list[RateCard]:
        return await self.repo.rate_cards(meter)

    async def pricing_on(self, meters: Sequence[str], on: date | None = None
                         ) -> tuple[dict[str, RateCard], dict[str, str]]:
        """What usage of ``meters`` is billed at on the day ``on`` (default: today, UTC):
        meter -> the rate card version in force (meters without one are left out), and
        meter -> its unit (meters that do not exist are left out). Catalogue quotes and
        estimates read this, so they price usage as the bill does."""
        day = on or utcnow().astimezone(UTC).date()
        cards = await self.repo.rates_in_force(meters, day)
        wanted = set(meters)
        units = {m.code: m.unit for m in await self.repo.meters() if m.code in wanted}
        return cards, units

    async def define_pool(self, principal: Principal | None, data: dict[str, Any]) -> CostPool:
        self._manage(principal, "define cost pools")
        pool = validate(CostPoolInput, data)
        missing = set(pool.ci_ids) - await self.repo.known_cis(pool.ci_ids)
        if missing:
            raise DomainError.single("input.ciIds", "no such CI: " + ", ".join(sorted(missing)))
        errors = []
        if pool.meter is not None and not await self.repo.known_meters([pool.meter]):
            errors.append(FieldError(field="input.meter", message=f"no such meter: {pool.meter}"))
        role = None if pool.role is None else await self.repo.known_role(pool.role)
        if pool.role is not None and role is None:
            errors.append(FieldError(field="input.role", message=f"no such role: {pool.role}"))
        if pool.allocations:
            known = await self.repo.cost_centres()
            errors += [FieldError(field=f"input.allocations[{i}].costCentre",
                                  message=f"no such cost centre: {a.cost_centre}")
                       for i, a in enumerate(pool.allocations) if a.cost_centre not in known]
        if errors:
            raise DomainError(errors)
        return await self.repo.upsert_pool({
            "id": str(uuid.uuid4()), "code": pool.code, "name": pool.name,
            "driver": pool.driver.value, "ciIds": sorted(set(pool.ci_ids)),
            "capacity": None if pool.capacity is None else str(pool.capacity),
            "description": pool.description, "currency": self.currency, "now": utcnow(),
            "attribute": pool.attribute, "meter": pool.meter, "role": role,
            "onward": pool.onward,
            "holderClasses": sorted({c.value for c in pool.holder_classes or ()}) or None,
            "allocations": json.dumps([[a.cost_centre, str(a.percent)]
                                       for a in pool.allocations])
            if pool.allocations else None,
            "costSource": pool.cost_source.value})

    async def set_pool_cost(self, principal: Principal | None, code: str, period: str,
                            amount: Decimal) -> CostPool:
        p = self._manage(principal, "set pool costs")
        month = parse_period(period)
        if amount < 0 or amount != amount.quantize(CENT) or amount >= Decimal("1e12"):
            raise DomainError.single("amount", "must be zero or more, in whole cents, below "
                                     "10^12")
        current = await self.repo.period(month)
        if current and current.status is PeriodStatus.CLOSED:
            raise DomainError.single("period", f"period {period} is closed", code="CONFLICT")
        out = await self.repo.set_pool_cost({"code": code, "period": period,
                                             "amount": str(amount), "now": utcnow(),
                                             "by": p.user})
        if out is None:
            raise NotFound("cost pool", code, "code")
        return out

    async def pools(self) -> list[CostPool]:
        return await self.repo.pools()

    async def asset_cost(self, pool: CostPool, period: str) -> AssetCost:
        """What the pool's assets cost in the period, to check before calculating (the
        manual amount for the period, when one is set, is what the calculation takes)."""
        month = parse_period(period)
        return (await asset_costs(self.repo, [pool], month))[pool.code]

    async def set_billing_mode(self, principal: Principal | None, code: str,
                               mode: BillingMode) -> BillingMode:
        self._manage(principal, "set billing modes")
        if not await self.repo.set_billing_mode(code, mode):
            raise NotFound("cost centre", code, "costCentre")
        return mode

    # --- usage -------------------------------------------------------------------------------
