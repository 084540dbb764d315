"""Cypher for health roll-up, state history and impact. Rules: see models.py."""

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION
from cmdb.rollup.queries import IMPACT

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
# cmdb/items/queries.py). One direction for every hop keeps the search a plain BFS.
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

SERVICES_DOWN_COUNT: LiteralString = """
MATCH (s:Service)
WHERE s.healthState = 'DOWN' AND s.lifecycleStatus <> 'RETIRED'
RETURN count(s) AS n
"""
