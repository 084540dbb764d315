"""One change feed per process: a single reader of a stored change log, fanned out in memory.

A feed reads the log once per tick, whatever the number of subscribers, and hands each new
change to the subscribers whose filter accepts it. It runs only while someone subscribes: the
first subscriber starts it, the last one leaving stops it, and ``close`` stops it at shutdown.

The cursor. Changes are stamped by the writer's clock before its transaction commits, so they
commit out of stamp order, and replicas' clocks differ a little: a read of "stamped after the
last one seen" can miss a change that commits late. Each tick therefore reads every change
stamped within ``overlap_s`` of now (the window), leaving out those already seen by their
identity, so a change that commits late is read in a later tick, and each change is handed on
once. A change that commits more than ``overlap_s`` after its stamp (or comes from a replica
whose clock is more than that behind) falls outside the window and is not seen.

Which changes a subscriber gets: those stamped after ``since`` that the feed holds from its
window when the subscriber joins (so a change made while a subscription was being set up is
not lost), then every change the feed reads afterwards. The first read of a feed only learns
what the window holds: of it, subscribers get what is stamped after their ``since``.

A burst of many changes (a roll-up of the whole estate) is read in pages; until it leaves the
window, each read sends the ids of what it has seen, so such a burst costs more per read for
``overlap_s``.

Slow subscribers: each has a bounded queue. One whose queue is full when a change arrives is
dropped by the feed, its queue emptied, and its stream ends with :class:`FellBehind`; the
feed and the other subscribers go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError

log = logging.getLogger("cmdb.feed")

C = TypeVar("C")

# A read of the log: (changes stamped at or after ``since`` whose keys are not in ``seen``,
# at most ``limit``, oldest first).
Read = Callable[[datetime, list[str], int], Awaitable[list[C]]]


class FellBehind(DomainError):
    """A subscriber did not take its changes as fast as they came; its stream was closed."""

    def __init__(self, limit: int) -> None:
        super().__init__(self.about_request(
            "FELL_BEHIND", f"this subscription fell behind (more than {limit} changes waited to be "
            "sent) and was closed; subscribe again and read the current state"))


class _End:
    """Queue marker: the stream ends (``fell_behind``: with an error)."""

    def __init__(self, fell_behind: bool) -> None:
        self.fell_behind = fell_behind


_CLOSED = _End(False)
_BEHIND = _End(True)


class FeedSubscription(Generic[C]):
    """One subscriber's view of a feed: iterate it for the changes it accepts; ``close`` it
    (or leave the ``async with``) when done."""

    def __init__(self, feed: Feed[C], accept: Callable[[C], bool], since: datetime,
                 limit: int) -> None:
        self._feed = feed
        self.accept = accept
        self.since = since
        self.limit = limit
        self._queue: asyncio.Queue[C | _End] = asyncio.Queue()
        self.closed = False

    def offer(self, change: C) -> bool:
        """Queue a change; False (and the subscriber dropped) when its queue is full."""
        if self._queue.qsize() >= self.limit:
            self._end(_BEHIND)
            return False
        self._queue.put_nowait(change)
        return True

    def _end(self, marker: _End) -> None:
        if self.closed:
            return
        self.closed = True
        self._feed.drop(self)
        while not self._queue.empty():  # what waited is let go now, not when read
            self._queue.get_nowait()
        self._queue.put_nowait(marker)

    def close(self) -> None:
        self._end(_CLOSED)

    def __aiter__(self) -> FeedSubscription[C]:
        return self

    async def __anext__(self) -> C:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # stays ended
            if item.fell_behind:
                raise FellBehind(self.limit)
            raise StopAsyncIteration
        return item

    async def __aenter__(self) -> FeedSubscription[C]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Feed(Generic[C]):
    """A shared reader of one change log. ``read`` is the repository's window read; ``key``
    a change's identity and ``stamp`` its time."""

    def __init__(self, name: str, read: Read[C], key: Callable[[C], str],
                 stamp: Callable[[C], datetime], *, interval_s: float, overlap_s: float,
                 queue_size: int, batch: int = 500) -> None:
        self.name = name
        self._read = read
        self._key = key
        self._stamp = stamp
        self.interval_s = interval_s
        self.overlap_s = overlap_s
        self.queue_size = queue_size
        self.batch = batch
        self._subscribers: dict[FeedSubscription[C], None] = {}
        self._task: asyncio.Task[None] | None = None
        self._recent: dict[str, C] = {}  # the window's changes read so far, by key
        self._primed = False
        self.reads = 0  # statements sent to the log, for tests and benchmarks
        self.ticks = 0

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, accept: Callable[[C], bool], since: datetime | None = None
                  ) -> FeedSubscription[C]:
        sub = FeedSubscription(self, accept, since or utcnow(), self.queue_size)
        self._subscribers[sub] = None
        if self._primed:
            held = sorted((c for c in self._recent.values()
                           if self._stamp(c) > sub.since and accept(c)), key=self._stamp)
            for change in held:
                if not sub.offer(change):
                    break
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"feed:{self.name}")
        return sub

    def drop(self, sub: FeedSubscription[C]) -> None:
        self._subscribers.pop(sub, None)

    async def close(self) -> None:
        """Stop reading and end every subscriber's stream (at shutdown)."""
        for sub in list(self._subscribers):
            sub.close()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        self._recent.clear()
        self._primed = False
        failing_since: datetime | None = None  # the window's start when reads began to fail
        try:
            while self._subscribers:
                lower = utcnow() - timedelta(seconds=self.overlap_s)
                try:
                    # After failed reads, from where the window stood when they began: what
                    # was committed meanwhile is not skipped.
                    await self._tick(lower if failing_since is None
                                     else min(lower, failing_since))
                    if failing_since is not None:
                        log.info("change feed %s: reading again", self.name)
                    failing_since = None
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # Neo4j away: the subscribers wait, the feed retries
                    if failing_since is None:
                        log.warning("change feed %s: read failed (%s); retrying", self.name,
                                    e)
                        failing_since = lower
                if not self._subscribers:
                    break
                await asyncio.sleep(self.interval_s)
        finally:
            self._recent.clear()
            self._primed = False

    async def _tick(self, lower: datetime) -> None:
        self.ticks += 1
        self._recent = {k: c for k, c in self._recent.items() if self._stamp(c) >= lower}
        while True:
            self.reads += 1
            rows = await self._read(lower, list(self._recent), self.batch)
            fresh = [r for r in rows if self._key(r) not in self._recent]
            for r in fresh:
                self._recent[self._key(r)] = r
            # By stamp; changes of one transaction share it and keep the order they were
            # read in (the order they were recorded: a cause before what it rolls up to).
            fresh.sort(key=self._stamp)
            self._deliver(fresh)
            if len(rows) < self.batch:
                break
        self._primed = True

    def _deliver(self, changes: list[C]) -> None:
        if not changes:
            return
        for sub in list(self._subscribers):
            for change in changes:
                if not self._primed and self._stamp(change) <= sub.since:
                    continue  # history the first read found, from before the subscriber
                if sub.accept(change) and not sub.offer(change):
                    log.warning("change feed %s: a subscriber fell behind and was closed",
                                self.name)
                    break
