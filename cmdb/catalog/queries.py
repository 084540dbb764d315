"""Cypher of the catalogue. Users, managers, cost-centre owners and role memberships are read
from the identity graph contract: ``(:User {userName})``, ``-[:REPORTS_TO]->`` manager,
``-[:IN_COST_CENTRE]->(:CostCentre)``, ``(:CostCentre)-[:MANAGED_BY]->(:User)`` and
``-[:HAS_ROLE {since, until}]->(:Role {name})``."""

from __future__ import annotations

from typing import LiteralString

# Entitlements: (:Role {name})-[:ENTITLED_TO]->(:CatalogueItem); a role named by an item is
# made (with the identity package's id and nameLower) when it does not exist yet.

# --- categories ------------------------------------------------------------------------------

CREATE_CATEGORY: LiteralString = """
CREATE (c:CatalogueCategory {id: $id, name: $name, nameLower: toLower($name),
                             description: $description, createdAt: $now})
RETURN c {.id, .name, .description} AS category
"""

LIST_CATEGORIES: LiteralString = """
MATCH (c:CatalogueCategory)
RETURN c {.id, .name, .description} AS category
ORDER BY c.nameLower
"""

GET_CATEGORIES: LiteralString = """
UNWIND $ids AS id
MATCH (c:CatalogueCategory {id: id})
RETURN c {.id, .name, .description} AS category
"""

# --- items and versions ----------------------------------------------------------------------

_VERSION = """v {.id, .itemId, .version, .name, .description, .formSchema, .roles,
       .approvalPolicy, .pricePlan, .recipe, .createdBy, createdAt: toString(v.createdAt)}"""

_ITEM_ROW: LiteralString = (
    """
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:CatalogueCategory)
RETURN i {.id, .status, createdAt: toString(i.createdAt), updatedAt: toString(i.updatedAt),
          retiredAt: toString(i.retiredAt)} AS item,
       """
    + _VERSION
    + """ AS version,
       c {.id, .name, .description} AS category
"""
)

CREATE_ITEM: LiteralString = (
    """
CREATE (i:CatalogueItem {id: $id, name: $name, nameLower: toLower($name),
                         description: $description, status: 'ACTIVE', currentVersion: 1,
                         createdAt: $now, updatedAt: $now})
CREATE (v:CatalogueItemVersion {id: $versionId, itemId: $id, version: 1, versionKey: $id + '#1',
                                createdAt: $now, createdBy: $by})
SET v += $content
CREATE (i)-[:HAS_VERSION]->(v)
WITH i, v
CALL (i) {
  OPTIONAL MATCH (c:CatalogueCategory {id: $categoryId})
  FOREACH (_ IN CASE WHEN c IS NULL THEN [] ELSE [1] END | CREATE (i)-[:IN_CATEGORY]->(c))
}
CALL (i) {
  UNWIND $roles AS role
  MERGE (r:Role {name: role})
  ON CREATE SET r.id = randomUUID(), r.nameLower = toLower(role), r.createdAt = $now,
                r.updatedAt = $now
  MERGE (r)-[:ENTITLED_TO]->(i)
}
"""
    + _ITEM_ROW
)

LOCK_ITEM: LiteralString = """
MATCH (i:CatalogueItem {id: $id})
SET i.lockedAt = $now REMOVE i.lockedAt
RETURN i.currentVersion AS currentVersion, i.status AS status
"""

# A new version becomes current; the old ones stay for the orders that point at them.
NEW_VERSION: LiteralString = (
    """
MATCH (i:CatalogueItem {id: $id})
SET i.currentVersion = $version, i.name = $name, i.nameLower = toLower($name),
    i.description = $description, i.updatedAt = $now
CREATE (v:CatalogueItemVersion {id: $versionId, itemId: $id, version: $version,
                                versionKey: $id + '#' + toString($version),
                                createdAt: $now, createdBy: $by})
SET v += $content
CREATE (i)-[:HAS_VERSION]->(v)
WITH i, v
CALL (i) {
  OPTIONAL MATCH (i)-[old:IN_CATEGORY]->() DELETE old
}
CALL (i) {
  OPTIONAL MATCH (c:CatalogueCategory {id: $categoryId})
  FOREACH (_ IN CASE WHEN c IS NULL THEN [] ELSE [1] END | CREATE (i)-[:IN_CATEGORY]->(c))
}
CALL (i) {
  OPTIONAL MATCH (r:Role)-[e:ENTITLED_TO]->(i) WHERE NOT r.name IN $roles
  DELETE e
}
CALL (i) {
  UNWIND $roles AS role
  MERGE (r:Role {name: role})
  ON CREATE SET r.id = randomUUID(), r.nameLower = toLower(role), r.createdAt = $now,
                r.updatedAt = $now
  MERGE (r)-[:ENTITLED_TO]->(i)
}
"""
    + _ITEM_ROW
)

RETIRE_ITEM: LiteralString = (
    """
MATCH (i:CatalogueItem {id: $id}) WHERE i.status = 'ACTIVE'
SET i.status = 'RETIRED', i.retiredAt = $now, i.updatedAt = $now
WITH i
MATCH (i)-[:HAS_VERSION]->(v:CatalogueItemVersion {version: i.currentVersion})
"""
    + _ITEM_ROW
)

# Items the caller may see: admins everything; others ACTIVE items entitled to one of their
# token roles or a current business role (HAS_ROLE without `until`, or until a later day).
_ENTITLED: LiteralString = """
($all OR EXISTS {
  MATCH (r:Role)-[:ENTITLED_TO]->(i)
  WHERE r.name IN $roles OR EXISTS {
    MATCH (:User {userName: $user})-[h:HAS_ROLE]->(r)
    WHERE (h.until IS NULL OR toString(h.until) > $nowText)
      AND (h.since IS NULL OR toString(h.since) <= $nowText)
  }
})
"""

LIST_ITEMS: LiteralString = (
    """
MATCH (i:CatalogueItem)
WHERE ((i.status = 'ACTIVE') OR ($includeRetired AND $all))
  AND ($categoryId IS NULL OR EXISTS {
        MATCH (i)-[:IN_CATEGORY]->(:CatalogueCategory {id: $categoryId}) })
  AND ($search IS NULL OR i.nameLower CONTAINS $search
       OR toLower(i.description) CONTAINS $search)
  AND """
    + _ENTITLED
    + """
WITH i ORDER BY i.nameLower
MATCH (i)-[:HAS_VERSION]->(v:CatalogueItemVersion {version: i.currentVersion})
"""
    + _ITEM_ROW
)

# One item by id, if the caller may see it (retired ones too, for the orders that name them).
GET_ITEM: LiteralString = (
    """
MATCH (i:CatalogueItem {id: $id})
WHERE $all OR """
    + _ENTITLED
    + """
MATCH (i)-[:HAS_VERSION]->(v:CatalogueItemVersion {version: i.currentVersion})
"""
    + _ITEM_ROW
)

# The items of many ids, unfiltered (the caller already may see what refers to them).
GET_ITEMS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (i:CatalogueItem {id: id})
MATCH (i)-[:HAS_VERSION]->(v:CatalogueItemVersion {version: i.currentVersion})
"""
    + _ITEM_ROW
)

VERSIONS_OF_ITEMS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (:CatalogueItem {id: id})-[:HAS_VERSION]->(v:CatalogueItemVersion)
WITH id, v ORDER BY v.version
RETURN id, collect("""
    + _VERSION
    + ") AS versions"
)

GET_VERSIONS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (v:CatalogueItemVersion {id: id})
RETURN """
    + _VERSION
    + " AS version"
)

# --- people (identity contract) --------------------------------------------------------------

PERSON: LiteralString = """
OPTIONAL MATCH (u:User {userName: $user})
OPTIONAL MATCH (u)-[:REPORTS_TO]->(m:User) WHERE coalesce(m.active, true)
OPTIONAL MATCH (u)-[:IN_COST_CENTRE]->(cc:CostCentre)
RETURN u IS NOT NULL AS exists, collect(DISTINCT m.userName) AS managers,
       collect(DISTINCT cc.code) AS costCentres
"""

COST_CENTRE_OWNERS: LiteralString = """
OPTIONAL MATCH (cc:CostCentre {code: $code})
OPTIONAL MATCH (cc)-[:MANAGED_BY]->(m:User) WHERE coalesce(m.active, true)
RETURN cc IS NOT NULL AS exists, collect(DISTINCT m.userName) AS owners
"""

# --- orders ----------------------------------------------------------------------------------

_ORDER = """o {.id, .itemId, .versionId, .itemVersion, .itemName, .requester, .costCentreCode,
     .form, .status, .currency, .oneOffFee, .monthlyFee, .comment, .revision, .stepIndex,
     .attempts, .lastError, .subscriptionId, .fingerprint, .quote,
     submittedAt: toString(o.submittedAt), updatedAt: toString(o.updatedAt)}"""

FIND_ORDER: LiteralString = (
    """
MATCH (o:Order {idempotencyScope: $scope})
RETURN """
    + _ORDER
    + " AS order"
)

# One order per (requester, idempotency key): a repeat, or a concurrent twin, matches.
MERGE_ORDER: LiteralString = (
    """
MERGE (o:Order {idempotencyScope: $scope})
ON CREATE SET o += $props, o.id = $id, o.submittedAt = $now, o.updatedAt = $now,
              o.revision = 0, o.seq = 0, o.stepIndex = -1, o.attempts = 0
RETURN o.id = $id AS created, """
    + _ORDER
    + " AS order"
)

LINK_ORDER: LiteralString = """
MATCH (o:Order {id: $id})
MATCH (v:CatalogueItemVersion {id: o.versionId})
CREATE (o)-[:FOR_VERSION]->(v)
WITH o
CALL (o) {
  OPTIONAL MATCH (u:User {userName: o.requester})
  FOREACH (_ IN CASE WHEN u IS NULL THEN [] ELSE [1] END | CREATE (o)-[:REQUESTED_BY]->(u))
}
CALL (o) {
  OPTIONAL MATCH (cc:CostCentre {code: o.costCentreCode})
  FOREACH (_ IN CASE WHEN cc IS NULL THEN [] ELSE [1] END | CREATE (o)-[:CHARGED_TO]->(cc))
}
CALL (o) {
  UNWIND $steps AS s
  CREATE (o)-[:HAS_STEP]->(st:ApprovalStep)
  SET st = s, st.orderId = o.id
}
SET o.stepIndex = $stepIndex
"""

# Taking the order's write lock first: a concurrent decision on the same order waits here
# and then reads what the first one committed.
LOCK_ORDER: LiteralString = (
    """
MATCH (o:Order {id: $id})
SET o.lockedAt = $now REMOVE o.lockedAt
RETURN """
    + _ORDER
    + " AS order"
)

GET_ORDERS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (o:Order {id: id})
RETURN """
    + _ORDER
    + " AS order"
)

# The one place an order's status changes: only from an allowed status and the revision the
# caller read, with the transition recorded in the same statement.
MOVE_ORDER: LiteralString = (
    """
MATCH (o:Order {id: $id})
WHERE o.status IN $from AND o.revision = $revision
WITH o, o.status AS previous
SET o.status = $to, o.revision = o.revision + 1, o.seq = o.seq + 1, o.updatedAt = $now,
    o.stepIndex = coalesce($stepIndex, o.stepIndex),
    o.attempts = o.attempts + $attempt,
    o.lastError = CASE WHEN $clearError THEN null ELSE coalesce($error, o.lastError) END
CREATE (o)-[:HAS_TRANSITION]->(t:OrderTransition {
  id: $transitionId, orderId: o.id, seq: o.seq, fromStatus: previous, toStatus: $to,
  by: $by, at: $now, reason: $reason,
  revision: o.revision, stepIndex: o.stepIndex, attempts: o.attempts, lastError: o.lastError})
RETURN """
    + _ORDER
    + " AS order"
)

# The order change feed's read (cmdb/core/feed.py): transitions stamped within the window,
# leaving out those already seen, each with its order as it is now and what the move made of
# it (its status, revision, step, attempts and error then; transitions recorded before these
# were kept have only the status).
ORDER_CHANGES_WINDOW: LiteralString = (
    """
MATCH (t:OrderTransition) WHERE t.at >= $from AND NOT t.id IN $seen
WITH t ORDER BY t.at, t.seq LIMIT $limit
MATCH (o:Order {id: t.orderId})
RETURN t.id AS id, t.at AS at,
       t {.toStatus, .revision, .stepIndex, .attempts, .lastError} AS moved, """
    + _ORDER
    + " AS order"
)

# The first transition (into SUBMITTED) of a new order.
FIRST_TRANSITION: LiteralString = """
MATCH (o:Order {id: $id})
SET o.seq = o.seq + 1
CREATE (o)-[:HAS_TRANSITION]->(t:OrderTransition {
  id: $transitionId, orderId: o.id, seq: o.seq, fromStatus: null, toStatus: o.status,
  by: $by, at: $now, reason: $reason,
  revision: o.revision, stepIndex: o.stepIndex, attempts: o.attempts})
"""

MY_ORDERS: LiteralString = (
    """
MATCH (o:Order)
WHERE ($user IS NULL OR o.requester = $user) AND ($statuses IS NULL OR o.status IN $statuses)
WITH o ORDER BY o.submittedAt DESC, o.id LIMIT $first
RETURN """
    + _ORDER
    + " AS order"
)

# What waits for the caller: the pending step names them, or their role, or they may decide
# any step ($all) but one only its approvers may decide; never their own orders.
APPROVAL_QUEUE: LiteralString = (
    """
MATCH (o:Order {status: 'AWAITING_APPROVAL'})-[:HAS_STEP]->(s:ApprovalStep {status: 'PENDING'})
WHERE o.requester <> $user
  AND (($all AND NOT coalesce(s.approversOnly, false)) OR $user IN s.approvers
       OR (s.kind = 'ROLE' AND s.role IN $roles))
WITH o ORDER BY o.submittedAt, o.id LIMIT $first
RETURN """
    + _ORDER
    + " AS order"
)

_STEP = """s {.id, .index, .kind, .role, .above, .approvers, .status, .decidedBy, .reason,
     .origin, .why, .approversOnly, decidedAt: toString(s.decidedAt)}"""

STEPS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (s:ApprovalStep {orderId: id})
WITH id, s ORDER BY s.index
RETURN id, collect("""
    + _STEP
    + ") AS steps"
)

# Whether the caller is named on any step of these orders (approvers may read them).
NAMED_APPROVER: LiteralString = """
UNWIND $ids AS id
MATCH (s:ApprovalStep {orderId: id})
WHERE $user IN s.approvers OR (s.kind = 'ROLE' AND s.role IN $roles)
RETURN DISTINCT id
"""

# One decision per step: the ApprovalDecision's stepKey is unique, and the step must still be
# PENDING at the revision the approver read.
DECIDE_STEP: LiteralString = """
MATCH (o:Order {id: $id})-[:HAS_STEP]->(s:ApprovalStep {index: $index})
WHERE o.status = 'AWAITING_APPROVAL' AND o.stepIndex = $index AND o.revision = $revision
  AND s.status = 'PENDING'
CREATE (s)-[:DECIDED]->(:ApprovalDecision {stepKey: o.id + '#' + toString($index),
                                           decision: $decision, by: $by, at: $now})
SET s.status = $decision, s.decidedBy = $by, s.decidedAt = $now, s.reason = $reason
RETURN s.id AS id
"""

OPEN_STEP: LiteralString = """
MATCH (s:ApprovalStep {orderId: $id, index: $index}) WHERE s.status = 'WAITING'
SET s.status = 'PENDING'
"""

CANCEL_STEPS: LiteralString = """
MATCH (s:ApprovalStep {orderId: $id}) WHERE s.status IN ['WAITING', 'PENDING']
SET s.status = 'CANCELLED'
"""

TRANSITIONS: LiteralString = """
UNWIND $ids AS id
MATCH (t:OrderTransition {orderId: id})
WITH id, t ORDER BY t.seq
RETURN id, collect(t {.seq, .fromStatus, .toStatus, .by, .reason, at: toString(t.at)})
       AS transitions
"""

# --- fulfilment ------------------------------------------------------------------------------

_TASK = """t {.id, .orderId, .index, .name, .description, .group, .status, .doneBy, .note,
     doneAt: toString(t.doneAt)}"""

CREATE_TASKS: LiteralString = """
MATCH (o:Order {id: $id})
WHERE NOT EXISTS { (o)-[:HAS_TASK]->(:FulfilmentTask) }
UNWIND $tasks AS task
CREATE (o)-[:HAS_TASK]->(t:FulfilmentTask)
SET t = task, t.orderId = o.id, t.status = 'OPEN', t.createdAt = $now
"""

REOPEN_TASKS: LiteralString = """
MATCH (t:FulfilmentTask {orderId: $id}) WHERE t.status = 'FAILED'
SET t.status = 'OPEN', t.doneBy = null, t.doneAt = null, t.note = null
"""

TASKS_OF: LiteralString = (
    """
UNWIND $ids AS id
MATCH (t:FulfilmentTask {orderId: id})
WITH id, t ORDER BY t.index
RETURN id, collect("""
    + _TASK
    + ") AS tasks"
)

GET_TASK: LiteralString = (
    """
MATCH (t:FulfilmentTask {id: $id})
RETURN """
    + _TASK
    + " AS task"
)

LIST_TASKS: LiteralString = (
    """
MATCH (t:FulfilmentTask)
WHERE $statuses IS NULL OR t.status IN $statuses
WITH t ORDER BY t.createdAt, t.orderId, t.index LIMIT $first
RETURN """
    + _TASK
    + " AS task"
)

FINISH_TASK: LiteralString = (
    """
MATCH (t:FulfilmentTask {id: $id}) WHERE t.status = 'OPEN'
SET t.status = $status, t.doneBy = $by, t.doneAt = $now, t.note = $note
RETURN """
    + _TASK
    + " AS task"
)

# Live services and CIs a recipe names, by name (the oldest live one wins, as in the demo).
RESOLVE_NAMES: LiteralString = """
UNWIND $refs AS ref
OPTIONAL MATCH (n:Item) WHERE n.nameLower = toLower(ref.name)
  AND n.lifecycleStatus <> 'RETIRED'
  AND ((ref.kind = 'service' AND n:Service) OR (ref.kind = 'item' AND n:CI))
WITH ref, n ORDER BY n.createdAt, n.id
WITH ref, head(collect(n)) AS n
RETURN ref.kind + ':' + ref.name AS ref, n.id AS id,
       CASE WHEN n:Service THEN 'SERVICE' ELSE n.ciClass END AS cls
"""

COST_CENTRE_ID: LiteralString = """
OPTIONAL MATCH (cc:CostCentre {code: $code})
RETURN cc.id AS id
"""

# The subscription carries the fees quoted on its order (what chargeback bills it).
CREATE_SUBSCRIPTION: LiteralString = """
MATCH (o:Order {id: $orderId})
MATCH (v:CatalogueItemVersion {id: o.versionId})
CREATE (s:Subscription {id: $id, orderId: o.id, itemId: o.itemId, versionId: o.versionId,
                        itemVersion: o.itemVersion, itemName: o.itemName,
                        consumer: o.requester, costCentreCode: o.costCentreCode,
                        serviceId: $serviceId, ciIds: $ciIds, status: 'ACTIVE',
                        startAt: $now, currency: o.currency, oneOffFee: o.oneOffFee,
                        monthlyFee: o.monthlyFee})
CREATE (o)-[:BECAME]->(s)
CREATE (s)-[:OF_VERSION]->(v)
SET o.subscriptionId = s.id
WITH s
CALL (s) {
  OPTIONAL MATCH (svc:Service {id: $serviceId})
  FOREACH (_ IN CASE WHEN svc IS NULL THEN [] ELSE [1] END | CREATE (s)-[:OF_SERVICE]->(svc))
}
CALL (s) {
  OPTIONAL MATCH (u:User {userName: s.consumer})
  FOREACH (_ IN CASE WHEN u IS NULL THEN [] ELSE [1] END | CREATE (s)-[:CONSUMED_BY]->(u))
}
CALL (s) {
  OPTIONAL MATCH (cc:CostCentre {code: s.costCentreCode})
  FOREACH (_ IN CASE WHEN cc IS NULL THEN [] ELSE [1] END | CREATE (s)-[:CHARGED_TO]->(cc))
}
CALL (s) {
  UNWIND $ciIds AS cid
  MATCH (c:Item {id: cid})
  CREATE (s)-[:PROVISIONED]->(c)
}
RETURN s.id AS id
"""

# --- subscriptions ---------------------------------------------------------------------------

_SUBSCRIPTION = """s {.id, .orderId, .itemId, .versionId, .itemVersion, .itemName, .consumer,
     .costCentreCode, .serviceId, .ciIds, .status, .endedBy, .endReason,
     startAt: toString(s.startAt), endAt: toString(s.endAt)}"""

GET_SUBSCRIPTIONS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (s:Subscription {id: id})
RETURN """
    + _SUBSCRIPTION
    + " AS subscription"
)

LIST_SUBSCRIPTIONS: LiteralString = (
    """
MATCH (s:Subscription)
WHERE ($user IS NULL OR s.consumer = $user) AND ($statuses IS NULL OR s.status IN $statuses)
WITH s ORDER BY s.startAt DESC, s.id LIMIT $first
RETURN """
    + _SUBSCRIPTION
    + " AS subscription"
)

LOCK_SUBSCRIPTION: LiteralString = (
    """
MATCH (s:Subscription {id: $id})
SET s.lockedAt = $now REMOVE s.lockedAt
RETURN """
    + _SUBSCRIPTION
    + " AS subscription"
)

END_SUBSCRIPTION: LiteralString = (
    """
MATCH (s:Subscription {id: $id}) WHERE s.status = 'ACTIVE'
SET s.status = 'ENDED', s.endAt = $now, s.endedBy = $by, s.endReason = $reason
RETURN """
    + _SUBSCRIPTION
    + " AS subscription"
)

LIVE_ITEMS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id}) WHERE n.lifecycleStatus <> 'RETIRED'
RETURN n.id AS id
"""

# Metrics: orders waiting on someone, by status (approval: SUBMITTED, AWAITING_APPROVAL;
# fulfilment: APPROVED, FULFILLING, and FAILED until retried or cancelled).
WAITING_ORDER_COUNTS: LiteralString = """
MATCH (o:Order)
WHERE o.status IN ['SUBMITTED', 'AWAITING_APPROVAL', 'APPROVED', 'FULFILLING', 'FAILED']
RETURN o.status AS status, count(*) AS n
"""
