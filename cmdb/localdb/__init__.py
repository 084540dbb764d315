"""Project-managed local Neo4j Community server (installed from Maven Central, no Docker)."""

from cmdb.localdb.install import NEO4J_VERSION
from cmdb.localdb.manager import LocalNeo4j, instance_for
from cmdb.localdb.models import AlreadyRunning, InstanceSpec, InstanceStatus, LocalNeo4jError

__all__ = [
    "NEO4J_VERSION",
    "AlreadyRunning",
    "InstanceSpec",
    "InstanceStatus",
    "LocalNeo4j",
    "LocalNeo4jError",
    "instance_for",
]
