"""Cypher for bulk writes: one ``UNWIND $rows`` statement per batch and label set or type.

Labels and relationship types reach the text only through ``class_labels``,
``SERVICE_LABELS``, ``OrgKind`` and ``RelationType`` (allow-lists); values are parameters.
"""

from __future__ import annotations

from typing import LiteralString

from cmdb.core.cypher import trusted
from cmdb.core.models import OrgKind
from cmdb.items import queries as relation_queries
from cmdb.items.models import RelationType

# ------------------------------------------------------------------------------ items

# One record holding a list: the driver's cost is mostly per record.
EXISTING_ITEMS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN collect({id: n.id, isService: n:Service, props: properties(n),
       owner: [(n)-[:OWNED_BY]->(g:OwnerGroup) | g.id][0],
       cc: [(n)-[:CHARGED_TO]->(c:CostCentre) | c.id][0],
       loc: [(n)-[:LOCATED_IN]->(l:Location) | l.id][0]}) AS items
"""

ORG_REFS: LiteralString = """
UNWIND $ids AS id
MATCH (o:Org {id: id})
RETURN o.id AS id, labels(o) AS labels
"""


def identifier_conflicts(props: tuple[str, ...]) -> LiteralString:
    """Which identifier values are held by another CI; one branch per unique property
    (``props`` come from the inventory's allow-list), so each lookup uses its constraint."""
    branches = [
        f"UNWIND ${p} AS c MATCH (n:CI {{{p}: c.value}}) WHERE n.id <> c.id\n"
        f"  RETURN c.id AS id, '{p}' AS prop, c.value AS value, n.id AS heldBy"
        for p in props
    ]
    return trusted(
        "CALL () {\n  " + "\n  UNION ALL\n  ".join(branches) + "\n}\n"
        "RETURN id, prop, value, heldBy"
    )


# (row key, relationship type, org label): how an item points at its org units.
_REFS: tuple[tuple[str, str, str], ...] = (
    ("owner", "OWNED_BY", "OwnerGroup"),
    ("cc", "CHARGED_TO", "CostCentre"),
    ("loc", "LOCATED_IN", "Location"),
)


def _set_ref(key: str, rel: str, label: str) -> str:
    # Only rows whose reference changes take part; a null id removes the link.
    set_flag = "set" + key.capitalize()
    return (
        "CALL (n, row) {\n"
        f"  WITH n, row WHERE row.{set_flag}\n"
        f"  OPTIONAL MATCH (n)-[old:{rel}]->() DELETE old\n"
        "  WITH DISTINCT n, row\n"
        f"  OPTIONAL MATCH (o:Org:{label} {{id: row.{key}}})\n"
        f"  FOREACH (_ IN CASE WHEN o IS NULL THEN [] ELSE [1] END | MERGE (n)-[:{rel}]->(o))\n"
        "}\n"
    )


def _link_ref(key: str, rel: str, label: str) -> str:
    return f"CALL (n, row) {{ MATCH (o:Org:{label} {{id: row.{key}}}) CREATE (n)-[:{rel}]->(o) }}\n"


def create_items(labels: str) -> LiteralString:
    """Create the items of one label set (``labels`` from an allow-list) that the batch found
    missing. CREATE, not MERGE: about twice as fast, and should another transaction create one
    of these ids meanwhile, the id constraint fails the batch rather than merging blindly."""
    return trusted(
        "UNWIND $rows AS row\n"
        f"CREATE (n{labels} {{id: row.id}})\n"
        "SET n += row.props, n.createdAt = $now, n.updatedAt = $now\n"
        "WITH n, row\n"
        + "".join(_link_ref(*ref) for ref in _REFS)
        + "RETURN count(*) AS written"
    )


# Update existing items: only the changed properties, and re-point changed references.
UPDATE_ITEMS: LiteralString = trusted(
    "UNWIND $rows AS row\n"
    "MATCH (n:Item {id: row.id})\n"
    "SET n += row.props, n.updatedAt = $now\n"
    "WITH n, row\n"
    + "".join(_set_ref(*ref) for ref in _REFS)
    + "RETURN count(*) AS written"
)


# ------------------------------------------------------------------------------ relations

# Grouped by class and status: a few records of id lists decode far faster than one record
# per item (the driver's cost is mostly per record).
ENDS: LiteralString = """
UNWIND $ids AS id
MATCH (n:Item {id: id})
WITH CASE WHEN n:Service THEN 'SERVICE' ELSE n.ciClass END AS cls,
     n.lifecycleStatus AS status, collect(n.id) AS ids
RETURN cls, status, ids
"""

_SAME_PROPS = (
    "all(k IN keys(row.props) WHERE live[k] = row.props[k]"
    " OR (live[k] IS NULL AND row.props[k] IS NULL))"
)


def upsert_relations(rel_type: RelationType) -> LiteralString:
    """Keep one live relationship per (source, type, target), as ``relate`` does: make it,
    update it, or leave it alone when its properties are already those given. The source is
    locked first (as ``relate`` does) so a concurrent ``relate`` cannot make a second one."""
    t = rel_type.value
    return trusted(f"""
UNWIND $rows AS row
MATCH (s:Item {{id: row.s}})
MATCH (t:Item {{id: row.t}})
SET s.lockedAt = $now REMOVE s.lockedAt
WITH s, t, row
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


# The HAS_MEMBER mirrors of MEMBER_OF edges: the same statement `relate` uses.
SYNC_MIRRORS = relation_queries.SYNC_MIRRORS


# ------------------------------------------------------------------------------ org units

EXISTING_ORG: LiteralString = """
UNWIND $ids AS id
MATCH (o:Org {id: id})
RETURN o.id AS id, labels(o) AS labels, properties(o) AS props,
       [(o)-[:PART_OF]->(p) | p.id][0] AS parentId
"""

ORG_CONFLICTS: LiteralString = """
UNWIND $rows AS r
CALL (r) {
  MATCH (o:Org {nameLower: r.nameLower}) WHERE $label IN labels(o) AND o.id <> r.id
  RETURN 'name' AS what, o.id AS heldBy
  UNION ALL
  MATCH (o:CostCentre {code: r.code}) WHERE o.id <> r.id
  RETURN 'code' AS what, o.id AS heldBy
}
RETURN r.id AS id, what, heldBy
"""

PARENTS: LiteralString = """
UNWIND $ids AS id
MATCH (p:Org {id: id}) WHERE $label IN labels(p)
RETURN p.id AS id
"""


def upsert_org(kind: OrgKind) -> LiteralString:
    return trusted(
        "UNWIND $rows AS row\n"
        f"MERGE (o:Org:{kind.value} {{id: row.id}})\n"
        "ON CREATE SET o += row.props, o.createdAt = $now\n"
        "ON MATCH SET o += row.props, o.updatedAt = $now\n"
        "RETURN count(*) AS written"
    )


# Re-point the parent of the units given; a null parent removes it.
SET_PARENTS: LiteralString = """
UNWIND $links AS l
MATCH (o:Org {id: l.id})
CALL (o) {
  OPTIONAL MATCH (o)-[old:PART_OF]->() DELETE old
}
WITH o, l
OPTIONAL MATCH (p:Org {id: l.parentId}) WHERE $label IN labels(p)
FOREACH (_ IN CASE WHEN p IS NULL THEN [] ELSE [1] END | MERGE (o)-[:PART_OF]->(p))
RETURN count(*) AS linked
"""
