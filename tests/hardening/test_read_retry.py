"""Reads run in auto-commit transactions with their own retries: they ride out a Neo4j
restart as managed transactions do, and give up within the configured bound. Their sessions
are kept between statements, holding no connection."""

from __future__ import annotations

import asyncio

import pytest
from neo4j.exceptions import CypherSyntaxError, ServiceUnavailable

from cmdb.api.metrics import pool_usage
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


def count_sessions(db: Database) -> list[int]:
    """Counts the sessions ``db`` opens from now on (the list's one item)."""
    opened = [0]
    real = db.driver.session

    def counting(**config):
        opened[0] += 1
        return real(**config)

    db.driver.session = counting  # type: ignore[method-assign]
    return opened


async def test_a_statement_error_is_not_retried(test_settings):
    own = connect(test_settings)
    opened = count_sessions(own)
    try:
        with pytest.raises(CypherSyntaxError):
            await own.read("RETURN 1 AS")
        assert opened == [1]
        # The failed session is not kept: the next read opens another.
        assert await own.read("RETURN 1 AS one") == [{"one": 1}]
        assert opened == [2]
    finally:
        await own.close()


async def test_kept_read_sessions_hold_no_connection(test_settings):
    own = connect(test_settings)
    opened = count_sessions(own)
    try:
        concurrent = await asyncio.gather(*(own.read("RETURN $n AS n", {"n": n})
                                            for n in range(4)))
        assert [rows for rows in concurrent] == [[{"n": n}] for n in range(4)]
        assert opened == [4]  # one each while they ran at once
        for n in range(10):  # one after the other: sessions are taken again, not opened
            assert await own.read("RETURN $n AS n", {"n": n}) == [{"n": n}]
        assert opened == [4]
        assert pool_usage(own) is not None and pool_usage(own)[0] == 0  # type: ignore[index]
    finally:
        await own.close()


async def test_sessions_of_a_replaced_driver_are_not_taken_again(test_settings):
    own = connect(test_settings)
    try:
        assert await own.read("RETURN 1 AS one") == [{"one": 1}]
        (_, kept), = own._idle_reads
        old, own.driver = own.driver, connect(test_settings).driver
        await old.close()
        assert await own.read("RETURN 2 AS two") == [{"two": 2}]
        assert kept.closed()
        assert [owner for owner, _ in own._idle_reads] == [own.driver]
    finally:
        await own.close()
