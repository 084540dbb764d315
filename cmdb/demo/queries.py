"""The demo loader's Cypher: what of the demo enterprise the graph holds already."""

from __future__ import annotations

from typing import LiteralString

EXISTING_ORG: LiteralString = """
MATCH (o:Org) WHERE o.nameLower IN $names OR o.code IN $codes
RETURN labels(o) AS labels, o.id AS id, o.nameLower AS nameLower, o.code AS code
ORDER BY o.createdAt, o.id
"""

EXISTING_ITEMS: LiteralString = """
MATCH (n:Item) WHERE n.nameLower IN $names
RETURN n.id AS id, n.nameLower AS nameLower, n.ciClass AS ciClass,
       n.serviceKind AS serviceKind, n.lifecycleStatus = 'RETIRED' AS retired
ORDER BY retired, n.createdAt, n.id
"""

EXISTING_RELATIONS: LiteralString = """
MATCH (s:Item)-[r]->(t:Item)
WHERE s.id IN $ids AND t.id IN $ids AND r.retiredAt IS NULL
RETURN s.id AS source, type(r) AS type, t.id AS target
"""

EXISTING_CATALOGUE: LiteralString = """
CALL () { OPTIONAL MATCH (c:CatalogueCategory) RETURN collect(c {.id, .nameLower}) AS categories }
CALL () { OPTIONAL MATCH (i:CatalogueItem) RETURN collect(i.nameLower) AS items }
RETURN categories, items
"""
