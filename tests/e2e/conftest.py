"""The served end-to-end suite: the product started as users start it, reached over sockets.

Each process start costs seconds, so processes are shared per module (fixtures of module
scope), and the demo process (half a minute to load) by the whole e2e package. Tests add
what they need under unique names and never empty the graph while a process serves it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cmdb.localdb.manager import LocalNeo4j
from tests.e2e.remote import Http, wipe_graph
from tests.served import Served, served


@pytest.fixture(scope="module")
def api(neo4j_instance: LocalNeo4j) -> Iterator[Served]:
    """``cmdb serve`` in development mode against the test Neo4j, for one test module."""
    with served(neo4j_instance) as server:
        yield server


@pytest.fixture(scope="package")
def demo_api(neo4j_instance: LocalNeo4j) -> Iterator[Served]:
    """``cmdb run`` (the demo data loaded, then served) on an emptied graph. Loading the demo
    takes half a minute, so one process serves every e2e module that needs it; those modules
    add what they need under names of their own and never empty the graph."""
    wipe_graph(neo4j_instance)
    with served(neo4j_instance, "run") as server:
        yield server


@pytest.fixture(scope="package")
def demo_http(demo_api: Served) -> Http:
    """GraphQL and REST calls to ``demo_api`` as an admin."""
    return Http(demo_api.url)
