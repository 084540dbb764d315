"""The served end-to-end suite: the product started as users start it, reached over sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cmdb.localdb.manager import LocalNeo4j
from tests.served import Served, served


@pytest.fixture(scope="module")
def api(neo4j_instance: LocalNeo4j) -> Iterator[Served]:
    """``cmdb serve`` in development mode against the test Neo4j, for one test module."""
    with served(neo4j_instance) as server:
        yield server
