"""Cypher for relationships. Type lists and arrows are built from the enums (allow-list)."""

from __future__ import annotations

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION, ITEM_PROJECTION_BARE, trusted
from cmdb.relations.models import Direction, RelationType

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
                "WITH n, p ORDER BY length(p)\n"
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
  ORDER BY depth, n.nameLower, n.id
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
