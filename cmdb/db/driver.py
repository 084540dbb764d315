"""One async Neo4j driver per process, wrapped so every round trip is counted."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, LiteralString, ParamSpec, TypeVar

from neo4j import (
    READ_ACCESS,
    AsyncDriver,
    AsyncGraphDatabase,
    AsyncManagedTransaction,
    AsyncSession,
    Query,
    unit_of_work,
)
from neo4j.exceptions import ClientError, DriverError, Neo4jError
from opentelemetry.trace import Tracer

from cmdb.core.models import DomainError
from cmdb.db.queries import PING
from cmdb.observability.instruments import NEO4J_READ, NEO4J_TX, NEO4J_WRITE
from cmdb.observability.spans import statement_span, transaction_span

log = logging.getLogger("cmdb.db")

T = TypeVar("T")
P = ParamSpec("P")
Params = dict[str, Any]
Row = dict[str, Any]


@dataclass
class RoundTrips:
    """Monotonic count of statements sent to Neo4j; tests and metrics read it."""

    count: int = 0


# False in background tasks (the roll-up worker): ``RoundTrips`` counts what requests send,
# so a request's statements can be counted while the worker runs beside it.
COUNTED: ContextVar[bool] = ContextVar("cmdb_db_counted", default=True)
# False for statements not worth a trace of their own (the roll-up worker's polls, every
# few tens of milliseconds).
TRACED: ContextVar[bool] = ContextVar("cmdb_db_traced", default=True)


class CountingTx:
    """A managed transaction that counts each statement it runs."""

    def __init__(self, tx: AsyncManagedTransaction, counter: RoundTrips,
                 tracer: Tracer | None = None, database: str = "") -> None:
        self._tx = tx
        self._counter = counter
        self._tracer = tracer
        self._database = database

    async def rows(self, query: LiteralString, params: Params | None = None) -> list[Row]:
        if COUNTED.get():
            self._counter.count += 1
        started = time.perf_counter()
        try:
            if self._tracer is None:
                return await self._rows(query, params)
            with statement_span(self._tracer, query, "tx", self._database):
                return await self._rows(query, params)
        finally:
            NEO4J_TX.observe(time.perf_counter() - started)

    async def _rows(self, query: LiteralString, params: Params | None) -> list[Row]:
        result = await self._tx.run(query, params or {})
        return [dict(zip(r.keys(), r.values(), strict=True)) async for r in result]

    async def one(self, query: LiteralString, params: Params | None = None) -> Row | None:
        found = await self.rows(query, params)
        return found[0] if found else None

    async def one_as(self, query: LiteralString, params: Params, key: str,
                     build: Callable[[Any], T]) -> T | None:
        """``build`` applied to the first row's ``key``; None when there is no row."""
        row = await self.one(query, params)
        return build(row[key]) if row else None

    async def expect_one_as(self, query: LiteralString, params: Params, key: str,
                            build: Callable[[Any], T]) -> T:
        """``one_as`` for a statement that always returns a row."""
        row = await self.one(query, params)
        assert row is not None
        return build(row[key])


TIMEOUT_CODES = frozenset({
    "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration",
    "Neo.ClientError.Transaction.TransactionTimedOut",
})


class QueryTimeout(DomainError):
    """Neo4j stopped a transaction that ran past its timeout (``neo4j_tx_timeout_s``)."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__(self.about_request(
            "TIMEOUT", f"the query took longer than {timeout_s:g} s and was stopped; ask for "
            "less (smaller pages, fewer nested lists, narrower filters)"))


def _timeouts(
    method: Callable[Concatenate[Database, P], Awaitable[T]],
) -> Callable[Concatenate[Database, P], Awaitable[T]]:
    """Neo4j's transaction timeout as a :class:`QueryTimeout`: a clear answer, not a 500."""

    async def run(self: Database, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(self, *args, **kwargs)
        except ClientError as e:
            if e.code in TIMEOUT_CODES:
                raise QueryTimeout(self.tx_timeout_s) from e
            raise

    return run


# The driver's retry schedule for managed transactions: 1 s, then doubling, +-20 % jitter.
RETRY_FIRST_DELAY_S = 1.0
RETRY_MULTIPLIER = 2.0
RETRY_JITTER = 0.2
# The driver's default bound on retries (``max_transaction_retry_time``).
DEFAULT_RETRY_S = 30.0


class Database:
    def __init__(self, driver: AsyncDriver, database: str, tx_timeout_s: float,
                 pool_size: int = 50, retry_s: float | None = None) -> None:
        self.driver = driver
        self.database = database
        self.tx_timeout_s = tx_timeout_s
        # How long reads retry transient failures (the managed transactions' bound too).
        self.retry_s = DEFAULT_RETRY_S if retry_s is None else retry_s
        self.round_trips = RoundTrips()
        # Read by /metrics: the pool's size, and statements or transactions running now.
        self.pool_size = pool_size
        self.in_flight = 0
        # Set while tracing is on (``cmdb.observability.tracing``); None costs nothing.
        self.tracer: Tracer | None = None
        # Read sessions not in use. A session serves one task at a time; between statements
        # it holds no connection (an auto-commit result gives it back once consumed), and
        # taking an idle one costs less than opening a new one.
        self._idle_reads: list[tuple[AsyncDriver, AsyncSession]] = []

    @classmethod
    def connect(
        cls,
        uri: str,
        user: str,
        password: str,
        database: str = "neo4j",
        tx_timeout_s: float = 30.0,
        pool_size: int = 50,
        retry_s: float | None = None,
    ) -> Database:
        """``retry_s`` bounds how long a call waits for an unreachable server: the managed
        transactions' retry time, the TCP connect and the wait for a pooled connection (the
        driver's defaults, 30 to 60 s, when None)."""
        bounds: dict[str, Any] = {} if retry_s is None else {
            "max_transaction_retry_time": retry_s,
            "connection_timeout": retry_s,
            "connection_acquisition_timeout": retry_s,
        }
        # Server notifications (e.g. "property key does not exist" on an empty graph) are
        # not errors; they would only flood the logs.
        driver = AsyncGraphDatabase.driver(
            uri,
            auth=(user, password),
            max_connection_pool_size=pool_size,
            notifications_min_severity="OFF",
            **bounds,
        )
        return cls(driver, database, tx_timeout_s, pool_size, retry_s)

    async def close(self) -> None:
        idle, self._idle_reads = self._idle_reads, []
        for _, session in idle:
            await session.close()
        await self.driver.close()

    async def read(self, query: LiteralString, params: Params | None = None) -> list[Row]:
        return await self._execute(query, params, "r")

    async def write(self, query: LiteralString, params: Params | None = None) -> list[Row]:
        return await self._execute(query, params, "w")

    @_timeouts
    async def _execute(
        self, query: LiteralString, params: Params | None, mode: Literal["r", "w"]
    ) -> list[Row]:
        counted = COUNTED.get()
        if counted:
            self.round_trips.count += 1
        self.in_flight += counted
        started = time.perf_counter()
        try:
            if self.tracer is None or not TRACED.get():
                records = await self._query(query, params, mode)
            else:
                with statement_span(self.tracer, query, mode, self.database):
                    records = await self._query(query, params, mode)
        finally:
            self.in_flight -= counted
            (NEO4J_READ if mode == "r" else NEO4J_WRITE).observe(time.perf_counter() - started)
        # Queries return maps and lists, never graph objects, so a shallow dict is enough;
        # Record.data() walks every nested value and was the largest client-side cost.
        return [dict(zip(r.keys(), r.values(), strict=True)) for r in records]

    async def _query(self, query: LiteralString, params: Params | None,
                     mode: Literal["r", "w"]) -> list[Any]:
        if mode == "r":
            return await self._auto_commit_read(query, params)
        records, _, _ = await self.driver.execute_query(
            Query(query, timeout=self.tx_timeout_s),
            params or {},
            database_=self.database,
            routing_=mode,
        )
        return records

    async def _auto_commit_read(self, query: LiteralString, params: Params | None) -> list[Any]:
        """One read statement in an auto-commit transaction: RUN and PULL in one round trip,
        where a managed transaction (``execute_query``) adds BEGIN and COMMIT and a second
        round trip. A read has no effect to lose or repeat, so failures the driver deems
        retryable (server unavailable, leader switch, transient errors) are retried here as
        a managed transaction would be, on the same schedule and within ``retry_s``.
        The sessions share ``execute_query``'s bookmark manager: reads stay causally after
        the writes made through it."""
        statement = Query(query, timeout=self.tx_timeout_s)
        parameters = params or {}
        delay = RETRY_FIRST_DELAY_S
        first_failure: float | None = None
        while True:
            try:
                return await self._read_once(statement, parameters)
            except (DriverError, Neo4jError) as error:
                if not error.is_retryable():
                    raise
                now = time.monotonic()
                if first_failure is None:
                    first_failure = now
                elif now - first_failure > self.retry_s:
                    raise
                pause = delay * (1 + random.uniform(-RETRY_JITTER, RETRY_JITTER))
                log.warning("read failed and will be retried in %.2fs (%s)", pause, error)
                await asyncio.sleep(pause)
                delay *= RETRY_MULTIPLIER

    async def _read_session(self) -> AsyncSession:
        driver = self.driver
        while self._idle_reads:
            owner, session = self._idle_reads.pop()
            if owner is driver:
                return session
            await session.close()  # of a driver since replaced (and its bookmarks)
        return driver.session(database=self.database, default_access_mode=READ_ACCESS,
                              bookmark_manager=driver.execute_query_bookmark_manager)

    async def _read_once(self, statement: Query, parameters: Params) -> list[Any]:
        driver = self.driver
        session = await self._read_session()
        done = False
        try:
            result = await session.run(statement, parameters)
            records = [record async for record in result]
            done = True
            return records
        finally:
            # Kept only after a clean run; after an error or a cancellation it is closed.
            if done and len(self._idle_reads) < self.pool_size:
                self._idle_reads.append((driver, session))
            else:
                await session.close()

    async def read_tx(self, work: Callable[[CountingTx], Awaitable[T]]) -> T:
        return await self._managed(work, "read")

    async def write_tx(self, work: Callable[[CountingTx], Awaitable[T]]) -> T:
        """Run ``work`` in one managed write transaction (retried on transient errors)."""
        return await self._managed(work, "write")

    @_timeouts
    async def _managed(self, work: Callable[[CountingTx], Awaitable[T]],
                       mode: Literal["read", "write"]) -> T:
        counted = COUNTED.get()
        self.in_flight += counted
        try:
            span = (nullcontext() if self.tracer is None
                    else transaction_span(self.tracer, mode, self.database))
            with span:
                # The bookmarks of execute_query and the auto-commit reads: with a cluster,
                # a read after a write_tx (in this process) waits until its reader has it.
                driver = self.driver
                async with driver.session(
                        database=self.database,
                        bookmark_manager=driver.execute_query_bookmark_manager) as session:
                    run = session.execute_read if mode == "read" else session.execute_write
                    return await run(self._wrap(work))
        finally:
            self.in_flight -= counted

    @_timeouts
    async def rolled_back(self, work: Callable[[CountingTx], Awaitable[T]]) -> T:
        """Run ``work`` in a write transaction that is always rolled back: what-if questions
        see their own changes and leave the graph as it was."""
        async with self.driver.session(database=self.database) as session:
            tx = await session.begin_transaction(timeout=self.tx_timeout_s)
            try:
                return await work(CountingTx(
                    tx, self.round_trips, self.tracer, self.database))  # type: ignore[arg-type]
            finally:
                await tx.rollback()

    def _wrap(
        self, work: Callable[[CountingTx], Awaitable[T]]
    ) -> Callable[[AsyncManagedTransaction], Awaitable[T]]:
        @unit_of_work(timeout=self.tx_timeout_s)
        async def run(tx: AsyncManagedTransaction) -> T:
            return await work(CountingTx(tx, self.round_trips, self.tracer, self.database))

        return run

    async def ping(self) -> bool:
        """One attempt, no retries: a health check answers at once while Neo4j is gone."""
        self.round_trips.count += 1
        try:
            async with self.driver.session(database=self.database) as session:
                await (await session.run(PING)).consume()
        except Exception:
            return False
        return True
