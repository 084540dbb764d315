"""Versioned, idempotent graph-schema migrations; the applied version is kept in the graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import LiteralString

from cmdb.core.clock import utcnow
from cmdb.db.driver import Database


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[LiteralString, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "uniqueness of ids and identifiers", (
        "CREATE CONSTRAINT schema_migration_version IF NOT EXISTS "
        "FOR (m:SchemaMigration) REQUIRE m.version IS UNIQUE",
        "CREATE CONSTRAINT item_id IF NOT EXISTS FOR (n:Item) REQUIRE n.id IS UNIQUE",
        "CREATE CONSTRAINT org_id IF NOT EXISTS FOR (n:Org) REQUIRE n.id IS UNIQUE",
        "CREATE CONSTRAINT ci_serial_number IF NOT EXISTS "
        "FOR (n:CI) REQUIRE n.serialNumber IS UNIQUE",
        "CREATE CONSTRAINT ci_mac_address IF NOT EXISTS "
        "FOR (n:CI) REQUIRE n.macAddress IS UNIQUE",
        "CREATE CONSTRAINT ci_cloud_instance_id IF NOT EXISTS "
        "FOR (n:CI) REQUIRE n.cloudInstanceId IS UNIQUE",
        "CREATE CONSTRAINT ci_fqdn IF NOT EXISTS FOR (n:CI) REQUIRE n.fqdn IS UNIQUE",
        "CREATE CONSTRAINT cost_centre_code IF NOT EXISTS "
        "FOR (n:CostCentre) REQUIRE n.code IS UNIQUE",
    )),
    Migration(2, "indexes for lookups, filters and sorting", (
        "CREATE INDEX ci_class IF NOT EXISTS FOR (n:CI) ON (n.ciClass)",
        "CREATE INDEX ci_host_name IF NOT EXISTS FOR (n:CI) ON (n.hostName)",
        "CREATE INDEX ci_name IF NOT EXISTS FOR (n:CI) ON (n.nameLower)",
        "CREATE INDEX ci_status IF NOT EXISTS FOR (n:CI) ON (n.lifecycleStatus)",
        "CREATE INDEX ci_state IF NOT EXISTS FOR (n:CI) ON (n.operationalState)",
        "CREATE INDEX ci_created IF NOT EXISTS FOR (n:CI) ON (n.createdAt)",
        "CREATE INDEX ci_updated IF NOT EXISTS FOR (n:CI) ON (n.updatedAt)",
        "CREATE INDEX ci_criticality IF NOT EXISTS FOR (n:CI) ON (n.criticalityRank)",
        "CREATE TEXT INDEX ci_name_text IF NOT EXISTS FOR (n:CI) ON (n.nameLower)",
        "CREATE INDEX service_name IF NOT EXISTS FOR (n:Service) ON (n.nameLower)",
        "CREATE INDEX service_kind IF NOT EXISTS FOR (n:Service) ON (n.serviceKind)",
        "CREATE INDEX service_status IF NOT EXISTS FOR (n:Service) ON (n.lifecycleStatus)",
        "CREATE INDEX service_created IF NOT EXISTS FOR (n:Service) ON (n.createdAt)",
        "CREATE INDEX service_updated IF NOT EXISTS FOR (n:Service) ON (n.updatedAt)",
        "CREATE INDEX service_criticality IF NOT EXISTS FOR (n:Service) ON (n.criticalityRank)",
        "CREATE TEXT INDEX service_name_text IF NOT EXISTS FOR (n:Service) ON (n.nameLower)",
        "CREATE INDEX org_name IF NOT EXISTS FOR (n:Org) ON (n.nameLower)",
    )),
    Migration(3, "health: state history index, HAS_MEMBER mirrors of MEMBER_OF", (
        "CREATE INDEX state_change_item_at IF NOT EXISTS "
        "FOR (c:StateChange) ON (c.itemId, c.at)",
        "MATCH (m:Item)-[r:MEMBER_OF]->(g:Item) WHERE r.retiredAt IS NULL "
        "AND NOT EXISTS { (g)-[h:HAS_MEMBER]->(m) WHERE h.retiredAt IS NULL } "
        "CREATE (g)-[h:HAS_MEMBER]->(m) SET h = properties(r)",
    )),
    Migration(4, "alarms: one open alarm per source and dedup key, lookups by CI and status", (
        "CREATE CONSTRAINT alarm_id IF NOT EXISTS FOR (a:Alarm) REQUIRE a.id IS UNIQUE",
        # openKey = source + NUL + dedupKey, present only while the alarm is open.
        "CREATE CONSTRAINT alarm_open_key IF NOT EXISTS "
        "FOR (a:Alarm) REQUIRE a.openKey IS UNIQUE",
        # The open alarms of a CI (its state), and lists by CI, status or source, newest first.
        "CREATE INDEX alarm_ci_status IF NOT EXISTS FOR (a:Alarm) ON (a.ciId, a.status)",
        "CREATE INDEX alarm_ci_last IF NOT EXISTS FOR (a:Alarm) ON (a.ciId, a.lastOccurredAt)",
        "CREATE INDEX alarm_status_last IF NOT EXISTS "
        "FOR (a:Alarm) ON (a.status, a.lastOccurredAt)",
        "CREATE INDEX alarm_source_last IF NOT EXISTS "
        "FOR (a:Alarm) ON (a.source, a.lastOccurredAt)",
        "CREATE INDEX alarm_source_key IF NOT EXISTS FOR (a:Alarm) ON (a.source, a.dedupKey)",
        "CREATE INDEX alarm_last_occurred IF NOT EXISTS FOR (a:Alarm) ON (a.lastOccurredAt)",
    )),
    Migration(5, "state changes by time; planned changes by window", (
        "CREATE INDEX state_change_at IF NOT EXISTS FOR (c:StateChange) ON (c.at)",
        "CREATE CONSTRAINT planned_change_id IF NOT EXISTS "
        "FOR (c:PlannedChange) REQUIRE c.id IS UNIQUE",
        "CREATE INDEX planned_change_start IF NOT EXISTS FOR (c:PlannedChange) ON (c.start)",
    )),
    Migration(6, "people: users, roles, desktop sessions and broker events", (
        "CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE",
        "CREATE CONSTRAINT user_name IF NOT EXISTS FOR (u:User) REQUIRE u.userName IS UNIQUE",
        # Feeds spell user names loosely: one user per name ignoring case.
        "CREATE CONSTRAINT user_name_lower IF NOT EXISTS "
        "FOR (u:User) REQUIRE u.userNameLower IS UNIQUE",
        "CREATE CONSTRAINT role_id IF NOT EXISTS FOR (r:Role) REQUIRE r.id IS UNIQUE",
        "CREATE CONSTRAINT role_name IF NOT EXISTS FOR (r:Role) REQUIRE r.name IS UNIQUE",
        "CREATE CONSTRAINT desktop_session_id IF NOT EXISTS "
        "FOR (s:DesktopSession) REQUIRE s.id IS UNIQUE",
        "CREATE CONSTRAINT desktop_session_key IF NOT EXISTS "
        "FOR (s:DesktopSession) REQUIRE s.sessionKey IS UNIQUE",
        "CREATE CONSTRAINT broker_event_id IF NOT EXISTS "
        "FOR (b:BrokerEvent) REQUIRE b.eventId IS UNIQUE",
        # Desktops assigned to a user (attribute assignedUser), for the user view.
        "CREATE INDEX desktop_assigned_user IF NOT EXISTS "
        "FOR (d:VirtualDesktop) ON (d.attr_assignedUser)",
        "CREATE INDEX desktop_name IF NOT EXISTS FOR (d:VirtualDesktop) ON (d.nameLower)",
        "CREATE INDEX desktop_pool_name IF NOT EXISTS FOR (p:DesktopPool) ON (p.nameLower)",
    )),
    Migration(7, "discovery: sources, history by item and time, staleness", (
        "CREATE CONSTRAINT discovery_source_name IF NOT EXISTS "
        "FOR (s:DiscoverySource) REQUIRE s.name IS UNIQUE",
        "CREATE INDEX history_record_item_at IF NOT EXISTS "
        "FOR (h:HistoryRecord) ON (h.itemId, h.at)",
        "CREATE INDEX ci_last_seen IF NOT EXISTS FOR (n:CI) ON (n.lastSeenAt)",
        "CREATE INDEX rel_depends_on_last_seen IF NOT EXISTS "
        "FOR ()-[r:DEPENDS_ON]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_runs_on_last_seen IF NOT EXISTS "
        "FOR ()-[r:RUNS_ON]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_member_of_last_seen IF NOT EXISTS "
        "FOR ()-[r:MEMBER_OF]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_connects_to_last_seen IF NOT EXISTS "
        "FOR ()-[r:CONNECTS_TO]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_contains_last_seen IF NOT EXISTS "
        "FOR ()-[r:CONTAINS]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_uses_last_seen IF NOT EXISTS "
        "FOR ()-[r:USES]-() ON (r.lastSeenAt)",
        "CREATE INDEX rel_installed_on_last_seen IF NOT EXISTS "
        "FOR ()-[r:INSTALLED_ON]-() ON (r.lastSeenAt)",
    )),
    Migration(8, "catalogue: items, versions, orders (one per idempotency key), one decision "
              "per approval step, subscriptions, fulfilment tasks", (
        "CREATE CONSTRAINT catalogue_category_id IF NOT EXISTS "
        "FOR (c:CatalogueCategory) REQUIRE c.id IS UNIQUE",
        "CREATE CONSTRAINT catalogue_category_name IF NOT EXISTS "
        "FOR (c:CatalogueCategory) REQUIRE c.nameLower IS UNIQUE",
        "CREATE CONSTRAINT catalogue_item_id IF NOT EXISTS "
        "FOR (i:CatalogueItem) REQUIRE i.id IS UNIQUE",
        "CREATE CONSTRAINT catalogue_item_name IF NOT EXISTS "
        "FOR (i:CatalogueItem) REQUIRE i.nameLower IS UNIQUE",
        "CREATE CONSTRAINT catalogue_version_id IF NOT EXISTS "
        "FOR (v:CatalogueItemVersion) REQUIRE v.id IS UNIQUE",
        # itemId + '#' + version: two concurrent edits cannot both make version n.
        "CREATE CONSTRAINT catalogue_version_key IF NOT EXISTS "
        "FOR (v:CatalogueItemVersion) REQUIRE v.versionKey IS UNIQUE",
        "CREATE CONSTRAINT role_name IF NOT EXISTS FOR (r:Role) REQUIRE r.name IS UNIQUE",
        "CREATE CONSTRAINT order_id IF NOT EXISTS FOR (o:Order) REQUIRE o.id IS UNIQUE",
        # requester + NUL + idempotency key: the same request twice makes one order.
        "CREATE CONSTRAINT order_idempotency IF NOT EXISTS "
        "FOR (o:Order) REQUIRE o.idempotencyScope IS UNIQUE",
        "CREATE INDEX order_requester IF NOT EXISTS FOR (o:Order) ON (o.requester, o.submittedAt)",
        "CREATE INDEX order_status IF NOT EXISTS FOR (o:Order) ON (o.status)",
        "CREATE CONSTRAINT approval_step_id IF NOT EXISTS "
        "FOR (s:ApprovalStep) REQUIRE s.id IS UNIQUE",
        # orderId + '#' + step index: at most one decision per step, whoever decides first.
        "CREATE CONSTRAINT approval_decision_key IF NOT EXISTS "
        "FOR (d:ApprovalDecision) REQUIRE d.stepKey IS UNIQUE",
        "CREATE INDEX approval_step_order IF NOT EXISTS FOR (s:ApprovalStep) ON (s.orderId)",
        "CREATE CONSTRAINT order_transition_id IF NOT EXISTS "
        "FOR (t:OrderTransition) REQUIRE t.id IS UNIQUE",
        "CREATE INDEX order_transition_order IF NOT EXISTS "
        "FOR (t:OrderTransition) ON (t.orderId)",
        "CREATE CONSTRAINT subscription_id IF NOT EXISTS "
        "FOR (s:Subscription) REQUIRE s.id IS UNIQUE",
        # One subscription per order, even when fulfilment is retried.
        "CREATE CONSTRAINT subscription_order IF NOT EXISTS "
        "FOR (s:Subscription) REQUIRE s.orderId IS UNIQUE",
        "CREATE INDEX subscription_consumer IF NOT EXISTS "
        "FOR (s:Subscription) ON (s.consumer, s.status)",
        "CREATE CONSTRAINT fulfilment_task_id IF NOT EXISTS "
        "FOR (t:FulfilmentTask) REQUIRE t.id IS UNIQUE",
        "CREATE INDEX fulfilment_task_order IF NOT EXISTS "
        "FOR (t:FulfilmentTask) ON (t.orderId)",
        "CREATE INDEX fulfilment_task_status IF NOT EXISTS "
        "FOR (t:FulfilmentTask) ON (t.status)",
    )),
    Migration(9, "chargeback: meters, usage records (one per record id), rate cards, pools, "
              "periods and charge lines", (
        "CREATE CONSTRAINT meter_code IF NOT EXISTS FOR (m:Meter) REQUIRE m.code IS UNIQUE",
        "CREATE CONSTRAINT usage_record_id IF NOT EXISTS "
        "FOR (u:UsageRecord) REQUIRE u.recordId IS UNIQUE",
        "CREATE INDEX usage_billed_in IF NOT EXISTS FOR (u:UsageRecord) ON (u.billedIn)",
        "CREATE CONSTRAINT rate_card_id IF NOT EXISTS FOR (r:RateCard) REQUIRE r.id IS UNIQUE",
        "CREATE INDEX rate_card_meter IF NOT EXISTS FOR (r:RateCard) ON (r.meter)",
        "CREATE CONSTRAINT cost_pool_code IF NOT EXISTS "
        "FOR (p:CostPool) REQUIRE p.code IS UNIQUE",
        "CREATE CONSTRAINT pool_cost_key IF NOT EXISTS "
        "FOR (c:PoolCost) REQUIRE c.key IS UNIQUE",
        "CREATE CONSTRAINT charge_period_id IF NOT EXISTS "
        "FOR (p:ChargePeriod) REQUIRE p.id IS UNIQUE",
        "CREATE CONSTRAINT charge_line_id IF NOT EXISTS "
        "FOR (l:ChargeLine) REQUIRE l.id IS UNIQUE",
        "CREATE INDEX charge_line_period IF NOT EXISTS FOR (l:ChargeLine) ON (l.period)",
    )),
    Migration(10, "charge lines by calculation run: the same line id in several runs", (
        "DROP CONSTRAINT charge_line_id IF EXISTS",
        # Every read of a period's lines goes through (period, run): one index less to write.
        "DROP INDEX charge_line_period IF EXISTS",
        "CREATE INDEX charge_line_id IF NOT EXISTS FOR (l:ChargeLine) ON (l.id)",
        "CREATE INDEX charge_line_period_run IF NOT EXISTS "
        "FOR (l:ChargeLine) ON (l.period, l.run)",
    )),
    Migration(11, "alarm events counted once: source + event id of each counted raise", (
        # source + NUL + eventId: a raise sent again (a client retrying) is not counted again.
        "CREATE CONSTRAINT alarm_event_key IF NOT EXISTS "
        "FOR (e:AlarmEvent) REQUIRE e.key IS UNIQUE",
    )),
    Migration(12, "usage by billing period, meter and time: a period's usage is summed per "
              "rate card window, each window one index seek", (
        "CREATE INDEX usage_window IF NOT EXISTS "
        "FOR (u:UsageRecord) ON (u.billedIn, u.meter, u.at)",
    )),
    Migration(13, "change feeds: order transitions by time (state changes have theirs)", (
        "CREATE INDEX order_transition_at IF NOT EXISTS FOR (t:OrderTransition) ON (t.at)",
    )),
    Migration(14, "asset records: one per CI, asset tags unique", (
        "CREATE CONSTRAINT asset_ci_id IF NOT EXISTS FOR (a:Asset) REQUIRE a.ciId IS UNIQUE",
        "CREATE CONSTRAINT asset_tag IF NOT EXISTS FOR (a:Asset) REQUIRE a.assetTag IS UNIQUE",
    )),
    Migration(15, "usage by billing period, meter and time, carrying each record's CI, month "
              "and quantity: a period's usage is summed from the index alone", (
        "CREATE INDEX usage_window_values IF NOT EXISTS FOR (u:UsageRecord) "
        "ON (u.billedIn, u.meter, u.at, u.ciId, u.month, u.qtyMicros)",
        "DROP INDEX usage_window IF EXISTS",
    )),
    Migration(16, "lists in index order: a sorted first page stops at the page instead of "
              "sorting every match (core/cypher.py ORDERED_INDEXES)", (
        "CREATE INDEX ci_class_state_name_order IF NOT EXISTS "
        "FOR (n:CI) ON (n.ciClass, n.operationalState, n.nameLower, n.id)",
        "CREATE INDEX ci_class_name_order IF NOT EXISTS "
        "FOR (n:CI) ON (n.ciClass, n.nameLower, n.id)",
        "CREATE INDEX ci_name_order IF NOT EXISTS FOR (n:CI) ON (n.nameLower, n.id)",
        "CREATE INDEX service_kind_name_order IF NOT EXISTS "
        "FOR (n:Service) ON (n.serviceKind, n.nameLower, n.id)",
        "CREATE INDEX service_name_order IF NOT EXISTS "
        "FOR (n:Service) ON (n.nameLower, n.id)",
    )),
    Migration(17, "deferred roll-up: one lock node that serialises the roll-up workers", (
        "CREATE CONSTRAINT rollup_lock_id IF NOT EXISTS "
        "FOR (l:RollupLock) REQUIRE l.id IS UNIQUE",
    )),
)

LATEST_VERSION = max(m.version for m in MIGRATIONS)


async def current_version(db: Database) -> int:
    rows = await db.read("MATCH (m:SchemaMigration) RETURN max(m.version) AS v")
    v = rows[0]["v"] if rows else None
    return int(v) if v is not None else 0


async def applied_versions(db: Database) -> set[int]:
    rows = await db.read("MATCH (m:SchemaMigration) RETURN collect(m.version) AS vs")
    return {int(v) for v in (rows[0]["vs"] if rows else [])}


async def pending(db: Database) -> list[Migration]:
    """Migrations not yet applied, lowest version first. Versions may have gaps, and one
    below the highest applied version (added by a later merge) is still pending."""
    have = await applied_versions(db)
    return sorted((m for m in MIGRATIONS if m.version not in have), key=lambda m: m.version)


async def migrate(db: Database) -> list[Migration]:
    """Apply every migration not yet applied, in ascending version order; returns them."""
    applied = []
    for m in await pending(db):
        for statement in m.statements:
            await db.write(statement)
        await db.write(
            "MERGE (m:SchemaMigration {version: $v}) SET m.name = $name, m.appliedAt = $now",
            {"v": m.version, "name": m.name, "now": utcnow()},
        )
        applied.append(m)
    if applied:
        await db.write("CALL db.awaitIndexes(300)")
    return applied
