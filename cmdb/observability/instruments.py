"""The process's Prometheus instruments. Light to import: the database wrapper uses them.

Our own registry: the process-wide default one would also export whatever other libraries
register there.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

ERROR_KINDS = ("validation", "auth", "forbidden", "domain", "internal", "unavailable")
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REGISTRY = CollectorRegistry(auto_describe=False)
REQUESTS = Counter("cmdb_requests", "HTTP requests by route, GraphQL operation and status.",
                   ["route", "operation", "status"], registry=REGISTRY)
REQUEST_SECONDS = Histogram("cmdb_request_duration_seconds",
                            "HTTP request latency by route and GraphQL operation.",
                            ["route", "operation"], buckets=BUCKETS, registry=REGISTRY)
ERRORS = Counter("cmdb_errors", "Errors by kind (validation, auth, forbidden, domain, "
                 "internal, unavailable).", ["kind"], registry=REGISTRY)
NEO4J_SECONDS = Histogram("cmdb_neo4j_statement_duration_seconds",
                          "Neo4j statements (one round trip each) and their latency, by "
                          "mode: read, write, or tx (in a transaction of several).",
                          ["mode"], buckets=BUCKETS, registry=REGISTRY)

# Children bound once: ``labels()`` takes a lock and builds a key on every call.
ERROR_BY_KIND = {k: ERRORS.labels(k) for k in ERROR_KINDS}  # every kind exported, from 0
NEO4J_READ = NEO4J_SECONDS.labels("read")
NEO4J_WRITE = NEO4J_SECONDS.labels("write")
NEO4J_TX = NEO4J_SECONDS.labels("tx")  # inside a transaction of several statements
