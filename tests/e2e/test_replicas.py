"""Two API processes on one Neo4j, as replicas behind a load balancer would be: what one
writes the other reads, a subscriber on one hears of a change made through the other, and an
order's idempotency key holds across them. And a process that reaches Neo4j through a
``neo4j://`` routing URI (as for a cluster or Aura) works against the single local server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from cmdb.localdb.manager import LocalNeo4j
from tests.auth import auth_headers
from tests.e2e.remote import (
    SET_STATE,
    STATE_CHANGES,
    Http,
    create_ci,
    state_change_arrives,
    subscriptions,
    unique,
)
from tests.served import Served, served

SUBMIT = """mutation($i: SubmitOrderInput!) { submitOrder(input: $i) {
  created order { id status requester itemVersion revision form }
  errors { field message code } } }"""


@pytest.fixture(scope="module")
def replicas(neo4j_instance: LocalNeo4j, demo_api: Served) -> Iterator[tuple[Served, Served]]:
    """Two ``cmdb serve`` processes beside the demo process (whose data they share)."""
    with served(neo4j_instance) as a, served(neo4j_instance) as b:
        yield a, b


@pytest.fixture(scope="module")
def routed(neo4j_instance: LocalNeo4j, demo_api: Served) -> Iterator[Served]:
    """``cmdb serve`` through a neo4j:// (routing) URI to the local single server."""
    uri = neo4j_instance.uri.replace("bolt://", "neo4j://")
    assert uri.startswith("neo4j://127.0.0.1:")
    with served(neo4j_instance, env={"CMDB_NEO4J_URI": uri}) as server:
        yield server


def test_a_write_through_one_is_read_through_the_other(replicas: tuple[Served, Served]) -> None:
    a, b = (Http(s.url) for s in replicas)
    name = unique("e2e-replicated")
    ci_id = create_ci(a, name)
    read = b.ok("query($id: ID!) { configurationItem(id: $id) { name } }", id=ci_id)
    assert read["configurationItem"] == {"name": name}
    b.ok(SET_STATE, ids=[ci_id], s="DEGRADED")
    state = a.ok("query($id: ID!) { configurationItem(id: $id) { operationalState } }",
                 id=ci_id)
    assert state["configurationItem"]["operationalState"] == "DEGRADED"


async def test_a_subscriber_on_one_hears_a_change_made_through_the_other(
        replicas: tuple[Served, Served]) -> None:
    a, b = replicas
    through_b = Http(b.url)
    ci_id = create_ci(through_b, unique("e2e-cross"))
    async with subscriptions(a.ws_url) as client:
        op = await client.subscribe(STATE_CHANGES, ids=[ci_id])
        got = await state_change_arrives(
            client, op, ci_id, lambda state: through_b.ok(SET_STATE, ids=[ci_id], s=state))
    assert got["itemId"] == ci_id


def _site_item(http: Http) -> str:
    [item] = http.ok('{ catalogueItems(search: "SharePoint collaboration site") { id } }'
                     )["catalogueItems"]
    item_id: str = item["id"]
    return item_id


def test_the_same_idempotency_key_on_both_creates_one_order(
        replicas: tuple[Served, Served]) -> None:
    john = auth_headers("johnW", "requester")["Authorization"]
    a, b = (Http(s.url, john) for s in replicas)
    item_id = _site_item(a)
    for _ in range(4):  # a few races: either may win, never both
        order_input = {"itemId": item_id, "idempotencyKey": unique("idem"),
                       "form": {"siteName": unique("e2e"), "title": "Replicated site"}}
        start = threading.Barrier(2)

        def submit(http: Http, i: dict[str, Any] = order_input,
                   gate: threading.Barrier = start) -> dict[str, Any]:
            gate.wait()
            payload: dict[str, Any] = http.ok(SUBMIT, i=i)["submitOrder"]
            return payload

        with ThreadPoolExecutor(2) as pool:
            first, second = pool.map(submit, (a, b))
        assert first["errors"] == [] and second["errors"] == [], (first, second)
        assert sorted([first["created"], second["created"]]) == [False, True]
        assert first["order"] == second["order"]  # the same order, the same answer
        # Sent again later to either: replayed, not made again.
        for http in (a, b):
            again = http.ok(SUBMIT, i=order_input)["submitOrder"]
            assert again["created"] is False and again["order"] == first["order"]
        mine = a.ok("{ myOrders(first: 500) { id } }")["myOrders"]
        assert [o["id"] for o in mine].count(first["order"]["id"]) == 1

    # The key used again for a different order is refused by the other process too.
    key = unique("idem")
    made = a.ok(SUBMIT, i={"itemId": item_id, "idempotencyKey": key,
                           "form": {"siteName": unique("e2e"), "title": "One"}})["submitOrder"]
    assert made["created"] is True
    clash = b.ok(SUBMIT, i={"itemId": item_id, "idempotencyKey": key,
                            "form": {"siteName": unique("e2e"), "title": "Two"}})["submitOrder"]
    assert clash["order"] is None
    assert [(e["field"], e["code"]) for e in clash["errors"]] == [
        ("input.idempotencyKey", "CONFLICT")]


async def test_a_routing_uri_serves_reads_writes_and_subscriptions(
        routed: Served, replicas: tuple[Served, Served]) -> None:
    assert routed.env["CMDB_NEO4J_URI"].startswith("neo4j://")
    through_routed = Http(routed.url)
    other = Http(replicas[0].url)
    name = unique("e2e-routed")
    ci_id = create_ci(through_routed, name)  # a write: routed to the (only) writer
    assert other.ok("query($id: ID!) { configurationItem(id: $id) { name } }",
                    id=ci_id)["configurationItem"] == {"name": name}
    assert through_routed.ok("query($id: ID!) { configurationItem(id: $id) { name } }",
                             id=ci_id)["configurationItem"] == {"name": name}
    async with subscriptions(routed.ws_url) as client:
        op = await client.subscribe(STATE_CHANGES, ids=[ci_id])
        await state_change_arrives(client, op, ci_id,
                                   lambda state: other.ok(SET_STATE, ids=[ci_id], s=state))
