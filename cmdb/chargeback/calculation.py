"""A period's calculation: the input read from Neo4j, the engine pricing and allocating in a
worker thread, and its lines written as they come into a new run of the period, which
becomes current in one small transaction at the end (a failed run is discarded)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from fractions import Fraction
from typing import Any

from cmdb.chargeback.engine import Calculation, Engine
from cmdb.chargeback.models import (
    CalculationResult,
    ChargePeriod,
    Driver,
    LineKind,
    PeriodStatus,
    UsageGroup,
)
from cmdb.chargeback.periods import Periods
from cmdb.chargeback.reading import read_input
from cmdb.chargeback.snapshot import CalculationInput
from cmdb.core.clock import utcnow


class Calculating(Periods):
    async def _calculate(self, period: ChargePeriod, timings: dict[str, float] | None,
                         chunk: int, ahead: int) -> CalculationResult:
        """Recalculate an open period's lines from scratch (manual adjustments stay); a
        closed period is left as it was. The engine hands ``chunk`` lines at a time to the
        writer, ``ahead`` chunks at most waiting to be written."""
        clock = _Stages(timings)
        current = await self._ensure_period(period)
        if current.status is PeriodStatus.CLOSED:
            return await self._result(period, current, changed=False)
        clock.lap("prepare")
        cards, meters = await self.repo.pricing(period)
        # Neo4j sums the usage from now on, while the rest is read. The engine starts once
        # the usage is in too: decoding it while the engine runs costs the engine more (the
        # two share Python's lock) than the engine would gain by starting earlier.
        reading = asyncio.ensure_future(self.repo.usage_groups(period, cards, meters))
        try:
            data = await read_input(self.repo, period, self.currency, (cards, meters))
            await asyncio.wait({reading})
            clock.lap("read")
            run = await self.repo.start_run(period)
            if run is None:  # closed meanwhile
                return await self._latest(period)
            try:
                calc, lines, total, unallocated = await self._compute_and_write(
                    data, run, reading, timings, chunk, ahead)
            except BaseException:
                self.repo.discard_run(period, run)
                raise
        finally:
            await _settled(reading)
        clock.lap("write")
        done = await self.repo.switch_run(period, run, lines, total, calc.warnings, utcnow())
        if done is None:  # closed while we were computing
            return await self._latest(period)
        out = await self._result(period, done, changed=True, unallocated_minor=unallocated)
        clock.lap("result")
        return out

    async def _latest(self, period: ChargePeriod) -> CalculationResult:
        latest = await self.repo.period(period)
        assert latest is not None
        return await self._result(period, latest, changed=False)

    async def _pool_weights(self, engine: Engine, data: CalculationInput,
                            period: ChargePeriod) -> None:
        """What the pools shared by desktop sessions, their hours or a role's users read
        beforehand (the engine does not read Neo4j)."""
        now = utcnow()  # an open session counts until now at the latest
        for pool in data.pools:
            if data.period not in pool.amounts:
                continue
            if pool.driver is Driver.SESSIONS:
                ids = sorted(engine.reach(pool))
                data.sessions[pool.code] = await self.repo.sessions_on(ids, period)
            elif pool.driver is Driver.SESSION_HOURS:
                ids = sorted(engine.reach(pool))
                seconds = await self.repo.session_seconds_on(ids, period, now)
                data.pool_weights[pool.code] = {u: Fraction(n, 3600)
                                                for u, n in seconds.items()}
            elif pool.driver is Driver.ROLE_USERS and pool.role is not None:
                data.pool_weights[pool.code] = {
                    u: Fraction(1) for u in await self.repo.role_holders(pool.role, period)}

    async def _compute_and_write(self, data: CalculationInput, run: str,
                                 reading: asyncio.Future[list[UsageGroup]],
                                 timings: dict[str, float] | None, chunk: int, ahead: int
                                 ) -> tuple[Calculation, int, int, int]:
        """Calculate in a worker thread and write the lines as they come: Neo4j stores one
        batch while the next is being priced and allocated."""
        engine = Engine(data)
        await self._pool_weights(engine, data, engine.period)
        # A few chunks ahead at most: when Neo4j writes slower than the engine calculates,
        # the engine waits rather than the lines piling up in memory.
        feed = _Feed(asyncio.get_running_loop(), ahead, reading)
        calculating = asyncio.ensure_future(asyncio.to_thread(feed.work, engine, chunk))
        try:
            lines, total = await self.repo.write_run(run, feed.chunks())
            calc = await calculating
        finally:
            await feed.stop(calculating)
            await _settled(reading)
        if timings is not None:
            timings["engine"] = timings.get("engine", 0.0) + feed.engine_s - feed.usage_s
            timings["read_usage"] = feed.read_at - feed.started
        return calc, lines, total, feed.unallocated


class _Feed:
    """The engine's lines from its worker thread to the writer, through a bounded queue;
    the usage the engine asks for once fees and pools are done; the seconds each took."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ahead: int,
                 reading: asyncio.Future[list[UsageGroup]]) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(ahead)
        self.reading = reading
        self.stopped = False
        self.engine_s = self.usage_s = 0.0
        self.unallocated = 0
        self.started = self.read_at = time.perf_counter()
        if not reading.done():
            reading.add_done_callback(self._usage_read)

    def _usage_read(self, _: object) -> None:
        self.read_at = time.perf_counter()

    def read_usage(self) -> list[UsageGroup]:
        t = time.perf_counter()
        out = asyncio.run_coroutine_threadsafe(_result_of(self.reading), self.loop).result()
        self.usage_s = time.perf_counter() - t
        return out

    def sink(self, rows: list[dict[str, Any]] | None) -> None:
        if self.stopped:
            raise _Abandoned
        asyncio.run_coroutine_threadsafe(self.queue.put(rows), self.loop).result()

    def work(self, engine: Engine, chunk: int) -> Calculation:
        t = time.perf_counter()
        try:
            return engine.run(self.sink, chunk, usage=self.read_usage)
        finally:
            self.engine_s = time.perf_counter() - t
            if not self.stopped:
                self.sink(None)

    async def chunks(self) -> AsyncIterator[list[dict[str, Any]]]:
        while (rows := await self.queue.get()) is not None:
            self.unallocated += sum(r["amountMinor"] for r in rows
                                    if r["kind"] == LineKind.UNALLOCATED.value)
            yield rows

    async def stop(self, calculating: asyncio.Future[Calculation]) -> None:
        self.stopped = True
        while not calculating.done():  # let a sink waiting for room go on, and stop
            while not self.queue.empty():
                self.queue.get_nowait()
            await asyncio.wait({calculating}, timeout=0.05)
        if not calculating.cancelled():
            calculating.exception()  # seen: the writer's own error is the one raised


async def _settled(reading: asyncio.Future[list[UsageGroup]]) -> None:
    """The usage read stopped, its error seen (an error of the engine or writer is the one
    raised)."""
    if not reading.done():
        reading.cancel()
    await asyncio.wait({reading})
    if not reading.cancelled():
        reading.exception()


async def _result_of(task: asyncio.Future[list[UsageGroup]]) -> list[UsageGroup]:
    return await task


class _Abandoned(Exception):
    """The lines' writer failed: the calculation stops."""


class _Stages:
    """Seconds per stage into ``out`` (nothing when ``out`` is None)."""

    def __init__(self, out: dict[str, float] | None) -> None:
        self.out = out
        self.t = time.perf_counter()

    def lap(self, stage: str) -> None:
        if self.out is not None:
            now = time.perf_counter()
            self.out[stage] = self.out.get(stage, 0.0) + now - self.t
            self.t = now
