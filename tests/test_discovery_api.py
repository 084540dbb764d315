"""Discovery over HTTP: the bulk endpoint (JSON and NDJSON), its schema, permissions, the
GraphQL mutations, and the demo files of the three real input kinds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cmdb.demo.loader import load_demo
from cmdb.discovery.parsers import Format, parse
from cmdb.discovery.service import DiscoveryService
from cmdb.identity.principal import Principal
from cmdb.items.models import CIClass
from tests.auth import auth_headers

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parent.parent / "cmdb" / "demo" / "discovery"
ADMIN = Principal("t-admin", frozenset({"admin"}))
AGENT = auth_headers("scanner-7", "discovery_agent")

REGISTER = """mutation($input: RegisterDiscoverySourceInput!) {
  registerDiscoverySource(input: $input) {
    source { name kind trust attributeTrust } errors { field message code } } }"""
INGEST = """mutation($input: DiscoveryBatchInput!) {
  ingestDiscoveryBatch(input: $input) {
    created updated unchanged merged suppressed relationsCreated relationsUnchanged ids
    rejected { index record code reason field } errors { field message code } } }"""


async def register(gql: Any, name: str, trust: int, **extra: Any) -> None:
    data = await gql.ok(REGISTER, input={"name": name, "trust": trust, **extra})
    assert data["registerDiscoverySource"]["errors"] == []


async def test_sources_are_registered_by_admins_only(gql):
    denied = await gql.as_user("scanner-7", "discovery_agent")(REGISTER, input={
        "name": "mine", "trust": 100})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # refused at the root
    data = await gql.ok(REGISTER, input={"name": "vcenter", "kind": "HYPERVISOR", "trust": 70,
                                         "attributeTrust": {"attributes.os": 90}})
    assert data["registerDiscoverySource"]["source"] == {
        "name": "vcenter", "kind": "HYPERVISOR", "trust": 70,
        "attributeTrust": {"attributes.os": 90}}
    bad = await gql.ok(REGISTER, input={"name": "x", "trust": 500})
    assert bad["registerDiscoverySource"]["errors"] == [
        {"field": "input.trust", "message": "Input should be less than or equal to 100",
         "code": "INVALID"}]
    listed = await gql.ok("{ discoverySources { name trust } }")
    assert listed["discoverySources"] == [{"name": "vcenter", "trust": 70}]


async def test_rest_json_batch_and_its_report(client, gql):
    await register(gql, "scanner", 30)
    body = {"source": "scanner", "items": [
        {"key": "h", "ciClass": "Server", "identifiers": {"hostName": "h1",
                                                          "domain": "test.example"}},
        {"key": "a", "ciClass": "ApplicationInstance",
         "identifiers": {"cloudInstanceId": "app-1"}},
        {"ciClass": "Server", "identifiers": {"macAddress": "zz"}},
    ], "relations": [{"source": {"key": "a"}, "target": {"key": "h"}, "type": "RUNS_ON"}]}
    r = await client.post("/api/discovery/batches", json=body, headers=AGENT)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["counts"]["created"] == 2 and out["counts"]["relationsCreated"] == 1
    assert out["rejected"] == [{"index": 2, "record": "item", "code": "INVALID",
                                "reason": out["rejected"][0]["reason"],
                                "field": "identifiers.macAddress"}]
    assert set(out["ids"]) == {"h", "a"}
    again = await client.post("/api/discovery/batches", json=body, headers=AGENT)
    assert again.json()["counts"]["unchanged"] == 2
    assert again.json()["counts"]["relationsUnchanged"] == 1


async def test_rest_ndjson_batch(client, gql):
    await register(gql, "agent", 50)
    lines = [
        {"record": "item", "key": "vm", "ciClass": "VIRTUAL_MACHINE",
         "identifiers": {"cloudInstanceId": "vm-1"}, "attributes": {"cpu": 4}},
        {"record": "item", "key": "h", "ciClass": "HYPERVISOR_HOST",
         "identifiers": {"serialNumber": "HV-1"}},
        {"record": "relation", "source": {"key": "vm"}, "target": {"key": "h"},
         "type": "RUNS_ON"},
    ]
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    r = await client.post("/api/discovery/batches?source=agent", content=text,
                          headers={**AGENT, "Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    assert r.json()["counts"]["created"] == 2 and r.json()["counts"]["relationsCreated"] == 1


@pytest.mark.parametrize(("body", "ctype", "query", "status", "needle"), [
    ("{", "application/json", "", 400, "malformed JSON"),
    ("[]", "application/json", "", 400, "expected a JSON object"),
    ('{"source": "agent", "itemz": []}', "application/json", "", 400, "unknown fields"),
    ('{"items": []}', "application/json", "", 400, "name the source"),
    ('{"source": "agent", "items": {}}', "application/json", "", 400, "must be arrays"),
    ('{"record": "item"}', "application/x-ndjson", "", 400, "?source="),
    ('{"record": "thing"}', "application/x-ndjson", "?source=agent", 400, "line 1"),
    ("a,b", "text/csv", "", 415, "application/json"),
    ('{"source": "ghost", "items": []}', "application/json", "", 404, "not registered"),
])
async def test_rest_bad_bodies_get_clear_errors(client, gql, body, ctype, query, status,
                                                needle):
    await register(gql, "agent", 50)
    r = await client.post(f"/api/discovery/batches{query}", content=body,
                          headers={**AGENT, "Content-Type": ctype})
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]


async def test_rest_permissions(client):
    r = await client.post("/api/discovery/batches", json={"source": "x"},
                          headers=auth_headers("bob", "requester"))
    assert r.status_code == 403 and "discovery:write" in r.json()["error"]
    anonymous = await client.post("/api/discovery/batches", json={"source": "x"},
                                  headers={"Authorization": ""})  # no token
    assert anonymous.status_code == 401


async def test_schema_endpoint(client):
    r = await client.get("/api/discovery/schema")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/schema+json")
    assert "DiscoveredItem" in r.json()["$defs"]


async def test_graphql_small_upsert_with_history_and_provenance(gql):
    await register(gql, "agent", 50)
    agent = gql.as_user("agent-1", "discovery_agent")
    data = await agent.ok(INGEST, input={"source": "agent", "items": [
        {"key": "s", "ciClass": "SERVER", "name": "db-9",
         "identifiers": {"serialNumber": "DB9"}, "attributes": {"os": "RHEL 9"}},
        {"ciClass": "SERVER", "identifiers": {}}]})
    out = data["ingestDiscoveryBatch"]
    assert (out["created"], out["errors"]) == (1, [])
    assert out["rejected"][0]["index"] == 1 and out["rejected"][0]["code"] == "INVALID"
    ci_id = out["ids"]["s"]
    view = await gql.ok("""query($id: ID!) { node(id: $id) { name ... on ConfigurationItem {
        source staleSince provenance { attribute source } sightings { source }
        history { kind source changes { attribute old new } } } } }""", id=ci_id)
    node = view["node"]
    assert node["name"] == "db-9" and node["source"] == "agent"
    assert {p["attribute"] for p in node["provenance"]} == {
        "name", "serialNumber", "attributes.os"}
    assert node["history"][0]["kind"] == "CREATED"
    assert {"attribute": "attributes.os", "old": None, "new": "RHEL 9"} in \
        node["history"][0]["changes"]
    denied = await gql.as_user("bob", "requester")(INGEST, input={"source": "agent"})
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # refused at the root
    unknown = await agent.ok(INGEST, input={"source": "ghost"})
    assert unknown["ingestDiscoveryBatch"]["errors"][0]["code"] == "NOT_FOUND"


async def test_sweep_mutation_needs_admin(gql):
    q = "mutation { sweepStaleConfigurationItems { stale retired errors { code } } }"
    denied = await gql.as_user("a", "discovery_agent")(q)
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"  # refused at the root
    ok = await gql.ok(q)
    assert ok["sweepStaleConfigurationItems"] == {"stale": 0, "retired": 0, "errors": []}


async def _import_demo_files(svc: DiscoveryService) -> list[dict[str, int]]:
    mapping = json.loads((DEMO / "asset-register.mapping.json").read_text())
    runs = [
        ("nmap-lon", parse(Format.NMAP, (DEMO / "nmap-lon-dc.xml").read_text())),
        ("asset-register", parse(Format.CSV, (DEMO / "asset-register.csv").read_text(),
                                 mapping=mapping)),
        ("k8s-trading", parse(Format.KUBECTL, (DEMO / "kubectl-trading.json").read_text(),
                              ci_class=CIClass.VIRTUAL_MACHINE, cluster="trading-lon")),
    ]
    out = []
    for source, parsed in runs:
        result = await svc.ingest(ADMIN, source, parsed.items, parsed.relations)
        assert result.rejected == [], result.rejected
        out.append(result.counts())
    return out


async def test_the_demo_files_load_into_the_demo_graph_and_rerunning_changes_nothing(
    clean_db, test_settings, gql
):
    await load_demo(clean_db, test_settings, echo=lambda _: None)
    svc = DiscoveryService(clean_db, test_settings)
    first = await _import_demo_files(svc)
    nmap, assets, k8s = first
    # nmap: server123, trd-srv-01 and esx-a-01 are known (by host name and MAC); two new.
    assert (nmap["created"], nmap["updated"]) == (2, 3)
    # The register ties lab-srv-07 (found by the scan) to its serial, and adds racks.
    assert (assets["created"], assets["updated"]) == (0, 5)
    # kubectl: the two trading VMs are known; three pods run on them.
    assert (k8s["created"], k8s["updated"], k8s["relationsCreated"]) == (3, 2, 3)
    second = await _import_demo_files(svc)
    for run in second:
        assert run["created"] == run["updated"] == run["merged"] == 0
        assert run["relationsCreated"] == run["relationsUpdated"] == 0
    data = await gql.ok("""{ configurationItems(filter: {nameContains: "server123"}) {
        edges { node { attributes ... on ConfigurationItem {
          provenance { attribute source } } } } } }""")
    node = data["configurationItems"]["edges"][0]["node"]
    # The scan's OS guess fills a gap, the manually entered OS stays (trust 30 < 50).
    assert node["attributes"]["os"] == "RHEL 9.4"
    assert node["attributes"]["osGuess"] == "Linux 5.0 - 5.14"
    assert node["attributes"]["rack"] == "LON-R12"
    sources = {p["attribute"]: p["source"] for p in node["provenance"]}
    assert sources["attributes.rack"] == "asset-register"
    assert sources["attributes.openServices"] == "nmap-lon"
    assert "attributes.os" not in sources  # set by a person: no discovery provenance
