"""The demo's chargeback set-up: meters, rate cards, shared cost pools and this month's storage
usage, so cost reports answer as soon as a period is calculated. Idempotent: meters by code,
rate cards only for meters without one, pools by code, usage by record id."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cmdb.chargeback.models import period_of
from cmdb.chargeback.service import ChargebackService
from cmdb.core.clock import utcnow
from cmdb.identity.principal import Principal

METERS: tuple[tuple[str, str, str], ...] = (
    ("vcpu-hours", "Virtual CPU time", "vCPU-hour"),
    ("storage-gb-month", "Block storage", "GB-month"),
    ("archive-gb-month", "Archive storage", "GB-month"),
    ("mailboxes", "Mailboxes", "mailbox"),
    ("api-calls", "API calls", "call"),
)
# Rates in force from 1 January 2026; storage is tiered per volume and month.
RATES: dict[str, list[dict[str, str | None]]] = {
    "vcpu-hours": [{"upTo": None, "rate": "0.02"}],
    "storage-gb-month": [{"upTo": "1000", "rate": "0.10"}, {"upTo": "5000", "rate": "0.08"},
                         {"upTo": None, "rate": "0.05"}],
    "archive-gb-month": [{"upTo": None, "rate": "0.05"}],
    "mailboxes": [{"upTo": None, "rate": "3.50"}],
    "api-calls": [{"upTo": "1000000", "rate": "0.000010"}, {"upTo": None, "rate": "0.000005"}],
}
# (code, name, driver, CI names, capacity, cost this month)
POOLS: tuple[tuple[str, str, str, tuple[str, ...], str | None, str], ...] = (
    ("vdi-platform", "VDI platform", "SESSIONS", ("pool-standard", "pool-trader"), None,
     "1000.00"),
    ("esx-cluster-a", "General-purpose cluster A", "VCPU", ("esx-cluster-a",), "192",
     "4500.00"),
    ("san-pure-lon-01", "Storage array pure-lon-01", "STORAGE_GB",
     ("vol-payroll-data", "vol-payroll-logs", "vol-trading-data", "vol-exchange-db01",
      "vol-esx-a-ds01", "vol-vdi-ds01"), "65536", "2200.00"),
)
STORAGE_VOLUMES = ("vol-payroll-data", "vol-payroll-logs", "vol-trading-data",
                   "vol-exchange-db01", "vol-exchange-db02")


async def load_chargeback(svc: ChargebackService, loader: Principal,
                          ids: dict[str, str], sizes: dict[str, int],
                          echo: Callable[[str], Any]) -> None:
    created = 0
    for code, name, unit in METERS:
        _, made = await svc.define_meter(loader, {"code": code, "name": name, "unit": unit})
        created += made
    priced = {c.meter for c in await svc.rate_cards()}
    for meter, tiers in RATES.items():
        if meter not in priced:
            await svc.publish_rate_card(loader, {"meter": meter, "effective_from": "2026-01-01",
                                                 "currency": svc.currency, "tiers": tiers})
            created += 1
    month = period_of(utcnow())
    have = {p.code: p for p in await svc.pools()}
    for code, name, driver, cis, capacity, amount in POOLS:
        if code not in have:
            await svc.define_pool(loader, {"code": code, "name": name, "driver": driver,
                                           "ci_ids": [ids[c] for c in cis],
                                           "capacity": capacity})
            created += 1
        current = await svc.period(month)
        if month not in (have[code].amounts if code in have else {}) and (
                current is None or current.status.value == "OPEN"):
            await svc.set_pool_cost(loader, code, month, Decimal(amount))
    records = [{"recordId": f"demo-{name}-{month}", "ciId": ids[name],
                "meter": "storage-gb-month", "quantity": str(sizes[name]),
                "at": utcnow().isoformat(), "source": "pure-array-export"}
               for name in STORAGE_VOLUMES]
    result = await svc.ingest_usage(loader, records)
    total = len(METERS) + len(RATES) + len(POOLS) + len(records)
    created += result.created
    echo(f"  chargeback: {len(METERS)} meters and rate cards, {len(POOLS)} cost pools, "
         f"{len(records)} usage records for {month} ({created} created, "
         f"{total - created} already present)")
