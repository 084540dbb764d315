"""Bad request bodies get a clear 4xx naming what is wrong on every route, never a 500.

Each check runs against the served product (a real socket to ``cmdb serve``) as well, since a
body's framing (chunked, declared length) is what the server and the middleware see."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from cmdb.localdb.manager import LocalNeo4j
from tests.auth import ADMIN, auth_headers
from tests.served import Served, served

DEEP = b'{"query": "{ __typename }", "variables": {"x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}}"
BAD_UTF8 = b'{"query": "{ __typename }", "variables": {"x": "\xff\xfe"}}'
JSON = {"content-type": "application/json"}
CAP = 256 * 1024  # the served process's CMDB_MAX_BODY_BYTES


@pytest.fixture(scope="module")
def api(neo4j_instance: LocalNeo4j) -> Iterator[Served]:
    with served(neo4j_instance, env={"CMDB_MAX_BODY_BYTES": str(CAP)}) as server:
        yield server


@pytest.fixture(scope="module")
def http(api: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=30,
                      headers=auth_headers(ADMIN[0], *ADMIN[1])) as c:
        yield c


def graphql_error(r: httpx.Response) -> str:
    message: str = r.json()["errors"][0]["message"]
    return message


def test_deeply_nested_json_is_a_400_naming_the_nesting(http: httpx.Client) -> None:
    r = http.post("/graphql", content=DEEP, headers=JSON)
    assert r.status_code == 400, r.text
    assert "nested too deeply" in graphql_error(r)


def test_invalid_utf8_is_a_400_naming_the_encoding(http: httpx.Client) -> None:
    r = http.post("/graphql", content=BAD_UTF8, headers=JSON)
    assert r.status_code == 400, r.text
    assert "not valid UTF-8" in graphql_error(r)


def test_deep_nesting_in_get_variables_is_a_400(http: httpx.Client) -> None:
    # Queries over GET are on in development; their variables are JSON too.
    r = http.get("/graphql", params={"query": "{ __typename }",
                                     "variables": "[" * 5_000 + "]" * 5_000})
    assert r.status_code == 400, r.text
    assert "nested too deeply" in graphql_error(r)


def test_nan_is_not_json(http: httpx.Client) -> None:
    r = http.post("/graphql", content=b'{"query": "{ __typename }", "variables": {"x": NaN}}',
                  headers=JSON)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_graphql_body_over_the_cap_is_a_413(http: httpx.Client, chunked: bool) -> None:
    body = b'{"query": "{ __typename }", "variables": {"pad": "' + b"x" * CAP + b'"}}'
    content = iter([body[:1000], body[1000:]]) if chunked else body
    r = http.post("/graphql", content=content, headers=JSON)
    assert r.status_code == 413, r.text
    assert f"larger than {CAP} bytes" in graphql_error(r)
    assert r.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_body_just_under_the_cap_is_served(http: httpx.Client) -> None:
    head, tail = b'{"query": "{ __typename }", "variables": {"pad": "', b'"}}'
    body = head + b"x" * (CAP - len(head) - len(tail)) + tail
    assert len(body) == CAP
    r = http.post("/graphql", content=body, headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("path", ["/auth/dev/token", "/healthz", "/metrics"])
def test_other_routes_take_the_same_cap(http: httpx.Client, path: str) -> None:
    r = http.post(path, content=b"x" * (CAP + 1),
                  headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413, r.text
    assert r.json()["code"] == "TOO_LARGE"


def test_bulk_endpoints_keep_their_own_caps(http: httpx.Client) -> None:
    # Over the default cap, under the alarms endpoint's own (5 MiB): the endpoint itself
    # answers, and says what is wrong with the body.
    r = http.post("/api/alarms", content=b"[" + b" " * (CAP + 10) + b"1]", headers=JSON)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize("body", [DEEP, BAD_UTF8], ids=["deep", "utf8"])
@pytest.mark.parametrize("path", ["/api/alarms", "/api/discovery/batches", "/api/vdi/events"])
def test_bulk_endpoints_refuse_bad_json_with_a_400(
        http: httpx.Client, path: str, body: bytes) -> None:
    r = http.post(path, content=body, headers=JSON)
    assert r.status_code == 400, (path, r.status_code, r.text)
    assert r.json()["error"]


def test_nothing_was_answered_500(api: Served) -> None:
    assert '"status": 500' not in api.log() and "Traceback" not in api.log()


async def test_a_deeply_nested_websocket_message_closes_with_4400(api: Served) -> None:
    import websockets

    token = auth_headers(ADMIN[0], *ADMIN[1])["Authorization"]
    protocols = [websockets.Subprotocol("graphql-transport-ws")]
    async with websockets.connect(api.ws_url, subprotocols=protocols) as ws:
        await ws.send(json.dumps({"type": "connection_init",
                                  "payload": {"Authorization": token}}))
        assert "connection_ack" in str(await ws.recv())
        await ws.send("[" * 50_000 + "]" * 50_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
