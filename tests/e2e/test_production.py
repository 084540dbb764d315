"""Production mode (``CMDB_MODE=production``) served with tokens from a stand-in identity
provider whose JWKS the API fetches over HTTP on loopback: what it accepts and refuses."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets
from joserfc.jwk import RSAKey

from cmdb.identity.devissuer import JWKS_PATH, TOKEN_PATH
from cmdb.localdb.manager import LocalNeo4j
from tests.auth import ADMIN, auth_headers
from tests.e2e.remote import (
    CREATE_CI,
    SET_STATE,
    STATE_CHANGES,
    Http,
    create_ci,
    state_change_arrives,
    subscriptions,
    unique,
)
from tests.idp import LocalIdP
from tests.served import Served, served

QUERY = {"query": "{ configurationItems(first: 1) { edges { node { id } } } }"}


@pytest.fixture(scope="module")
def idp() -> Iterator[LocalIdP]:
    provider = LocalIdP().start()
    yield provider
    provider.stop()


@pytest.fixture(scope="module")
def prod(neo4j_instance: LocalNeo4j, idp: LocalIdP) -> Iterator[Served]:
    with served(neo4j_instance, env={"CMDB_MODE": "production", **idp.env()}) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def post_query(server: Served, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/graphql", json=QUERY, headers=headers, timeout=30)


def test_a_token_of_the_identity_provider_is_accepted(prod: Served, idp: LocalIdP) -> None:
    r = post_query(prod, bearer(idp.token("ops-1", ("operator",))))
    assert r.status_code == 200, r.text
    assert "errors" not in r.json(), r.json()
    # Roles come from the token's roles claim: a requester may not create items; an admin may.
    requester = Http(prod.url, idp.authorization("req-1", ("requester",)))
    refused = requester.gql(CREATE_CI, i={"name": unique("e2e-refused"), "ciClass": "SERVER"})
    assert [e["extensions"]["code"] for e in refused["errors"]] == ["FORBIDDEN"], refused
    admin = Http(prod.url, idp.authorization("ops-admin", ("admin",)))
    ci_id = create_ci(admin, unique("e2e-prod"))
    read = admin.ok("query($id: ID!) { configurationItem(id: $id) { id } }", id=ci_id)
    assert read["configurationItem"] == {"id": ci_id}


@pytest.mark.parametrize(("case", "reason"), [
    ("other key", "the token's signature is not valid"),
    ("unknown key id", "the token's signing key (kid) is not known"),
    ("expired", "the token has expired"),
    ("wrong audience", "the token's audience is not this API"),
    ("wrong issuer", "the token's issuer is not accepted"),
    # The development issuer's key is not the provider's: refused before its claims are read.
    ("development issuer", "the token's signing key (kid) is not known"),
])
def test_tokens_it_must_not_trust_are_refused(prod: Served, idp: LocalIdP, case: str,
                                              reason: str) -> None:
    other = LocalIdP()  # never served: its key is not in the JWKS
    token = {
        # Signed by another key while naming the provider's key id: a forgery.
        "other key": lambda: idp.token("mallory", ("admin",), signing_key=RSAKey.generate_key(
            2048)),
        "unknown key id": lambda: other.token("mallory", ("admin",)),
        "expired": lambda: idp.token("late", ("admin",), ttl_s=-3600),
        "wrong audience": lambda: idp.token("x", ("admin",), claims={"aud": "another-api"}),
        "wrong issuer": lambda: idp.token("x", ("admin",), claims={"iss": "https://evil.test"}),
        "development issuer": lambda: auth_headers(ADMIN[0], *ADMIN[1])["Authorization"][7:],
    }[case]()
    r = post_query(prod, bearer(token))
    assert r.status_code == 401, r.text
    assert r.json() == {"error": reason, "code": "UNAUTHENTICATED"}
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_no_token_is_refused(prod: Served) -> None:
    r = post_query(prod, {})
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "UNAUTHENTICATED"


def test_graphiql_and_the_development_issuer_are_off(prod: Served, idp: LocalIdP) -> None:
    page = httpx.get(f"{prod.url}/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 401  # not even public: there is no page to show
    signed_in = httpx.get(f"{prod.url}/graphql", headers={
        "Accept": "text/html", **bearer(idp.token("ops", ("operator",)))})
    assert signed_in.status_code == 404, signed_in.text
    assert "graphiql" not in signed_in.text.lower()
    asset = httpx.get(f"{prod.url}/graphiql-assets/graphiql@3.8.3/graphiql.min.js")
    assert asset.status_code == 401
    for path in (TOKEN_PATH, JWKS_PATH):
        assert httpx.get(f"{prod.url}{path}").status_code == 401, path
        r = httpx.get(f"{prod.url}{path}", headers=bearer(idp.token("ops", ("admin",))))
        assert r.status_code == 404, (path, r.status_code)


def test_probes_and_metrics(prod: Served, idp: LocalIdP) -> None:
    assert httpx.get(f"{prod.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{prod.url}/readyz").json()["ready"] is True
    assert httpx.get(f"{prod.url}/metrics").status_code == 401
    denied = httpx.get(f"{prod.url}/metrics", headers=bearer(idp.token("u", ("requester",))))
    assert denied.status_code == 403
    r = httpx.get(f"{prod.url}/metrics", headers=bearer(idp.token("prom", ("monitoring",))))
    assert r.status_code == 200, r.text
    assert "cmdb_requests_total{" in r.text


def test_metrics_can_be_made_public(neo4j_instance: LocalNeo4j, idp: LocalIdP) -> None:
    with served(neo4j_instance, env={"CMDB_MODE": "production", "CMDB_METRICS_PUBLIC": "true",
                                     **idp.env()}) as server:
        r = httpx.get(f"{server.url}/metrics")
        assert r.status_code == 200, r.text
        assert "cmdb_requests_total" in r.text
        # Only /metrics: everything else still needs a token.
        assert post_query(server, {}).status_code == 401


async def test_websocket_takes_the_providers_token(prod: Served, idp: LocalIdP) -> None:
    admin = Http(prod.url, idp.authorization("ops-admin", ("admin",)))
    ci_id = create_ci(admin, unique("e2e-prod-watched"))
    # Acknowledged with the provider's token in connection_init, and the change arrives.
    async with subscriptions(prod.ws_url, idp.authorization("ops", ("operator",))) as client:
        op = await client.subscribe(STATE_CHANGES, ids=[ci_id])
        await state_change_arrives(client, op, ci_id,
                                   lambda state: admin.ok(SET_STATE, ids=[ci_id], s=state))
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(prod.ws_url, subprotocols=protocols) as ws:
        expired = f"Bearer {idp.token('late', ('admin',), ttl_s=-3600)}"
        await ws.send(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": expired}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    rcvd = closed.value.rcvd
    assert rcvd is not None and rcvd.code == 4403
    assert rcvd.reason == "Forbidden: the token has expired"
