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
from cmdb.chargeback.models import (
    CENT,
    HOLDER_FIELDS,
    BillingMode,
    ChargeLine,
    ChargePeriod,
    CostCentreRow,
    CostPool,
    CostSource,
    Driver,
    LineKind,
    Meter,
    Period,
    PeriodStatus,
    PoolAllocation,
    PoolHolder,
    RateCard,
    ServiceRecovery,
    Tier,
    UsageGroup,
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

    async def pool_assets(self, codes: Sequence[str]) -> dict[str, list[list[Any]]]:
        """Per pool code, the asset records under its CIs (``q.POOL_ASSETS`` rows)."""
        rows = await self.db.read(q.POOL_ASSETS, {"codes": list(codes)})
        return {r["code"]: list(r["assets"]) for r in rows}


    # --- periods -----------------------------------------------------------------------------

    async def period(self, period: ChargePeriod) -> Period | None:
        rows = await self.db.read(q.GET_PERIOD, {"id": period.id})
        return period_from_row(rows[0]["period"]) if rows else None

    async def periods(self) -> list[Period]:
        return [period_from_row(r["period"]) for r in await self.db.read(q.LIST_PERIODS)]

    async def ensure_periods(self, tx: CountingTx, periods: Iterable[ChargePeriod],
                             currency: str, now: datetime) -> dict[str, str]:
        """Period id -> status, made OPEN when new and locked for the transaction."""
        params = [{"id": p.id, "start": p.start, "end": p.end} for p in sorted(set(periods))]
        rows = await tx.rows(q.LOCK_PERIODS, {"periods": params, "currency": currency,
                                              "now": now})
        return {r["period"]["id"]: r["period"]["status"] for r in rows}

    async def not_open_from(self, tx: CountingTx, first: ChargePeriod) -> set[str]:
        return {r["id"] for r in await tx.rows(q.CLOSED_PERIODS_FROM, {"from": first.id})}

    async def set_status(self, period: ChargePeriod, from_: Sequence[str], to: str
                         ) -> Period | None:
        rows = await self.db.write(q.SET_PERIOD_STATUS,
                                   {"id": period.id, "from": list(from_), "to": to})
        return period_from_row(rows[0]["period"]) if rows else None

    async def freeze(self, period: ChargePeriod, now: datetime, by: str, checksum: str
                     ) -> Period | None:
        rows = await self.db.write(q.FREEZE_PERIOD, {"id": period.id, "now": now, "by": by,
                                                     "checksum": checksum})
        return period_from_row(rows[0]["period"]) if rows else None

    async def checksum_rows(self, period: ChargePeriod) -> list[str]:
        rows = await self.db.read(q.CHECKSUM_LINES, {"period": period.id})
        return list(rows[0]["rows"]) if rows else []

    # --- usage -------------------------------------------------------------------------------

    async def write_usage(self, tx: CountingTx, rows: list[dict[str, Any]],
                          now: datetime) -> list[dict[str, Any]]:
        return await tx.rows(q.WRITE_USAGE, {"rows": rows, "now": now})

    # --- calculation input -------------------------------------------------------------------

    async def pricing(self, period: ChargePeriod) -> tuple[list[RateCard], dict[str, str]]:
        """The rate cards a period's usage can be priced at, and the meters (code -> unit)."""
        cards = [rate_from_row(r["rate"]) for r in await self.db.read(
            q.RATES_BEFORE, {"end": period.end.date()})]
        return cards, {m.code: m.unit for m in await self.meters()}

    async def graph_rows(self, period: ChargePeriod, attrs: Sequence[str]
                         ) -> tuple[list[Any], list[Any], list[Any]]:
        """The items (with the values of ``attrs``), the use edges and the subscriptions
        active in the period, as ``q.ITEMS``, ``q.USE_EDGES`` and ``q.SUBSCRIPTIONS`` give
        them. The three big reads at once: Neo4j answers them on as many cores."""
        [items], [edges], [subs] = await asyncio.gather(
            self.db.read(q.ITEMS, {"attrs": list(attrs)}), self.db.read(q.USE_EDGES),
            self.db.read(q.SUBSCRIPTIONS, {"start": period.start, "end": period.end}))
        return items["items"], edges["pairs"], subs["subs"]

    async def held_rows(self, held: Sequence[str], attrs: Sequence[str]
                        ) -> tuple[list[Any], list[Any]]:
        """Retired CIs that ended subscriptions held, and what uses them."""
        [items] = await self.db.read(q.HELD_ITEMS, {"held": list(held), "attrs": list(attrs)})
        [edges] = await self.db.read(q.HELD_EDGES, {"held": list(held)})
        return items["items"], edges["pairs"]

    async def users(self) -> dict[str, tuple[str, str | None]]:
        """User id -> (user name, cost centre)."""
        [row] = await self.db.read(q.USERS)
        return {uid: (name, cc) for uid, name, cc in row["users"]}

    async def usage_groups(self, period: ChargePeriod, cards: Iterable[RateCard],
                           meters: Iterable[str]) -> list[UsageGroup]:
        """The usage billed in the period, summed per CI, meter, month and the rate card
        version in force at each record's time (Neo4j does the summing)."""
        windows = usage_windows(period.start.tzinfo, cards, meters)
        rows = await self.db.read(q.AGGREGATE_USAGE, {"period": period.id, "windows": windows})
        # Rows come as [ci, meter, month, rate card, micros, records]: sums of integers.
        groups = [UsageGroup._make((*g, 0)) for row in rows for g in row["groups"]]
        late = [{"i": i, "ci": g.ci, "meter": g.meter, "month": g.month,
                 "from": w["from"], "to": w["to"]}
                for i, g in enumerate(groups) if g.month < period.id and g.rate_card
                for w in windows if w["rate"] == g.rate_card and w["meter"] == g.meter]
        if late:
            # Late usage continues the tiers of its month: read what earlier periods billed.
            for r in await self.db.read(q.PRIOR_USAGE, {"period": period.id,
                                                         "groups": late}):
                i = r["i"]
                groups[i] = groups[i]._replace(prior_micros=int(r["micros"]))
        return groups

    async def sessions_on(self, ids: Sequence[str], period: ChargePeriod) -> dict[str, int]:
        rows = await self.db.read(q.SESSIONS_ON, {"ids": list(ids), "start": period.start,
                                                  "end": period.end})
        return {r["user"]: int(r["sessions"]) for r in rows}

    async def session_seconds_on(self, ids: Sequence[str], period: ChargePeriod,
                                 until: datetime) -> dict[str, int]:
        """Seconds of desktop sessions on ``ids`` per user within the period, up to
        ``until`` at the latest."""
        start = period.start
        rows = await self.db.read(q.SESSION_SECONDS_ON, {
            "ids": list(ids), "start": start, "until": min(period.end, max(until, start))})
        return {r["user"]: int(r["seconds"]) for r in rows}

    async def role_holders(self, role: str, period: ChargePeriod) -> list[str]:
        rows = await self.db.read(q.ROLE_HOLDERS, {"role": role, "start": period.start,
                                                   "end": period.end})
        return [r["user"] for r in rows]

    async def cost_centres(self) -> dict[str, CostCentreRow]:
        return {r["code"]: CostCentreRow(r["code"], r["name"], r["parent"], BillingMode(r["mode"]))
                for r in await self.db.read(q.COST_CENTRES)}

    async def set_billing_mode(self, code: str, mode: BillingMode) -> bool:
        return bool(await self.db.write(q.SET_BILLING_MODE, {"code": code, "mode": mode.value}))

    async def finance_scope(self, user: str) -> set[str]:
        return {r["code"] for r in await self.db.read(q.FINANCE_SCOPE, {"user": user})}

    # --- lines -------------------------------------------------------------------------------

    async def start_run(self, period: ChargePeriod) -> str | None:
        """A new run for the period's lines, registered as being written (the sweep leaves
        it alone), or None when the period is closed."""
        run = uuid.uuid4().hex
        if not await self.db.write(q.START_RUN, {"period": period.id, "run": run}):
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

    async def switch_run(self, period: ChargePeriod, run: str, lines: int, total: int,
                         warnings: list[str], now: datetime) -> Period | None:
        """Make ``run`` the period's current lines in one small transaction (None when the
        period closed meanwhile). The replaced lines are deleted afterwards, in the
        background: nobody reads them any more (every read goes through the current run)."""
        switched = await self.db.write(q.SWITCH_RUN, {
            "id": period.id, "run": run, "now": now, "total": total, "lines": lines,
            "warnings": warnings})
        if not switched:  # closed while the run was written: its lines go again
            self.discard_run(period, run)
            return None
        self._background(self._sweep(period))
        return period_from_row(switched[0]["period"])

    def discard_run(self, period: ChargePeriod, run: str) -> None:
        """Forget a run that failed to be written and delete its lines, without waiting."""
        self._background(self._discard(period, run))

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        _CLEANUP.add(task)
        task.add_done_callback(_CLEANUP.discard)

    async def _discard(self, period: ChargePeriod, run: str) -> None:
        try:
            await self.db.write(q.END_RUN, {"period": period.id, "run": run})
        except Exception:  # the run stays registered: swept when the period closes
            log.warning("forgetting run %s of %s failed", run, period, exc_info=True)
            return
        await self._sweep(period)

    async def _sweep(self, period: ChargePeriod) -> None:
        try:
            while (await self.db.write(q.SWEEP_RUNS, {"period": period.id,
                                                      "limit": LINE_BATCH}))[0]["deleted"]:
                pass
        except Exception:  # the lines stay unread; the next sweep takes them
            log.warning("deleting replaced lines of %s failed", period, exc_info=True)

    async def sweep_runs(self, period: ChargePeriod) -> None:
        """Delete every run of a closed period that is not current (left by a calculation
        that failed or was interrupted while the period closed)."""
        while (await self.db.write(q.DELETE_OLD_RUNS, {"period": period.id,
                                                       "limit": LINE_BATCH}))[0]["deleted"]:
            pass

    async def add_adjustment(self, period: ChargePeriod, row: dict[str, Any]) -> bool:
        return bool(await self.db.write(q.CREATE_ADJUSTMENT, {"period": period.id,
                                                              "row": row}))

    async def line(self, line_id: str) -> ChargeLine | None:
        rows = await self.db.read(q.GET_LINE, {"id": line_id})
        return line_from_row(rows[0]["line"]) if rows else None

    async def lines(self, period: ChargePeriod, codes: list[str] | None, user: str | None,
                    filters: dict[str, Any], first: int,
                    after: tuple[int, str] | None) -> list[ChargeLine]:
        params = {"period": period.id, "codes": codes, "user": user, "first": first,
                  "after": list(after) if after else None, **filters}
        return [line_from_row(r["line"]) for r in await self.db.read(q.FIND_LINES, params)]

    async def all_lines(self, period: ChargePeriod, codes: list[str] | None,
                        user: str | None, skip: int, limit: int) -> list[ChargeLine]:
        rows = await self.db.read(q.PERIOD_LINES, {"period": period.id, "codes": codes,
                                                   "user": user, "skip": skip, "limit": limit})
        return [line_from_row(r["line"]) for r in rows]

    async def recovery(self, period: ChargePeriod, codes: list[str] | None
                       ) -> list[ServiceRecovery]:
        """Services recovered through prices: their cost and their fees in the period."""
        out = []
        for r in await self.db.read(q.SERVICE_RECOVERY, {"period": period.id,
                                                         "codes": codes}):
            cost, recovered = _cents(r["costMinor"]), _cents(r["recoveredMinor"])
            out.append(ServiceRecovery(
                service_id=r["id"], service_name=r["name"], cost_centre=r["costCentre"],
                rule=CostRecovery.PRICES, cost=cost, recovered=recovered,
                over_under=recovered - cost, currency=r["currency"], lines=int(r["lines"]),
                fee_lines=int(r["feeLines"])))
        return out

    async def totals(self, prop: str, period: ChargePeriod, codes: list[str] | None,
                     user: str | None) -> list[dict[str, Any]]:
        return await self.db.read(q.REPORT_BY[prop], {"period": period.id, "codes": codes,
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


def _cents(minor: Any) -> Decimal:
    return (Decimal(int(minor or 0)) * CENT).quantize(CENT)

