"""Cypher for services. Labels come from ``SERVICE_LABELS`` (an allow-list)."""

from typing import LiteralString

from cmdb.core.cypher import ITEM_PROJECTION, trusted
from cmdb.inventory.queries import SET_REFS


def create_service(labels: str) -> LiteralString:
    return trusted(
        f"MERGE (n{labels} {{id: $id}})\n"
        "ON CREATE SET n += $props, n.createdAt = $now, n.updatedAt = $now\n"
        + SET_REFS
        + "RETURN "
        + ITEM_PROJECTION
        + " AS item"
    )


UPDATE_SERVICE: LiteralString = (
    """
MATCH (n:Item {id: $id}) WHERE n:Service
SET n += $props, n.updatedAt = $now
"""
    + SET_REFS
    + "RETURN "
    + ITEM_PROJECTION
    + " AS item"
)
