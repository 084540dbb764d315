"""The differential test of compiled reads over HTTP: two ``cmdb serve`` processes, started as
users start them, one with ``CMDB_READ_COMPILER=false`` and one with it on, answer a handful
of read documents over the ``compiled_world`` graph alike, for every role.

The exhaustive comparison (suite documents, generated operations) is in-process in
``tests/test_compiled_reads.py``; this one checks that the switch reaches a served process
and that the bodies a client receives (JSON, as serialized) are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cmdb.db.driver import Database
from cmdb.localdb.manager import LocalNeo4j
from tests.auth import auth_headers
from tests.compiled_world import OWNER, REQUESTER, World, build_world
from tests.conftest import wipe
from tests.served import Served, served

pytestmark = pytest.mark.integration

ROLES: tuple[str | None, ...] = (
    "admin", "operator", "monitoring", "executive", "finance", "finance_all",
    "catalogue_admin", "service_owner", "requester", "approver", "discovery_agent", None)
USERS = {"service_owner": OWNER, "requester": REQUESTER}

ITEM = """fragment item on Item { __typename id name lifecycleStatus operationalState
  healthState criticality attributes ownerGroup { id name } costCentre { code parent { code } }
  location { name parent { name } }
  ... on ConfigurationItem { ciClass families identifiers { serialNumber hostName domain } }
  ... on Service { kind } }"""

DOCUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("""query($id: ID!) { node(id: $id) { ...item relationships(direction: BOTH, depth: 3,
          includeRetired: true) { type direction depth path properties retiredAt
          item { ...item } } } }""" + ITEM, {"id": "Payments"}),
    ("""query($id: ID!) { configurationItem(id: $id) { ...item
          relationships(direction: INCOMING, depth: 5) { depth path item { id name } } } }"""
     + ITEM, {"id": "vm-pay-1"}),
    ("""{ configurationItems { totalCount pageInfo { hasNextPage endCursor }
          edges { cursor node { ...item } } } }""" + ITEM, {}),
    ("""{ configurationItems(first: 7, orderBy: {field: NAME, direction: DESC},
          filter: {classes: [SERVER], includeRetired: true}) {
          totalCount edges { cursor node { id name lifecycleStatus } } } }""", {}),
    ("""{ services(filter: {includeRetired: true}) { totalCount edges { node { ...item
          relationships(direction: OUTGOING) { type item { id name } } } } } }""" + ITEM, {}),
    ("""query($id: ID!) { service(id: $id) { ...item } }""" + ITEM, {"id": "Legacy Billing"}),
    ("""{ ownerGroups { id name } costCentres { code name parent { code } }
          locations { name parent { name } } }""", {}),
]


def _headers(role: str | None) -> dict[str, str]:
    if role is None:
        return auth_headers("diff-nobody")
    return auth_headers(USERS.get(role, f"diff-{role}"), role)


def _post(api: Served, query: str, variables: dict[str, Any], role: str | None) -> Any:
    r = httpx.post(f"{api.url}/graphql", json={"query": query, "variables": variables},
                   headers=_headers(role), timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def apis(neo4j_instance: LocalNeo4j) -> Iterator[tuple[Served, Served]]:
    with served(neo4j_instance, env={"CMDB_READ_COMPILER": "false"}) as off, \
            served(neo4j_instance, env={"CMDB_READ_COMPILER": "true"}) as on:
        yield off, on


@pytest.fixture(scope="module")
async def world(db: Database, apis: tuple[Served, Served]) -> World:
    await wipe(db)
    off = apis[0]

    async def run(query: str, variables: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=60) as client:
            r = await client.post(f"{off.url}/graphql",
                                  json={"query": query, "variables": variables},
                                  headers=_headers("admin"))
        body = r.json()
        assert "errors" not in body, (query, variables, body)
        data: dict[str, Any] = body["data"]
        return data

    return await build_world(run)


@pytest.mark.parametrize("number", range(len(DOCUMENTS)))
def test_served_processes_answer_alike(apis: tuple[Served, Served], world: World,
                                       number: int) -> None:
    query, names = DOCUMENTS[number]
    variables = {k: world.ids[v] for k, v in names.items()}
    off, on = apis
    for role in ROLES:
        want = _post(off, query, variables, role)
        got = _post(on, query, variables, role)
        assert got == want, f"role {role}, variables {variables}\n{query}"
        if role == "admin":  # the documents read the world, not errors
            assert "errors" not in want and all(want["data"].values()), want
