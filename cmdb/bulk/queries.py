"""Cypher for bulk loads: a batch's reads, and org units written one ``UNWIND $rows``
statement per batch (items and relationships are written by ``cmdb.items.writes``).

Labels reach the text only through ``OrgKind`` (an allow-list); values are parameters.
"""

from __future__ import annotations

from typing import LiteralString

from cmdb.core.cypher import trusted
from cmdb.core.models import OrgKind

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
