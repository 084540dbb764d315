"""Runs the chargeback Cypher and turns rows into models."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from cmdb.catalog.models import PricePlan
from cmdb.chargeback import queries as q
from cmdb.chargeback.engine import (
    CalculationInput,
    CostCentreRow,
    ItemRow,
    SubscriptionRow,
    UsageGroup,
)
from cmdb.chargeback.models import (
    CENT,
    BillingMode,
    ChargeLine,
    CostPool,
    Driver,
    LineKind,
    Meter,
    Period,
    PeriodStatus,
    RateCard,
    Tier,
    period_bounds,
)
from cmdb.core.mapping import as_datetime
from cmdb.db.driver import CountingTx, Database

LINE_BATCH = 10_000
LINES_IN_FLIGHT = 2


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
    )


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


def line_from_row(r: dict[str, Any]) -> ChargeLine:
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
        corrects_line=r.get("correctsLine"),
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

    async def upsert_pool(self, params: dict[str, Any]) -> CostPool:
        rows = await self.db.write(q.UPSERT_POOL, params)
        return pool_from_row(rows[0]["pool"])

    async def set_pool_cost(self, params: dict[str, Any]) -> CostPool | None:
        rows = await self.db.write(q.SET_POOL_COST, params)
        return pool_from_row(rows[0]["pool"]) if rows else None

    async def pools(self) -> list[CostPool]:
        return [pool_from_row(r["pool"]) for r in await self.db.read(q.LIST_POOLS)]

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

    async def calculation_input(self, period: str, currency: str) -> CalculationInput:
        start, end = period_bounds(period)
        [items_row] = await self.db.read(q.ITEMS)
        items = {i: ItemRow(i, name, cls, cc, _num(cpu), _num(size))
                 for i, name, cls, cc, cpu, size in items_row["items"]}
        uses: dict[str, list[str]] = {}
        [edges] = await self.db.read(q.USE_EDGES)
        for provider, consumer in edges["pairs"]:
            uses.setdefault(provider, []).append(consumer)
        subs = []
        plans: dict[str, PricePlan] = {}  # versions are shared by many subscriptions
        [subs_row] = await self.db.read(q.SUBSCRIPTIONS, {"start": start, "end": end})
        for (sid, user, cc, item_id, item_name, service_id, ci_ids, start_at, end_at,
             plan_text) in subs_row["subs"]:
            plan = None
            if plan_text:
                plan = plans.get(plan_text) or plans.setdefault(
                    plan_text, PricePlan.model_validate_json(plan_text))
            subs.append(SubscriptionRow(
                id=sid, user=user, cost_centre=cc, item_id=item_id, item_name=item_name,
                service_id=service_id, ci_ids=tuple(ci_ids or ()), start=_dt(start_at),
                end=as_datetime(end_at), monthly=plan.monthly if plan else Decimal(0),
                one_off=plan.one_off if plan else Decimal(0),
                currency=plan.currency if plan else currency,
            ))
        [users_row] = await self.db.read(q.USERS)
        users = {uid: (name, cc) for uid, name, cc in users_row["users"]}
        ccs = await self.cost_centres()
        cards = [rate_from_row(r["rate"]) for r in await self.db.read(q.RATES_BEFORE,
                                                                        {"end": end.date()})]
        bounds: dict[str, list[dict[str, Any]]] = {}
        for c in cards:
            bounds.setdefault(c.meter, []).append({
                "id": c.id, "from": datetime.combine(c.effective_from, datetime.min.time(),
                                                     start.tzinfo),
                "to": None if c.effective_to is None else datetime.combine(
                    c.effective_to, datetime.min.time(), start.tzinfo)})
        [usage_row] = await self.db.read(q.AGGREGATE_USAGE, {"period": period,
                                                             "bounds": bounds})
        usage = [UsageGroup(ci, meter, month, rate, int(micros), int(records))
                 for ci, meter, month, rate, micros, records in usage_row["groups"]]
        meters = {m.code: m.unit for m in await self.meters()}
        return CalculationInput(
            period=period, currency=currency, items=items, uses=uses, subscriptions=subs,
            users=users, cost_centres=ccs, rate_cards={c.id: c for c in cards},
            meter_units=meters, usage=usage, pools=await self.pools(),
        )

    async def sessions_on(self, ids: Sequence[str], period: str) -> dict[str, int]:
        start, end = period_bounds(period)
        rows = await self.db.read(q.SESSIONS_ON, {"ids": list(ids), "start": start,
                                                  "end": end})
        return {r["user"]: int(r["sessions"]) for r in rows}

    async def cost_centres(self) -> dict[str, CostCentreRow]:
        return {r["code"]: CostCentreRow(r["code"], r["name"], r["parent"], BillingMode(r["mode"]))
                for r in await self.db.read(q.COST_CENTRES)}

    async def set_billing_mode(self, code: str, mode: BillingMode) -> bool:
        return bool(await self.db.write(q.SET_BILLING_MODE, {"code": code, "mode": mode.value}))

    async def finance_scope(self, user: str) -> set[str]:
        return {r["code"] for r in await self.db.read(q.FINANCE_SCOPE, {"user": user})}

    # --- lines -------------------------------------------------------------------------------

    async def replace_lines(self, period: str, rows: list[dict[str, Any]], warnings: list[str],
                            now: datetime, timings: dict[str, float] | None = None
                            ) -> tuple[str, Period | None]:
        """Make ``rows`` the period's calculated lines, if it is open.

        The rows are written as a new run, batch by batch; one small transaction then makes
        the run current (readers never see a run half written, and a period closed meanwhile
        keeps its lines); the lines of earlier runs are deleted last, batch by batch.
        """
        found = await self.db.read(q.GET_PERIOD, {"id": period})
        if found and found[0]["period"]["status"] == "CLOSED":
            return "CLOSED", None
        run = uuid.uuid4().hex
        total = 0
        started = time.perf_counter()
        # Two batches in flight: one is packed and sent while Neo4j writes the other. A
        # failure leaves a run nobody points at; the next calculation deletes it.
        pending: set[asyncio.Future[Any]] = set()
        try:
            for i in range(0, len(rows), LINE_BATCH):
                batch = [{**row, "run": run} for row in rows[i:i + LINE_BATCH]]
                total += sum(row["amountMinor"] for row in batch)
                if len(pending) >= LINES_IN_FLIGHT:
                    done, pending = await asyncio.wait(pending,
                                                       return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()
                pending.add(asyncio.ensure_future(
                    self.db.write(q.CREATE_LINES, {"rows": batch})))
            for task in list(pending):
                await task
        finally:
            await asyncio.gather(*pending, return_exceptions=True)
        switched = await self.db.write(q.SWITCH_RUN, {
            "id": period, "run": run, "now": now, "total": total, "lines": len(rows),
            "warnings": warnings})
        written = time.perf_counter()
        while (await self.db.write(q.DELETE_OLD_RUNS, {"period": period,
                                                       "limit": LINE_BATCH}))[0]["deleted"]:
            pass
        if timings is not None:
            timings["write_lines"] = written - started
            timings["delete_old_lines"] = time.perf_counter() - written
        if not switched:  # closed while the run was written: its lines are gone again
            return "CLOSED", None
        return "OPEN", period_from_row(switched[0]["period"])

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

    async def totals(self, prop: str, period: str, codes: list[str] | None,
                     user: str | None) -> list[dict[str, Any]]:
        return await self.db.read(q.REPORT_BY[prop], {"period": period, "codes": codes,
                                                      "user": user})


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float | str):
        try:
            return Decimal(str(v))
        except ArithmeticError:
            return None
    return None
