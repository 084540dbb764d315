"""Cypher of the health roll-up: own states, one propagation step, recorded changes.
Rules: see models.py."""

from typing import LiteralString

# The impact rule of relationship r (properties set by `relate` carry the attr_ prefix).
IMPACT: LiteralString = """coalesce(toUpper(r.attr_impact),
  CASE WHEN type(r) IN ['CONNECTS_TO', 'CONTAINS'] THEN 'INFORMATIONAL'
       WHEN r.attr_required = false THEN 'OPTIONAL'
       ELSE 'REQUIRED' END)"""

# An item's own state: what monitoring or an operator says. Services are not monitored
# themselves, so an unknown own state of a service is neutral.
OWN_STATE: LiteralString = """CASE
  WHEN x:Service AND coalesce(x.operationalState, 'UNKNOWN') = 'UNKNOWN' THEN 'UP'
  ELSE coalesce(x.operationalState, 'UNKNOWN') END"""

# Consumers of a batch of items, one level up, over propagating relationships.
CONSUMERS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (p:Item {id: id})
CALL (p) {
  MATCH (c:Item)-[r:DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON|CONNECTS_TO|CONTAINS]->(p)
  WHERE r.retiredAt IS NULL AND """
    + IMPACT
    + """ <> 'INFORMATIONAL'
  RETURN c
  UNION
  MATCH (p)-[r:MEMBER_OF]->(c:Item)
  WHERE r.retiredAt IS NULL AND """
    + IMPACT
    + """ <> 'INFORMATIONAL'
  RETURN c
}
WITH DISTINCT c WHERE c.lifecycleStatus <> 'RETIRED'
RETURN collect(c.id) AS ids
"""
)

# Start of a recomputation: every item of the set falls back to its own state.
RESET: LiteralString = (
    """
UNWIND $ids AS id
MATCH (x:Item {id: id})
WITH x, x.healthState AS before
SET x.healthState = """
    + OWN_STATE
    + """
RETURN x.id AS id, before
"""
)

# One step: each item's state from its own state and its providers' current states.
# Redundancy groups: down when fewer than k members are available, else degraded while a
# member is down or degraded, else unknown when the unknown members decide.
STEP: LiteralString = (
    """
UNWIND $ids AS id
MATCH (x:Item {id: id})
CALL (x) {
  CALL (x) {
    MATCH (x)-[r:DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON|CONNECTS_TO|CONTAINS]->(p:Item)
    WHERE r.retiredAt IS NULL
    RETURN r, p, false AS member
    UNION ALL
    MATCH (p:Item)-[r:MEMBER_OF]->(x)
    WHERE r.retiredAt IS NULL
    RETURN r, p, true AS member
  }
  WITH r, p, member, """
    + IMPACT
    + """ AS impact
  WHERE impact <> 'INFORMATIONAL' AND p.lifecycleStatus <> 'RETIRED' AND p <> x
  WITH impact, r, p,
       CASE WHEN p.lifecycleStatus = 'MAINTENANCE' THEN 'UP'
            ELSE coalesce(p.healthState, 'UNKNOWN') END AS ps,
       CASE WHEN r.attr_redundancyGroup IS NOT NULL THEN 'g:' + r.attr_redundancyGroup
            WHEN member THEN 'g:members'
            ELSE 'e:' + elementId(r) END AS grp
  // A provider joined to one group by several edges counts once.
  WITH grp, p, ps, collect(impact) AS impacts, max(r.attr_minUp) AS minUp,
       max(r.attr_minUpPercent) AS pct
  WITH grp, collect(ps) AS states, collect(impacts) AS impacts, max(minUp) AS minUp,
       max(pct) AS pct
  WITH all(l IN impacts WHERE all(i IN l WHERE i = 'OPTIONAL')) AS optional,
       size(states) AS n,
       size([s IN states WHERE s = 'DOWN']) AS down,
       size([s IN states WHERE s = 'UNKNOWN']) AS unknown,
       size([s IN states WHERE s = 'DEGRADED']) AS degraded,
       CASE WHEN grp STARTS WITH 'e:' THEN 1
            ELSE coalesce(toInteger(minUp),
                          CASE WHEN pct IS NOT NULL THEN toInteger(ceil(pct * size(states) / 100.0))
                          END, 1) END AS k
  // Checked in precedence order, so a member getting worse never makes the group better
  // (this keeps the fixpoint iteration monotone, and so finite, even through cycles).
  WITH optional, CASE
         WHEN n - down < k THEN 'DOWN'
         WHEN down + degraded > 0 THEN 'DEGRADED'
         WHEN n - down - unknown < k THEN 'UNKNOWN'
         ELSE 'UP' END AS c
  RETURN CASE WHEN NOT optional THEN c
              WHEN c IN ['DOWN', 'DEGRADED'] THEN 'DEGRADED'
              ELSE 'UP' END AS contribution
}
WITH x, collect(contribution) + ["""
    + OWN_STATE
    + """] AS states
WITH x, CASE WHEN 'DOWN' IN states THEN 'DOWN'
             WHEN 'DEGRADED' IN states THEN 'DEGRADED'
             WHEN 'UNKNOWN' IN states THEN 'UNKNOWN'
             ELSE 'UP' END AS next
WHERE next <> coalesce(x.healthState, '')
SET x.healthState = next
RETURN count(x) AS changed
"""
)

# Record the items whose state ended different from where it started.
RECORD_CHANGES: LiteralString = """
UNWIND $before AS b
MATCH (x:Item {id: b.id})
WHERE coalesce(b.before, '') <> x.healthState
CREATE (x)-[:HAD_STATE]->(c:StateChange {id: randomUUID(), itemId: x.id,
                                         state: x.healthState, previous: b.before, at: $now,
                                         cause: $cause})
SET x.healthChangedAt = $now
RETURN x.id AS id, x.healthState AS state, b.before AS previous, c.id AS changeId
"""

SET_OWN_STATE: LiteralString = """
UNWIND $rows AS row
MATCH (x:Item {id: row.id})
SET x.operationalState = row.state, x.updatedAt = $now
RETURN x.id AS id
"""

ITEM_IDS_PAGE: LiteralString = """
MATCH (x:Item) WHERE x.id > $after AND x.lifecycleStatus <> 'RETIRED'
RETURN x.id AS id ORDER BY x.id LIMIT $limit
"""

# Metrics: services in service (not retired) whose rolled-up health is DOWN.

# --- the deferred roll-up: pending marks (a queue of RollupPending nodes) and the lock -----

# Own states set and marked pending in one statement: the mark keeps the state written and
# the one before it, so the worker can replay several changes of one item in commit order.
SET_OWN_STATE_PENDING: LiteralString = """
UNWIND $rows AS row
MATCH (x:Item {id: row.id})
WITH x, row, x.operationalState AS previous
SET x.operationalState = row.state, x.updatedAt = $now
CREATE (:RollupPending {itemId: x.id, state: row.state, previous: previous, at: $now,
                        cause: $cause})
RETURN x.id AS id
"""

# The items to roll up from, marked before the change is written: ``state`` is the own state
# the change is about to set (kept with the one before it), or null for changes that move
# states otherwise (relationships, lifecycle, creation, retirement: nothing to replay).
MARK_PENDING: LiteralString = """
UNWIND $ids AS id
MATCH (x:Item {id: id})
CREATE (:RollupPending {itemId: x.id, state: $state,
                        previous: CASE WHEN $state IS NULL THEN null ELSE x.operationalState END,
                        at: $now, cause: $cause})
"""

# Appended to a statement that changes item n (whose own state before the change it kept as
# previousState): marks n pending when $pending ({state, cause}) is given, so an update, its
# history and its mark are one statement.
MARK_CHANGED_ITEM: LiteralString = """
FOREACH (m IN CASE WHEN $pending IS NULL THEN [] ELSE [$pending] END |
  CREATE (:RollupPending {itemId: n.id, state: m.state,
                          previous: CASE WHEN m.state IS NULL THEN null ELSE previousState END,
                          at: $now, cause: m.cause}))
"""

# Written first in the worker's transaction: a second worker waits here until the first
# commits, and then finds the marks the first took gone.
TAKE_LOCK: LiteralString = """
MERGE (l:RollupLock {id: 'rollup'})
SET l.takenAt = $now
"""

PENDING_MARKS: LiteralString = """
MATCH (p:RollupPending)
WITH p ORDER BY p.at, elementId(p) LIMIT $limit
RETURN elementId(p) AS mark, p.itemId AS id, p.state AS state, p.previous AS previous,
       p.at AS at, p.cause AS cause
"""

CLEAR_MARKS: LiteralString = """
UNWIND $marks AS mark
MATCH (p:RollupPending) WHERE elementId(p) = mark
DELETE p
"""

PENDING_COUNT: LiteralString = "MATCH (p:RollupPending) RETURN count(p) AS n"

# Own states put back (for a replay) without marking anything.
PUT_OWN_STATE: LiteralString = """
UNWIND $rows AS row
MATCH (x:Item {id: row.id})
SET x.operationalState = row.state
"""

OWN_STATES: LiteralString = """
UNWIND $ids AS id
MATCH (x:Item {id: id})
RETURN x.id AS id, x.operationalState AS state
"""
