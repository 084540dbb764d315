"""GraphQL subscriptions over a real websocket (graphql-transport-ws, the token in
connection_init) against ``cmdb run``: a state change and an order's moves arrive; a
connection without a valid token, or speaking the legacy graphql-ws protocol, is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets

from tests.auth import auth_headers
from tests.e2e.remote import (
    SET_STATE,
    STATE_CHANGES,
    Closed,
    Http,
    create_ci,
    state_change_arrives,
    subscriptions,
    unique,
)
from tests.served import Served

ORDER_STATUS = """subscription($id: ID!) { orderStatus(id: $id) {
  id status revision requester currentStep } }"""
SUBMIT = """mutation($i: SubmitOrderInput!) { submitOrder(input: $i) {
  created order { id status } errors { field message code } } }"""
APPROVE = """mutation($id: ID!) { approveOrder(id: $id, reason: "fine") {
  order { id status } errors { field message code } } }"""
# An order's path from waiting for approval to fulfilled; a watcher may skip steps between.
PATH = ["AWAITING_APPROVAL", "APPROVED", "FULFILLING", "FULFILLED"]


def authorization(user: str, *roles: str) -> str:
    return auth_headers(user, *roles)["Authorization"]


async def test_state_change_arrives_after_set_operational_state(demo_api: Served,
                                                               demo_http: Http) -> None:
    ci_id = create_ci(demo_http, unique("e2e-watched"))

    def change(state: str) -> None:
        data = demo_http.ok(SET_STATE, ids=[ci_id], s=state)
        assert data["setOperationalState"]["errors"] == [], data

    async with subscriptions(demo_api.ws_url) as client:
        op = await client.subscribe(STATE_CHANGES, ids=[ci_id])
        got = await state_change_arrives(client, op, ci_id, change)
    assert got["cause"] == "e2e"


async def test_order_status_follows_an_order_until_fulfilled(demo_api: Served,
                                                             demo_http: Http) -> None:
    [item] = demo_http.ok('{ catalogueItems(search: "SharePoint collaboration site") '
                          "{ id name } }")["catalogueItems"]
    # The demo story: johnW (manager maryS) orders a site; it waits for maryS.
    john = demo_http.as_caller(authorization("johnW", "requester"))
    site = unique("e2e")
    submitted = john.ok(SUBMIT, i={"itemId": item["id"], "idempotencyKey": unique("key"),
                                   "form": {"siteName": site, "title": "E2E team site"}})
    assert submitted["submitOrder"]["errors"] == [], submitted
    order_id = submitted["submitOrder"]["order"]["id"]
    assert submitted["submitOrder"]["order"]["status"] == "AWAITING_APPROVAL"

    seen: list[dict[str, Any]] = []
    async with subscriptions(demo_api.ws_url, authorization("johnW", "requester")) as client:
        op = await client.subscribe(ORDER_STATUS, id=order_id)
        # The order as it is now comes first: the subscription is live from here on.
        seen.append((await client.next(op))["orderStatus"])
        assert seen[0]["status"] == "AWAITING_APPROVAL" and seen[0]["requester"] == "johnW"

        mary = demo_http.as_caller(authorization("maryS", "approver"))
        approved = mary.ok(APPROVE, id=order_id)
        assert approved["approveOrder"]["errors"] == [], approved

        while True:
            message = await client.message(op)
            if message["type"] == "complete":
                break
            assert message["type"] == "next", message
            seen.append(message["payload"]["data"]["orderStatus"])

    statuses = [o["status"] for o in seen]
    assert statuses[-1] == "FULFILLED", statuses
    assert [PATH.index(s) for s in statuses] == sorted({PATH.index(s) for s in statuses}), (
        statuses)
    revisions = [o["revision"] for o in seen]
    assert revisions == sorted(set(revisions)), revisions
    assert {o["id"] for o in seen} == {order_id}


@pytest.mark.parametrize(("payload", "reason"), [
    ({}, "Forbidden: a bearer token is required"),
    ({"Authorization": "Bearer not.a.token"}, "Forbidden: the token"),
])
async def test_connection_without_a_valid_token_is_closed_with_the_reason(
        demo_api: Served, payload: dict[str, str], reason: str) -> None:
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(demo_api.ws_url, subprotocols=protocols) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 4403
    assert rcvd.reason.startswith(reason), rcvd.reason


async def test_subscribing_before_connection_init_is_refused(demo_api: Served) -> None:
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(demo_api.ws_url, subprotocols=protocols) as ws:
        await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                  "payload": {"query": STATE_CHANGES}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 4401, rcvd


async def test_legacy_graphql_ws_protocol_is_refused(demo_api: Served) -> None:
    agreed: list[str | None] = []
    with pytest.raises(websockets.ConnectionClosed) as closed:
        protocols = [websockets.Subprotocol("graphql-ws")]
        async with websockets.connect(demo_api.ws_url, subprotocols=protocols) as ws:
            agreed.append(ws.subprotocol)
            await ws.send(json.dumps({"type": "connection_init", "payload": {
                "Authorization": authorization("x", "admin")}}))
            await ws.recv()
    assert agreed in ([], [None])  # the server never agreed to speak it
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 4406, rcvd
    assert rcvd.reason == "Subprotocol not acceptable"


async def test_refused_connection_never_sees_data(demo_api: Served) -> None:
    """A client that ignores the refusal and subscribes anyway gets nothing but the close."""
    with pytest.raises(Closed) as closed:
        async with subscriptions(demo_api.ws_url, authorization=None):
            pass
    assert closed.value.code == 4403
