"""Cypher for configuration items. Labels come from ``class_labels`` (an allow-list)."""

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION, trusted

GET_ITEMS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN """
    + ITEM_PROJECTION
    + " AS item"
)

# Which identifier values are already held, and by whom (excluding the CI being written).
IDENTIFIER_CONFLICTS: LiteralString = """
UNWIND $checks AS c
MATCH (n:CI) WHERE n[c.prop] = c.value AND n.id <> $id
RETURN c.field AS field, c.value AS value, n.id AS heldBy
"""

REFS_EXIST: LiteralString = """
RETURN
  CASE WHEN $owner IS NULL THEN true ELSE EXISTS { (:OwnerGroup {id: $owner}) } END AS owner,
  CASE WHEN $cc IS NULL THEN true ELSE EXISTS { (:CostCentre {id: $cc}) } END AS cc,
  CASE WHEN $loc IS NULL THEN true ELSE EXISTS { (:Location {id: $loc}) } END AS loc
"""

# Re-point owner, cost centre and location; a null id removes the link.
SET_REFS: LiteralString = """
WITH n
CALL (n) {
  WITH n WHERE $setOwner
  OPTIONAL MATCH (n)-[old:OWNED_BY]->() DELETE old
  WITH n OPTIONAL MATCH (g:OwnerGroup {id: $owner})
  FOREACH (_ IN CASE WHEN g IS NULL THEN [] ELSE [1] END | MERGE (n)-[:OWNED_BY]->(g))
}
CALL (n) {
  WITH n WHERE $setCc
  OPTIONAL MATCH (n)-[old:CHARGED_TO]->() DELETE old
  WITH n OPTIONAL MATCH (c:CostCentre {id: $cc})
  FOREACH (_ IN CASE WHEN c IS NULL THEN [] ELSE [1] END | MERGE (n)-[:CHARGED_TO]->(c))
}
CALL (n) {
  WITH n WHERE $setLoc
  OPTIONAL MATCH (n)-[old:LOCATED_IN]->() DELETE old
  WITH n OPTIONAL MATCH (l:Location {id: $loc})
  FOREACH (_ IN CASE WHEN l IS NULL THEN [] ELSE [1] END | MERGE (n)-[:LOCATED_IN]->(l))
}
"""


def create_ci(labels: str) -> LiteralString:
    """MERGE on id so that a retried transaction never makes a second node."""
    return trusted(
        f"MERGE (n{labels} {{id: $id}})\n"
        "ON CREATE SET n += $props, n.createdAt = $now, n.updatedAt = $now\n"
        + SET_REFS
        + "RETURN "
        + ITEM_PROJECTION
        + " AS item"
    )


# Properties mapped to null are removed (``+=`` with a null value deletes the key).
UPDATE_CI: LiteralString = (
    """
MATCH (n:CI {id: $id})
SET n += $props, n.updatedAt = $now
"""
    + SET_REFS
    + "RETURN "
    + ITEM_PROJECTION
    + " AS item"
)

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
