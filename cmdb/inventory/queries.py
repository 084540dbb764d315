"""Cypher for configuration items. Labels come from ``class_labels`` (an allow-list)."""

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION, ITEM_PROJECTION_BARE, trusted


def get_items(with_org: bool, visible: LiteralString) -> LiteralString:
    """Items by id that the caller may see (``visible`` is a scope predicate on ``n``)."""
    base = GET_ITEMS if with_org else GET_ITEMS_BARE
    if visible == "true":
        return base
    return trusted(base.replace("MATCH (n:Item {id: id})\n",
                                f"MATCH (n:Item {{id: id}}) WHERE {visible}\n", 1))


GET_ITEMS_BARE: LiteralString = (
    """
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN """
    + ITEM_PROJECTION_BARE
    + " AS item"
)

GET_ITEMS: LiteralString = (
    """
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN """
    + ITEM_PROJECTION
    + " AS item"
)

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

# Re-point owner, cost centre and location; a null id removes the link.
SET_REFS: LiteralString = """
WITH n
CALL (n) {
  WITH n WHERE $setOwner
  OPTIONAL MATCH (n)-[old:OWNED_BY]->() DELETE old
  WITH n OPTIONAL MATCH (g:Org {id: $owner}) WHERE g:OwnerGroup
  FOREACH (_ IN CASE WHEN g IS NULL THEN [] ELSE [1] END | MERGE (n)-[:OWNED_BY]->(g))
}
CALL (n) {
  WITH n WHERE $setCc
  OPTIONAL MATCH (n)-[old:CHARGED_TO]->() DELETE old
  WITH n OPTIONAL MATCH (c:Org {id: $cc}) WHERE c:CostCentre
  FOREACH (_ IN CASE WHEN c IS NULL THEN [] ELSE [1] END | MERGE (n)-[:CHARGED_TO]->(c))
}
CALL (n) {
  WITH n WHERE $setLoc
  OPTIONAL MATCH (n)-[old:LOCATED_IN]->() DELETE old
  WITH n OPTIONAL MATCH (l:Org {id: $loc}) WHERE l:Location
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
MATCH (n:Item {id: $id}) WHERE n:CI
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
