"""Cypher of chargeback.

Graph contract read here: CIs and services (``:Item``, ``:CI``, ``:Service``) with their
relationships, ``(:Item)-[:CHARGED_TO]->(:CostCentre {code})``, ``(:CostCentre)-[:PART_OF]->``
parent, ``(:User)-[:IN_COST_CENTRE]->``, ``(:CostCentre)-[:MANAGED_BY]->(:User)``, catalogue
subscriptions (``-[:PROVISIONED]->`` CIs, ``-[:OF_SERVICE]->``, ``-[:OF_VERSION]->`` with its
price plan) and desktop sessions (``(:User)-[:HAD_SESSION]->(:DesktopSession)-[:ON_DESKTOP|
ON_HOST|IN_POOL]->``).
"""

from __future__ import annotations

from typing import LiteralString

# --- meters ----------------------------------------------------------------------------------

_METER: LiteralString = "m {.code, .name, .unit, .description}"

CREATE_METER: LiteralString = (
    """
MERGE (m:Meter {code: $code})
ON CREATE SET m.name = $name, m.unit = $unit, m.description = $description,
              m.createdAt = $now, m._new = true
WITH m, coalesce(m._new, false) AS created
REMOVE m._new
RETURN created, """
    + _METER
    + " AS meter"
)

LIST_METERS: LiteralString = "MATCH (m:Meter) RETURN " + _METER + " AS meter ORDER BY m.code"

KNOWN_METERS: LiteralString = "UNWIND $codes AS c MATCH (m:Meter {code: c}) RETURN m.code AS code"

KNOWN_ROLE: LiteralString = """
MATCH (r:Role WHERE toLower(r.name) = toLower($name)) RETURN r.name AS name LIMIT 1
"""

KNOWN_CIS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id}) WHERE n:CI
RETURN n.id AS id
"""

# --- rate cards ------------------------------------------------------------------------------

_RATE: LiteralString = """r {.id, .meter, .version, .currency, .tiers, .createdBy,
  effectiveFrom: toString(r.effectiveFrom), effectiveTo: toString(r.effectiveTo),
  createdAt: toString(r.createdAt)}"""

# Versions of one meter are made one at a time: the meter node is locked first.
PUBLISH_RATE_CARD: LiteralString = (
    """
MATCH (m:Meter {code: $meter})
SET m._lock = true REMOVE m._lock
WITH m
OPTIONAL MATCH (old:RateCard {meter: $meter})
WITH m, max(old.version) AS top,
     [o IN collect(old) WHERE o.effectiveFrom >= $from] AS clash
WITH m, top, clash WHERE size(clash) = 0
OPTIONAL MATCH (prev:RateCard {meter: $meter}) WHERE prev.effectiveFrom < $from
WITH m, top, prev ORDER BY prev.effectiveFrom DESC LIMIT 1
FOREACH (_ IN CASE WHEN prev IS NULL THEN [] ELSE [1] END | SET prev.effectiveTo = $from)
CREATE (r:RateCard {id: $id, meter: $meter, version: coalesce(top, 0) + 1,
                    effectiveFrom: $from, currency: $currency, tiers: $tiers,
                    createdAt: $now, createdBy: $by})
CREATE (r)-[:PRICES]->(m)
RETURN """
    + _RATE
    + " AS rate"
)

RATE_CLASH: LiteralString = """
MATCH (r:RateCard {meter: $meter}) WHERE r.effectiveFrom >= $from
RETURN r.version AS version, toString(r.effectiveFrom) AS effectiveFrom
ORDER BY r.effectiveFrom LIMIT 1
"""

LIST_RATE_CARDS: LiteralString = (
    """
MATCH (r:RateCard) WHERE $meter IS NULL OR r.meter = $meter
RETURN """
    + _RATE
    + " AS rate ORDER BY r.meter, r.version"
)

# Rate cards in force at some time in [$start, $end) or for late usage before it.
RATES_BEFORE: LiteralString = (
    """
MATCH (r:RateCard) WHERE r.effectiveFrom < date($end)
RETURN """
    + _RATE
    + " AS rate ORDER BY r.meter, r.effectiveFrom"
)

# The rate card of each of $meters in force on the day $on (none where no version is).
RATES_IN_FORCE: LiteralString = (
    """
UNWIND $meters AS code
MATCH (r:RateCard {meter: code})
WHERE r.effectiveFrom <= $on AND (r.effectiveTo IS NULL OR r.effectiveTo > $on)
RETURN """
    + _RATE
    + " AS rate"
)

# --- cost pools ------------------------------------------------------------------------------

_POOL: LiteralString = """p {.id, .code, .name, .driver, .ciIds, .capacity, .description,
  .currency, .attribute, .holderClasses, .meter, .role, .allocations, .onward, .costSource,
  amounts: [(p)-[:COSTS]->(c:PoolCost) | [c.period, c.amount]]}"""

UPSERT_POOL: LiteralString = (
    """
MERGE (p:CostPool {code: $code})
ON CREATE SET p.id = $id, p.createdAt = $now
SET p.name = $name, p.driver = $driver, p.ciIds = $ciIds, p.capacity = $capacity,
    p.description = $description, p.currency = $currency, p.updatedAt = $now,
    p.attribute = $attribute, p.holderClasses = $holderClasses, p.meter = $meter,
    p.role = $role, p.allocations = $allocations, p.onward = $onward,
    p.costSource = $costSource
RETURN """
    + _POOL
    + " AS pool"
)

SET_POOL_COST: LiteralString = (
    """
MATCH (p:CostPool {code: $code})
MERGE (c:PoolCost {key: $code + '@' + $period})
ON CREATE SET c.period = $period, c.createdAt = $now
SET c.amount = $amount, c.updatedAt = $now, c.updatedBy = $by
MERGE (p)-[:COSTS]->(c)
RETURN """
    + _POOL
    + " AS pool"
)

LIST_POOLS: LiteralString = "MATCH (p:CostPool) RETURN " + _POOL + " AS pool ORDER BY p.code"

# The asset records of pools: on the pool's CIs and on the CIs that are members of them
# (a live MEMBER_OF), neither retired; each CI once. Amounts are decimal text, dates ISO.
POOL_ASSETS: LiteralString = """
UNWIND $codes AS code
MATCH (p:CostPool {code: code})
CALL (p) {
  UNWIND p.ciIds AS id
  MATCH (c:Item {id: id}) WHERE c:CI
  CALL (c) {
    WITH c WHERE c.lifecycleStatus <> 'RETIRED'
    RETURN c AS n
    UNION
    MATCH (m:CI)-[r:MEMBER_OF]->(c)
    WHERE r.retiredAt IS NULL AND m.lifecycleStatus <> 'RETIRED'
    RETURN m AS n
  }
  WITH DISTINCT n
  MATCH (a:Asset)-[:ASSET_OF]->(n)
  RETURN collect([n.id, n.name, a.assetTag, a.currency, a.purchasePrice,
                  toString(a.purchaseDate), a.depreciationMonths, a.residualValue,
                  a.supportMonthly, toString(a.supportStart), toString(a.supportEnd)]) AS assets
}
RETURN p.code AS code, assets
"""

# --- periods ---------------------------------------------------------------------------------

_PERIOD: LiteralString = """p {.id, .status, .currency, .closedBy, .totalMinor, .lineCount,
  .checksum, .warnings, start: toString(p.start), end: toString(p.end),
  calculatedAt: toString(p.calculatedAt), closedAt: toString(p.closedAt)}"""

# Periods of a batch's months, made open when new, and locked until the batch commits so a
# period cannot close while records for it are being written.
LOCK_PERIODS: LiteralString = (
    """
UNWIND $periods AS per
MERGE (p:ChargePeriod {id: per.id})
ON CREATE SET p.start = per.start, p.end = per.end, p.status = 'OPEN',
              p.currency = $currency, p.createdAt = $now
SET p._lock = true REMOVE p._lock
RETURN """
    + _PERIOD
    + " AS period"
)

CLOSED_PERIODS_FROM: LiteralString = """
MATCH (p:ChargePeriod) WHERE p.id >= $from AND p.status <> 'OPEN'
RETURN p.id AS id ORDER BY id
"""

GET_PERIOD: LiteralString = "MATCH (p:ChargePeriod {id: $id}) RETURN " + _PERIOD + " AS period"

LIST_PERIODS: LiteralString = (
    "MATCH (p:ChargePeriod) RETURN " + _PERIOD + " AS period ORDER BY p.id DESC"
)

SET_PERIOD_STATUS: LiteralString = (
    """
MATCH (p:ChargePeriod {id: $id}) WHERE p.status IN $from
SET p.status = $to
RETURN """
    + _PERIOD
    + " AS period"
)

FREEZE_PERIOD: LiteralString = (
    """
MATCH (p:ChargePeriod {id: $id}) WHERE p.status = 'CLOSING'
SET p.status = 'CLOSED', p.closedAt = $now, p.closedBy = $by, p.checksum = $checksum
RETURN """
    + _PERIOD
    + " AS period"
)

# --- usage -----------------------------------------------------------------------------------

# Idempotent by record id: a record already stored is reported with whether it is the same.
WRITE_USAGE: LiteralString = """
UNWIND $rows AS row
MERGE (u:UsageRecord {recordId: row.recordId})
ON CREATE SET u += row, u.ingestedAt = $now, u._new = true
WITH u, row, coalesce(u._new, false) AS created
REMOVE u._new
RETURN row.recordId AS recordId, created,
       created OR (u.ciId = row.ciId AND u.meter = row.meter AND u.qtyMicros = row.qtyMicros
                   AND u.at = row.at) AS same
"""

# Usage of a billing period summed per CI and month within each rate window ($windows:
# {meter, rate, from, to}, covering all time for every meter; rate null where no rate card is
# in force). Each window is one seek of the (billedIn, meter, at, ciId, month, qtyMicros)
# index, so no record's time is compared with every rate card, and the sums come from the
# index's own values (no record is read; ingestion always sets all six). The bulk reads
# below answer with one list per window: the driver decodes one list of rows several times
# faster than as many records.
AGGREGATE_USAGE: LiteralString = """
UNWIND $windows AS w
CALL (w) {
  MATCH (u:UsageRecord)
  USING INDEX u:UsageRecord(billedIn, meter, at, ciId, month, qtyMicros)
  WHERE u.billedIn = $period AND u.meter = w.meter AND u.at >= w.from AND u.at < w.to
    AND u.ciId IS NOT NULL AND u.month IS NOT NULL AND u.qtyMicros IS NOT NULL
  WITH u.ciId AS ci, u.month AS month, sum(u.qtyMicros) AS micros, count(*) AS records
  ORDER BY ci, month
  RETURN collect([ci, w.meter, month, w.rate, micros, records]) AS groups
}
RETURN groups
"""

# Late usage (a record of a month billed in a later period): what earlier periods billed of
# the same CI, meter, month and rate card window, so its tiers continue from there.
PRIOR_USAGE: LiteralString = """
UNWIND $groups AS g
CALL (g) {
  MATCH (u:UsageRecord)
  WHERE u.billedIn < $period AND u.meter = g.meter AND u.at >= g.from AND u.at < g.to
    AND u.ciId = g.ci AND u.month = g.month
  RETURN sum(u.qtyMicros) AS micros
}
RETURN g.i AS i, micros
"""

# --- the graph costs flow through ------------------------------------------------------------

_ITEM_ROW: LiteralString = """[n.id, n.name,
       CASE WHEN n:BusinessService THEN 'BUSINESS_SERVICE' WHEN n:Service THEN 'TECHNICAL_SERVICE'
            ELSE n.ciClass END,
       [(n)-[:CHARGED_TO]->(cc:CostCentre) | cc.code][0], n.attr_cpu, n.attr_sizeGb,
       n.costRecovery, [a IN $attrs | n['attr_' + a]]]"""

ITEMS: LiteralString = (
    """
MATCH (n:Item) WHERE n.lifecycleStatus <> 'RETIRED'
RETURN collect("""
    + _ITEM_ROW
    + """) AS items
"""
)

# CIs retired since the period began that subscriptions of the period provisioned ($held):
# decommissioning retired them, and they carry their cost for the days they were held. With
# their edges to and from live items (or one another).
HELD_ITEMS: LiteralString = (
    """
UNWIND $held AS id
MATCH (n:Item {id: id}) WHERE n.lifecycleStatus = 'RETIRED'
RETURN collect("""
    + _ITEM_ROW
    + """) AS items
"""
)

HELD_EDGES: LiteralString = """
UNWIND $held AS id
MATCH (n:Item {id: id}) WHERE n.lifecycleStatus = 'RETIRED'
CALL (n) {
  MATCH (n)-[:DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON]->(p:Item)
  WHERE p.lifecycleStatus <> 'RETIRED' OR p.id IN $held
  RETURN p.id AS provider, n.id AS consumer
  UNION
  MATCH (c:Item)-[:DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON]->(n)
  WHERE c.lifecycleStatus <> 'RETIRED'
  RETURN n.id AS provider, c.id AS consumer
  UNION
  MATCH (n)-[:MEMBER_OF]->(g:CI)
  WHERE g.lifecycleStatus <> 'RETIRED' OR g.id IN $held
  RETURN g.id AS provider, n.id AS consumer
  UNION
  MATCH (m:CI)-[:MEMBER_OF]->(n)
  WHERE m.lifecycleStatus <> 'RETIRED'
  RETURN n.id AS provider, m.id AS consumer
}
RETURN collect([provider, consumer]) AS pairs
"""

# Provider -> consumer pairs of the edges that carry cost from the provider to the consumer.
USE_EDGES: LiteralString = """
CALL () {
  MATCH (c:Item)-[:DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON]->(p:Item)
  WHERE c.lifecycleStatus <> 'RETIRED' AND p.lifecycleStatus <> 'RETIRED'
  RETURN p.id AS provider, c.id AS consumer
  UNION
  MATCH (m:CI)-[:MEMBER_OF]->(g:CI)
  WHERE m.lifecycleStatus <> 'RETIRED' AND g.lifecycleStatus <> 'RETIRED'
  RETURN g.id AS provider, m.id AS consumer
}
RETURN collect([provider, consumer]) AS pairs
"""

# A subscription's fees are those quoted when it was ordered (``currency``, ``oneOffFee``,
# ``monthlyFee``, copied from its order); one made before fees were copied has none, and is
# billed at its item version's price plan (the same amounts: a version never changes).
SUBSCRIPTIONS: LiteralString = """
MATCH (s:Subscription)
WHERE s.startAt < $end AND (s.endAt IS NULL OR s.endAt > $start)
OPTIONAL MATCH (s)-[:OF_VERSION]->(v:CatalogueItemVersion)
WITH s, v ORDER BY s.id
RETURN collect([s.id, s.consumer, s.costCentreCode, s.itemId, s.itemName, s.serviceId,
                s.ciIds, toString(s.startAt), toString(s.endAt),
                CASE WHEN s.monthlyFee IS NULL THEN v.pricePlan END,
                [s.currency, s.oneOffFee, s.monthlyFee]]) AS subs
"""

USERS: LiteralString = """
MATCH (u:User)
RETURN collect([u.id, u.userName, [(u)-[:IN_COST_CENTRE]->(cc:CostCentre) | cc.code][0]])
       AS users
"""

# Desktop sessions started in [$start, $end) on any of $ids (desktops, hosts or pools), per
# user.
SESSIONS_ON: LiteralString = """
MATCH (u:User)-[:HAD_SESSION]->(s:DesktopSession)
WHERE s.start >= $start AND s.start < $end
  AND EXISTS { (s)-[:ON_DESKTOP|ON_HOST|IN_POOL]->(x:Item) WHERE x.id IN $ids }
RETURN u.id AS user, count(s) AS sessions
ORDER BY user
"""

# Seconds of desktop sessions on any of $ids within [$start, $until) per user: each session
# clipped to the span, an open one counting until $until.
SESSION_SECONDS_ON: LiteralString = """
MATCH (u:User)-[:HAD_SESSION]->(s:DesktopSession)
WHERE s.start < $until AND (s.end IS NULL OR s.end > $start)
  AND EXISTS { (s)-[:ON_DESKTOP|ON_HOST|IN_POOL]->(x:Item) WHERE x.id IN $ids }
WITH u, CASE WHEN s.start < $start THEN $start ELSE s.start END AS a,
     CASE WHEN s.end IS NULL OR s.end > $until THEN $until ELSE s.end END AS b
WITH u.id AS user, sum(duration.inSeconds(a, b).seconds) AS seconds
WHERE seconds > 0
RETURN user, seconds
ORDER BY user
"""

# Users holding a role (by name, any case) at some time in [$start, $end).
ROLE_HOLDERS: LiteralString = """
MATCH (u:User)-[h:HAS_ROLE]->(r:Role WHERE toLower(r.name) = toLower($role))
WHERE (h.since IS NULL OR h.since < $end) AND (h.until IS NULL OR h.until > $start)
RETURN DISTINCT u.id AS user
ORDER BY user
"""

COST_CENTRES: LiteralString = """
MATCH (cc:CostCentre)
RETURN cc.code AS code, cc.name AS name,
       [(cc)-[:PART_OF]->(p:CostCentre) | p.code][0] AS parent,
       coalesce(cc.billingMode, 'CHARGEBACK') AS mode
ORDER BY code
"""

SET_BILLING_MODE: LiteralString = """
MATCH (cc:CostCentre {code: $code})
SET cc.billingMode = $mode
RETURN cc.code AS code
"""

# Cost centres a finance person answers for: those they manage or belong to, and below.
FINANCE_SCOPE: LiteralString = """
MATCH (u:User {userNameLower: toLower($user)})
MATCH (u)<-[:MANAGED_BY]-(top:CostCentre)
RETURN top.code AS code
UNION
MATCH (u:User {userNameLower: toLower($user)})-[:IN_COST_CENTRE]->(top:CostCentre)
RETURN top.code AS code
"""

# --- lines -----------------------------------------------------------------------------------

# Lines are written by calculation run: a run's lines are created batch by batch (each batch
# its own transaction, so no transaction holds a whole month), then one small transaction
# points the period at the run. Readers see the period's current run and its manual
# adjustments (run 'manual'), never a run half written; older runs are deleted afterwards.
CURRENT_LINES: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
MATCH (l:ChargeLine) WHERE l.period = $period AND l.run IN [p.run, 'manual']
"""

CREATE_LINES: LiteralString = """
UNWIND $rows AS row
CREATE (l:ChargeLine)
SET l = row
"""

SWITCH_RUN: LiteralString = (
    """
MATCH (p:ChargePeriod {id: $id}) WHERE p.status <> 'CLOSED'
CALL (p) {
  MATCH (l:ChargeLine) WHERE l.period = p.id AND l.run = 'manual'
  RETURN sum(l.amountMinor) AS manualTotal, count(l) AS manualLines
}
SET p.run = $run, p.writing = [r IN coalesce(p.writing, []) WHERE r <> $run],
    p.calculatedAt = $now, p.totalMinor = $total + manualTotal,
    p.lineCount = $lines + manualLines, p.warnings = $warnings
RETURN """
    + _PERIOD
    + " AS period"
)

# A calculation registers its run before writing a line of it: the sweep below leaves the
# runs being written alone.
START_RUN: LiteralString = """
MATCH (p:ChargePeriod {id: $period}) WHERE p.status <> 'CLOSED'
SET p.writing = coalesce(p.writing, []) + $run
RETURN p.id AS id
"""

# The run is no longer being written (it failed, or it is current now).
END_RUN: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
SET p.writing = [r IN coalesce(p.writing, []) WHERE r <> $run]
"""

# Lines of runs that are neither current, manual nor being written: replaced, or abandoned.
SWEEP_RUNS: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
MATCH (l:ChargeLine) WHERE l.period = $period AND l.run <> 'manual'
  AND (p.run IS NULL OR l.run <> p.run) AND NOT l.run IN coalesce(p.writing, [])
WITH l LIMIT $limit
DETACH DELETE l
RETURN count(*) AS deleted
"""

# Lines of runs other than the current one (replaced, or abandoned half written).
DELETE_OLD_RUNS: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
MATCH (l:ChargeLine) WHERE l.period = $period AND l.run <> 'manual'
  AND (p.run IS NULL OR l.run <> p.run)
WITH l LIMIT $limit
DETACH DELETE l
RETURN count(*) AS deleted
"""

CREATE_ADJUSTMENT: LiteralString = """
MATCH (p:ChargePeriod {id: $period}) WHERE p.status = 'OPEN'
CREATE (l:ChargeLine)
SET l = $row, l.run = 'manual'
WITH p, l
SET p.totalMinor = coalesce(p.totalMinor, 0) + l.amountMinor,
    p.lineCount = coalesce(p.lineCount, 0) + 1
RETURN l.id AS id
"""

GET_LINE: LiteralString = """
MATCH (l:ChargeLine {id: $id})
MATCH (p:ChargePeriod {id: l.period}) WHERE l.run IN [p.run, 'manual']
RETURN l {.*, periodCurrency: p.currency, periodStart: toString(p.start),
          periodEnd: toString(p.end)} AS line
"""

# Every line of a period in a stable order, for snapshots, checksums and exports.
PERIOD_LINES: LiteralString = CURRENT_LINES + """
  AND ($codes IS NULL OR l.costCentre IN $codes) AND ($user IS NULL OR l.user = $user)
RETURN l {.*, periodCurrency: p.currency, periodStart: toString(p.start),
          periodEnd: toString(p.end)} AS line
ORDER BY l.seq, l.id
SKIP $skip LIMIT $limit
"""

CHECKSUM_LINES: LiteralString = CURRENT_LINES + """
WITH l ORDER BY l.id
RETURN collect(l.id + '|' + toString(l.amountMinor) + '|' + coalesce(l.costCentre, '-'))
       AS rows
"""

# A filtered page of lines for drill-down.
FIND_LINES: LiteralString = CURRENT_LINES + """
  AND ($codes IS NULL OR l.costCentre IN $codes) AND ($user IS NULL OR l.user = $user)
  AND ($costCentres IS NULL OR l.costCentre IN $costCentres)
  AND ($forUser IS NULL OR l.user = $forUser)
  AND ($service IS NULL OR l.serviceId = $service)
  AND ($item IS NULL OR l.itemId = $item)
  AND ($meter IS NULL OR l.meter = $meter)
  AND ($kind IS NULL OR l.kind = $kind)
  AND ($after IS NULL OR [l.seq, l.id] > $after)
WITH l, p ORDER BY l.seq, l.id LIMIT $first
RETURN l {.*, periodCurrency: p.currency, periodStart: toString(p.start),
          periodEnd: toString(p.end)} AS line
"""

# Totals per report key; $key names the line property (checked against an allow-list).
REPORT_BY: dict[str, LiteralString] = {
    prop: CURRENT_LINES + """
  AND ($codes IS NULL OR l.costCentre IN $codes) AND ($user IS NULL OR l.user = $user)
RETURN l."""
    + prop
    + """ AS key, head(collect(l."""
    + name
    + """)) AS name, sum(l.amountMinor) AS minor,
       sum(CASE WHEN l.invoiced THEN l.amountMinor ELSE 0 END) AS invoicedMinor,
       count(l) AS lines
ORDER BY key
"""
    for prop, name in (("costCentre", "costCentre"), ("user", "user"),
                       ("serviceId", "serviceName"), ("itemId", "itemName"),
                       ("meter", "unit"), ("kind", "kind"))
}


# Over/under-recovery of the services recovered through prices, in one period's current
# lines: per service, its cost (the calculated lines booked to it as PRICES) and what its
# subscriptions' fees recovered. The services are those recovered through prices now (with
# or without lines) and those whose lines say so (the rule at the time of the calculation:
# a closed period answers as it was calculated). Scoped by the service's cost centre (the
# one on its lines, else its own now).
SERVICE_RECOVERY: LiteralString = """
MATCH (p:ChargePeriod {id: $period})
CALL (p) {
  MATCH (l:ChargeLine)
  WHERE l.period = p.id AND l.run = p.run AND l.serviceId IS NOT NULL
    AND (l.recovery = 'PRICES' OR l.kind IN ['RECURRING_FEE', 'ONE_OFF_FEE'])
  WITH l.serviceId AS id,
       CASE WHEN l.recovery = 'PRICES' THEN l END AS cost,
       CASE WHEN l.kind IN ['RECURRING_FEE', 'ONE_OFF_FEE'] THEN l END AS fee
  RETURN id, sum(cost.amountMinor) AS costMinor, count(cost) AS lines,
         head(collect(cost.costCentre)) AS lineCostCentre,
         head(collect(cost.serviceName)) AS costName, head(collect(fee.serviceName)) AS feeName,
         sum(fee.amountMinor) AS recoveredMinor, count(fee) AS feeLines
}
WITH p, collect({id: id, costMinor: costMinor, lines: lines, lineCostCentre: lineCostCentre,
                 name: coalesce(costName, feeName), recoveredMinor: recoveredMinor,
                 feeLines: feeLines}) AS found
CALL () {
  MATCH (s:Service) WHERE s.costRecovery = 'PRICES' AND s.lifecycleStatus <> 'RETIRED'
  RETURN collect(s.id) AS now
}
WITH p, found, now,
     [f IN found WHERE f.lines > 0 | f.id] AS marked
UNWIND now + [i IN marked WHERE NOT i IN now] AS id
WITH p, id, [f IN found WHERE f.id = id][0] AS f
OPTIONAL MATCH (s:Service {id: id})
WITH p, id, f, s,
     coalesce(f.lineCostCentre, [(s)-[:CHARGED_TO]->(cc:CostCentre) | cc.code][0]) AS cc
WHERE $codes IS NULL OR cc IN $codes
RETURN id, coalesce(s.name, f.name) AS name, cc AS costCentre,
       coalesce(f.costMinor, 0) AS costMinor, coalesce(f.recoveredMinor, 0) AS recoveredMinor,
       coalesce(f.lines, 0) AS lines, coalesce(f.feeLines, 0) AS feeLines,
       p.currency AS currency
ORDER BY toLower(name), id
"""
