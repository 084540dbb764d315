"""Reads run in auto-commit transactions with their own retries: they ride out a Neo4j
restart as managed transactions do, and give up within the configured bound."""

from __future__ import annotations

import asyncio

import pytest
from neo4j.exceptions import CypherSyntaxError, ServiceUnavailable

from cmdb.db.driver import Database
from tests.hardening.conftest import Outage, connect, fast_settings

pytestmark = pytest.mark.integration

# Generous: only turns a hang into a failure.
HANG = 180


async def test_a_read_waits_for_neo4j_to_come_back(outage: Outage, fresh_db: Database,
                                                   test_settings):
    own = connect(fast_settings(test_settings, neo4j_retry_s=HANG))
    try:
        assert await own.read("RETURN 1 AS one") == [{"one": 1}]  # pooled connection
        await outage.stop()
        reading = asyncio.create_task(own.read("RETURN $n AS n", {"n": 2}))
        await outage.start()
        assert await asyncio.wait_for(reading, HANG) == [{"n": 2}]
    finally:
        await own.close()


async def test_an_unreachable_server_fails_the_read_after_the_bound(test_settings):
    from tests.hardening.conftest import _closed_port

    own = connect(fast_settings(test_settings, neo4j_retry_s=0.5,
                                neo4j_uri=f"bolt://127.0.0.1:{_closed_port()}"))
    try:
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(own.read("RETURN 1 AS one"), HANG)
    finally:
        await own.close()


async def test_a_statement_error_is_not_retried(db: Database):
    sessions = 0
    real = db.driver.session

    def counting(**config):  # type: ignore[no-untyped-def]
        nonlocal sessions
        sessions += 1
        return real(**config)

    db.driver.session = counting  # type: ignore[method-assign]
    try:
        with pytest.raises(CypherSyntaxError):
            await db.read("RETURN 1 AS")  # type: ignore[arg-type]
    finally:
        db.driver.session = real  # type: ignore[method-assign]
    assert sessions == 1
