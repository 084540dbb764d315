from typing import LiteralString

CREATE: LiteralString = """
CREATE (c:PlannedChange {id: $id, title: $title, start: $start, end: $end, ciIds: $ciIds,
                         createdAt: $now})
WITH c
UNWIND $ciIds AS ciId
MATCH (i:Item {id: ciId})
CREATE (c)-[:CHANGES]->(i)
WITH DISTINCT c
RETURN c {.*} AS change
"""

MISSING_ITEMS: LiteralString = """
UNWIND $ids AS id
OPTIONAL MATCH (i:Item {id: id})
WITH id, i WHERE i IS NULL OR i.lifecycleStatus = 'RETIRED'
RETURN collect(id) AS missing
"""

OVERLAPPING: LiteralString = """
MATCH (c:PlannedChange) WHERE c.start < $end AND c.end > $start
  AND ($exclude IS NULL OR c.id <> $exclude)
RETURN c {.*} AS change ORDER BY c.start
"""

LIST: LiteralString = """
MATCH (c:PlannedChange) WHERE c.end > $after
RETURN c {.*} AS change ORDER BY c.start LIMIT $limit
"""
