"""Cypher of the catalogue. Users, managers, cost-centre owners and role memberships are read
from the identity graph contract: ``(:User {userName})``, ``-[:REPORTS_TO]->`` manager,
``-[:IN_COST_CENTRE]->(:CostCentre)``, ``(:CostCentre)-[:MANAGED_BY]->(:User)`` and
``-[:HAS_ROLE {since, until}]->(:Role {name})``."""

from __future__ import annotations

from typing import LiteralString


def _each_id(match: LiteralString, projection: LiteralString, alias: LiteralString
             ) -> LiteralString:
    """A row per id of ``$ids`` that ``match`` (binding ``id``) finds."""
    return "UNWIND $ids AS id\nMATCH " + match + "\nRETURN " + projection + " AS " + alias + "\n"


def _collected(match: LiteralString, node: LiteralString, order: LiteralString,
               projection: LiteralString, alias: LiteralString) -> LiteralString:
    """A row per id of ``$ids``: the ``node``s ``match`` finds for it, in ``order``, as one
    list."""
    return ("UNWIND $ids AS id\nMATCH " + match + "\nWITH id, " + node + " ORDER BY " + order
            + "\nRETURN id, collect(" + projection + ") AS " + alias + "\n")


def _locking(match: LiteralString, node: LiteralString, returns: LiteralString
             ) -> LiteralString:
    """``match`` under ``node``'s write lock: a concurrent writer waits for this one."""
    return ("MATCH " + match + "\nSET " + node + ".lockedAt = $now REMOVE " + node
            + ".lockedAt\nRETURN " + returns + "\n")


def _link_found(owner: LiteralString, match: LiteralString, found: LiteralString,
                rel: LiteralString) -> LiteralString:
    """Links ``owner`` to the node ``match`` binds as ``found``, when there is one."""
    return ("CALL (" + owner + ") {\n  OPTIONAL MATCH " + match + "\n  FOREACH (_ IN CASE WHEN "
            + found + " IS NULL THEN [] ELSE [1] END | CREATE (" + owner + ")-[:" + rel
            + "]->(" + found + "))\n}\n")


# Entitlements: (:Role {name})-[:ENTITLED_TO]->(:CatalogueItem); a role named by an item is
# made (with the identity package's id and nameLower) when it does not exist yet.

# --- categories ------------------------------------------------------------------------------

_CATEGORY: LiteralString = "c {.id, .name, .description}"

CREATE_CATEGORY: LiteralString = """
CREATE (c:CatalogueCategory {id: $id, name: $name, nameLower: toLower($name),
                             description: $description, createdAt: $now})
RETURN """ + _CATEGORY + " AS category"

LIST_CATEGORIES: LiteralString = """
MATCH (c:CatalogueCategory)
RETURN """ + _CATEGORY + """ AS category
ORDER BY c.nameLower
"""

GET_CATEGORIES = _each_id("(c:CatalogueCategory {id: id})", _CATEGORY, "category")

# --- items and versions ----------------------------------------------------------------------

_VERSION: LiteralString = """v {.id, .itemId, .version, .name, .description, .formSchema, .roles,
       .approvalPolicy, .pricePlan, .recipe, .createdBy, createdAt: toString(v.createdAt)}"""

_ITEM_ROW: LiteralString = (
    """
OPTIONAL MATCH (i)-[:IN_CATEGORY]->(c:CatalogueCategory)
RETURN i {.id, .status, createdAt: toString(i.createdAt), updatedAt: toString(i.updatedAt),
          retiredAt: toString(i.retiredAt)} AS item,
       """
    + _VERSION
    + """ AS version,
       """
    + _CATEGORY
    + """ AS category
"""
)

# A new version (number $version, content $content) of item i becomes its current one; the
# item's category and the roles entitled to order it are those of the version.
_ADD_VERSION: LiteralString = (
    """
CREATE (v:CatalogueItemVersion {id: $versionId, itemId: $id, version: $version,
                                versionKey: $id + '#' + toString($version),
                                createdAt: $now, createdBy: $by})
SET v += $content
CREATE (i)-[:HAS_VERSION]->(v)
WITH i, v
"""
    + _link_found("i", "(c:CatalogueCategory {id: $categoryId})", "c", "IN_CATEGORY")
    + """CALL (i) {
  UNWIND $roles AS role
  MERGE (r:Role {name: role})
  ON CREATE SET r.id = randomUUID(), r.nameLower = toLower(role), r.createdAt = $now,
                r.updatedAt = $now
  MERGE (r)-[:ENTITLED_TO]->(i)
}
"""
)

CREATE_ITEM: LiteralString = (
    """
CREATE (i:CatalogueItem {id: $id, name: $name, nameLower: toLower($name),
                         description: $description, status: 'ACTIVE', currentVersion: $version,
                         createdAt: $now, updatedAt: $now})
"""
    + _ADD_VERSION
    + _ITEM_ROW
)

LOCK_ITEM = _locking("(i:CatalogueItem {id: $id})", "i",
                     "i.currentVersion AS currentVersion, i.status AS status")

# A new version becomes current; the old ones stay for the orders that point at them.
NEW_VERSION: LiteralString = (
    """
MATCH (i:CatalogueItem {id: $id})
SET i.currentVersion = $version, i.name = $name, i.nameLower = toLower($name),
    i.description = $description, i.updatedAt = $now
WITH i
CALL (i) {
  OPTIONAL MATCH (i)-[old:IN_CATEGORY]->() DELETE old
}
CALL (i) {
  OPTIONAL MATCH (r:Role)-[e:ENTITLED_TO]->(i) WHERE NOT r.name IN $roles
  DELETE e
}
"""
    + _ADD_VERSION
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

VERSIONS_OF_ITEMS = _collected(
    "(:CatalogueItem {id: id})-[:HAS_VERSION]->(v:CatalogueItemVersion)", "v", "v.version",
    _VERSION, "versions")

GET_VERSIONS = _each_id("(v:CatalogueItemVersion {id: id})", _VERSION, "version")

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

_ORDER: LiteralString = """o {.id, .itemId, .versionId, .itemVersion, .itemName, .requester,
     .costCentreCode, .form, .status, .currency, .oneOffFee, .monthlyFee, .comment, .revision,
     .stepIndex, .attempts, .lastError, .subscriptionId, .fingerprint, .quote,
     submittedAt: toString(o.submittedAt), updatedAt: toString(o.updatedAt)}"""
_RETURN_ORDER: LiteralString = "RETURN " + _ORDER + " AS order\n"

FIND_ORDER: LiteralString = "MATCH (o:Order {idempotencyScope: $scope})\n" + _RETURN_ORDER

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

LINK_ORDER: LiteralString = (
    """
MATCH (o:Order {id: $id})
MATCH (v:CatalogueItemVersion {id: o.versionId})
CREATE (o)-[:FOR_VERSION]->(v)
WITH o
"""
    + _link_found("o", "(u:User {userName: o.requester})", "u", "REQUESTED_BY")
    + _link_found("o", "(cc:CostCentre {code: o.costCentreCode})", "cc", "CHARGED_TO")
    + """CALL (o) {
  UNWIND $steps AS s
  CREATE (o)-[:HAS_STEP]->(st:ApprovalStep)
  SET st = s, st.orderId = o.id
}
SET o.stepIndex = $stepIndex
"""
)

# Taking the order's write lock first: a concurrent decision on the same order waits here
# and then reads what the first one committed.
LOCK_ORDER = _locking("(o:Order {id: $id})", "o", _ORDER + " AS order")

GET_ORDERS = _each_id("(o:Order {id: id})", _ORDER, "order")

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
"""
    + _RETURN_ORDER
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
"""
    + _RETURN_ORDER
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
"""
    + _RETURN_ORDER
)

_STEP: LiteralString = """s {.id, .index, .kind, .role, .above, .approvers, .status, .decidedBy,
     .reason, .origin, .why, .approversOnly, decidedAt: toString(s.decidedAt)}"""

STEPS = _collected("(s:ApprovalStep {orderId: id})", "s", "s.index", _STEP, "steps")

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

TRANSITIONS = _collected(
    "(t:OrderTransition {orderId: id})", "t", "t.seq",
    "t {.seq, .fromStatus, .toStatus, .by, .reason, at: toString(t.at)}", "transitions")

# --- fulfilment ------------------------------------------------------------------------------

_TASK: LiteralString = """t {.id, .orderId, .index, .name, .description, .group, .status, .doneBy,
     .note, doneAt: toString(t.doneAt)}"""
_RETURN_TASK: LiteralString = "RETURN " + _TASK + " AS task\n"

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

TASKS_OF = _collected("(t:FulfilmentTask {orderId: id})", "t", "t.index", _TASK, "tasks")

GET_TASK: LiteralString = "MATCH (t:FulfilmentTask {id: $id})\n" + _RETURN_TASK

LIST_TASKS: LiteralString = (
    """
MATCH (t:FulfilmentTask)
WHERE $statuses IS NULL OR t.status IN $statuses
WITH t ORDER BY t.createdAt, t.orderId, t.index LIMIT $first
"""
    + _RETURN_TASK
)

FINISH_TASK: LiteralString = (
    """
MATCH (t:FulfilmentTask {id: $id}) WHERE t.status = 'OPEN'
SET t.status = $status, t.doneBy = $by, t.doneAt = $now, t.note = $note
"""
    + _RETURN_TASK
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
CREATE_SUBSCRIPTION: LiteralString = (
    """
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
"""
    + _link_found("s", "(svc:Service {id: $serviceId})", "svc", "OF_SERVICE")
    + _link_found("s", "(u:User {userName: s.consumer})", "u", "CONSUMED_BY")
    + _link_found("s", "(cc:CostCentre {code: s.costCentreCode})", "cc", "CHARGED_TO")
    + """CALL (s) {
  UNWIND $ciIds AS cid
  MATCH (c:Item {id: cid})
  CREATE (s)-[:PROVISIONED]->(c)
}
RETURN s.id AS id
"""
)

# --- subscriptions ---------------------------------------------------------------------------

_SUBSCRIPTION: LiteralString = """s {.id, .orderId, .itemId, .versionId, .itemVersion, .itemName,
     .consumer, .costCentreCode, .serviceId, .ciIds, .status, .endedBy, .endReason,
     startAt: toString(s.startAt), endAt: toString(s.endAt)}"""
_RETURN_SUBSCRIPTION: LiteralString = "RETURN " + _SUBSCRIPTION + " AS subscription\n"

GET_SUBSCRIPTIONS = _each_id("(s:Subscription {id: id})", _SUBSCRIPTION, "subscription")

LIST_SUBSCRIPTIONS: LiteralString = (
    """
MATCH (s:Subscription)
WHERE ($user IS NULL OR s.consumer = $user) AND ($statuses IS NULL OR s.status IN $statuses)
WITH s ORDER BY s.startAt DESC, s.id LIMIT $first
"""
    + _RETURN_SUBSCRIPTION
)

LOCK_SUBSCRIPTION = _locking("(s:Subscription {id: $id})", "s",
                             _SUBSCRIPTION + " AS subscription")

END_SUBSCRIPTION: LiteralString = (
    """
MATCH (s:Subscription {id: $id}) WHERE s.status = 'ACTIVE'
SET s.status = 'ENDED', s.endAt = $now, s.endedBy = $by, s.endReason = $reason
"""
    + _RETURN_SUBSCRIPTION
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
