"""Two API processes on one Neo4j, as replicas behind a load balancer would be: what one
writes the other reads, a subscriber on one hears of a change made through the other, and an
order's idempotency key holds across them. The compose profile's nginx configuration in front
of them balances HTTP and passes websockets. And a process that reaches Neo4j through a
``neo4j://`` routing URI (as for a cluster or Aura) works against the single local server."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from cmdb.localdb.manager import LocalNeo4j
from tests.auth import auth_headers
from tests.e2e.remote import (
    SET_STATE,
    STATE_CHANGES,
    Http,
    create_ci,
    settled,
    state_change_arrives,
    subscriptions,
    unavailable,
    unique,
)
from tests.served import ROOT, Served, free_port, served

# Debian's nginx as scripts/setup unpacks it, and the proxy configuration of the compose
# profile "replicas", whose upstreams and port are pointed at the processes of this module.
NGINX = ROOT / ".cmdb" / "nginx" / "usr" / "sbin" / "nginx"
PROXY_CONF = ROOT / "deploy" / "nginx-replicas.conf"

SUBMIT = """mutation($i: SubmitOrderInput!) { submitOrder(input: $i) {
  created order { id status requester itemVersion revision form }
  errors { field message code } } }"""


@pytest.fixture(scope="module")
def replicas(neo4j_instance: LocalNeo4j, demo_api: Served) -> Iterator[tuple[Served, Served]]:
    """Two ``cmdb serve`` processes beside the demo process (whose data they share)."""
    with served(neo4j_instance) as a, served(neo4j_instance) as b:
        yield a, b


@pytest.fixture(scope="module")
def proxy(replicas: tuple[Served, Served], tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[str]:
    """nginx with deploy/nginx-replicas.conf in front of the two replicas; its base URL."""
    if not NGINX.is_file():
        unavailable(f"no nginx at {NGINX} (scripts/setup unpacks Debian's nginx there)")
    a, b = replicas
    port = free_port()
    template = PROXY_CONF.read_text(encoding="utf-8")
    rendered = (template.replace("server api-1:8000", f"server 127.0.0.1:{a.port}")
                .replace("server api-2:8000", f"server 127.0.0.1:{b.port}")
                .replace("listen 8080;", f"listen 127.0.0.1:{port};"))
    assert rendered.count("127.0.0.1:") == 3, "the proxy configuration changed its shape"
    folder = tmp_path_factory.mktemp("nginx")
    (folder / "replicas.conf").write_text(rendered)
    temp = " ".join(f"{kind}_temp_path {folder / kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # As the nginx image does: the configuration is included in the http block.
    (folder / "nginx.conf").write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\npid {folder / 'nginx.pid'};\nerror_log stderr;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{ access_log off; {temp} include {folder / 'replicas.conf'}; }}\n")
    log = folder / "nginx.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(NGINX), "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr",
             "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                unavailable(f"nginx exited with {process.returncode}: {log.read_text()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx not answering on {url}: {log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(20)


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


def _request_ids_in_log(server: Served, ids: list[str]) -> set[str]:
    text = server.log()
    return {i for i in ids if f'"request_id": "{i}"' in text or f'"request_id":"{i}"' in text}


def test_the_proxy_balances_requests_over_both_replicas(
        proxy: str, replicas: tuple[Served, Served]) -> None:
    through = Http(proxy)
    ids = [f"e2e-proxy-{uuid.uuid4().hex[:12]}" for _ in range(6)]
    for rid in ids:
        r = through.post("/graphql", json={"query": "{ __typename }"},
                         headers={"X-Request-ID": rid})
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == rid  # passed through the proxy both ways
    # Each replica logs a request once it has answered it: wait for the last lines.
    deadline = time.monotonic() + 30
    seen = [_request_ids_in_log(server, ids) for server in replicas]
    while seen[0] | seen[1] != set(ids) and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = [_request_ids_in_log(server, ids) for server in replicas]
    assert seen[0] and seen[1], f"not balanced over both replicas: {seen}"
    assert seen[0] | seen[1] == set(ids) and not seen[0] & seen[1]


async def test_subscriptions_pass_the_proxy(proxy: str) -> None:
    through = Http(proxy)
    ci_id = create_ci(through, unique("e2e-proxied"))
    ws_url = proxy.replace("http://", "ws://") + "/graphql"
    async with subscriptions(ws_url) as client:
        op = await client.subscribe(STATE_CHANGES, ids=[ci_id])
        got = await state_change_arrives(
            client, op, ci_id, lambda state: through.ok(SET_STATE, ids=[ci_id], s=state))
    assert got["itemId"] == ci_id


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


def test_health_follows_a_write_through_one_once_the_other_says_it_settled(
        replicas: tuple[Served, Served]) -> None:
    a, b = (Http(s.url) for s in replicas)
    ci_id = create_ci(a, unique("e2e-rollup"))
    a.ok("mutation($id: ID!) { updateConfigurationItem(id: $id, input: "
         "{operationalState: DOWN}) { errors { message } } }", id=ci_id)
    settled(b)  # by any replica's worker: the client waits through the public count
    read = b.ok("query($id: ID!) { configurationItem(id: $id) { operationalState "
                "healthState } }", id=ci_id)
    assert read["configurationItem"] == {"operationalState": "DOWN", "healthState": "DOWN"}
