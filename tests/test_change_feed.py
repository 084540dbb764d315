"""The change feed behind subscriptions: one read of the change log per tick for the whole
process, fanned out to subscribers by what they watch and may see, on a real Neo4j."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from cmdb.api.schema import build_schema
from cmdb.app import create_app
from cmdb.core.clock import utcnow
from cmdb.core.models import OperationalState
from cmdb.db.driver import CountingTx, Database
from cmdb.identity.principal import Principal
from cmdb.rollup.repository import propagate, set_own_states
from cmdb.schema.context import Context
from cmdb.services import Services
from cmdb.settings import Settings
from tests.auth import ADMIN, auth_headers
from tests.catalog_world import APPROVE, build_world, create_item, submit
from tests.conftest import GQL, settled_over_http
from tests.test_ci_api import create_ci
from tests.test_relations_api import make_service, relate

pytestmark = pytest.mark.integration

WATCH = "subscription($ids: [ID!]) { stateChanges(ids: $ids) { itemId state } }"
SET = """mutation($ids: [ID!]!, $s: OperationalState!) {
  setOperationalState(ids: $ids, state: $s, cause: "test") { errors { code message } } }"""
WAIT_S = 20  # a guard against hanging, never a measure


def fast(settings: Settings, **extra: Any) -> Settings:
    return settings.model_copy(update={"subscription_interval_s": 0.05, **extra})


def connect(settings: Settings) -> Database:
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    return Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw)


async def until(check: Callable[[], bool]) -> None:
    async def wait() -> None:
        while not check():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(wait(), WAIT_S)


async def nxt(stream: Any) -> Any:
    return await asyncio.wait_for(stream.__anext__(), WAIT_S)


class Subscriber:
    """A GraphQL stateChanges subscription of one caller, collected as it arrives."""

    def __init__(self, services: Services, settings: Settings, user: str, *roles: str,
                 ids: list[str] | None = None) -> None:
        self.ctx = Context(services, "test", Principal(user, frozenset(roles)))
        self.schema = build_schema(settings)
        self.ids = ids
        self.stream: Any = None

    async def start(self) -> Subscriber:
        self.stream = await self.schema.subscribe(WATCH, variable_values={"ids": self.ids},
                                                  context_value=self.ctx)
        return self

    async def next(self) -> dict[str, Any]:
        result = await nxt(self.stream)
        assert result.errors is None, result.errors
        data: dict[str, Any] = result.data["stateChanges"]
        return data

    async def close(self) -> None:
        await self.stream.aclose()


async def joined(services: Services, subscribers: list[Subscriber]) -> list[asyncio.Future[Any]]:
    """Start each subscriber's first read and wait until all of them are on the feed."""
    before = services.health.feed.subscribers
    firsts: list[asyncio.Future[Any]] = [asyncio.ensure_future(s.next()) for s in subscribers]
    await until(lambda: services.health.feed.subscribers >= before + len(subscribers))
    return firsts


async def test_a_change_reaches_who_watches_it_within_their_scope(gql, clean_db,
                                                                   test_settings):
    host = (await create_ci(gql, name="h1", ciClass="SERVER", operationalState="UP"))["id"]
    payroll = await make_service(gql, "Payroll")
    other = await make_service(gql, "Email")
    await relate(gql, payroll, host, "DEPENDS_ON")
    await gql.ok(SET, ids=[payroll, other], s="UP")
    settings = fast(test_settings)
    services = Services(clean_db, settings)
    everything = await Subscriber(services, settings, "olga", "operator").start()
    # An executive naming a CI watches only the services among what they name.
    executive = await Subscriber(services, settings, "eve", "executive",
                                 ids=[payroll, host, other]).start()
    host_only = await Subscriber(services, settings, "otto", "operator", ids=[host]).start()
    subs = [everything, executive, host_only]
    firsts = await joined(services, subs)

    await gql.ok(SET, ids=[host], s="DOWN")  # the host and, through it, Payroll
    got = [await f for f in firsts]
    both = {(host, "DOWN"), (payroll, "DOWN")}
    assert (got[0]["itemId"], got[0]["state"]) in both
    second = await everything.next()
    assert {(c["itemId"], c["state"]) for c in (got[0], second)} == both
    assert got[1] == {"itemId": payroll, "state": "DOWN"}
    assert got[2] == {"itemId": host, "state": "DOWN"}

    # What comes next shows what was left out: the executive never gets the host's change,
    # the host's watcher never gets Payroll's.
    await gql.ok(SET, ids=[other], s="DOWN")
    assert await executive.next() == {"itemId": other, "state": "DOWN"}
    assert await everything.next() == {"itemId": other, "state": "DOWN"}
    await gql.ok(SET, ids=[host], s="UP")
    assert await host_only.next() == {"itemId": host, "state": "UP"}
    assert await executive.next() == {"itemId": payroll, "state": "UP"}
    for s in subs:
        await s.close()
    await until(lambda: not services.health.feed.running)


async def test_statements_per_tick_do_not_grow_with_subscribers(gql, clean_db, test_settings):
    host = (await create_ci(gql, name="h1", ciClass="SERVER", operationalState="UP"))["id"]
    settings = fast(test_settings)
    per_tick: dict[int, float] = {}
    for n, state in ((1, "DOWN"), (50, "UP")):
        db = connect(settings)  # its own counter: only the feed uses this driver
        services = Services(db, settings)
        try:
            subs = [await Subscriber(services, settings, "olga", "operator").start()
                    for _ in range(n)]
            firsts = await joined(services, subs)
            feed = services.health.feed
            await until(lambda: feed.ticks >= 3)  # noqa: B023 - awaited here
            await gql.ok(SET, ids=[host], s=state)
            assert [(await f)["state"] for f in firsts] == [state] * n
            await until(lambda: feed.ticks >= 6)  # noqa: B023
            for s in subs:
                await s.close()
            await until(lambda: not feed.running)  # noqa: B023 - the last one out stops it
            per_tick[n] = db.round_trips.count / feed.ticks
        finally:
            await db.close()
    assert per_tick == {1: 1.0, 50: 1.0}


async def test_a_change_through_another_replica_reaches_a_subscriber_here(clean_db,
                                                                          test_settings):
    settings = fast(test_settings)
    other = create_app(settings)  # another API process: its own driver, nothing shared
    async with (other.router.lifespan_context(other),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=other),
                                  base_url="http://replica-b",
                                  headers=auth_headers(ADMIN[0], *ADMIN[1])) as b):
        gql_b = GQL(b)
        host = (await create_ci(gql_b, name="h1", ciClass="SERVER",
                                operationalState="UP"))["id"]
        # The host's first state is recorded by replica b's roll-up worker: wait for it.
        await settled_over_http(b)
        services = Services(clean_db, settings)
        here = await Subscriber(services, settings, "olga", "operator", ids=[host]).start()
        [first] = await joined(services, [here])
        await gql_b.ok(SET, ids=[host], s="DOWN")
        assert await first == {"itemId": host, "state": "DOWN"}
        await here.close()


async def test_changes_committed_out_of_stamp_order_arrive_once_each(gql, clean_db,
                                                                     test_settings):
    a, b, c = [(await create_ci(gql, name=n, ciClass="SERVER", operationalState="UP"))["id"]
               for n in ("a", "b", "c")]
    settings = fast(test_settings)
    services = Services(clean_db, settings)
    sub = await Subscriber(services, settings, "olga", "operator").start()
    [first] = await joined(services, [sub])

    # a's change is stamped first but commits last: its transaction waits at the gate
    # until b's change, stamped later, has been committed and delivered.
    gate = asyncio.Event()
    stamped = utcnow()

    async def slow(tx: CountingTx) -> Any:
        found = await set_own_states(tx, [(a, OperationalState.DOWN)], stamped)
        await gate.wait()
        return await propagate(tx, found, "slow", stamped)

    late = asyncio.ensure_future(clean_db.write_tx(slow))
    await gql.ok(SET, ids=[b], s="DOWN")
    assert await first == {"itemId": b, "state": "DOWN"}
    gate.set()
    await asyncio.wait_for(late, WAIT_S)
    assert await sub.next() == {"itemId": a, "state": "DOWN"}
    # Neither comes again: the next one is a later change.
    await gql.ok(SET, ids=[c], s="DOWN")
    assert await sub.next() == {"itemId": c, "state": "DOWN"}
    await sub.close()


async def test_a_subscriber_that_falls_behind_is_closed_and_the_others_go_on(
        gql, clean_db, test_settings):
    hosts = [(await create_ci(gql, name=f"h{i}", ciClass="SERVER",
                              operationalState="UP"))["id"] for i in range(4)]
    settings = fast(test_settings, subscription_queue_size=2)
    services = Services(clean_db, settings)
    slow = await Subscriber(services, settings, "olga", "operator").start()
    keen: list[Any] = []

    async def collect() -> None:
        async for change in services.health.watch(None):
            keen.append(change)

    keeper = asyncio.ensure_future(collect())
    [first] = await joined(services, [slow])
    await until(lambda: services.health.feed.subscribers == 2)
    await gql.ok(SET, ids=[hosts[0]], s="DOWN")
    assert await first == {"itemId": hosts[0], "state": "DOWN"}
    # Three changes while the slow one reads nothing, one more than its queue holds; the
    # keen one takes each as it comes.
    for i, h in enumerate(hosts[1:], start=2):
        await gql.ok(SET, ids=[h], s="DOWN")
        await until(lambda: len(keen) == i)  # noqa: B023 - awaited here
    assert services.health.feed.subscribers == 1
    result = await nxt(slow.stream)
    assert result.errors[0].extensions["code"] == "FELL_BEHIND"
    assert "fell behind" in result.errors[0].message
    # The feed goes on for the others.
    await gql.ok(SET, ids=[hosts[0]], s="UP")
    await until(lambda: len(keen) == 5)
    assert (keen[-1].item_id, keen[-1].state) == (hosts[0], OperationalState.UP)
    keeper.cancel()
    await slow.close()
    # The last subscriber gone, the feed stops reading.
    await until(lambda: not services.health.feed.running)
    assert services.health.feed.subscribers == 0


async def test_order_status_follows_each_step_in_order_and_ends(gql, clean_db,
                                                                test_settings):
    await build_world(gql, clean_db)
    steps = [{"kind": "MANAGER"}, {"kind": "COST_CENTRE_OWNER", "above": "1000.00"}]
    dear = await create_item(gql, "Large database", approval=steps,
                             price={"oneOff": "500.00", "monthly": "80.00"})
    order = (await submit(gql.as_user("ann", "requester"), dear, {"siteName": "db-large"},
                          costCentreCode="CC-1300"))["order"]
    settings = fast(test_settings)
    services = Services(clean_db, settings)
    ctx = Context(services, "test", Principal("ann", frozenset({"requester"})))
    stream: Any = await build_schema(settings).subscribe(
        "subscription($id: ID!) { orderStatus(id: $id) { status currentStep revision } }",
        variable_values={"id": order["id"]}, context_value=ctx)

    async def status() -> dict[str, Any]:
        result = await nxt(stream)
        assert result.errors is None, result.errors
        data: dict[str, Any] = result.data["orderStatus"]
        return data

    seen = [await status()]
    assert seen[0]["status"] == "AWAITING_APPROVAL" and seen[0]["currentStep"] == 0
    await gql.as_user("maryS", "approver").ok(APPROVE, id=order["id"])
    seen.append(await status())
    assert seen[-1]["status"] == "AWAITING_APPROVAL" and seen[-1]["currentStep"] == 1
    await gql.as_user("bob", "approver").ok(APPROVE, id=order["id"], step=1)
    while seen[-1]["status"] != "FULFILLED":
        seen.append(await status())
    # Each move once, in order, as it left the order, even those made in one call.
    assert [(s["status"], s["currentStep"]) for s in seen] == [
        ("AWAITING_APPROVAL", 0), ("AWAITING_APPROVAL", 1), ("APPROVED", None),
        ("FULFILLING", None), ("FULFILLED", None)]
    revisions = [s["revision"] for s in seen]
    assert revisions == list(range(revisions[0], revisions[0] + 5))
    with pytest.raises(StopAsyncIteration):
        await nxt(stream)
    await until(lambda: not services.catalog.feed.running)


async def test_shutdown_stops_the_feeds_and_ends_open_streams(gql, clean_db, test_settings):
    host = (await create_ci(gql, name="h1", ciClass="SERVER", operationalState="UP"))["id"]
    settings = fast(test_settings)
    services = Services(clean_db, settings)
    changes: AsyncIterator[Any] = services.health.watch([host])
    pending: Awaitable[Any] = asyncio.ensure_future(changes.__anext__())
    await until(lambda: services.health.feed.running)
    await services.close()
    assert not services.health.feed.running
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, WAIT_S)


async def test_a_user_environment_is_watched_within_the_callers_scope(gql, clean_db,
                                                                      test_settings):
    from cmdb.demo.loader import load_demo

    await load_demo(clean_db, test_settings, echo=lambda _: None)
    env = (await gql.ok('{ user(userName: "johnW") { environmentHealth { components { '
                        'kind itemId item { ... on Service { kind } } } } } }'))
    parts = env["user"]["environmentHealth"]["components"]
    desk = next(c["itemId"] for c in parts if c["kind"] == "DESKTOP")
    business = next(c["itemId"] for c in parts
                    if c["kind"] == "SERVICE" and c["item"]["kind"] == "BUSINESS")
    outside = (await create_ci(gql, name="not-johns", ciClass="SERVER",
                               operationalState="UP"))["id"]
    settings = fast(test_settings)
    services = Services(clean_db, settings)
    sub = "subscription($u: String, $ids: [ID!]) { stateChanges(userName: $u, ids: $ids) " \
          "{ itemId state } }"

    async def watch(user: str, role: str, ids: list[str]) -> Any:
        ctx = Context(services, "t", Principal(user, frozenset({role})))
        return await build_schema(settings).subscribe(
            sub, variable_values={"u": "johnW", "ids": ids}, context_value=ctx)

    # An approver may look at johnW (identity:read) but sees no CI: only the business
    # services of his environment reach them. johnW watches his whole environment, but an
    # id he names besides only as far as he may see it.
    approver = await watch("ann", "approver", [])
    john = await watch("johnW", "requester", [outside])
    firsts = [asyncio.ensure_future(nxt(s)) for s in (approver, john)]
    await until(lambda: services.health.feed.subscribers == 2)
    await gql.ok(SET, ids=[outside], s="DOWN")
    await gql.ok(SET, ids=[desk], s="DOWN")
    await gql.ok(SET, ids=[business], s="DOWN")
    first_seen = [(await f).data["stateChanges"] for f in firsts]
    assert first_seen[0] == {"itemId": business, "state": "DOWN"}
    # The desktop's change (and what it rolls up to in his environment), never the other.
    assert first_seen[1]["itemId"] in {c["itemId"] for c in parts}
    await approver.aclose()
    await john.aclose()


@pytest.mark.parametrize("name", ["state changes", "order transitions"])
async def test_the_feed_reads_seek_by_time(db, name):
    from cmdb.catalog import queries as cq
    from cmdb.health import queries as hq

    statement = {"state changes": hq.CHANGES_WINDOW,
                 "order transitions": cq.ORDER_CHANGES_WINDOW}[name]
    async with db.driver.session(database=db.database) as session:
        result = await session.run("EXPLAIN " + statement,
                                   {"from": utcnow(), "seen": ["x"], "limit": 500})
        plan = (await result.consume()).plan

    def operators(p: Any) -> list[str]:
        return [p["operatorType"], *(o for c in p.get("children", []) for o in operators(c))]

    found = operators(plan)
    assert not [o for o in found if "AllNodesScan" in o or "NodeByLabelScan" in o], found


class Relay:
    """A TCP relay in front of the test Neo4j that can be cut and mended: a network partition
    between one API process and the database, while others still reach it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def mend(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for w in self.writers:
            w.close()
        self.writers.clear()
        await self.server.wait_closed()


async def test_after_a_partition_the_feed_reads_what_was_committed_meanwhile(
        gql, clean_db, test_settings):
    from urllib.parse import urlparse

    host = (await create_ci(gql, name="h1", ciClass="SERVER", operationalState="UP"))["id"]
    relay = Relay(urlparse(test_settings.neo4j_uri or "").port or 7687)
    await relay.mend()
    # The window is short, so the partition outlasts it.
    settings = fast(test_settings, subscription_overlap_s=0.5,
                    neo4j_uri=f"bolt://127.0.0.1:{relay.port}")
    pw = settings.neo4j_password.get_secret_value() if settings.neo4j_password else ""
    cut_off = Database.connect(settings.neo4j_uri or "", settings.neo4j_user, pw,
                               retry_s=0.3)
    services = Services(cut_off, settings)
    sub = await Subscriber(services, settings, "olga", "operator", ids=[host]).start()
    try:
        [first] = await joined(services, [sub])
        feed = services.health.feed
        await until(lambda: feed.ticks >= 2)
        await relay.cut()
        ticks = feed.ticks
        await until(lambda: feed.ticks >= ticks + 2)  # reads are failing now
        await gql.ok(SET, ids=[host], s="DOWN")  # through a process that still reaches Neo4j
        await asyncio.sleep(1.0)  # the change is now older than the window
        await relay.mend()
        assert await first == {"itemId": host, "state": "DOWN"}
    finally:
        await sub.close()
        await cut_off.close()
        await relay.cut()
