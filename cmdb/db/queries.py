"""The database package's own statements."""

from typing import LiteralString

# The cheapest statement Neo4j answers: a health check's ping.
PING: LiteralString = "RETURN 1 AS ok"
