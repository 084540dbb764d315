"""Cypher for health roll-up, state history and impact. Rules: see models.py."""

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION

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

STATE_AS_OF: LiteralString = """
UNWIND $ids AS id
CALL (id) {
  MATCH (sc:StateChange {itemId: id}) WHERE sc.at <= $at
  RETURN sc ORDER BY sc.at DESC LIMIT 1
}
RETURN id, sc.state AS state, sc.at AS since
"""

HISTORY: LiteralString = """
MATCH (sc:StateChange {itemId: $id})
WHERE sc.at < $end
WITH sc ORDER BY sc.at
WITH collect(sc) AS all
WITH [sc IN all WHERE sc.at < $start] AS before, [sc IN all WHERE sc.at >= $start] AS inside
RETURN [sc IN before[-1..] | sc {.state, .at, .previous, .cause}] +
       [sc IN inside | sc {.state, .at, .previous, .cause}] AS changes
"""

# Impact flows from provider to consumer: up a DEPENDS_ON-like edge against its direction,
# and from a member to its group against the HAS_MEMBER mirror of MEMBER_OF (see
# cmdb/relations/queries.py). One direction for every hop keeps the search a plain BFS.
_TYPES: LiteralString = "DEPENDS_ON|RUNS_ON|USES|INSTALLED_ON|CONNECTS_TO|CONTAINS|HAS_MEMBER"
_UP_HOP: LiteralString = """((a)<-[r:""" + _TYPES + """]-(b)
    WHERE r.retiredAt IS NULL AND """ + IMPACT + """ <> 'INFORMATIONAL')"""
_DOWN_HOP: LiteralString = """((a)-[r:""" + _TYPES + """]->(b)
    WHERE r.retiredAt IS NULL AND """ + IMPACT + """ <> 'INFORMATIONAL')"""

# Bottom-up: everything the given items hold up, each once with a shortest explaining path.
IMPACTED: LiteralString = (
    """
MATCH (f:Item) WHERE f.id IN $ids
MATCH p = ANY SHORTEST (f)"""
    + _UP_HOP
    + """+(n:Item)
WHERE n.lifecycleStatus <> 'RETIRED' AND NOT n.id IN $ids
WITH n, p ORDER BY length(p)
WITH n, head(collect(p)) AS p
WHERE NOT $servicesOnly OR n:Service
// A service's state changes this month ride along: the SLA minutes left need them, and a
// second round trip for them cost as much as the whole traversal.
// $start and $end come as ISO strings: packing driver DateTimes costs the client more
// than parsing them here (once per statement: a runtime constant of the index seek).
CALL (n) {
  OPTIONAL MATCH (sc:StateChange {itemId: n.id}) WHERE n:Service AND sc.at < datetime($start)
  WITH sc ORDER BY sc.at DESC LIMIT 1
  RETURN collect(sc {.state, at: toString(sc.at)}) AS opening
}
CALL (n) {
  OPTIONAL MATCH (sc:StateChange {itemId: n.id})
  WHERE n:Service AND datetime($start) <= sc.at < datetime($end)
  WITH sc ORDER BY sc.at
  // Times as strings: hydrating driver DateTimes was most of the statement's client cost.
  RETURN collect(sc {.state, at: toString(sc.at)}) AS inside
}
RETURN """
    + ITEM_PROJECTION
    + """ AS item, n.healthState AS state, [x IN nodes(p) | x.id] AS path,
       [x IN nodes(p) | x.name] AS pathNames, opening + inside AS history
"""
)

# Top-down: the model under an item (its providers, transitively) with states and paths.
MODEL: LiteralString = (
    """
MATCH (s:Item {id: $id})
MATCH p = ANY SHORTEST (s)"""
    + _DOWN_HOP
    + """+(n:Item)
WHERE n.lifecycleStatus <> 'RETIRED' AND n <> s
WITH n, p ORDER BY length(p)
WITH n, head(collect(p)) AS p
RETURN """
    + ITEM_PROJECTION
    + """ AS item, n.healthState AS state, length(p) AS depth,
       [x IN nodes(p) | x.id] AS path, [x IN nodes(p) | x.name] AS pathNames
ORDER BY depth, n.nameLower
"""
)

STATES: LiteralString = """
UNWIND $ids AS id
MATCH (x:Item {id: id})
RETURN x.id AS id, coalesce(x.healthState, 'UNKNOWN') AS state,
       x.lifecycleStatus = 'MAINTENANCE' AS inMaintenance, x.healthChangedAt AS since
"""

SET_OWN_STATE: LiteralString = """
UNWIND $rows AS row
MATCH (x:Item {id: row.id})
SET x.operationalState = row.state, x.updatedAt = $now
RETURN x.id AS id
"""

CHANGES_SINCE: LiteralString = """
MATCH (c:StateChange) WHERE c.at > $since AND ($ids IS NULL OR c.itemId IN $ids)
RETURN c {.itemId, .state, .previous, .at, .cause} AS change
ORDER BY c.at LIMIT $limit
"""

# The change feed's read (cmdb/core/feed.py): changes stamped within the window, leaving out
# those already seen. Changes recorded before they had ids are known by their element id.
CHANGES_WINDOW: LiteralString = """
MATCH (c:StateChange) WHERE c.at >= $from
WITH c, coalesce(c.id, elementId(c)) AS key
WHERE NOT key IN $seen
WITH c, key ORDER BY c.at LIMIT $limit
RETURN key, c {.itemId, .state, .previous, .at, .cause} AS change
"""

HISTORIES: LiteralString = """
UNWIND $ids AS id
CALL (id) {
  OPTIONAL MATCH (sc:StateChange {itemId: id}) WHERE sc.at < $start
  WITH sc ORDER BY sc.at DESC LIMIT 1
  RETURN collect(sc {.state, .at}) AS opening
}
CALL (id) {
  OPTIONAL MATCH (sc:StateChange {itemId: id}) WHERE $start <= sc.at < $end
  WITH sc ORDER BY sc.at
  RETURN collect(sc {.state, .at}) AS inside
}
RETURN id, opening + inside AS changes
"""

ITEM_IDS_PAGE: LiteralString = """
MATCH (x:Item) WHERE x.id > $after AND x.lifecycleStatus <> 'RETIRED'
RETURN x.id AS id ORDER BY x.id LIMIT $limit
"""

# Metrics: services in service (not retired) whose rolled-up health is DOWN.
SERVICES_DOWN_COUNT: LiteralString = """
MATCH (s:Service)
WHERE s.healthState = 'DOWN' AND s.lifecycleStatus <> 'RETIRED'
RETURN count(s) AS n
"""
