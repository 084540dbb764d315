"""Chargeback: a month of 1M usage records over 100k CIs and 10k subscriptions.

    PYTHONPATH=. .venv/bin/python -m bench.chargeback [--cis 100000] [--records 1000000]
        [--subscriptions 10000] [--instance test-3]

Empties the instance's graph (schema migrations stay: never point it at a graph you need),
then builds an estate directly with batched ``UNWIND`` Cypher, in the shape the product's own
queries read (``:Item:CI:<Family>:<Class>`` with ``ciClass`` and ``lifecycleStatus``,
``CHARGED_TO`` cost centres, services ``:Item:Service:BusinessService|TechnicalService``):

- cost centres in a three-level hierarchy, users in the departments;
- clusters of hypervisor hosts (``MEMBER_OF``), VMs ``RUNS_ON`` hosts with ``attr_cpu``,
  storage arrays with volumes (``MEMBER_OF``, ``attr_sizeGb``), databases running on VMs and
  depending on volumes, applications depending on VMs and databases, technical services
  depending on applications, business services on technical services (with diamonds);
- catalogue items with a version and its ``pricePlan`` JSON as the catalogue stores it, and
  subscriptions (``PROVISIONED`` VMs or volumes, or ``OF_SERVICE`` a technical service,
  ``OF_VERSION``) starting and ending across the month;
- ``:UsageRecord`` nodes exactly as ``ChargebackService.ingest_usage`` stores them, on four
  meters (vCPU-hours with a rate change mid-month, tiered GB-months, backup GB, network GB).

Every tenth business service recovers its cost from its subscribers (CONSUMERS) and every
tenth technical service through its prices (PRICES); the CIs of subscriptions that ended in
the month are retired, as decommissioning leaves them.

Meters, rate cards and cost pools (a VCPU pool with a capacity on each cluster, ten of them
costed from asset records on their hosts; an ATTRIBUTE pool by the VMs' memory over ten
clusters, passed onward by the load of the databases and applications on them; a STORAGE_GB
pool over the arrays, an EQUAL pool over some databases) go through ``ChargebackService``.
Then it times ``ChargebackService.calculate`` (per stage), a recalculation, the cost-centre
report (p50/p95), a drill-down page of lines, checks that every source's lines add up to the
source's own total (pools: the pool amount exactly), reads the peak RSS of this process and
of Neo4j, and finally times 100k records of the next month through ``ingest_usage``.
Writes ``bench/results/chargeback.json`` and the "Chargeback" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any, LiteralString

from bench.doc import replace_section
from bench.ingest import machine
from bench.load import connect_settings
from bench.run import DOC, RESULTS
from cmdb.chargeback.engine import HOLDER_FIELDS
from cmdb.chargeback.models import ReportDimension
from cmdb.chargeback.service import ChargebackService
from cmdb.db.driver import Database
from cmdb.db.migrations import migrate
from cmdb.identity.principal import Principal

SECTION_START = "<!-- chargeback:start -->"
SECTION_END = "<!-- chargeback:end -->"
TARGET_CALC_S = 10.0
TARGET_REPORT_S = 1.0
TARGET_RSS_MB = 1024.0
PERIOD = "2026-10"
START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_S = 31 * 86400
RATE_CHANGE = datetime(2026, 10, 16, tzinfo=UTC)
ADMIN = Principal("bench", frozenset({"admin"}))
INSTANCES = ("bench", "bench-m", *(f"test-{n}" for n in range(1, 10)))

# Meter, the class whose CIs it measures, its share of the records (of 20), rate tiers.
METERS: list[tuple[str, str, str, int]] = [
    ("vcpu-hours", "vCPU-hour", "VirtualMachine", 12),
    ("storage-gb-month", "GB-month", "StorageVolume", 3),
    ("backup-gb", "GB", "Database", 2),
    ("network-gb", "GB", "ApplicationInstance", 3),
]
TIERS: dict[str, list[dict[str, str | None]]] = {
    "vcpu-hours": [{"upTo": None, "rate": "0.012"}],
    "storage-gb-month": [{"upTo": "1000", "rate": "0.10"}, {"upTo": "5000", "rate": "0.08"},
                         {"upTo": None, "rate": "0.05"}],
    "backup-gb": [{"upTo": None, "rate": "0.03"}],
    "network-gb": [{"upTo": None, "rate": "0.02"}],
}
VCPU_V2 = [{"upTo": None, "rate": "0.011"}]  # vcpu-hours from RATE_CHANGE on

# --- the estate ------------------------------------------------------------------------------

_COST_CENTRES: LiteralString = """
CREATE (root:Org:CostCentre {id: 'cc-root', code: 'CC-0', name: 'Group', nameLower: 'group'})
WITH root
UNWIND range(1, $divisions) AS d
CREATE (div:Org:CostCentre {id: 'cc-' + d, code: 'CC-' + d, name: 'Division ' + d,
  nameLower: 'division ' + d})
CREATE (div)-[:PART_OF]->(root)
WITH div, d
UNWIND range(1, $perDivision) AS k
WITH div, d * 100 + k AS code
CREATE (dep:Org:CostCentre {id: 'cc-' + code, code: 'CC-' + code, name: 'Department ' + code,
  nameLower: 'department ' + code,
  billingMode: CASE WHEN code % 10 = 0 THEN 'SHOWBACK' ELSE null END})
CREATE (dep)-[:PART_OF]->(div)
"""

_USERS: LiteralString = """
UNWIND range(0, $n - 1) AS i
MATCH (cc:CostCentre {code: $deps[i % size($deps)]})
CREATE (u:User {id: 'u-' + i, userName: 'user' + i, userNameLower: 'user' + i,
  displayName: 'User ' + i, active: true})
CREATE (u)-[:IN_COST_CENTRE]->(cc)
"""

# One class of CIs: $label is fixed text chosen from _LABELS below, never user input.
_LABELS: dict[str, LiteralString] = {
    "Cluster": ":Item:CI:Grouping:Cluster",
    "HypervisorHost": ":Item:CI:Compute:Hardware:HypervisorHost",
    "VirtualMachine": ":Item:CI:Compute:Virtual:VirtualMachine",
    "Server": ":Item:CI:Compute:Hardware:Server",
    "StorageVolume": ":Item:CI:Storage:StorageVolume",
    "Database": ":Item:CI:Software:Database",
    "ApplicationInstance": ":Item:CI:Software:ApplicationInstance",
}


# Every tenth business service recovers its cost from its subscribers, every tenth technical
# one through its prices; CIs of subscriptions that ended in the month are retired (as
# decommissioning leaves them); the hosts of clusters 10-19 carry asset records.
_RULES: LiteralString = """
MATCH (s:BusinessService) WHERE toInteger(substring(s.id, 3)) % 10 = 0
SET s.costRecovery = 'CONSUMERS'
WITH count(*) AS done
MATCH (s:TechnicalService) WHERE toInteger(substring(s.id, 3)) % 10 = 5
SET s.costRecovery = 'PRICES'
"""
_RETIRE_ENDED: LiteralString = """
MATCH (s:Subscription) WHERE s.endAt IS NOT NULL
UNWIND s.ciIds AS id
MATCH (n:Item {id: id})
SET n.lifecycleStatus = 'RETIRED'
"""
_ASSETS: LiteralString = """
MATCH (h:HypervisorHost)-[:MEMBER_OF]->(c:Cluster) WHERE c.id IN $clusters
CREATE (a:Asset {ciId: h.id, currency: 'EUR',
  purchasePrice: toString(24000 + toInteger(substring(h.id, 5)) % 7 * 1000) + '.00',
  purchaseDate: date('2025-01-01') + duration({days: toInteger(substring(h.id, 5)) % 600}),
  depreciationMonths: 36, residualValue: '0.00', supportMonthly: '150.00',
  supportStart: date('2025-01-01') + duration({days: toInteger(substring(h.id, 5)) % 600}),
  createdAt: $now, updatedAt: $now})
CREATE (a)-[:ASSET_OF]->(h)
"""
ASSET_CLUSTERS = range(10, 20)
MEMORY_CLUSTERS = range(0, 10)


def _ci_query(cls: str) -> LiteralString:
    label = _LABELS[cls]
    return ("""
UNWIND range($from, $to - 1) AS i
CREATE (n""" + label + """ {id: $prefix + i, name: $prefix + i, nameLower: $prefix + i,
  ciClass: $cls, lifecycleStatus: 'IN_SERVICE', operationalState: 'UP', healthState: 'UP',
  criticality: 'MEDIUM', criticalityRank: 3, createdAt: $now, updatedAt: $now})
SET n.attr_cpu = CASE WHEN $cls = 'VirtualMachine' THEN [2, 4, 8, 16][i % 4] END,
    n.attr_memoryGb = CASE WHEN $cls = 'VirtualMachine' THEN [8, 16, 32, 64][i % 4] END,
    n.attr_load = CASE WHEN $cls IN ['Database', 'ApplicationInstance'] THEN 1 + i % 3 END,
    n.attr_sizeGb = CASE WHEN $cls = 'StorageVolume' THEN 100 + (i * 37 % 60) * 50 END
WITH n, i
MATCH (cc:CostCentre {code: $deps[i % size($deps)]})
CREATE (n)-[:CHARGED_TO]->(cc)
""")


_SERVICES: dict[str, LiteralString] = {
    "TechnicalService": """
UNWIND range(0, $n - 1) AS i
MATCH (cc:CostCentre {code: $deps[i % size($deps)]})
CREATE (s:Item:Service:TechnicalService {id: 'ts-' + i, name: 'Technical service ' + i,
  nameLower: 'technical service ' + i, serviceKind: 'TECHNICAL', lifecycleStatus: 'IN_SERVICE',
  operationalState: 'UP', healthState: 'UP', criticality: 'MEDIUM', createdAt: $now,
  updatedAt: $now})
CREATE (s)-[:CHARGED_TO]->(cc)
""",
    "BusinessService": """
UNWIND range(0, $n - 1) AS i
MATCH (cc:CostCentre {code: $deps[i * 7 % size($deps)]})
CREATE (s:Item:Service:BusinessService {id: 'bs-' + i, name: 'Business service ' + i,
  nameLower: 'business service ' + i, serviceKind: 'BUSINESS', lifecycleStatus: 'IN_SERVICE',
  operationalState: 'UP', healthState: 'UP', criticality: 'HIGH', createdAt: $now,
  updatedAt: $now})
CREATE (s)-[:CHARGED_TO]->(cc)
""",
}

# Edges: $pairs of [consumer index, provider index]; prefixes say which nodes.
_EDGES: dict[str, LiteralString] = {
    rel: """
UNWIND $pairs AS p
MATCH (a:Item {id: $from + p[0]}), (b:Item {id: $to + p[1]})
CREATE (a)-[:""" + rel + """ {createdAt: $now}]->(b)
"""
    for rel in ("MEMBER_OF", "RUNS_ON", "DEPENDS_ON")
}

_CATALOGUE: LiteralString = """
UNWIND $items AS it
CREATE (i:CatalogueItem {id: it.id, name: it.name, nameLower: toLower(it.name),
  status: 'PUBLISHED', currentVersion: 1, createdAt: $now})
CREATE (v:CatalogueItemVersion {id: it.id + '-v1', itemId: it.id, version: 1,
  versionKey: it.id + '#1', name: it.name, description: it.name, pricePlan: it.pricePlan,
  roles: ['requester'], createdAt: $now})
CREATE (i)-[:HAS_VERSION]->(v)
"""

_SUBSCRIPTIONS: LiteralString = """
UNWIND $rows AS row
MATCH (v:CatalogueItemVersion {id: row.versionId})
CREATE (s:Subscription {id: row.id, orderId: 'o-' + row.id, itemId: v.itemId,
  versionId: v.id, itemVersion: 1, itemName: v.name, consumer: row.user,
  costCentreCode: row.cc, serviceId: row.serviceId, ciIds: row.ciIds,
  status: CASE WHEN row.endAt IS NULL THEN 'ACTIVE' ELSE 'ENDED' END,
  startAt: row.startAt, endAt: row.endAt})
CREATE (s)-[:OF_VERSION]->(v)
WITH s, row
CALL (s, row) {
  MATCH (u:User {userName: row.user}) CREATE (s)-[:CONSUMED_BY]->(u)
}
CALL (s, row) {
  MATCH (cc:CostCentre {code: row.cc}) CREATE (s)-[:CHARGED_TO]->(cc)
}
CALL (s, row) {
  UNWIND row.ciIds AS cid MATCH (c:Item {id: cid}) CREATE (s)-[:PROVISIONED]->(c)
}
CALL (s, row) {
  OPTIONAL MATCH (svc:Service {id: row.serviceId})
  FOREACH (_ IN CASE WHEN svc IS NULL THEN [] ELSE [1] END | CREATE (s)-[:OF_SERVICE]->(svc))
}
"""

# Records exactly as ChargebackService.ingest_usage stores them (WRITE_USAGE: ``u += row``
# with recordId, ciId, meter, quantity, qtyMicros, at, source, month, billedIn; ingestedAt).
# Per record: the meter by r % 20, the CI spread over its class, quantities of 1.00-9.99
# (hundredths), times spread over the month.
_USAGE: LiteralString = """
UNWIND range($from, $to - 1) AS r
WITH r, r % 20 AS slot, 100 + (r * 7919) % 900 AS hundredths
WITH r, hundredths,
     CASE WHEN slot < 12 THEN 0 WHEN slot < 15 THEN 1 WHEN slot < 17 THEN 2 ELSE 3 END AS m
WITH r, hundredths, $meters[m] AS meter
CREATE (u:UsageRecord {recordId: 'bench-' + r,
  ciId: meter.prefix + ((r / 20 * 104729 + r % 20) % meter.count),
  meter: meter.code,
  quantity: toString(hundredths / 100) + '.' + right('0' + toString(hundredths % 100), 2),
  qtyMicros: hundredths * 10000,
  at: $start + duration({seconds: (r * 2654435761) % $monthSeconds}),
  source: 'collector-' + (r % 5), month: $period, billedIn: $period, ingestedAt: $now})
"""


class Estate:
    """Sizes of each class for ``cis`` CIs and the index arithmetic of the edges."""

    def __init__(self, cis: int, subscriptions: int) -> None:
        self.clusters = max(2, cis // 2000)
        self.hosts = self.clusters * 20
        self.arrays = max(1, cis // 5000)
        self.volumes = cis * 15 // 100
        self.databases = cis * 10 // 100
        self.apps = cis * 20 // 100
        self.vms = cis - self.clusters - self.hosts - self.arrays - self.volumes \
            - self.databases - self.apps
        self.technical = max(2, cis // 50)
        self.business = max(1, cis // 200)
        self.divisions, self.per_division = 10, 10
        self.users = max(10, cis // 20)
        self.subscriptions = subscriptions
        assert self.vms > self.apps, "too few CIs"

    def departments(self) -> list[str]:
        return [f"CC-{d * 100 + k}" for d in range(1, self.divisions + 1)
                for k in range(1, self.per_division + 1)]

    def edges(self) -> list[tuple[str, str, str, list[list[int]]]]:
        """(relationship, consumer prefix, provider prefix, [consumer i, provider i])."""
        vms, apps = self.vms, self.apps
        rest = vms - 10_000 % vms
        return [
            ("MEMBER_OF", "host-", "cluster-", [[i, i % self.clusters]
                                                for i in range(self.hosts)]),
            ("RUNS_ON", "vm-", "host-", [[j, j % self.hosts] for j in range(vms)]),
            ("MEMBER_OF", "vol-", "array-", [[k, k % self.arrays]
                                             for k in range(self.volumes)]),
            ("RUNS_ON", "db-", "vm-", [[d, d * 3 % vms] for d in range(self.databases)]),
            ("DEPENDS_ON", "db-", "vol-", [[d, d % self.volumes]
                                           for d in range(self.databases)]),
            # Each application on a VM of its own and a second one shared with others,
            # every other one on a database too.
            ("DEPENDS_ON", "app-", "vm-", [[a, (10_000 + a) % vms] for a in range(apps)]
             + [[a, (30_000 + a * 7 % max(1, rest)) % vms] for a in range(apps)]),
            ("DEPENDS_ON", "app-", "db-", [[a, a // 2 % self.databases]
                                           for a in range(0, apps, 2)]),
            # Applications under technical services, one in ten under two (diamonds).
            ("DEPENDS_ON", "ts-", "app-", [[a % self.technical, a] for a in range(apps)]
             + [[(a + 1) % self.technical, a] for a in range(0, apps, 10)]),
            ("DEPENDS_ON", "bs-", "ts-", [[t % self.business, t] for t in range(self.technical)]
             + [[(t + 7) % self.business, t] for t in range(0, self.technical, 5)]),
        ]

    def subscription_rows(self) -> list[dict[str, Any]]:
        rows = []
        deps = self.departments()
        for s in range(self.subscriptions):
            kind = s % 10
            user = s * 13 % self.users
            start = START - timedelta(days=40) + timedelta(hours=s * 7 % (60 * 24))
            end = START + timedelta(days=s % 31, hours=5) if s % 7 == 0 else None
            row: dict[str, Any] = {
                "id": f"sub-{s}", "user": f"user{user}",
                "cc": deps[user % len(deps)], "startAt": start, "endAt": end,
                "serviceId": None, "ciIds": []}
            if kind < 8:
                row |= {"versionId": "item-vm-v1",
                        "ciIds": [f"vm-{self.vms - 1 - (s // 10 * 8 + kind) % self.vms}"]}
            elif kind == 8:
                row |= {"versionId": "item-volume-v1",
                        "ciIds": [f"vol-{self.volumes - 1 - s // 10 % self.volumes}"]}
            else:
                row |= {"versionId": "item-site-v1",
                        "serviceId": f"ts-{s // 10 % self.technical}"}
            rows.append(row)
        return rows


CATALOGUE = [
    {"id": "item-vm", "name": "Linux virtual machine",
     "pricePlan": json.dumps({"currency": "EUR", "one_off": "150.00", "monthly": "45.00",
                              "usage": []})},
    {"id": "item-volume", "name": "Block storage volume",
     "pricePlan": json.dumps({"currency": "EUR", "one_off": "0.00", "monthly": "12.50",
                              "usage": []})},
    {"id": "item-site", "name": "Collaboration site",
     "pricePlan": json.dumps({"currency": "EUR", "one_off": "25.00", "monthly": "15.00",
                              "usage": []})},
]
PREFIX = {"Cluster": "cluster-", "HypervisorHost": "host-", "VirtualMachine": "vm-",
          "Server": "array-", "StorageVolume": "vol-", "Database": "db-",
          "ApplicationInstance": "app-"}


async def wipe(db: Database) -> None:
    async with db.driver.session(database=db.database) as session:
        await (await session.run(
            "MATCH (n) WHERE NOT n:SchemaMigration "
            "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS")).consume()


async def reset(db: Database) -> None:
    """Back to the state right after ``build``: no lines, no periods, no ingested sample."""
    async with db.driver.session(database=db.database) as session:
        for query in ("MATCH (n:ChargeLine) CALL (n) { DETACH DELETE n } "
                      "IN TRANSACTIONS OF 20000 ROWS",
                      "MATCH (n:UsageRecord) WHERE n.billedIn <> $period "
                      "CALL (n) { DETACH DELETE n } IN TRANSACTIONS OF 20000 ROWS",
                      "MATCH (n:ChargePeriod) DETACH DELETE n"):
            await (await session.run(query, {"period": PERIOD})).consume()


async def build(db: Database, est: Estate, records: int, say: Any) -> None:
    now = datetime.now(UTC)
    deps = est.departments()
    await db.write(_COST_CENTRES, {"divisions": est.divisions, "perDivision": est.per_division})
    await db.write(_USERS, {"n": est.users, "deps": deps})
    counts = {"Cluster": est.clusters, "HypervisorHost": est.hosts,
              "VirtualMachine": est.vms, "Server": est.arrays, "StorageVolume": est.volumes,
              "Database": est.databases, "ApplicationInstance": est.apps}
    for cls, n in counts.items():
        for i in range(0, n, 20_000):
            await db.write(_ci_query(cls), {"from": i, "to": min(n, i + 20_000),
                                            "prefix": PREFIX[cls], "cls": cls, "now": now,
                                            "deps": deps})
    await db.write(_SERVICES["TechnicalService"], {"n": est.technical, "deps": deps, "now": now})
    await db.write(_SERVICES["BusinessService"], {"n": est.business, "deps": deps, "now": now})
    say(f"  {sum(counts.values()):,} CIs, {est.technical + est.business:,} services")
    n_edges = 0
    for rel, a, b, pairs in est.edges():
        for i in range(0, len(pairs), 20_000):
            await db.write(_EDGES[rel], {"pairs": pairs[i:i + 20_000], "from": a, "to": b,
                                         "now": now})
        n_edges += len(pairs)
    say(f"  {n_edges:,} relationships")
    await db.write(_CATALOGUE, {"items": CATALOGUE, "now": now})
    subs = est.subscription_rows()
    for i in range(0, len(subs), 5000):
        await db.write(_SUBSCRIPTIONS, {"rows": subs[i:i + 5000]})
    say(f"  {len(subs):,} subscriptions")
    await db.write(_RULES)
    await db.write(_RETIRE_ENDED)
    await db.write(_ASSETS, {"clusters": [f"cluster-{c}" for c in ASSET_CLUSTERS
                                          if c < est.clusters], "now": now})
    meters = [{"code": code, "prefix": PREFIX[cls], "count": counts[cls]}
              for code, _unit, cls, _share in METERS]
    t = time.perf_counter()
    for i in range(0, records, 50_000):
        await db.write(_USAGE, {"from": i, "to": min(records, i + 50_000), "meters": meters,
                                "start": START, "monthSeconds": MONTH_S, "period": PERIOD,
                                "now": now})
        if (i // 50_000) % 4 == 3:
            say(f"  {min(records, i + 50_000):,} usage records")
    say(f"  {records:,} usage records in {time.perf_counter() - t:.0f} s")


async def configure(svc: ChargebackService, est: Estate) -> dict[str, Decimal]:
    """Meters, rate cards and pools through the service; returns pool code -> amount."""
    for code, unit, _cls, _share in METERS:
        await svc.define_meter(ADMIN, {"code": code, "name": code, "unit": unit})
        await svc.publish_rate_card(ADMIN, {"meter": code, "effective_from": "2026-01-01",
                                            "currency": "EUR", "tiers": TIERS[code]})
    await svc.publish_rate_card(ADMIN, {"meter": "vcpu-hours",
                                        "effective_from": RATE_CHANGE.date().isoformat(),
                                        "currency": "EUR", "tiers": VCPU_V2})
    amounts: dict[str, Decimal] = {}
    assets_cost: dict[str, Decimal] = {}
    cpu = [0] * est.clusters
    for j in range(est.vms):
        cpu[j % est.hosts % est.clusters] += (2, 4, 8, 16)[j % 4]
    for c in range(est.clusters):
        code = f"cluster-{c}"
        assets = c in ASSET_CLUSTERS
        await svc.define_pool(ADMIN, {
            "code": code, "name": f"Cluster {c}", "driver": "VCPU", "ci_ids": [f"cluster-{c}"],
            "capacity": str(cpu[c] * 5 // 4), "cost_source": "ASSETS" if assets else "MANUAL"})
        if assets:  # its hosts' depreciation and support
            pool = next(p for p in await svc.pools() if p.code == code)
            assets_cost[code] = (await svc.asset_cost(pool, PERIOD)).amount
        else:
            amounts[code] = Decimal(20_000 + 37 * c) + Decimal("0.33")
    # Memory, weighted: a pool over some clusters by the VMs' memory, passed on to what runs
    # on them by its load.
    await svc.define_pool(ADMIN, {"code": "memory", "name": "Memory", "driver": "ATTRIBUTE",
                                  "attribute": "memoryGb", "holder_classes": ["VirtualMachine"],
                                  "onward": "load", "ci_ids": [
                                      f"cluster-{c}" for c in MEMORY_CLUSTERS
                                      if c < est.clusters]})
    amounts["memory"] = Decimal("30000.00")
    await svc.define_pool(ADMIN, {"code": "storage", "name": "Storage arrays",
                                  "driver": "STORAGE_GB",
                                  "ci_ids": [f"array-{a}" for a in range(est.arrays)]})
    amounts["storage"] = Decimal("180000.07")
    await svc.define_pool(ADMIN, {"code": "db-licences", "name": "Database licences",
                                  "driver": "EQUAL",
                                  "ci_ids": [f"db-{d}" for d in range(min(200, est.databases))]})
    amounts["db-licences"] = Decimal("50000.01")
    for code, amount in amounts.items():
        await svc.set_pool_cost(ADMIN, code, PERIOD, amount)
    return amounts | assets_cost


# --- checks ----------------------------------------------------------------------------------

_SOURCE_TOTALS: LiteralString = """
MATCH (l:ChargeLine {period: $period})
RETURN l.source AS source, sum(l.amountMinor) AS minor, count(*) AS lines
"""

# Usage lines with what they sum: the CI of a line of one, or each CI's cents in the detail.
_USAGE_LINES: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
MATCH (l:ChargeLine) WHERE l.period = $period AND l.run = p.run AND l.source STARTS WITH 'usage:'
RETURN l.meter AS meter, l.amountMinor AS minor, l.detail AS detail
"""

# Usage per CI, meter and rate version worked out independently of the product's query.
_USAGE_CHECK: LiteralString = """
MATCH (u:UsageRecord {billedIn: $period})
WITH u.ciId AS ci, u.meter AS meter,
     CASE WHEN u.meter = 'vcpu-hours' AND u.at >= $change THEN 2 ELSE 1 END AS version,
     sum(u.qtyMicros) AS micros
RETURN ci, meter, version, micros
"""


def _priced(micros: int, tiers: list[dict[str, str | None]]) -> int:
    q = Decimal(micros) / Decimal(1_000_000)
    total, below = Decimal(0), Decimal(0)
    for t in tiers:
        top = q if t["upTo"] is None else min(q, Decimal(str(t["upTo"])))
        if top > below:
            total += (top - below) * Decimal(str(t["rate"]))
        if t["upTo"] is None:
            break
        below = Decimal(str(t["upTo"]))
    return int((total * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


async def verify(db: Database, est: Estate, pools: dict[str, Decimal]) -> dict[str, Any]:
    got = {r["source"]: int(r["minor"]) for r in await db.read(_SOURCE_TOTALS,
                                                                {"period": PERIOD})}
    problems: list[str] = []
    for code, amount in pools.items():
        if got.get(f"pool:{code}") != int(amount * 100):
            problems.append(f"pool {code}: lines {got.get(f'pool:{code}')} != {amount}")
    usage: dict[tuple[str, str], int] = {}
    for r in await db.read(_USAGE_CHECK, {"period": PERIOD, "change": RATE_CHANGE}):
        tiers = VCPU_V2 if r["version"] == 2 else TIERS[r["meter"]]
        usage[(r["ci"], r["meter"])] = usage.get((r["ci"], r["meter"]), 0) \
            + _priced(int(r["micros"]), tiers)
    lines_usage: dict[tuple[str, str], int] = {}
    for r in await db.read(_USAGE_LINES, {"period": PERIOD}):
        detail = json.loads(r["detail"])
        held = [dict(zip(HOLDER_FIELDS, h, strict=True)) for h in detail.get("holders", [])] \
            or [{"id": detail["ciId"], "amountMinor": r["minor"]}]
        if sum(h["amountMinor"] for h in held) != r["minor"]:
            problems.append(f"a {r['meter']} line's CIs do not add up to it")
        for h in held:
            key = (h["id"], r["meter"])
            lines_usage[key] = lines_usage.get(key, 0) + h["amountMinor"]
    bad = [k for k in usage if usage[k] != lines_usage.get(k)]
    if bad or len(lines_usage) != len(usage):
        problems.append(f"usage: {len(bad)} of {len(usage)} CI/meter totals differ")
    fees = 0
    for row in est.subscription_rows():
        plan = json.loads(next(c["pricePlan"] for c in CATALOGUE
                               if c["id"] + "-v1" == row["versionId"]))
        first = max(row["startAt"], START).date()
        end = row["endAt"]
        last = min(end, START + timedelta(days=31)).date() if end else (
            START + timedelta(days=31)).date()
        days = max((last - first).days, 1 if end and end > START else 0)
        exact = Decimal(plan["monthly"]) * days / 31
        want = int((exact * 100).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        if got.get(f"subscription:{row['id']}", 0) != want:
            problems.append(f"fee of {row['id']}: {got.get('subscription:' + row['id'])} "
                            f"!= {want}")
        fees += 1
    total = sum(got.values())
    return {"sources": len(got), "usage_sources_checked": len(usage), "fees_checked": fees,
            "pools_checked": len(pools), "total_minor": total, "problems": problems[:10],
            "ok": not problems}


# --- measuring -------------------------------------------------------------------------------


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(p / 100 * len(xs)))], 3)


def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def proc_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds a process has used so far (Linux), None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status(pid: int | None) -> dict[str, float]:
    """Current and peak resident memory of a process, MB (Linux)."""
    out: dict[str, float] = {}
    if pid is None:
        return out
    try:
        for ln in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = ln.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = round(int(rest.split()[0]) / 1024, 1)
    except OSError:
        pass
    return out


async def neo4j_heap(db: Database) -> dict[str, float]:
    """Heap in use and the old generation's peak since start, MB (through JMX)."""
    out: dict[str, float] = {}
    try:
        rows = await db.read("CALL dbms.queryJmx('java.lang:type=Memory*') YIELD name, "
                             "attributes RETURN name, attributes")
        rows += await db.read("CALL dbms.queryJmx('java.lang:type=MemoryPool,*') YIELD name, "
                              "attributes RETURN name, attributes")
    except Exception:  # not every edition exposes JMX; the figure is optional
        return out
    for r in rows:
        attrs = r["attributes"]
        if r["name"] == "java.lang:type=Memory":
            heap = attrs["HeapMemoryUsage"]["value"]["properties"]
            out["heap_used_mb"] = round(heap["used"] / 2**20, 1)
            out["heap_max_mb"] = round(heap["max"] / 2**20, 1)
        elif "Old Gen" in r["name"]:
            peak = attrs["PeakUsage"]["value"]["properties"]
            out["old_gen_peak_mb"] = round(peak["used"] / 2**20, 1)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    settings, instance = connect_settings(args.instance, 600.0, say)
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    db = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                          settings.neo4j_database, 600.0)
    settings = settings.model_copy(update={"chargeback_currency": "EUR"})
    est = Estate(args.cis, args.subscriptions)
    res: dict[str, Any] = {"date": datetime.now(UTC).date().isoformat(), "machine": machine(),
                           "instance": args.instance, "cis": args.cis,
                           "records": args.records, "subscriptions": args.subscriptions}
    pid = instance.status().pid if instance is not None else None
    spec = instance.spec if instance is not None else None
    if spec is not None:
        res["neo4j_memory"] = {"heap": spec.heap, "pagecache": spec.pagecache}
    try:
        await migrate(db)
        svc = ChargebackService(db, settings)
        marker = {"cis": args.cis, "records": args.records, "subscriptions": args.subscriptions}
        found = await db.read("MATCH (b:BenchEstate) RETURN b {.*} AS b")
        if args.reuse and found and found[0]["b"] == marker:
            say("reusing the estate; removing the lines and the sample of a previous run")
            await reset(db)
            pools = {p.code: p.amounts[PERIOD] if PERIOD in p.amounts
                     else (await svc.asset_cost(p, PERIOD)).amount for p in await svc.pools()}
            res["build_s"] = None
        else:
            say("emptying the graph")
            await wipe(db)
            t = time.perf_counter()
            say("building the estate")
            await build(db, est, args.records, say)
            pools = await configure(svc, est)
            await db.write("CREATE (b:BenchEstate) SET b = $m", {"m": marker})
            res["build_s"] = round(time.perf_counter() - t, 1)
        res["pools"] = len(pools)
        res["python_rss_before_mb"] = rss_mb()

        runs = []
        for name in ("calculate", "recalculate"):
            stages: dict[str, float] = {}
            neo_cpu = proc_cpu_s(pid)
            cpu = time.process_time()
            t = time.perf_counter()
            out = await svc.calculate(ADMIN, PERIOD, timings=stages)
            elapsed = time.perf_counter() - t
            cpu = time.process_time() - cpu
            after_cpu = proc_cpu_s(pid)
            t = time.perf_counter()
            await svc.settle()  # the replaced lines, deleted after the answer
            stages["delete_replaced"] = time.perf_counter() - t
            runs.append({"run": name, "s": round(elapsed, 2),
                         **{k: round(v, 2) for k, v in stages.items()},
                         "python_cpu_s": round(cpu, 2),
                         "neo4j_cpu_s": None if neo_cpu is None or after_cpu is None
                         else round(after_cpu - neo_cpu, 2)})
            say(f"{name}: {elapsed:.2f} s {stages} lines {out.lines:,} "
                f"cpu python {runs[-1]['python_cpu_s']} s neo4j {runs[-1]['neo4j_cpu_s']} s")
        res["runs"] = runs
        res["lines"] = out.lines
        res["total"] = str(out.total)
        res["unallocated"] = str(out.unallocated)
        res["warnings"] = len(out.warnings)

        times = []
        for i in range(args.reports + 2):
            t = time.perf_counter()
            rep = await svc.report(ADMIN, PERIOD, ReportDimension.COST_CENTRE)
            if i >= 2:  # two warm-ups
                times.append(time.perf_counter() - t)
        res["report_rows"] = len(rep.rows)
        res["report_p50_s"], res["report_p95_s"] = pct(times, 50), pct(times, 95)
        assert rep.total == out.total, (rep.total, out.total)
        times = []
        after = None
        for _ in range(args.reports):
            t = time.perf_counter()
            page, more = await svc.lines(ADMIN, PERIOD, {"costCentres": ["CC-105"]}, 100, after)
            times.append(time.perf_counter() - t)
            after = f"{page[-1].seq}|{page[-1].id}" if more else None
        res["lines_page_p50_s"], res["lines_page_p95_s"] = pct(times, 50), pct(times, 95)
        res["python_peak_rss_mb"] = rss_mb()
        res["neo4j"] = {**await neo4j_heap(db), **proc_status(pid)}
        say("checking every source's total")
        res["check"] = await verify(db, est, pools)
        say(f"check: {res['check']}")

        # The product's ingestion path, for a sample of the next month.
        sample = [{"recordId": f"nov-{r}", "ciId": f"vm-{r * 7 % est.vms}",
                   "meter": "vcpu-hours", "quantity": f"{1 + r % 9}.{r % 100:02d}",
                   "at": (START + timedelta(days=31, seconds=r * 13 % (29 * 86400))
                          ).isoformat(), "source": "collector-1"}
                  for r in range(args.ingest)]
        t = time.perf_counter()
        got = await svc.ingest_usage(ADMIN, sample)
        elapsed = time.perf_counter() - t
        res["ingest"] = {"records": len(sample), "created": got.created,
                         "rejected": len(got.rejected), "s": round(elapsed, 2),
                         "records_per_s": round(len(sample) / elapsed)}
        say(f"ingest: {res['ingest']}")
    finally:
        await db.close()
    calc = runs[0]["s"]
    res["met"] = {"calculate": calc <= TARGET_CALC_S,
                  "recalculate": runs[1]["s"] <= TARGET_CALC_S,
                  "report": res["report_p95_s"] <= TARGET_REPORT_S,
                  "memory": res["python_peak_rss_mb"] <= TARGET_RSS_MB}
    return res


def table(res: dict[str, Any]) -> list[str]:
    def yes(ok: bool) -> str:
        return "met" if ok else "**not met**"

    met = res["met"]
    neo = res.get("neo4j", {})
    rows = ["| measure | value | goal |", "|---|---:|---|"]
    for r in res["runs"]:
        stages = ", ".join(f"{k} {r[k]}" for k in ("read", "read_usage", "engine", "write",
                                                   "result", "delete_replaced") if k in r)
        cpu = ""
        if r.get("python_cpu_s") is not None:
            cpu = f"; CPU python {r['python_cpu_s']}, neo4j {r.get('neo4j_cpu_s', '?')}"
        rows.append(f"| {r['run']} ({stages}{cpu}) | {r['s']} s | under "
                    f"{TARGET_CALC_S:.0f} s: {yes(met[r['run']])} |")
    rows += [
        f"| charge lines written | {res['lines']:,} | |",
        f"| cost-centre report p50 / p95 ({res['report_rows']} rows) | "
        f"{res['report_p50_s']} / {res['report_p95_s']} s | under {TARGET_REPORT_S:.0f} s: "
        f"{yes(met['report'])} |",
        f"| drill-down page of 100 lines p50 / p95 | {res['lines_page_p50_s']} / "
        f"{res['lines_page_p95_s']} s | |",
        f"| Python peak RSS (whole run) | {res['python_peak_rss_mb']:,} MB | under 1 GB: "
        f"{yes(met['memory'])} |",
        f"| Neo4j heap in use / old-gen peak / max | {neo.get('heap_used_mb', '?')} / "
        f"{neo.get('old_gen_peak_mb', '?')} / {neo.get('heap_max_mb', '?')} MB | |",
        f"| Neo4j process RSS now / peak | {neo.get('VmRSS', '?')} / {neo.get('VmHWM', '?')} "
        "MB | |",
        "| every source's lines add up (pools exact; each CI's usage through the lines' CIs, "
        f"priced independently) | {'yes' if res['check']['ok'] else 'NO'} "
        f"({res['check']['sources']:,} line sources, "
        f"{res['check']['usage_sources_checked']:,} CI and meter usage totals, "
        f"{res['check']['fees_checked']:,} fees, {res['check']['pools_checked']} pools) | |",
        f"| `ingest_usage`, {res['ingest']['records']:,} records | {res['ingest']['s']} s, "
        f"{res['ingest']['records_per_s']:,} records/s | |",
    ]
    return rows


def section(res: dict[str, Any]) -> str:
    m = res["machine"]
    mem = res.get("neo4j_memory", {})
    return "\n".join([
        SECTION_START,
        "## Chargeback",
        "",
        "Produced by `PYTHONPATH=. .venv/bin/python -m bench.chargeback --cis "
        f"{res['cis']} --records {res['records']} --subscriptions {res['subscriptions']} "
        f"--instance {res['instance']}` (raw figures in `bench/results/chargeback.json`): "
        "an estate built with batched `UNWIND` Cypher (cost centres in a hierarchy, clusters "
        "of hosts, VMs, storage volumes, databases, applications, technical and business "
        "services with diamonds, every tenth business service recovered from its "
        "subscribers and every tenth technical one through its prices, catalogue "
        "subscriptions (the CIs of those that ended in the month retired), usage records as "
        "`ingest_usage` stores them on four meters, one tiered and one with a rate change "
        f"mid-month), {res['pools']} cost pools (VCPU per cluster with a capacity, ten of "
        "them costed from their hosts' asset records; memory of ten clusters' VMs "
        "(ATTRIBUTE) passed on by the load of what runs on them; STORAGE_GB; EQUAL); "
        "then `ChargebackService.calculate` of the month (stages in seconds, overlapping: "
        "`read` includes Neo4j summing the usage, which starts first; `write` runs from the "
        "end of `read` until the last line is stored, with the engine calculating "
        "meanwhile; `read_usage` is the engine waiting for the usage; "
        "`delete_replaced` is the deletion of the replaced lines after the answer; CPU "
        "seconds of the Python process and of Neo4j during the call), a "
        "recalculation, the cost-centre report and a drill-down page, and a check that each "
        "source's lines add up to the source's total. Goals: calculation under "
        f"{TARGET_CALC_S:.0f} s, cost-centre report under {TARGET_REPORT_S:.0f} s, memory "
        "under 1 GB.",
        "",
        f"Run {res['date']} on {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB; "
        f"Python {m['python']}, Neo4j {m['neo4j']} (heap {mem.get('heap', '?')}, page cache "
        f"{mem.get('pagecache', '?')}); {res['cis']:,} CIs, {res['subscriptions']:,} "
        f"subscriptions, {res['records']:,} usage records; estate "
        + (f"built in {res['build_s']} s." if res["build_s"] else "from an earlier run."),
        "",
        *table(res),
        SECTION_END,
    ])


def write_doc(res: dict[str, Any]) -> None:
    replace_section(DOC, section(res), SECTION_START, SECTION_END, "## Chargeback")


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.chargeback", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cis", type=int, default=100_000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--subscriptions", type=int, default=10_000)
    ap.add_argument("--instance", choices=INSTANCES, default="bench",
                    help="a project-managed local instance (started if needed)")
    ap.add_argument("--reports", type=int, default=20, help="timed runs of each read")
    ap.add_argument("--ingest", type=int, default=100_000,
                    help="records of the next month through ingest_usage")
    ap.add_argument("--reuse", action="store_true",
                    help="keep an estate of the same sizes built by an earlier run")
    ap.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks.md")
    args = ap.parse_args()
    res = asyncio.run(run(args))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "chargeback.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    if not args.no_doc:
        write_doc(res)
    print(section(res))
    if not res["check"]["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
