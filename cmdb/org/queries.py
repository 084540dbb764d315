from typing import LiteralString

from cmdb.core.cypher import trusted

_PROJECTION: LiteralString = "o {.*, parentId: [(o)-[:PART_OF]->(p) | p.id][0]}"

GET_UNITS: LiteralString = (
    "UNWIND $ids AS id MATCH (o:Org {id: id}) "
    "RETURN labels(o) AS labels, " + _PROJECTION + " AS unit"
)

FIND_CONFLICT: LiteralString = """
OPTIONAL MATCH (byName:Org {nameLower: $nameLower}) WHERE $label IN labels(byName)
OPTIONAL MATCH (byCode:CostCentre {code: $code}) WHERE $label = 'CostCentre'
RETURN byName.id AS nameHeldBy, byCode.id AS codeHeldBy,
       CASE WHEN $parentId IS NULL THEN true
            ELSE EXISTS { MATCH (p:Org {id: $parentId}) WHERE $label IN labels(p) } END AS parentOk
"""


def create_unit(label: str) -> LiteralString:
    return trusted(
        f"MERGE (o:Org:{label} {{id: $id}}) ON CREATE SET o += $props, o.createdAt = $now\n"
        "WITH o OPTIONAL MATCH (p:Org {id: $parentId}) WHERE $label IN labels(p)\n"
        "FOREACH (_ IN CASE WHEN p IS NULL THEN [] ELSE [1] END | MERGE (o)-[:PART_OF]->(p))\n"
        "RETURN labels(o) AS labels, " + _PROJECTION + " AS unit"
    )


def list_units(label: str) -> LiteralString:
    return trusted(
        f"MATCH (o:{label}) WHERE $name IS NULL OR o.nameLower CONTAINS $name\n"
        "RETURN labels(o) AS labels, " + _PROJECTION + " AS unit\n"
        "ORDER BY o.nameLower, o.id LIMIT $limit"
    )


SUBTREE_CODES: LiteralString = """
MATCH (root:CostCentre {code: $code})<-[:PART_OF*0..]-(c:CostCentre)
RETURN collect(DISTINCT c.code) AS codes
"""
