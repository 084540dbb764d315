"""The served process answers over a real socket: HTTP and a websocket subscription."""

from __future__ import annotations

import asyncio
import json

import httpx
import websockets

from tests.auth import ADMIN, auth_headers
from tests.served import Served


def test_health_and_graphql_over_http(api: Served) -> None:
    assert httpx.get(f"{api.url}/healthz").json() == {"status": "ok"}
    r = httpx.post(f"{api.url}/graphql", headers=auth_headers(*ADMIN[:1], *ADMIN[1]),
                   json={"query": "{ __typename }"})
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"__typename": "Query"}}


async def test_websocket_subscription_is_acknowledged(api: Served) -> None:
    token = auth_headers(ADMIN[0], *ADMIN[1])["Authorization"]
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(api.ws_url, subprotocols=protocols) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack"
