"""Runs the chargeback Cypher and turns rows into models."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from typing import Any

import orjson

from cmdb.chargeback import queries as q
from cmdb.chargeback.assets import AssetTerms, PoolAsset, cents, decimal_text, pool_month
from cmdb.chargeback.engine import (
    HOLDER_FIELDS,
    CalculationInput,
    CostCentreRow,
    ItemRow,
    SubscriptionRow,
    UsageGroup,
)
from cmdb.chargeback.models import (
    CENT,
    AssetCost,
    AssetCostItem,
    BillingMode,
    ChargeLine,
    CostPool,
    CostSource,
    Driver,
    LineKind,
    Meter,
    Period,
    PeriodStatus,
    PoolAllocation,
    PoolHolder,
    PricePlan,
    RateCard,
    ServiceRecovery,
    Tier,
    period_bounds,
)
from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database
from cmdb.items.models import CostRecovery

log = logging.getLogger(__name__)

LINE_BATCH = 2_500
LINES_IN_FLIGHT = 2
# Deletions of replaced runs still going on (kept referenced until done).
_CLEANUP: set[asyncio.Future[None]] = set()
# What a stored line keeps as properties of its own: what reports group by, filters and
# checksums read, the source (reconciliation) and the recovery rule of a service that keeps
# its cost not invoiced (``recovery``: PRICES, read by the recovery report). The rest of its
# explanation (description, share, path, quantity, rate card, pool, driver, CI...) is one
# JSON string, ``detail``: a
# month has hundreds of thousands of lines, and each property is a record Neo4j writes.
LINE_PROPS = frozenset({"id", "period", "seq", "kind", "amountMinor", "invoiced",
                        "costCentre", "user", "serviceId", "serviceName", "itemId",
                        "itemName", "meter", "unit", "source", "recovery"})


def _dt(v: Any) -> datetime:
    out = as_datetime(v)
    assert out is not None
    return out


def _dec(v: Any) -> Decimal | None:
    return None if v is None else Decimal(str(v))


def meter_from_row(m: dict[str, Any]) -> Meter:
    return Meter(code=m["code"], name=m["name"], unit=m["unit"], description=m.get("description"))


def rate_from_row(r: dict[str, Any]) -> RateCard:
    return RateCard(
        id=r["id"], meter=r["meter"], version=r["version"],
        effective_from=date.fromisoformat(r["effectiveFrom"]),
        effective_to=date.fromisoformat(r["effectiveTo"]) if r.get("effectiveTo") else None,
        currency=r["currency"], tiers=[Tier.model_validate(t) for t in json.loads(r["tiers"])],
        created_at=_dt(r["createdAt"]), created_by=r.get("createdBy"),
    )


def pool_from_row(p: dict[str, Any]) -> CostPool:
    return CostPool(
        id=p["id"], code=p["code"], name=p["name"], driver=Driver(p["driver"]),
        ci_ids=list(p["ciIds"]), capacity=_dec(p.get("capacity")),
        description=p.get("description"), currency=p["currency"],
        amounts={period: Decimal(amount) for period, amount in p.get("amounts") or []},
        attribute=p.get("attribute"), holder_classes=list(p.get("holderClasses") or []),
        meter=p.get("meter"), role=p.get("role"), onward=p.get("onward"),
        allocations=[PoolAllocation(cost_centre=cc, percent=Decimal(pc))
                     for cc, pc in json.loads(p.get("allocations") or "[]")],
        cost_source=CostSource(p.get("costSource") or "MANUAL"),
    )


def pool_asset(row: list[Any]) -> PoolAsset:
    """A ``POOL_ASSETS`` row as the asset arithmetic takes it."""
    (ci, name, tag, currency, price, purchase, months, residual, support, start, end) = row
    bought = date.fromisoformat(purchase)
    return PoolAsset(ci_id=ci, ci_name=name, asset_tag=tag, currency=currency,
                     terms=AssetTerms(
                         purchase_price=Decimal(price), purchase_date=bought,
                         depreciation_months=int(months),
                         residual_value=Decimal(residual or "0"),
                         support_monthly=Decimal(support or "0"),
                         support_start=date.fromisoformat(start) if start else bought,
                         support_end=date.fromisoformat(end) if end else None))


def asset_cost(pool: CostPool, period: str, assets: list[PoolAsset]) -> AssetCost:
    """What the pool's assets (those in its currency) cost in the period, rounded once."""
    total, parts = pool_month([a for a in assets if a.currency == pool.currency], period)
    return AssetCost(
        period=period, amount=cents(total), currency=pool.currency, assets=len(parts),
        items=[AssetCostItem(ci_id=a.ci_id, ci_name=a.ci_name, asset_tag=a.asset_tag,
                             depreciation=decimal_text(dep), support=decimal_text(sup))
               for a, dep, sup in parts],
        overridden_by=pool.amounts.get(period))


def period_from_row(p: dict[str, Any]) -> Period:
    total = p.get("totalMinor")
    return Period(
        id=p["id"], start=_dt(p["start"]), end=_dt(p["end"]), status=PeriodStatus(
            "CLOSED" if p["status"] == "CLOSED" else "OPEN"),
        currency=p["currency"], calculated_at=as_datetime(p.get("calculatedAt")),
        closed_at=as_datetime(p.get("closedAt")), closed_by=p.get("closedBy"),
        total=None if total is None else (Decimal(total) * CENT).quantize(CENT),
        line_count=p.get("lineCount"), checksum=p.get("checksum"),
        warnings=list(p.get("warnings") or []),
    )


async def settle() -> None:
    """Wait for the deletions of replaced runs still going on (before closing the driver)."""
    while _CLEANUP:
        await asyncio.gather(*list(_CLEANUP), return_exceptions=True)


def stored_line(row: dict[str, Any], run: str) -> dict[str, Any]:
    """A calculated line as node properties: ``LINE_PROPS`` and the rest as ``detail``."""
    out: dict[str, Any] = {"run": run}
    detail: dict[str, Any] = {}
    for k, v in row.items():
        if k in LINE_PROPS:
            out[k] = v
        else:
            detail[k] = v
    if detail:  # datetimes as ISO 8601, decimals as their text
        out["detail"] = orjson.dumps(detail, default=str).decode()
    return out


def _holder(h: dict[str, Any] | list[Any]) -> PoolHolder:
    if isinstance(h, list):  # stored compact (lines written before were objects)
        h = dict(zip(HOLDER_FIELDS, h, strict=True))
    cents = h.get("amountMinor")
    return PoolHolder(
        id=h["id"], name=h["name"], ci_class=h.get("class"), quantity=Decimal(h["quantity"]),
        # a usage line's CI adds the fraction of its usage that reaches the payer
        reaching=h["reaching"], share=h.get("share") or h["reaching"],
        path=list(h.get("path") or []),
        amount=None if cents is None else (Decimal(cents) * CENT).quantize(CENT),
        unit_price=_dec(h.get("unitPrice")))


def line_from_row(r: dict[str, Any]) -> ChargeLine:
    if r.get("detail"):
        r = {**orjson.loads(r["detail"]), **r}
    return ChargeLine(
        id=r["id"], period=r["period"], seq=r["seq"], kind=LineKind(r["kind"]),
        amount=(Decimal(r["amountMinor"]) * CENT).quantize(CENT),
        currency=r.get("currency") or r["periodCurrency"], source=r["source"],
        description=r["description"], cost_centre=r.get("costCentre"),
        invoiced=bool(r.get("invoiced")), user=r.get("user"), service_id=r.get("serviceId"),
        service_name=r.get("serviceName"), item_id=r.get("itemId"),
        item_name=r.get("itemName"), subscription_id=r.get("subscriptionId"),
        ci_id=r.get("ciId"), ci_name=r.get("ciName"), ci_class=r.get("ciClass"),
        meter=r.get("meter"), unit=r.get("unit"), quantity=_dec(r.get("quantity") or None),
        rate_card_id=r.get("rateCardId"), rate_version=r.get("rateVersion"),
        unit_price=_dec(r.get("unitPrice")), pool=r.get("pool"),
        driver=Driver(r["driver"]) if r.get("driver") else None, share=r.get("share"),
        path=list(r.get("path") or []), adjusts=r.get("adjusts"),
        holders=[_holder(h) for h in r.get("holders") or []],
        corrects_line=r.get("correctsLine"),
        recovery=CostRecovery(r["recovery"]) if r.get("recovery") in CostRecovery.__members__
        else None,
        charge_start=_dt(r.get("chargeStart") or r["periodStart"]),
        charge_end=_dt(r.get("chargeEnd") or r["periodEnd"]),
    )


class ChargebackRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- meters, rates, pools ----------------------------------------------------------------

    async def create_meter(self, params: dict[str, Any]) -> tuple[Meter, bool]:
        rows = await self.db.write(q.CREATE_METER, params)
        return meter_from_row(rows[0]["meter"]), bool(rows[0]["created"])

    async def meters(self) -> list[Meter]:
        return [meter_from_row(r["meter"]) for r in await self.db.read(q.LIST_METERS)]

    async def known_meters(self, codes: Sequence[str]) -> set[str]:
        rows = await self.db.read(q.KNOWN_METERS, {"codes": list(codes)})
        return {r["code"] for r in rows}

    async def known_role(self, name: str) -> str | None:
        """The role's name as it is spelt (names are matched whatever their case)."""
        rows = await self.db.read(q.KNOWN_ROLE, {"name": name})
        return str(rows[0]["name"]) if rows else None

    async def known_cis(self, ids: Sequence[str]) -> set[str]:
        rows = await self.db.read(q.KNOWN_CIS, {"ids": list(ids)})
        return {r["id"] for r in rows}

    async def publish_rate(self, params: dict[str, Any]) -> RateCard | None:
        rows = await self.db.write(q.PUBLISH_RATE_CARD, params)
        return rate_from_row(rows[0]["rate"]) if rows else None

    async def rate_clash(self, meter: str, start: date) -> str | None:
        rows = await self.db.read(q.RATE_CLASH, {"meter": meter, "from": start})
        if not rows:
            return None
        return f"version {rows[0]['version']} starts {rows[0]['effectiveFrom']}"

    async def rate_cards(self, meter: str | None = None) -> list[RateCard]:
        rows = await self.db.read(q.LIST_RATE_CARDS, {"meter": meter})
        return [rate_from_row(r["rate"]) for r in rows]

    async def rates_in_force(self, meters: Sequence[str], on: date) -> dict[str, RateCard]:
        """Meter -> the rate card version in force on the day ``on`` (meters without one are
        left out)."""
        rows = await self.db.read(q.RATES_IN_FORCE, {"meters": sorted(set(meters)), "on": on})
        cards = [rate_from_row(r["rate"]) for r in rows]
        return {c.meter: c for c in cards}

    async def upsert_pool(self, params: dict[str, Any]) -> CostPool:
        rows = await self.db.write(q.UPSERT_POOL, params)
        return pool_from_row(rows[0]["pool"])

    async def set_pool_cost(self, params: dict[str, Any]) -> CostPool | None:
        rows = await self.db.write(q.SET_POOL_COST, params)
        return pool_from_row(rows[0]["pool"]) if rows else None

    async def pools(self) -> list[CostPool]:
        return [pool_from_row(r["pool"]) for r in await self.db.read(q.LIST_POOLS)]

    async def asset_costs(self, pools: Sequence[CostPool], period: str
                          ) -> dict[str, AssetCost]:
        """Per pool code, what its assets cost in the period (whatever its cost source)."""
        if not pools:
            return {}
        rows = await self.db.read(q.POOL_ASSETS, {"codes": [p.code for p in pools]})
        found = {r["code"]: [pool_asset(a) for a in r["assets"]] for r in rows}
        return {p.code: asset_cost(p, period, found.get(p.code, [])) for p in pools}

    async def pools_for(self, period: str) -> list[CostPool]:
        """The pools as a period's calculation takes them: an ASSETS pool without a manual
        amount for the period costs what its assets cost in it (none when that is zero)."""
        pools = await self.pools()
        wanted = [p for p in pools
                  if p.cost_source is CostSource.ASSETS and period not in p.amounts]
        costs = await self.asset_costs(wanted, period)
        out = []
        for p in pools:
            cost = costs.get(p.code)
            if cost is not None and cost.amount:
                p = p.model_copy(update={"amounts": {**p.amounts, period: cost.amount},
                                         "asset_counts": {**p.asset_counts,
                                                          period: cost.assets}})
            out.append(p)
        return out

    # --- periods -----------------------------------------------------------------------------

    async def period(self, period: str) -> Period | None:
        rows = await self.db.read(q.GET_PERIOD, {"id": period})
        return period_from_row(rows[0]["period"]) if rows else None

    async def periods(self) -> list[Period]:
        return [period_from_row(r["period"]) for r in await self.db.read(q.LIST_PERIODS)]

    async def ensure_periods(self, tx: CountingTx, periods: Sequence[str], currency: str,
                             now: datetime) -> dict[str, str]:
        """Period id -> status, made OPEN when new and locked for the transaction."""
        params = [{"id": p, "start": period_bounds(p)[0], "end": period_bounds(p)[1]}
                  for p in sorted(set(periods))]
        rows = await tx.rows(q.LOCK_PERIODS, {"periods": params, "currency": currency,
                                              "now": now})
        return {r["period"]["id"]: r["period"]["status"] for r in rows}

    async def not_open_from(self, tx: CountingTx, first: str) -> set[str]:
        return {r["id"] for r in await tx.rows(q.CLOSED_PERIODS_FROM, {"from": first})}

    async def set_status(self, period: str, from_: Sequence[str], to: str) -> Period | None:
        rows = await self.db.write(q.SET_PERIOD_STATUS,
                                   {"id": period, "from": list(from_), "to": to})
        return period_from_row(rows[0]["period"]) if rows else None

    async def freeze(self, period: str, now: datetime, by: str, checksum: str) -> Period | None:
        rows = await self.db.write(q.FREEZE_PERIOD, {"id": period, "now": now, "by": by,
                                                     "checksum": checksum})
        return period_from_row(rows[0]["period"]) if rows else None

    async def checksum_rows(self, period: str) -> list[str]:
        rows = await self.db.read(q.CHECKSUM_LINES, {"period": period})
        return list(rows[0]["rows"]) if rows else []

    # --- usage -------------------------------------------------------------------------------

    async def write_usage(self, tx: CountingTx, rows: list[dict[str, Any]],
                          now: datetime) -> list[dict[str, Any]]:
        return await tx.rows(q.WRITE_USAGE, {"rows": rows, "now": now})

    # --- calculation input -------------------------------------------------------------------

    async def pricing(self, period: str) -> tuple[list[RateCard], dict[str, str]]:
        """The rate cards a period's usage can be priced at, and the meters (code -> unit)."""
        cards = [rate_from_row(r["rate"]) for r in await self.db.read(
            q.RATES_BEFORE, {"end": period_bounds(period)[1].date()})]
        return cards, {m.code: m.unit for m in await self.meters()}

    async def calculation_input(
        self, period: str, currency: str, usage: bool = True,
        pricing: tuple[list[RateCard], dict[str, str]] | None = None,
    ) -> CalculationInput:
        """Everything a period's calculation reads; without ``usage``, all but the usage
        (``usage_groups`` reads it, so the engine can start on fees and pools meanwhile);
        ``pricing``: what :meth:`pricing` answered, when already read."""
        start, end = period_bounds(period)
        pools = await self.pools_for(period)
        # The CI attributes the period's pools share by or pass onward by, read with the items.
        attrs = sorted({a for p in pools if period in p.amounts
                        for a in (p.attribute, p.onward) if a is not None})
        # The three big reads at once: Neo4j answers them on as many cores.
        [items_row], [edges], [subs_row] = await asyncio.gather(
            self.db.read(q.ITEMS, {"attrs": attrs}), self.db.read(q.USE_EDGES),
            self.db.read(q.SUBSCRIPTIONS, {"start": start, "end": end}))
        items = {row[0]: _item_row(row, attrs) for row in items_row["items"]}
        uses: dict[str, list[str]] = {}
        for provider, consumer in edges["pairs"]:
            uses.setdefault(provider, []).append(consumer)
        subs = []
        plans: dict[str, PricePlan] = {}  # versions are shared by many subscriptions
        for (sid, user, cc, item_id, item_name, service_id, ci_ids, start_at, end_at,
             plan_text, (quoted_currency, quoted_one_off, quoted_monthly)) in subs_row["subs"]:
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
            subs.append(SubscriptionRow(
                id=sid, user=user, cost_centre=cc, item_id=item_id, item_name=item_name,
                service_id=service_id, ci_ids=tuple(ci_ids or ()), start=_dt(start_at),
                end=as_datetime(end_at), monthly=monthly, one_off=one_off,
                currency=fee_currency,
            ))
        # What ended subscriptions provisioned was retired when they ended: it still carries
        # its cost (pool shares by its driver) for the days they held it.
        held = sorted({ci for x in subs if x.end is not None for ci in x.ci_ids} - items.keys())
        if held:
            [held_row] = await self.db.read(q.HELD_ITEMS, {"held": held, "attrs": attrs})
            items.update((row[0], _item_row(row, attrs)) for row in held_row["items"])
            [held_edges] = await self.db.read(q.HELD_EDGES, {"held": held})
            for provider, consumer in held_edges["pairs"]:
                uses.setdefault(provider, []).append(consumer)
        [users_row] = await self.db.read(q.USERS)
        users = {uid: (name, cc) for uid, name, cc in users_row["users"]}
        ccs = await self.cost_centres()
        cards, meters = pricing or await self.pricing(period)
        data = CalculationInput(
            period=period, currency=currency, items=items, uses=uses, subscriptions=subs,
            users=users, cost_centres=ccs, rate_cards={c.id: c for c in cards},
            meter_units=meters, usage=[], pools=pools,
        )
        if usage:
            data.usage = await self.usage_groups(period, data.rate_cards.values(), meters)
        return data

    async def usage_groups(self, period: str, cards: Iterable[RateCard],
                           meters: Iterable[str]) -> list[UsageGroup]:
        """The usage billed in the period, summed per CI, meter, month and the rate card
        version in force at each record's time (Neo4j does the summing)."""
        windows = usage_windows(period_bounds(period)[0].tzinfo, cards, meters)
        rows = await self.db.read(q.AGGREGATE_USAGE, {"period": period, "windows": windows})
        # Rows come as [ci, meter, month, rate card, micros, records]: sums of integers.
        groups = [UsageGroup._make((*g, 0)) for row in rows for g in row["groups"]]
        late = [{"i": i, "ci": g.ci, "meter": g.meter, "month": g.month,
                 "from": w["from"], "to": w["to"]}
                for i, g in enumerate(groups) if g.month < period and g.rate_card
                for w in windows if w["rate"] == g.rate_card and w["meter"] == g.meter]
        if late:
            # Late usage continues the tiers of its month: read what earlier periods billed.
            for r in await self.db.read(q.PRIOR_USAGE, {"period": period, "groups": late}):
                i = r["i"]
                groups[i] = groups[i]._replace(prior_micros=int(r["micros"]))
        return groups

    async def sessions_on(self, ids: Sequence[str], period: str) -> dict[str, int]:
        start, end = period_bounds(period)
        rows = await self.db.read(q.SESSIONS_ON, {"ids": list(ids), "start": start,
                                                  "end": end})
        return {r["user"]: int(r["sessions"]) for r in rows}

    async def session_seconds_on(self, ids: Sequence[str], period: str,
                                 until: datetime) -> dict[str, int]:
        """Seconds of desktop sessions on ``ids`` per user within the period, up to
        ``until`` at the latest."""
        start, end = period_bounds(period)
        rows = await self.db.read(q.SESSION_SECONDS_ON, {
            "ids": list(ids), "start": start, "until": min(end, max(until, start))})
        return {r["user"]: int(r["seconds"]) for r in rows}

    async def role_holders(self, role: str, period: str) -> list[str]:
        start, end = period_bounds(period)
        rows = await self.db.read(q.ROLE_HOLDERS, {"role": role, "start": start, "end": end})
        return [r["user"] for r in rows]

    async def cost_centres(self) -> dict[str, CostCentreRow]:
        return {r["code"]: CostCentreRow(r["code"], r["name"], r["parent"], BillingMode(r["mode"]))
                for r in await self.db.read(q.COST_CENTRES)}

    async def set_billing_mode(self, code: str, mode: BillingMode) -> bool:
        return bool(await self.db.write(q.SET_BILLING_MODE, {"code": code, "mode": mode.value}))

    async def finance_scope(self, user: str) -> set[str]:
        return {r["code"] for r in await self.db.read(q.FINANCE_SCOPE, {"user": user})}

    # --- lines -------------------------------------------------------------------------------

    async def start_run(self, period: str) -> str | None:
        """A new run for the period's lines, registered as being written (the sweep leaves
        it alone), or None when the period is closed."""
        run = uuid.uuid4().hex
        if not await self.db.write(q.START_RUN, {"period": period, "run": run}):
            return None
        return run

    async def write_run(self, run: str, chunks: AsyncIterator[Sequence[dict[str, Any]]]
                        ) -> tuple[int, int]:
        """Write the lines of a run (not yet current) as they come; (lines, total cents).

        Batches of ``LINE_BATCH`` lines, ``LINES_IN_FLIGHT`` at a time: one is packed and sent
        while Neo4j writes another, and the lines still being calculated keep coming. A
        failure leaves a run nobody points at (``discard_run`` deletes it).
        """
        lines = total = 0
        pending: set[asyncio.Future[Any]] = set()
        batch: list[dict[str, Any]] = []

        async def send() -> None:
            nonlocal pending
            while len(pending) >= LINES_IN_FLIGHT:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            pending.add(asyncio.ensure_future(self.db.write(q.CREATE_LINES, {"rows": batch})))

        try:
            async for chunk in chunks:
                for row in chunk:
                    batch.append(stored_line(row, run))
                    total += row["amountMinor"]
                    if len(batch) >= LINE_BATCH:
                        await send()
                        batch = []
                lines += len(chunk)
            if batch:
                await send()
            for task in list(pending):
                await task
        finally:
            await asyncio.gather(*pending, return_exceptions=True)
        return lines, total

    async def switch_run(self, period: str, run: str, lines: int, total: int,
                         warnings: list[str], now: datetime) -> Period | None:
        """Make ``run`` the period's current lines in one small transaction (None when the
        period closed meanwhile). The replaced lines are deleted afterwards, in the
        background: nobody reads them any more (every read goes through the current run)."""
        switched = await self.db.write(q.SWITCH_RUN, {
            "id": period, "run": run, "now": now, "total": total, "lines": lines,
            "warnings": warnings})
        if not switched:  # closed while the run was written: its lines go again
            self.discard_run(period, run)
            return None
        self._background(self._sweep(period))
        return period_from_row(switched[0]["period"])

    def discard_run(self, period: str, run: str) -> None:
        """Forget a run that failed to be written and delete its lines, without waiting."""
        self._background(self._discard(period, run))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        _CLEANUP.add(task)
        task.add_done_callback(_CLEANUP.discard)

    async def _discard(self, period: str, run: str) -> None:
        try:
            await self.db.write(q.END_RUN, {"period": period, "run": run})
        except Exception:  # the run stays registered: swept when the period closes
            log.warning("forgetting run %s of %s failed", run, period, exc_info=True)
            return
        await self._sweep(period)

    async def _sweep(self, period: str) -> None:
        try:
            while (await self.db.write(q.SWEEP_RUNS, {"period": period,
                                                      "limit": LINE_BATCH}))[0]["deleted"]:
                pass
        except Exception:  # the lines stay unread; the next sweep takes them
            log.warning("deleting replaced lines of %s failed", period, exc_info=True)

    async def sweep_runs(self, period: str) -> None:
        """Delete every run of a closed period that is not current (left by a calculation
        that failed or was interrupted while the period closed)."""
        while (await self.db.write(q.DELETE_OLD_RUNS, {"period": period,
                                                       "limit": LINE_BATCH}))[0]["deleted"]:
            pass

    async def add_adjustment(self, period: str, row: dict[str, Any]) -> bool:
        return bool(await self.db.write(q.CREATE_ADJUSTMENT, {"period": period, "row": row}))

    async def line(self, line_id: str) -> ChargeLine | None:
        rows = await self.db.read(q.GET_LINE, {"id": line_id})
        return line_from_row(rows[0]["line"]) if rows else None

    async def lines(self, period: str, codes: list[str] | None, user: str | None,
                    filters: dict[str, Any], first: int,
                    after: tuple[int, str] | None) -> list[ChargeLine]:
        params = {"period": period, "codes": codes, "user": user, "first": first,
                  "after": list(after) if after else None, **filters}
        return [line_from_row(r["line"]) for r in await self.db.read(q.FIND_LINES, params)]

    async def all_lines(self, period: str, codes: list[str] | None, user: str | None,
                        skip: int, limit: int) -> list[ChargeLine]:
        rows = await self.db.read(q.PERIOD_LINES, {"period": period, "codes": codes,
                                                   "user": user, "skip": skip, "limit": limit})
        return [line_from_row(r["line"]) for r in rows]

    async def recovery(self, period: str, codes: list[str] | None) -> list[ServiceRecovery]:
        """Services recovered through prices: their cost and their fees in the period."""
        out = []
        for r in await self.db.read(q.SERVICE_RECOVERY, {"period": period, "codes": codes}):
            cost, recovered = _cents(r["costMinor"]), _cents(r["recoveredMinor"])
            out.append(ServiceRecovery(
                service_id=r["id"], service_name=r["name"], cost_centre=r["costCentre"],
                rule=CostRecovery.PRICES, cost=cost, recovered=recovered,
                over_under=recovered - cost, currency=r["currency"], lines=int(r["lines"]),
                fee_lines=int(r["feeLines"])))
        return out

    async def totals(self, prop: str, period: str, codes: list[str] | None,
                     user: str | None) -> list[dict[str, Any]]:
        return await self.db.read(q.REPORT_BY[prop], {"period": period, "codes": codes,
                                                      "user": user})


# Bounds of the rate windows: before any rate card, and after the last one ends.
_DAWN = datetime(1, 1, 1, tzinfo=UTC)
_DOOM = datetime(9999, 12, 31, tzinfo=UTC)


def usage_windows(tz: tzinfo | None, cards: Iterable[RateCard], meters: Iterable[str]
                  ) -> list[dict[str, Any]]:
    """Per meter, the spans of time each rate card is in force, and the gaps without one
    (rate None), together covering all time: ``{meter, rate, from, to}``, ``to`` excluded."""
    by_meter: dict[str, list[RateCard]] = {m: [] for m in meters}
    for c in cards:
        by_meter.setdefault(c.meter, []).append(c)
    out: list[dict[str, Any]] = []
    for meter in sorted(by_meter):
        at = _DAWN
        for c in sorted(by_meter[meter], key=lambda c: c.effective_from):
            start = datetime.combine(c.effective_from, datetime.min.time(), tz)
            end = _DOOM if c.effective_to is None else datetime.combine(
                c.effective_to, datetime.min.time(), tz)
            if start > at:
                out.append({"meter": meter, "rate": None, "from": at, "to": start})
            if end > start:
                out.append({"meter": meter, "rate": c.id, "from": start, "to": end})
            at = max(at, end)
        if at < _DOOM:
            out.append({"meter": meter, "rate": None, "from": at, "to": _DOOM})
    return out


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


def _cents(minor: Any) -> Decimal:
    return (Decimal(int(minor or 0)) * CENT).quantize(CENT)


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float | str):
        try:
            return Decimal(str(v))
        except ArithmeticError:
            return None
    return None
