"""Integration fixtures: a real Neo4j test instance of its own, cleaned before each test.

The test instance (own port and data folder under .cmdb/instances/test) is started when it
is not running and stopped at the end if this session started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cmdb.app import create_app
from cmdb.db.driver import Database
from cmdb.db.migrations import migrate
from cmdb.localdb.manager import LocalNeo4j, instance_for
from cmdb.rollup.worker import RollupWorker
from cmdb.services import Services
from cmdb.settings import Settings
from tests.auth import ADMIN, auth_headers

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "writes_world: the test changes the demo world; the next test loads it anew")


@pytest.fixture(scope="session")
def neo4j_instance() -> Iterator[LocalNeo4j]:
    settings = Settings(home=ROOT / ".cmdb")
    # CMDB_TEST_INSTANCE=test-1..9 gives a parallel run its own graph.
    instance = instance_for(settings, os.environ.get("CMDB_TEST_INSTANCE", "test"))
    started = instance.ensure_running()
    try:
        yield instance
    finally:
        if started and os.environ.get("CMDB_TEST_KEEP_NEO4J") != "1":
            instance.stop()


@pytest.fixture(scope="session")
def test_settings(neo4j_instance: LocalNeo4j) -> Settings:
    return Settings(
        mode="development",
        neo4j_uri=neo4j_instance.uri,
        neo4j_user=neo4j_instance.user,
        neo4j_password=neo4j_instance.password(),
        home=ROOT / ".cmdb",
        log_json=False,
    )


@pytest_asyncio.fixture(scope="session")
async def db(test_settings: Settings) -> AsyncIterator[Database]:
    pw = test_settings.neo4j_password.get_secret_value() if test_settings.neo4j_password else ""
    database = Database.connect(test_settings.neo4j_uri or "", test_settings.neo4j_user, pw)
    await migrate(database)
    try:
        yield database
    finally:
        await database.close()


async def wipe(db: Database) -> None:
    """Delete everything but the schema's migration records."""
    await db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")


async def settle(db: Database) -> None:
    """Roll up what writes left pending (health is then settled; docs/health.md)."""
    await RollupWorker(db).settle()


async def settled_over_http(client: httpx.AsyncClient, headers: dict[str, str] | None = None,
                            path: str = "/graphql", timeout_s: float = 30.0) -> None:
    """Wait, as an HTTP client does, until the public ``pendingRollUps`` is 0: the served
    app's roll-up worker has rolled up every write before now."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = await client.post(path, json={"query": "{ pendingRollUps }"}, headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["data"]["pendingRollUps"] == 0:
            return
        assert time.monotonic() < deadline, "the roll-up did not settle"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def clean_db(db: Database) -> Database:
    """An empty graph (schema kept) for one test."""
    await wipe(db)
    return db


class AppClient(httpx.AsyncClient):
    """An HTTP client to an in-process app, which can wait for the app's health roll-up."""

    services: Services

    async def settle(self) -> None:
        """Roll up what writes left pending (health is then settled)."""
        await self.services.rollup.settle()


@contextlib.asynccontextmanager
async def app_client(db: Database, settings: Settings) -> AsyncIterator[AppClient]:
    """An in-process app over ``db`` (started and stopped) and an HTTP client to it."""
    app = create_app(settings, db=db)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        # The default caller is an admin; tests of access control pass their own headers.
        async with AppClient(transport=transport, base_url="http://test",
                             headers=auth_headers(ADMIN[0], *ADMIN[1])) as c:
            c.services = app.state.services
            yield c


@pytest_asyncio.fixture
async def client(clean_db: Database, test_settings: Settings) -> AsyncIterator[AppClient]:
    async with app_client(clean_db, test_settings) as c:
        yield c


class GQL:
    """Posts GraphQL to the in-process app and fails loudly on transport-level errors.

    After a mutation it waits for the health roll-up to settle, as a client that reads
    health after its writes does (docs/health.md), so tests read settled health."""

    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        self.client = client
        self.headers = headers

    def as_user(self, user: str, *roles: str) -> GQL:
        """The same client, calling as ``user`` with ``roles``."""
        return GQL(self.client, auth_headers(user, *roles))

    async def __call__(self, query: str, **variables: Any) -> dict[str, Any]:
        r = await self.client.post("/graphql", json={"query": query, "variables": variables},
                                   headers=self.headers)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if isinstance(self.client, AppClient) and query.lstrip().startswith("mutation"):
            await self.client.settle()
        return body

    async def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await self(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture
def gql(client: httpx.AsyncClient) -> GQL:
    return GQL(client)
