"""Authentication at the edge of the app: the middleware, the development issuer, websockets."""

from __future__ import annotations

import time

import httpx
import pytest
from authlib.integrations.httpx_client import AsyncOAuth2Client
from typer.testing import CliRunner

from cmdb.cli import app as cli
from cmdb.identity.devissuer import TOKEN_PATH
from tests.auth import auth_headers, bearer, dev_issuer

pytestmark = pytest.mark.integration

WHO = "{ __typename }"


@pytest.fixture
def anonymous(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app without the default admin token."""
    return httpx.AsyncClient(transport=client._transport, base_url="http://test")


async def test_probes_are_public_and_everything_else_needs_a_token(anonymous):
    assert (await anonymous.get("/healthz")).status_code == 200
    assert (await anonymous.get("/readyz")).status_code == 200
    for r in (await anonymous.post("/graphql", json={"query": WHO}),
              await anonymous.get("/graphql", params={"query": WHO},
                                  headers={"accept": "application/json"}),
              await anonymous.post("/api/alarms", json={"alarms": []})):
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "UNAUTHENTICATED"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.headers["x-request-id"]


async def test_graphiql_page_loads_without_a_token_in_development(anonymous):
    page = await anonymous.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200 and "<html" in page.text.lower()


async def test_a_dev_token_works_and_a_tampered_one_does_not(anonymous):
    r = await anonymous.post("/graphql", json={"query": WHO},
                             headers=auth_headers("olga", "operator"))
    assert r.json() == {"data": {"__typename": "Query"}}
    token = dev_issuer().mint("olga", ["operator"])
    head, payload, sig = token.split(".")
    tampered = ".".join([head, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), sig])
    r = await anonymous.post("/graphql", json={"query": WHO}, headers=bearer(tampered))
    assert r.status_code == 401
    expired = dev_issuer().mint("olga", ["operator"], now=time.time() - 3600, ttl_s=600)
    r = await anonymous.post("/graphql", json={"query": WHO}, headers=bearer(expired))
    assert r.status_code == 401 and "expired" in r.json()["error"]


async def test_a_megabyte_header_is_refused_before_any_verification(client, anonymous):
    calls = 0
    auth = client._transport.app.state.auth
    original = auth.authenticate

    async def counting(raw):
        nonlocal calls
        calls += 1
        return await original(raw)

    auth.authenticate = counting
    huge = "Bearer " + "A" * (1024 * 1024)
    started = time.perf_counter()
    r = await anonymous.post("/graphql", json={"query": WHO}, headers={"Authorization": huge})
    assert r.status_code == 431 and r.json()["code"] == "HEADERS_TOO_LARGE"
    r = await anonymous.post("/graphql", json={"query": WHO},
                             headers={**auth_headers("olga", "operator"), "X-Junk": "j" * 40000})
    assert r.status_code == 431
    assert calls == 0
    assert time.perf_counter() - started < 5  # generous: the point is no crypto and no parsing


async def test_client_credentials_with_an_oauth2_client_library(client):
    app = client._transport.app
    secret = dev_issuer().client_secret
    async with AsyncOAuth2Client(client_id="maryS", client_secret=secret, scope="approver",
                                 transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as oauth:
        token = await oauth.fetch_token("http://test" + TOKEN_PATH,
                                        grant_type="client_credentials")
        assert token["token_type"] == "Bearer" and token["scope"] == "approver"
        r = await oauth.post("/graphql", json={"query": WHO})  # the client sends the token
        assert r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("form, status, error", [
    ({"grant_type": "password", "client_id": "a", "client_secret": "SECRET"}, 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "client_id": "a", "client_secret": "wrong"}, 401,
     "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "a", "client_secret": "SECRET",
      "scope": "operator godmode"}, 400, "invalid_scope"),
])
async def test_token_endpoint_errors(anonymous, form, status, error):
    form = {k: (dev_issuer().client_secret if v == "SECRET" else v) for k, v in form.items()}
    r = await anonymous.post(TOKEN_PATH, data=form)
    assert r.status_code == status
    assert r.json()["error"] == error
    assert r.headers["cache-control"] == "no-store"


def test_cli_prints_a_token_the_api_accepts(monkeypatch, test_settings):
    monkeypatch.setenv("CMDB_HOME", str(test_settings.home))
    from cmdb.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["token", "johnW", "--roles", "requester,approver"])
        bad = CliRunner().invoke(cli, ["token", "johnW", "--roles", "superuser"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    principal_token = result.output.strip()
    from cmdb.identity.auth import Authenticator

    auth = Authenticator.from_settings(test_settings)
    import asyncio

    principal = asyncio.run(auth.authenticate(f"Bearer {principal_token}"))
    assert principal.user == "johnW" and principal.roles == {"requester", "approver"}
    assert bad.exit_code == 1 and "unknown roles: superuser" in bad.output


def test_websockets_authenticate_in_connection_init(test_settings):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    from cmdb.app import create_app

    with TestClient(create_app(test_settings)) as tc:
        with tc.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init"})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403
            # The close frame says why, not only "Forbidden".
            assert closed.value.reason == ("Forbidden: a bearer token is required "
                                           "(Authorization: Bearer <token>)")
        with tc.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init", "payload": {"Authorization": "Bearer x.y.z"}})
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
            assert closed.value.code == 4403
            assert closed.value.reason.startswith("Forbidden: the token")
        with tc.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            ws.send_json({"type": "connection_init",
                          "payload": auth_headers("olga", "operator")})
            assert ws.receive_json()["type"] == "connection_ack"
            ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": WHO}})
            assert ws.receive_json()["payload"] == {"data": {"__typename": "Query"}}


def test_websocket_close_reasons_fit_a_close_frame():
    from cmdb.api.graphql_view import MAX_CLOSE_REASON_BYTES, close_reason

    assert close_reason("Forbidden: expired") == "Forbidden: expired"
    cut = close_reason("é" * 100)  # 200 bytes: cut at a whole character
    assert cut == "é" * (MAX_CLOSE_REASON_BYTES // 2)
    assert len(close_reason("x" * 500).encode()) == MAX_CLOSE_REASON_BYTES
