"""Clients of a served process over real sockets: GraphQL over HTTP, and graphql-transport-ws
over a websocket (the protocol GraphiQL and Apollo clients speak)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import httpx
import pytest
import websockets
from neo4j import GraphDatabase

from cmdb.localdb.manager import LocalNeo4j
from tests.auth import ADMIN, auth_headers

PROTOCOL = websockets.Subprotocol("graphql-transport-ws")
ADMIN_AUTH = auth_headers(ADMIN[0], *ADMIN[1])["Authorization"]


def unavailable(reason: str) -> NoReturn:
    """A tool the test needs is missing or does not start: a failure under CI (``CI=true``),
    where ``scripts/setup`` provides it, and a skip elsewhere; the reason either way."""
    if os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}:
        pytest.fail(f"cannot run under CI: {reason}")
    pytest.skip(reason)


def wipe_graph(instance: LocalNeo4j) -> None:
    """Empty the test graph (the schema stays), before a module starts its processes."""
    with GraphDatabase.driver(instance.uri, auth=(instance.user, instance.password())) as d:
        d.execute_query("MATCH (n) WHERE NOT n:SchemaMigration DETACH DELETE n")


class Http:
    """GraphQL and REST calls to one served process, as one caller (``authorization``)."""

    def __init__(self, base_url: str, authorization: str | None = ADMIN_AUTH) -> None:
        self.base_url = base_url
        self.authorization = authorization

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        h = {"Authorization": self.authorization} if self.authorization else {}
        return {**h, **(extra or {})}

    def as_caller(self, authorization: str | None) -> Http:
        return Http(self.base_url, authorization)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return httpx.post(f"{self.base_url}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = self.headers(kwargs.pop("headers", None))
        return httpx.get(f"{self.base_url}{path}", headers=headers, timeout=60, **kwargs)

    def gql(self, query: str, **variables: Any) -> dict[str, Any]:
        r = self.post("/graphql", json={"query": query, "variables": variables})
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def ok(self, query: str, **variables: Any) -> dict[str, Any]:
        body = self.gql(query, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


CREATE_CI = """mutation($i: CreateConfigurationItemInput!) { createConfigurationItem(input: $i) {
  configurationItem { id name operationalState } errors { field message code } } }"""
SET_STATE = """mutation($ids: [ID!]!, $s: OperationalState!) {
  setOperationalState(ids: $ids, state: $s, cause: "e2e") {
    changes { itemId state previous } errors { field message code } } }"""
STATE_CHANGES = """subscription($ids: [ID!]) { stateChanges(ids: $ids) {
  itemId state previous cause } }"""


def create_ci(http: Http, name: str, ci_class: str = "SERVER", state: str = "UP") -> str:
    data = http.ok(CREATE_CI, i={"name": name, "ciClass": ci_class, "operationalState": state})
    assert data["createConfigurationItem"]["errors"] == [], data
    ci_id: str = data["createConfigurationItem"]["configurationItem"]["id"]
    # Its first health is recorded by a roll-up worker after the commit: wait for it, so a
    # subscriber that starts now hears only the changes a test makes.
    settled(http)
    return ci_id


def settled(http: Http, timeout_s: float = 30) -> None:
    """Wait, as a client does, until the public ``pendingRollUps`` is 0 (docs/health.md)."""
    deadline = time.monotonic() + timeout_s
    while http.ok("{ pendingRollUps }")["pendingRollUps"]:
        assert time.monotonic() < deadline, "the roll-up did not settle"
        time.sleep(0.02)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Closed(Exception):
    """The server closed the websocket: ``code`` and ``reason`` as it sent them."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code}: {reason}")
        self.code = code
        self.reason = reason


class Subscriptions:
    """One graphql-transport-ws connection: ``subscribe`` and read what arrives per operation."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.pending: dict[str, list[dict[str, Any]]] = {}

    async def _receive(self, timeout_s: float) -> dict[str, Any]:
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), timeout_s)
            except websockets.ConnectionClosed as e:
                rcvd = e.rcvd
                raise Closed(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from e
            message: dict[str, Any] = json.loads(raw)
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            if message["type"] == "pong":
                continue
            return message

    async def subscribe(self, query: str, **variables: Any) -> str:
        op = uuid.uuid4().hex
        self.pending[op] = []
        await self.ws.send(json.dumps({"id": op, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables}}))
        return op

    async def message(self, op: str, timeout_s: float = 30) -> dict[str, Any]:
        """The next message (next, error or complete) of operation ``op``; TimeoutError when
        none comes within ``timeout_s``."""
        queue = self.pending[op]
        while not queue:
            message = await self._receive(timeout_s)
            self.pending.setdefault(message.get("id", ""), []).append(message)
        return queue.pop(0)

    async def next(self, op: str, timeout_s: float = 30) -> dict[str, Any]:
        """The data of the next result of ``op`` (fails on an error or completion)."""
        message = await self.message(op, timeout_s)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message["payload"]
        data: dict[str, Any] = message["payload"]["data"]
        return data


@contextlib.asynccontextmanager
async def subscriptions(ws_url: str, authorization: str | None = ADMIN_AUTH
                        ) -> AsyncIterator[Subscriptions]:
    """A graphql-transport-ws connection, acknowledged (the token goes in connection_init)."""
    async with websockets.connect(ws_url, subprotocols=[PROTOCOL]) as ws:
        payload = {"Authorization": authorization} if authorization else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        client = Subscriptions(ws)
        ack = await client._receive(30)
        assert ack["type"] == "connection_ack", ack
        yield client


async def state_change_arrives(client: Subscriptions, op: str, item_id: str,
                               change: Callable[[str], Awaitable[Any] | Any],
                               states: tuple[str, ...] = ("DOWN", "UP"),
                               attempts: int = 10, wait_s: float = 5) -> dict[str, Any]:
    """Change ``item_id``'s state (alternating ``states``, through ``change(state)``) until the
    subscription ``op`` reports a change; returns it, checked against what was set.

    A subscription has no "now listening" message: a change made before the server set it
    up is legitimately not reported, so the change is made again until one arrives."""
    made: list[str] = []
    for attempt in range(attempts):
        state = states[attempt % len(states)]
        result = change(state)
        if asyncio.iscoroutine(result):
            await result
        made.append(state)
        try:
            data = await client.next(op, wait_s)
        except TimeoutError:
            continue
        got: dict[str, Any] = data["stateChanges"]
        assert got["itemId"] == item_id, got
        assert got["state"] in made, (got, made)
        assert got["previous"] in ("UP", *made), (got, made)
        assert got["state"] != got["previous"], got
        return got
    raise AssertionError(f"no stateChanges message after {attempts} changes of {item_id}")
