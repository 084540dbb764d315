"""Cypher for discovery. Labels and relationship types reach the text only through
``class_labels`` and ``RelationType`` (allow-lists); identifier properties through
``UNIQUE_KEYS``; values are parameters."""

from __future__ import annotations

from typing import LiteralString

from cmdb.core.cypher import trusted
from cmdb.discovery.models import UNIQUE_KEYS
from cmdb.items.models import RelationType
from cmdb.items.queries import LOCKED_ENDS

# ------------------------------------------------------------------------------ sources

UPSERT_SOURCE: LiteralString = """
MERGE (s:DiscoverySource {name: $name})
ON CREATE SET s.registeredAt = $now, s.updatedAt = $now
WITH s, coalesce([s.kind, s.trust, s.attributeTrust, s.description]
                 <> [$kind, $trust, $attributeTrust, $description], true) AS changed
SET s.kind = $kind, s.trust = $trust, s.attributeTrust = $attributeTrust,
    s.description = $description
FOREACH (_ IN CASE WHEN changed THEN [1] ELSE [] END | SET s.updatedAt = $now)
RETURN s {.*, registeredAt: toString(s.registeredAt)} AS source
"""

LIST_SOURCES: LiteralString = """
MATCH (s:DiscoverySource)
RETURN s {.*, registeredAt: toString(s.registeredAt)} AS source
ORDER BY s.name
"""

# ------------------------------------------------------------------------------ items


# Decoding driver DateTime values is the largest client-side cost of reading many CIs, and
# reconciliation does not need them: times it reads travel as ISO strings (or not at all).
_NO_DATES = (".*, createdAt: null, updatedAt: null, lastSeenAt: null, retiredAt: null, "
             "healthChangedAt: null, lockedAt: null, staleSince: toString(x.staleSince), "
             "createdChanges: null")


def lookup_identifiers(props: tuple[str, ...]) -> LiteralString:
    """Stored CIs holding any of the given identifier values: one index-backed branch per
    unique property (``props`` from ``UNIQUE_KEYS``)."""
    assert set(props) <= set(UNIQUE_KEYS)
    branches = [
        f"UNWIND ${p} AS v MATCH (n:CI {{{p}: v}}) RETURN '{p}' AS prop, v AS value, n"
        for p in props
    ]
    return trusted(
        "CALL () {\n  " + "\n  UNION ALL\n  ".join(branches) + "\n}\n"
        "WITH collect({prop: prop, value: value, id: n.id}) AS hits, collect(DISTINCT n) AS ns\n"
        "RETURN hits, [x IN ns | {id: x.id, props: x {" + _NO_DATES + "}}] AS nodes"
    )


def identifiers_held(props: tuple[str, ...]) -> LiteralString:
    """Whether any stored CI holds any of the given identifier values (index seeks, stopped
    at the first found; nothing else read). ``props`` from ``UNIQUE_KEYS``."""
    assert set(props) <= set(UNIQUE_KEYS)
    return trusted("RETURN " + "\n    OR ".join(
        f"EXISTS {{ UNWIND ${p} AS v MATCH (n:CI {{{p}: v}}) }}" for p in props) + " AS held")


def create_items(labels: str, merge_prop: str) -> LiteralString:
    """Create CIs, MERGEd on a unique identifier so that two sources sending the same new CI
    at once make one node. A row that finds a node (made by a concurrent batch after this
    one looked) comes back as ``raced``: the batch is then run again from a fresh read."""
    assert merge_prop in UNIQUE_KEYS
    return trusted(
        "UNWIND $rows AS row\n"
        f"MERGE (n:CI {{{merge_prop}: row.mergeValue}})\n"
        f"ON CREATE SET n{labels}, n.id = row.id, n += row.props,"
        " n.createdAt = $now, n.updatedAt = $now, n.lastSeenAt = $now\n"
        "RETURN sum(CASE WHEN n.id = row.id THEN 0 ELSE 1 END) AS raced"
    )


# ``row.seen``: a sighting (lastSeenAt now); ``row.changed``: a change (updatedAt now).
UPDATE_ITEMS: LiteralString = """
UNWIND $rows AS row
MATCH (n:Item {id: row.id})
SET n += row.props
FOREACH (_ IN CASE WHEN row.seen THEN [1] ELSE [] END | SET n.lastSeenAt = $now)
FOREACH (_ IN CASE WHEN row.changed THEN [1] ELSE [] END | SET n.updatedAt = $now)
RETURN count(*) AS written
"""

ENDS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN n.id AS id, CASE WHEN n:Service THEN 'SERVICE' ELSE n.ciClass END AS cls,
       n.lifecycleStatus AS status
"""

# ------------------------------------------------------------------------------ relations

def create_relations(rel_type: RelationType) -> LiteralString:
    """New live relationships; the consumer is locked first (as ``relate`` does) and a live
    one made meanwhile by someone else is left alone, so there is never a second one. Each
    carries its own creation record (``createdSeq``, ``createdChanges``: see ``HISTORY``)."""
    t = rel_type.value
    return trusted(LOCKED_ENDS + f"""
WHERE NOT EXISTS {{ MATCH (s)-[x:{t}]->(t) WHERE x.retiredAt IS NULL }}
CREATE (s)-[r:{t}]->(t)
SET r = row.props, r.createdAt = $now, r.updatedAt = $now, r.source = $source,
    r.sources = [$source], r.lastSeenAt = $now, r.propertiesSource = $source,
    r.propertiesTrust = $trust, r.createdSeq = row.seq, r.createdChanges = row.changes
RETURN count(*) AS created
""")


def touch_relations(rel_type: RelationType) -> LiteralString:
    """Live relationships seen again: ``lastSeenAt`` and sources updated (unless nothing
    changed and this source saw it after ``$freshAfter``), and their properties set when
    they differ and this source is trusted at least as much as the one that set them (one
    made by a person, without ``propertiesTrust``, counts as ``$manualTrust``); otherwise
    the difference is ``suppressed``. Returns the rows found, the old properties of those
    that changed, and the suppressed ones; a row not found has no live relationship."""
    t = rel_type.value
    return trusted(f"""
UNWIND $rows AS row
MATCH (s:Item {{id: row.s}})
MATCH (t:Item {{id: row.t}})
MATCH (s)-[r:{t}]->(t)
WHERE r.retiredAt IS NULL
WITH row, r, properties(r) AS old,
     any(k IN keys(row.props) WHERE r[k] IS NULL OR r[k] <> row.props[k]) AS differs,
     (r.propertiesSource = $source
      OR coalesce(r.propertiesTrust, $manualTrust) <= $trust) AS may
WITH row, r, old, differs AND may AS changed, differs AND NOT may AS suppressed
CALL (r, row, changed) {{
  WITH r, row, changed
  WHERE changed OR r.staleSince IS NOT NULL OR NOT coalesce(r.lastSeenAt >= $freshAfter, false)
     OR NOT $source IN coalesce(r.sources, [])
  SET r.lastSeenAt = $now, r.staleSince = null,
      r.sources = CASE WHEN $source IN coalesce(r.sources, []) THEN r.sources
                       ELSE coalesce(r.sources, []) + $source END
  FOREACH (_ IN CASE WHEN changed THEN [1] ELSE [] END |
    SET r += row.props, r.updatedAt = $now, r.propertiesSource = $source,
        r.propertiesTrust = $trust)
}}
RETURN collect(row.i) AS found,
       collect(CASE WHEN changed THEN {{i: row.i, old: old}} END) AS changed,
       sum(CASE WHEN suppressed THEN 1 ELSE 0 END) AS suppressed
""")


# ------------------------------------------------------------------------------ merge

MERGEABLE_TYPES: tuple[str, ...] = (*(t.value for t in RelationType), "HAS_MEMBER")
_ORG_TYPES = ("OWNED_BY", "CHARGED_TO", "LOCATED_IN")


# A duplicate's implied creation records become HistoryRecord nodes before it is merged, so
# that they move to the survivor with the rest of its history (``RETIRE_DUPLICATES``) and
# relationships carried over (copies of the duplicate's) imply nothing of their own.
MATERIALIZE_CREATION: LiteralString = """
UNWIND $pairs AS p
MATCH (d:Item {id: p.dup})
CALL (d) {
  WITH d WHERE d.createdSeq IS NOT NULL
  CREATE (h:HistoryRecord)
  SET h.itemId = d.id, h.kind = 'CREATED', h.source = d.source, h.seq = d.createdSeq,
      h.changes = d.createdChanges, h.at = d.createdAt
  REMOVE d.createdSeq, d.createdChanges
}
CALL (d) {
  MATCH (d)-[r]->(o:Item)
  WHERE r.createdSeq IS NOT NULL AND r.mergedFrom IS NULL AND type(r) <> 'HAS_MEMBER'
  CREATE (h:HistoryRecord)
  SET h.itemId = d.id, h.kind = 'RELATION_CREATED', h.source = r.source, h.seq = r.createdSeq,
      h.changes = r.createdChanges, h.relationType = type(r), h.otherId = o.id,
      h.at = r.createdAt
  REMOVE r.createdSeq, r.createdChanges
}
RETURN count(*) AS done
"""


def move_relations(rel_type: str, outgoing: bool) -> LiteralString:
    """Carry the duplicate's live relationships of one type over to the survivor (unless the
    survivor has that one already); the duplicate's own are kept, retired."""
    assert rel_type in MERGEABLE_TYPES
    pattern = (f"(d)-[r:{rel_type}]->(x)" if outgoing else f"(x)-[r:{rel_type}]->(d)")
    make = (f"(s)-[n:{rel_type}]->(x)" if outgoing else f"(x)-[n:{rel_type}]->(s)")
    exists = (f"(s)-[e:{rel_type}]->(x)" if outgoing else f"(x)-[e:{rel_type}]->(s)")
    return trusted(f"""
UNWIND $pairs AS p
MATCH (d:Item {{id: p.dup}}), (s:Item {{id: p.survivor}})
MATCH {pattern}
WHERE r.retiredAt IS NULL AND x.id <> p.survivor
CALL (s, x, r, p) {{
  WITH s, x, r, p WHERE NOT EXISTS {{ MATCH {exists} WHERE e.retiredAt IS NULL }}
  CREATE {make}
  SET n = properties(r), n.mergedFrom = p.dup
}}
SET r.retiredAt = $now, r.retiredReason = 'merged into ' + p.survivor
RETURN count(*) AS moved
""")


MOVE_ORG_REFS: LiteralString = """
UNWIND $pairs AS p
MATCH (d:Item {id: p.dup})-[r:OWNED_BY|CHARGED_TO|LOCATED_IN]->(o:Org)
MATCH (s:Item {id: p.survivor})
CALL (s, o, r) {
  WITH s, o, r WHERE type(r) = 'OWNED_BY' AND NOT EXISTS { (s)-[:OWNED_BY]->() }
  MERGE (s)-[:OWNED_BY]->(o)
  UNION
  WITH s, o, r WHERE type(r) = 'CHARGED_TO' AND NOT EXISTS { (s)-[:CHARGED_TO]->() }
  MERGE (s)-[:CHARGED_TO]->(o)
  UNION
  WITH s, o, r WHERE type(r) = 'LOCATED_IN' AND NOT EXISTS { (s)-[:LOCATED_IN]->() }
  MERGE (s)-[:LOCATED_IN]->(o)
}
RETURN count(*) AS moved
"""

# The duplicate frees its unique identifiers (the survivor may take them) and is retired,
# never deleted; its history now answers for the survivor.
RETIRE_DUPLICATES: LiteralString = """
UNWIND $pairs AS p
MATCH (d:Item {id: p.dup})
SET d.lifecycleStatus = 'RETIRED', d.retiredAt = $now,
    d.retiredReason = 'merged into ' + p.survivor, d.mergedInto = p.survivor,
    d.mergedSerialNumber = d.serialNumber, d.mergedMacAddress = d.macAddress,
    d.mergedCloudInstanceId = d.cloudInstanceId, d.mergedFqdn = d.fqdn,
    d.updatedAt = $now
REMOVE d.serialNumber, d.macAddress, d.cloudInstanceId, d.fqdn
WITH d, p
OPTIONAL MATCH (h:HistoryRecord {itemId: p.dup})
SET h.itemId = p.survivor, h.mergedFrom = p.dup
RETURN count(*) AS done
"""

GET_ITEM_PROPS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id}) WHERE n:CI
RETURN n.id AS id, properties(n) AS props
"""

RELATIONS_AS_OF: LiteralString = """
MATCH (n:Item {id: $id})-[r]-(o:Item)
WHERE type(r) <> 'HAS_MEMBER' AND r.createdAt <= $at
  AND (r.retiredAt IS NULL OR r.retiredAt > $at)
RETURN type(r) AS type, CASE WHEN startNode(r) = n THEN 'OUTGOING' ELSE 'INCOMING' END
       AS direction, o.id AS otherId, properties(r) AS props
"""

# ------------------------------------------------------------------------------ staleness

MARK_STALE: LiteralString = """
MATCH (n:CI) WHERE n.lastSeenAt < $before AND n.staleSince IS NULL
  AND n.lifecycleStatus <> 'RETIRED'
WITH n LIMIT $limit
SET n.staleSince = $now
RETURN collect(n.id) AS ids
"""

TO_RETIRE: LiteralString = """
MATCH (n:CI) WHERE n.lastSeenAt < $before AND n.staleSince IS NOT NULL
  AND n.lifecycleStatus <> 'RETIRED'
RETURN n.id AS id, n.lifecycleStatus AS status, toString(n.lastSeenAt) AS lastSeenAt
LIMIT $limit
"""

def stale_relations(rel_type: RelationType) -> LiteralString:
    t = rel_type.value
    return trusted(f"""
MATCH (s:Item)-[r:{t}]->(x:Item)
WHERE r.lastSeenAt < $before AND r.staleSince IS NULL AND r.retiredAt IS NULL
SET r.staleSince = $now
RETURN count(*) AS n
""")


def retire_relations(rel_type: RelationType) -> LiteralString:
    t = rel_type.value
    mirror = (
        "WITH s, x, r OPTIONAL MATCH (x)-[h:HAS_MEMBER]->(s) WHERE h.retiredAt IS NULL "
        "SET h.retiredAt = $now\n" if rel_type is RelationType.MEMBER_OF else ""
    )
    return trusted(f"""
MATCH (s:Item)-[r:{t}]->(x:Item)
WHERE r.lastSeenAt < $before AND r.staleSince IS NOT NULL AND r.retiredAt IS NULL
SET r.retiredAt = $now, r.retiredReason = 'not seen since ' + toString(r.lastSeenAt)
{mirror}RETURN collect({{s: s.id, t: x.id}}) AS retired
""")
