"""The items' Cypher: configuration items, service records, relationships."""

from __future__ import annotations

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION, ITEM_PROJECTION_BARE, trusted
from cmdb.items.models import Direction, RelationType
from cmdb.rollup.queries import MARK_CHANGED_ITEM


def get_items(with_org: bool, visible: LiteralString) -> LiteralString:
    """Items by id that the caller may see (``visible`` is a scope predicate on ``n``)."""
    base = GET_ITEMS if with_org else GET_ITEMS_BARE
    if visible == "true":
        return base
    return trusted(base.replace("MATCH (n:Item {id: id})\n",
                                f"MATCH (n:Item {{id: id}}) WHERE {visible}\n", 1))


def _get_items(projection: LiteralString) -> LiteralString:
    return "\nUNWIND $ids AS id\nMATCH (n:Item {id: id})\nRETURN " + projection + " AS item"


GET_ITEMS_BARE = _get_items(ITEM_PROJECTION_BARE)
GET_ITEMS = _get_items(ITEM_PROJECTION)

# Which identifier values are already held, and by whom (excluding the CI being written).
# One index-backed branch per unique identifier; a null parameter matches nothing.
IDENTIFIER_CONFLICTS: LiteralString = """
MATCH (n:CI {serialNumber: $serial_number}) WHERE n.id <> $id
RETURN 'serial_number' AS field, n.serialNumber AS value, n.id AS heldBy
UNION ALL
MATCH (n:CI {macAddress: $mac_address}) WHERE n.id <> $id
RETURN 'mac_address' AS field, n.macAddress AS value, n.id AS heldBy
UNION ALL
MATCH (n:CI {cloudInstanceId: $cloud_instance_id}) WHERE n.id <> $id
RETURN 'cloud_instance_id' AS field, n.cloudInstanceId AS value, n.id AS heldBy
UNION ALL
MATCH (n:CI {fqdn: $fqdn}) WHERE n.id <> $id
RETURN 'fqdn' AS field, n.fqdn AS value, n.id AS heldBy
"""

REFS_EXIST: LiteralString = """
RETURN
  $owner IS NULL OR EXISTS { MATCH (x:Org {id: $owner}) WHERE x:OwnerGroup } AS owner,
  $cc IS NULL OR EXISTS { MATCH (x:Org {id: $cc}) WHERE x:CostCentre } AS cc,
  $loc IS NULL OR EXISTS { MATCH (x:Org {id: $loc}) WHERE x:Location } AS loc
"""

# (parameter key, relationship type, org label): how an item points at its org units.
_REFS: tuple[tuple[str, str, str], ...] = (
    ("owner", "OWNED_BY", "OwnerGroup"),
    ("cc", "CHARGED_TO", "CostCentre"),
    ("loc", "LOCATED_IN", "Location"),
)


def _set_refs(scope: str, arg: str) -> str:
    """Re-point owner, cost centre and location where ``{arg}set<Key>`` holds (``arg`` is
    ``$`` for one item, ``row.`` for a batch); a null id removes the link."""
    out = ""
    for key, rel, label in _REFS:
        out += (
            f"CALL ({scope}) {{\n"
            f"  WITH {scope} WHERE {arg}set{key.capitalize()}\n"
            f"  OPTIONAL MATCH (n)-[old:{rel}]->() DELETE old\n"
            f"  WITH DISTINCT {scope}\n"
            f"  OPTIONAL MATCH (o:Org:{label} {{id: {arg}{key}}})\n"
            "  FOREACH (_ IN CASE WHEN o IS NULL THEN [] ELSE [1] END | "
            f"MERGE (n)-[:{rel}]->(o))\n"
            "}\n"
        )
    return out


SET_REFS = "WITH n\n" + _set_refs("n", "$")


def create_item(labels: str) -> LiteralString:
    """A CI or service (``labels`` from an allow-list). MERGE on id so that a retried
    transaction never makes a second node."""
    return trusted(
        f"MERGE (n{labels} {{id: $id}})\n"
        "ON CREATE SET n += $props, n.createdAt = $now, n.updatedAt = $now\n"
        + SET_REFS
        + "RETURN "
        + ITEM_PROJECTION
        + " AS item"
    )


def update_item(label: str) -> LiteralString:
    """Properties mapped to null are removed (``+=`` with a null value deletes the key).
    ``$pending`` marks the item for the roll-up (see ``rollup.queries``) or is null."""
    return trusted(
        f"MATCH (n:Item {{id: $id}}) WHERE n:{label}\n"
        "WITH n, n.operationalState AS previousState\n"
        "SET n += $props, n.updatedAt = $now\n"
        + MARK_CHANGED_ITEM
        + SET_REFS
        + "RETURN "
        + ITEM_PROJECTION
        + " AS item"
    )


UPDATE_CI = update_item("CI")
UPDATE_SERVICE = update_item("Service")

RETIRE_ITEM: LiteralString = (
    """
MATCH (n:Item {id: $id})
SET n.lifecycleStatus = 'RETIRED', n.retiredAt = $now, n.retiredReason = $reason,
    n.updatedAt = $now
WITH n
OPTIONAL MATCH (n)-[r]-(:Item) WHERE r.retiredAt IS NULL
SET r.retiredAt = $now
WITH DISTINCT n
RETURN """
    + ITEM_PROJECTION
    + " AS item"
)


# Many items at once, each with its reason; like RETIRE_ITEM, their relationships end.
RETIRE_ITEMS: LiteralString = """
UNWIND $rows AS row
MATCH (n:Item {id: row.id})
SET n.lifecycleStatus = 'RETIRED', n.retiredAt = $now, n.updatedAt = $now,
    n.retiredReason = row.reason
WITH n
OPTIONAL MATCH (n)-[r]-(:Item) WHERE r.retiredAt IS NULL
SET r.retiredAt = $now
RETURN count(DISTINCT n) AS retired
"""

def visible_ids(visible: LiteralString) -> LiteralString:
    """Which of ``$ids`` the caller may see (``visible`` is a scope predicate on ``n``)."""
    return trusted(f"UNWIND $ids AS id MATCH (n:Item {{id: id}}) WHERE {visible} RETURN n.id AS id")


# --- asset records: (:Asset {ciId})-[:ASSET_OF]->(:CI), one per CI ----------------------------

_ASSET: LiteralString = """a {.ciId, .purchasePrice, .currency, .depreciationMonths,
  .residualValue, .supportMonthly, .assetTag, .serialNumber, .vendor, .updatedBy,
  purchaseDate: toString(a.purchaseDate), supportStart: toString(a.supportStart),
  supportEnd: toString(a.supportEnd), warrantyEnd: toString(a.warrantyEnd),
  updatedAt: toString(a.updatedAt)}"""

# The CI an asset record is written for (locked for the transaction), and which other CI's
# record holds the asset tag, if any.
ASSET_TARGET: LiteralString = """
MATCH (n:Item {id: $id}) WHERE n:CI
SET n._lock = true REMOVE n._lock
RETURN n.lifecycleStatus AS status,
       COLLECT { MATCH (o:Asset {assetTag: $tag}) WHERE o.ciId <> $id RETURN o.ciId }[0]
         AS tagHeldBy
"""

# The whole record is replaced: properties mapped to null are removed.
SET_ASSET: LiteralString = (
    """
MATCH (n:Item {id: $id}) WHERE n:CI
MERGE (a:Asset {ciId: $id})
ON CREATE SET a.createdAt = $now
SET a += $props, a.updatedAt = $now, a.updatedBy = $by
MERGE (a)-[:ASSET_OF]->(n)
RETURN """
    + _ASSET
    + " AS asset"
)

CLEAR_ASSET: LiteralString = """
MATCH (a:Asset {ciId: $id})
DETACH DELETE a
RETURN count(*) AS deleted
"""

GET_ASSETS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (a:Asset {ciId: id})
RETURN """
    + _ASSET
    + " AS asset"
)


_RELATION_HEAD = (
    "{type: type(r), startId: startNode(r).id, endId: endNode(r).id, "
    "props: r {.*, createdAt: toString(r.createdAt), updatedAt: toString(r.updatedAt), "
    "retiredAt: toString(r.retiredAt)}, "
    "depth: depth, path: path, direction: direction, item: "
)
_RELATION = _RELATION_HEAD + ITEM_PROJECTION + "}"
_RELATION_BARE = _RELATION_HEAD + ITEM_PROJECTION_BARE + "}"


def _types(types: tuple[RelationType, ...]) -> str:
    # Always explicit, so the HAS_MEMBER mirror edges (see MIRROR below) never show up.
    return ":" + "|".join(t.value for t in (types or tuple(RelationType)))


# MEMBER_OF points from member to group, but impact flows from member to group, against the
# other types' direction. A mirror (group)-[:HAS_MEMBER]->(member), kept in step with the
# MEMBER_OF edge, lets impact traversals use one direction for every hop (an index-friendly,
# inlinable pattern). It is never listed as a relationship of its own.
MIRROR = "HAS_MEMBER"

SYNC_MIRRORS: LiteralString = """
UNWIND $rows AS row
MATCH (s:Item {id: row.s})-[m:MEMBER_OF]->(t:Item {id: row.t})
WHERE m.retiredAt IS NULL
OPTIONAL MATCH (t)-[h:HAS_MEMBER]->(s) WHERE h.retiredAt IS NULL
CALL (s, t, h) {
  WITH s, t, h WHERE h IS NULL
  CREATE (t)-[x:HAS_MEMBER]->(s)
  RETURN x
  UNION
  WITH h WHERE h IS NOT NULL
  RETURN h AS x
}
SET x = properties(m)
"""

RETIRE_MIRROR: LiteralString = """
MATCH (t:Item {id: $targetId})-[h:HAS_MEMBER]->(s:Item {id: $sourceId})
WHERE h.retiredAt IS NULL
SET h.retiredAt = $now
"""


def _arrows(direction: Direction) -> list[tuple[str, str, str]]:
    """(left, right, label) pattern ends for each direction that is asked for."""
    out = [("-", "->", "OUTGOING")] if direction is not Direction.INCOMING else []
    if direction is not Direction.OUTGOING:
        out.append(("<-", "-", "INCOMING"))
    return out


def neighbours(
    direction: Direction, types: tuple[RelationType, ...], depth: int, include_retired: bool,
    with_org: bool = True, visible: LiteralString = "true", visible_x: LiteralString = "true",
) -> LiteralString:
    """Relations of many items at once: one round trip for a whole batch of parents.

    ``visible``/``visible_x`` are the caller's scope predicate on ``n``/``x``: a neighbour the
    caller may not see is left out, and so is any path that passes through one.
    """
    t = _types(types)
    live_rel = "" if include_retired else "r.retiredAt IS NULL AND "
    live_node = "" if include_retired else " AND n.lifecycleStatus <> 'RETIRED'"
    if visible != "true":
        live_node += f" AND ({visible})"
    branches = []
    for left, right, label in _arrows(direction):
        if depth == 1:
            branches.append(
                f"MATCH (s){left}[r{t}]{right}(n:Item) WHERE {live_rel}n <> s{live_node}\n"
                f"RETURN r, n, 1 AS depth, [s.id, n.id] AS path, '{label}' AS direction"
            )
        else:
            live_path = "" if include_retired else "all(x IN rs WHERE x.retiredAt IS NULL) AND "
            if visible_x != "true":
                live_path += f"all(x IN nodes(p)[1..] WHERE {visible_x}) AND "
            branches.append(
                f"MATCH p = (s){left}[rs{t}*1..{depth}]{right}(n:Item)\n"
                f"WHERE {live_path}n <> s{live_node}\n"
                # Of the shortest paths to an item, the first by ids: one answer always.
                "WITH n, p ORDER BY length(p), [x IN nodes(p) | x.id], "
                "[x IN relationships(p) | elementId(x)]\n"
                "WITH n, head(collect(p)) AS p\n"
                "RETURN last(relationships(p)) AS r, n, length(p) AS depth,\n"
                f"       [x IN nodes(p) | x.id] AS path, '{label}' AS direction"
            )
    union = "\n  UNION ALL\n".join(branches)
    return trusted(f"""
UNWIND $ids AS id
MATCH (s:Item {{id: id}})
CALL (s) {{
  CALL (s) {{
  {union}
  }}
  WITH r, n, depth, path, direction
  // The last keys only order two relationships to the same item (both ways, or of two
  // types): without them such ties came back in whatever order the store gave.
  ORDER BY depth, n.nameLower, n.id, direction, type(r), elementId(r)
  LIMIT $first
  RETURN collect({_RELATION if with_org else _RELATION_BARE}) AS rels
}}
RETURN id, rels
""")


GET_ENDS: LiteralString = """
MATCH (s:Item {id: $sourceId})
SET s.lockedAt = $now REMOVE s.lockedAt
WITH s
OPTIONAL MATCH (t:Item {id: $targetId})
// Lock the target too: a concurrent retire of it then waits for this relate, or wins first.
FOREACH (x IN CASE WHEN t IS NULL THEN [] ELSE [t] END |
  SET x.lockedAt = $now REMOVE x.lockedAt)
RETURN s {.id, .ciClass, .lifecycleStatus, kind: CASE WHEN s:Service THEN 'SERVICE' ELSE 'CI' END}
         AS source,
       t {.id, .ciClass, .lifecycleStatus, kind: CASE WHEN t:Service THEN 'SERVICE' ELSE 'CI' END}
         AS target
"""


def upsert(rel_type: RelationType) -> LiteralString:
    """Keep one live relationship per (source, type, target): update it, or make it."""
    t = rel_type.value
    return trusted(f"""
MATCH (s:Item {{id: $sourceId}}), (t:Item {{id: $targetId}})
OPTIONAL MATCH (s)-[live:{t}]->(t) WHERE live.retiredAt IS NULL
CALL (s, t, live) {{
  WITH s, t, live WHERE live IS NULL
  CREATE (s)-[r:{t}]->(t)
  SET r += $props, r.createdAt = $now, r.updatedAt = $now
  RETURN r
  UNION
  WITH live WHERE live IS NOT NULL
  SET live += $props, live.updatedAt = $now
  RETURN live AS r
}}
WITH r, t AS n, 1 AS depth, [$sourceId, $targetId] AS path, 'OUTGOING' AS direction
RETURN {_RELATION} AS rel
""")


def retire(rel_type: RelationType) -> LiteralString:
    t = rel_type.value
    return trusted(f"""
MATCH (s:Item {{id: $sourceId}})-[r:{t}]->(n:Item {{id: $targetId}})
WHERE r.retiredAt IS NULL
SET r.retiredAt = $now, r.retiredReason = $reason
WITH r, n, 1 AS depth, [$sourceId, $targetId] AS path, 'OUTGOING' AS direction
RETURN {_RELATION} AS rel
""")


# ------------------------------------------------------------------------------ history

# Changes are HistoryRecord nodes, except creations by discovery: a CI and a relationship it
# creates carry their own creation record (``createdSeq``: its place among the batch's
# records; ``createdChanges``; ``source``; ``createdAt``), read back here as the same
# CREATED / RELATION_CREATED records (100,000 CIs need no 100,000 extra nodes). Copies made
# by a merge (``mergedFrom``) and HAS_MEMBER mirrors imply nothing.
HISTORY: LiteralString = """
CALL () {
  MATCH (h:HistoryRecord {itemId: $id})
  WHERE h.at >= $since AND h.at < $until
  WITH h ORDER BY h.at DESC, h.seq DESC LIMIT $first
  RETURN h.at AS at, h.seq AS seq, h {.*, at: toString(h.at)} AS record
  UNION ALL
  MATCH (n:Item {id: $id})
  WHERE n.createdSeq IS NOT NULL AND n.createdAt >= $since AND n.createdAt < $until
  RETURN n.createdAt AS at, n.createdSeq AS seq,
         {itemId: n.id, kind: 'CREATED', source: n.source, seq: n.createdSeq,
          changes: n.createdChanges, at: toString(n.createdAt)} AS record
  UNION ALL
  MATCH (n:Item {id: $id})-[r]->(o:Item)
  WHERE r.createdSeq IS NOT NULL AND r.mergedFrom IS NULL AND type(r) <> 'HAS_MEMBER'
    AND r.createdAt >= $since AND r.createdAt < $until
  WITH n, r, o ORDER BY r.createdAt DESC, r.createdSeq DESC LIMIT $first
  RETURN r.createdAt AS at, r.createdSeq AS seq,
         {itemId: n.id, kind: 'RELATION_CREATED', source: r.source, seq: r.createdSeq,
          changes: r.createdChanges, relationType: type(r), otherId: o.id,
          at: toString(r.createdAt)} AS record
}
WITH at, seq, record ORDER BY at DESC, seq DESC LIMIT $first
RETURN record
"""

HISTORY_AFTER: LiteralString = """
MATCH (h:HistoryRecord {itemId: $id})
WHERE h.at > $at
RETURN h {.*, at: toString(h.at)} AS record
ORDER BY h.at DESC, h.seq DESC
"""

WRITE_HISTORY: LiteralString = """
UNWIND $records AS h
CREATE (x:HistoryRecord)
SET x = h, x.at = $now
RETURN count(*) AS written
"""


# ------------------------------------------------------------------------------ batches

# One ``UNWIND $rows`` statement per batch and label set or type (bulk loads).


def create_items(labels: str) -> LiteralString:
    """Create the items of one label set (``labels`` from an allow-list) that the batch found
    missing. CREATE, not MERGE: about twice as fast, and should another transaction create one
    of these ids meanwhile, the id constraint fails the batch rather than merging blindly."""
    return trusted(
        "UNWIND $rows AS row\n"
        f"CREATE (n{labels} {{id: row.id}})\n"
        "SET n += row.props, n.createdAt = $now, n.updatedAt = $now\n"
        "WITH n, row\n"
        + "".join(
            f"CALL (n, row) {{ MATCH (o:Org:{label} {{id: row.{key}}}) "
            f"CREATE (n)-[:{rel}]->(o) }}\n"
            for key, rel, label in _REFS
        )
        + "RETURN count(*) AS written"
    )


# Update existing items: only the changed properties, and re-point changed references.
UPDATE_ITEMS: LiteralString = trusted(
    "UNWIND $rows AS row\n"
    "MATCH (n:Item {id: row.id})\n"
    "SET n += row.props, n.updatedAt = $now\n"
    "WITH n, row\n"
    + _set_refs("n, row", "row.")
    + "RETURN count(*) AS written"
)

_SAME_PROPS = (
    "all(k IN keys(row.props) WHERE live[k] = row.props[k]"
    " OR (live[k] IS NULL AND row.props[k] IS NULL))"
)


# The two ends of each row, its source locked first (as ``relate`` does), so that a concurrent
# write cannot make a second live relationship between them.
LOCKED_ENDS: LiteralString = """
UNWIND $rows AS row
MATCH (s:Item {id: row.s})
MATCH (t:Item {id: row.t})
SET s.lockedAt = $now REMOVE s.lockedAt
WITH s, t, row"""


def upsert_relations(rel_type: RelationType) -> LiteralString:
    """Keep one live relationship per (source, type, target), as ``upsert`` does: make it,
    update it, or leave it alone when its properties are already those given. The source is
    locked first (as ``relate`` does) so a concurrent ``relate`` cannot make a second one."""
    t = rel_type.value
    return trusted(LOCKED_ENDS + f"""
OPTIONAL MATCH (s)-[live:{t}]->(t) WHERE live.retiredAt IS NULL
CALL (s, t, row, live) {{
  WITH s, t, row, live WHERE live IS NULL
  CREATE (s)-[r:{t}]->(t)
  SET r += row.props, r.createdAt = $now, r.updatedAt = $now
  RETURN 'created' AS outcome
  UNION ALL
  WITH row, live WHERE live IS NOT NULL AND NOT {_SAME_PROPS}
  SET live += row.props, live.updatedAt = $now
  RETURN 'updated' AS outcome
  UNION ALL
  WITH row, live WHERE live IS NOT NULL AND {_SAME_PROPS}
  RETURN 'unchanged' AS outcome
}}
RETURN outcome, count(*) AS n
""")
