"""The roll-up worker: one per API process, it rolls up what writers marked pending.

Writers commit an item's own state with a pending mark (a ``RollupPending`` node) and do not
wait for the roll-up. Every ``rollup_delay_ms`` the worker looks for marks and, when there
are any, takes them all in one transaction: the lock node first (replicas' workers take turns
and never record a change twice), then one roll-up over the union of the marked items'
upward closures, the history, and the marks deleted. Marks live in Neo4j, so a mark whose
process died is taken by the next worker of any replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cmdb.core.clock import utcnow
from cmdb.db.driver import COUNTED, TRACED, Database
from cmdb.rollup.repository import DRAIN_LIMIT, Drained, drain, pending_count

log = logging.getLogger("cmdb.rollup")


class RollupWorker:
    def __init__(self, db: Database, delay_s: float = 0.05) -> None:
        self.db = db
        self.delay_s = delay_s
        self._task: asyncio.Task[None] | None = None
        # Drains of this process one at a time (replicas wait on the lock node instead).
        self._turn = asyncio.Lock()
        self.runs = 0  # roll-up transactions that found marks (tests and benchmarks read it)

    def start(self) -> None:
        """Run in the background until ``close`` (the app's lifespan calls both)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="rollup-worker")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        COUNTED.set(False)  # this task's statements are not a request's round trips
        while True:
            await asyncio.sleep(self.delay_s)
            try:
                if await self._poll():
                    await self.drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # the marks stay; the next round (or replica) retries
                log.exception("roll-up failed; the pending marks stay for the next round")

    async def _poll(self) -> int:
        token = TRACED.set(False)  # a poll is no trace of its own; a drain is
        try:
            return await pending_count(self.db)
        finally:
            TRACED.reset(token)

    async def pending(self) -> int:
        """State changes committed but not rolled up yet (0: health is settled)."""
        return await pending_count(self.db)

    async def drain(self) -> Drained:
        """Roll up everything pending now, in transactions of at most DRAIN_LIMIT marks."""
        total = Drained()
        async with self._turn:
            while True:
                done = await self.db.write_tx(lambda tx: drain(tx, utcnow()))
                if done.marks:
                    self.runs += 1
                total.marks += done.marks
                total.rollups += done.rollups
                total.changes += done.changes
                if done.marks < DRAIN_LIMIT:
                    return total

    async def settle(self) -> Drained:
        """Wait until nothing is pending, rolling up at once rather than after the delay:
        what tests (and a caller that must read settled health in process) use."""
        done = Drained()
        while await pending_count(self.db):
            more = await self.drain()
            done.marks += more.marks
            done.rollups += more.rollups
            done.changes += more.changes
        return done
