"""Project-managed local Neo4j Community server (installed from Maven Central, no Docker)."""

from cmdb.localdb.manager import (
    NEO4J_VERSION,
    AlreadyRunning,
    InstanceSpec,
    InstanceStatus,
    LocalNeo4j,
    LocalNeo4jError,
    instance_for,
)

__all__ = [
    "NEO4J_VERSION",
    "AlreadyRunning",
    "InstanceSpec",
    "InstanceStatus",
    "LocalNeo4j",
    "LocalNeo4jError",
    "instance_for",
]
