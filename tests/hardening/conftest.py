"""Fixtures of the hardening suite: apps with short database timeouts, and outages of the
real local test Neo4j (stopped and started again, always brought back up).

Other modules of this suite (limits, masking, fuzzing) share it; fixtures here are opt-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI

from cmdb.app import create_app
from cmdb.db.driver import Database
from cmdb.localdb.manager import LocalNeo4j
from cmdb.settings import Settings
from tests.auth import ADMIN, auth_headers

# A request waits this long for an unreachable Neo4j before it is answered 503.
FAST_RETRY_S = 1.5


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def fast_settings(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={"neo4j_retry_s": FAST_RETRY_S, **changes})


def connect(settings: Settings) -> Database:
    """A driver of its own with the settings' bounds (as the app makes it in production)."""
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                            settings.neo4j_database, settings.neo4j_tx_timeout_s,
                            settings.neo4j_pool_size, settings.neo4j_retry_s)


@contextlib.asynccontextmanager
async def app_client(app: FastAPI, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test",
                                     headers=headers or auth_headers(ADMIN[0], *ADMIN[1]),
                                     timeout=60) as c:
            yield c


@pytest_asyncio.fixture(scope="module")
async def unreachable(test_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in front of a Neo4j address where nothing answers (connection refused), as
    after a crash: a real driver, a real socket, no server. Requests give up after 0.5 s."""
    settings = fast_settings(test_settings, neo4j_retry_s=0.5,
                             neo4j_uri=f"bolt://127.0.0.1:{_closed_port()}")
    async with app_client(create_app(settings)) as c:
        yield c


class Outage:
    """Stops and starts the session's test Neo4j; ``restore`` always brings it back."""

    def __init__(self, instance: LocalNeo4j) -> None:
        self.instance = instance
        self.quiet: Callable[[str], None] = lambda _: None

    async def stop(self) -> None:
        await asyncio.to_thread(self.instance.stop, 60, self.quiet)

    async def start(self) -> None:
        await asyncio.to_thread(self.instance.start, 180, self.quiet)

    def restore(self) -> None:
        """Running and answering queries (start waits until Bolt answers a real query)."""
        if not self.instance.status().running:
            self.instance.start(echo=self.quiet)


@pytest.fixture
def outage(neo4j_instance: LocalNeo4j) -> Any:
    o = Outage(neo4j_instance)
    try:
        yield o
    finally:
        o.restore()


@pytest_asyncio.fixture
async def fresh_db(outage: Outage, test_settings: Settings,
                   db: Database) -> AsyncIterator[Database]:
    """An empty graph (schema kept) and a driver with short bounds, closed afterwards.
    Listed after ``outage`` so it is closed before the instance is restored."""
    await db.write("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")
    own = connect(fast_settings(test_settings))
    try:
        yield own
    finally:
        await own.close()
