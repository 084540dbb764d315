"""Reconciliation against a real Neo4j: identification, precedence and provenance, merges,
idempotence, atomic batches, staleness, history and as-of."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cmdb.core import clock
from cmdb.core.models import DomainError, RejectCode
from cmdb.db.driver import Database
from cmdb.db.migrations import LATEST_VERSION, migrate
from cmdb.discovery.parsers import parse_nmap
from cmdb.discovery.service import DiscoveryService
from cmdb.identity.principal import Principal
from cmdb.items.models import HistoryKind
from cmdb.settings import Settings
from tests.conftest import settle

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "discovery"
ADMIN = Principal("t-admin", frozenset({"admin"}))
AGENT = Principal("t-agent", frozenset({"discovery_agent"}))
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def pinned():
    yield clock.pin
    clock.pin(None)


@pytest.fixture
async def svc(clean_db: Database, test_settings: Settings) -> DiscoveryService:
    s = DiscoveryService(clean_db, test_settings)
    await s.register_source(ADMIN, {"name": "scanner", "kind": "SCANNER", "trust": 30})
    await s.register_source(ADMIN, {"name": "assets", "kind": "SPREADSHEET", "trust": 80,
                                    "attribute_trust": {"attributes.osGuess": 0}})
    await s.register_source(ADMIN, {"name": "cloud", "kind": "CLOUD", "trust": 60})
    return s


def server(**ids: Any) -> dict[str, Any]:
    attrs = ids.pop("attributes", {})
    return {"ciClass": "SERVER", "identifiers": ids, "attributes": attrs}


async def ci(db: Database, **match: str) -> dict[str, Any]:
    (prop, value), = match.items()
    rows = await db.read("MATCH (n:CI) WHERE n[$p] = $v RETURN properties(n) AS p",
                         {"p": prop, "v": value})
    assert len(rows) == 1, rows
    found: dict[str, Any] = rows[0]["p"]
    return found


async def counts(db: Database) -> tuple[int, int, int]:
    rows = await db.read("""
        CALL () { MATCH (n:CI) RETURN count(n) AS cis }
        CALL () { MATCH (h:HistoryRecord) RETURN count(h) AS hist }
        CALL () { MATCH (:Item)-[r]->(:Item) RETURN count(r) AS rels }
        RETURN cis, hist, rels""")
    return rows[0]["cis"], rows[0]["hist"], rows[0]["rels"]


# ------------------------------------------------------------------------------ ingest


async def test_nmap_scan_loads_and_resending_changes_nothing(svc, clean_db):
    parsed = parse_nmap((FIXTURES / "nmap-scan.xml").read_text())
    first = await svc.ingest(AGENT, "scanner", parsed.items)
    assert (first.created, first.updated, first.unchanged, first.merged) == (3, 0, 0, 0)
    assert [(r.index, r.code) for r in first.rejected] == [(3, RejectCode.INVALID)]
    assert "at least one identifier" in first.rejected[0].reason
    web = await ci(clean_db, fqdn="web-01.test.example")
    assert web["macAddress"] == "52:54:00:6B:1F:02" and web["source"] == "scanner"
    assert (await ci(clean_db, macAddress="00:50:56:01:AA:09"))["ciClass"] == "HypervisorHost"
    before = await counts(clean_db)
    again = await svc.ingest(AGENT, "scanner", parsed.items)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert await counts(clean_db) == before  # no new CI, history record or relationship
    assert (await ci(clean_db, fqdn="web-01.test.example"))["updatedAt"] == web["updatedAt"]


async def test_less_trusted_source_cannot_overwrite_but_fills_gaps(svc, clean_db, pinned):
    pinned(T0)
    await svc.ingest(AGENT, "assets", [server(serialNumber="S1", hostName="app-1",
                                              domain="test.example",
                                              attributes={"os": "RHEL 9.4"})])
    pinned(T0 + timedelta(hours=1))
    low = await svc.ingest(AGENT, "scanner", [server(
        serialNumber="S1", hostName="app-1", domain="test.example",
        attributes={"os": "Linux 5.x", "ipAddress": "10.0.0.5"})])
    assert (low.updated, low.suppressed) == (1, 1)
    stored = await ci(clean_db, serialNumber="S1")
    assert stored["attr_os"] == "RHEL 9.4"  # kept: assets (80) outranks scanner (30)
    assert stored["attr_ipAddress"] == "10.0.0.5"  # a gap: filled
    svc_ci = await svc.as_of(stored["id"], T0 + timedelta(hours=2))
    assert svc_ci.properties["attributes.ipAddress"] == "10.0.0.5"
    # The more trusted source may change its own value; history keeps the old one.
    pinned(T0 + timedelta(hours=2))
    high = await svc.ingest(AGENT, "assets", [server(serialNumber="S1",
                                                     attributes={"os": "RHEL 9.5"})])
    assert (high.updated, high.suppressed) == (1, 0)
    history = await svc.history(stored["id"])
    assert [h.kind for h in history] == [HistoryKind.UPDATED, HistoryKind.UPDATED,
                                         HistoryKind.CREATED]
    latest = history[0]
    assert (latest.source, latest.at) == ("assets", T0 + timedelta(hours=2))
    assert [(c.attribute, c.old, c.new) for c in latest.changes] == [
        ("attributes.os", "RHEL 9.4", "RHEL 9.5")]


async def test_provenance_says_who_set_it_when_and_when_confirmed(svc, clean_db, gql,
                                                                  pinned):
    pinned(T0)
    await svc.ingest(AGENT, "assets", [server(serialNumber="S7", hostName="p-7",
                                              domain="test.example",
                                              attributes={"rack": "R1"})])
    pinned(T0 + timedelta(days=1))
    await svc.ingest(AGENT, "scanner", [server(serialNumber="S7",
                                               attributes={"osGuess": "Linux"})])
    pinned(T0 + timedelta(days=2))
    await svc.ingest(AGENT, "assets", [server(serialNumber="S7", attributes={"rack": "R1"})])
    ci_id = (await ci(clean_db, serialNumber="S7"))["id"]
    data = await gql.ok("""query($id: ID!) { node(id: $id) { ... on ConfigurationItem {
        lastSeenAt sightings { source lastSeenAt }
        provenance { attribute value source setAt confirmedAt } } } }""", id=ci_id)
    node = data["node"]
    prov = {p["attribute"]: p for p in node["provenance"]}
    assert prov["attributes.rack"] == {
        "attribute": "attributes.rack", "value": "R1", "source": "assets",
        "setAt": "2026-11-01T09:00:00+00:00", "confirmedAt": "2026-11-03T09:00:00+00:00"}
    assert prov["attributes.osGuess"]["source"] == "scanner"
    assert prov["serialNumber"]["value"] == "S7"
    assert node["sightings"] == [
        {"source": "assets", "lastSeenAt": "2026-11-03T09:00:00+00:00"},
        {"source": "scanner", "lastSeenAt": "2026-11-02T09:00:00+00:00"}]
    assert node["lastSeenAt"] == "2026-11-03T09:00:00+00:00"


async def test_identification_order_per_class(svc, clean_db):
    # A VM is identified by its cloud instance id before its host name.
    await svc.ingest(AGENT, "cloud", [{"ciClass": "VIRTUAL_MACHINE", "identifiers": {
        "cloudInstanceId": "i-1", "hostName": "vm-a", "domain": "test.example"}}])
    r = await svc.ingest(AGENT, "cloud", [{"ciClass": "VIRTUAL_MACHINE", "identifiers": {
        "cloudInstanceId": "i-1", "hostName": "vm-b", "domain": "test.example"}}])
    assert (r.created, r.updated) == (0, 1)
    assert (await ci(clean_db, cloudInstanceId="i-1"))["fqdn"] == "vm-b.test.example"
    # A record naming a CI of another class is rejected, not turned into a second CI.
    r = await svc.ingest(AGENT, "cloud", [server(cloudInstanceId="i-1")])
    assert r.created == 0 and r.rejected[0].code is RejectCode.CONFLICT
    assert "of class VirtualMachine, not Server" in r.rejected[0].reason


async def test_conflicting_identifiers_are_reported_not_guessed(svc, clean_db):
    await svc.ingest(AGENT, "assets", [
        server(serialNumber="S1", hostName="a", domain="test.example"),
        server(serialNumber="S2", macAddress="00:00:00:00:00:02")])
    before = await counts(clean_db)
    r = await svc.ingest(AGENT, "assets", [server(serialNumber="S1",
                                                  macAddress="00:00:00:00:00:02")])
    assert (r.created, r.updated, r.merged) == (0, 0, 0)
    (rej,) = r.rejected
    assert rej.code is RejectCode.CONFLICT and rej.field == "identifiers.macAddress"
    assert "serialNumber 'S1' identifies CI" in rej.reason
    assert "it has serialNumber 'S2'" in rej.reason and "not merged" in rej.reason
    assert await counts(clean_db) == before


async def test_renamed_host_duplicate_is_found_by_serial_and_merged(svc, clean_db, gql):
    # The asset register knows the server by serial and its old name.
    await svc.ingest(AGENT, "assets", [server(serialNumber="CZ123", hostName="old-name",
                                              domain="test.example",
                                              attributes={"rack": "R9"})])
    # After a rename, the scanner sees a host it cannot tie to it: a second CI.
    scan = await svc.ingest(AGENT, "scanner", [
        {**server(hostName="new-name", domain="test.example",
                  macAddress="AA:BB:CC:00:00:01", attributes={"osGuess": "Linux"}),
         "key": "n"},
        {"ciClass": "APPLICATION_INSTANCE", "key": "app",
         "identifiers": {"cloudInstanceId": "app-on-new"}},
    ], [{"source": {"key": "app"}, "target": {"key": "n"}, "type": "RUNS_ON"}])
    assert scan.created == 2
    dup_id = scan.ids["n"]
    survivor_id = (await ci(clean_db, serialNumber="CZ123"))["id"]
    # The register is updated: serial CZ123 now has the new name. Serial wins, and the
    # CI holding the new name contradicts nothing, so it is merged.
    r = await svc.ingest(AGENT, "assets", [server(serialNumber="CZ123", hostName="new-name",
                                                  domain="test.example")])
    assert (r.created, r.updated, r.merged, r.rejected) == (0, 1, 1, [])
    survivor = await ci(clean_db, serialNumber="CZ123")
    assert survivor["id"] == survivor_id
    assert survivor["fqdn"] == "new-name.test.example"
    assert survivor["macAddress"] == "AA:BB:CC:00:00:01"  # carried over from the duplicate
    assert survivor["attr_osGuess"] == "Linux" and survivor["attr_rack"] == "R9"
    dup = (await clean_db.read("MATCH (n:Item {id: $id}) RETURN properties(n) AS p",
                               {"id": dup_id}))[0]["p"]
    assert dup["lifecycleStatus"] == "RETIRED" and dup["mergedInto"] == survivor_id
    assert "fqdn" not in dup and dup["mergedFqdn"] == "new-name.test.example"
    # Relationships carried over: the app now runs on the survivor.
    rels = await clean_db.read("MATCH (a:CI {cloudInstanceId: 'app-on-new'})-[r:RUNS_ON]->(h)"
                               " WHERE r.retiredAt IS NULL RETURN h.id AS h")
    assert rels == [{"h": survivor_id}]
    # The merge is recorded and explained on both; the duplicate's history moved over.
    data = await gql.ok("""query($id: ID!) { node(id: $id) { ... on ConfigurationItem {
        history { kind source otherId detail changes { attribute old new } } } } }""",
                        id=survivor_id)
    history = data["node"]["history"]
    merged = next(h for h in history if h["kind"] == "MERGED")
    assert merged["otherId"] == dup_id and merged["source"] == "assets"
    assert merged["detail"]["rule"] == "serialNumber"
    assert merged["detail"]["identifier"] == "fqdn"
    assert "contradicts nothing" in merged["detail"]["reason"]
    assert {"attribute": "macAddress", "old": None, "new": "AA:BB:CC:00:00:01"} in \
        merged["changes"]
    moved = [h for h in history if h["detail"].get("mergedFrom") == dup_id]
    assert [h["kind"] for h in moved] == ["CREATED"]
    dup_view = await gql.ok("""query($id: ID!) { node(id: $id) { lifecycleStatus
        ... on ConfigurationItem { mergedInto history { kind otherId } } } }""", id=dup_id)
    assert dup_view["node"]["mergedInto"] == survivor_id
    assert dup_view["node"]["history"] == [{"kind": "MERGED_INTO", "otherId": survivor_id}]
    # Resending changes nothing.
    again = await svc.ingest(AGENT, "assets", [server(serialNumber="CZ123",
                                                      hostName="new-name",
                                                      domain="test.example")])
    assert (again.updated, again.unchanged, again.merged) == (0, 1, 0)


async def test_merging_can_be_turned_off(svc, clean_db):
    await svc.ingest(AGENT, "assets", [server(serialNumber="S1", hostName="a",
                                              domain="test.example")])
    await svc.ingest(AGENT, "scanner", [server(hostName="b", domain="test.example")])
    r = await svc.ingest(AGENT, "assets", [server(serialNumber="S1", hostName="b",
                                                  domain="test.example")],
                         merge_duplicates=False)
    assert r.merged == 0 and "merging is off" in r.rejected[0].reason
    assert (await counts(clean_db))[0] == 2


async def test_manual_merge_of_existing_duplicates(svc, clean_db, gql):
    r = await svc.ingest(AGENT, "assets", [
        {**server(serialNumber="M1", attributes={"rack": "R1"}), "key": "a"},
        {**server(macAddress="00:00:00:00:00:0B", attributes={"room": "B"}), "key": "b"},
        {"ciClass": "VIRTUAL_MACHINE", "key": "vm", "identifiers": {"cloudInstanceId": "v"}},
    ], [{"source": {"key": "vm"}, "target": {"key": "b"}, "type": "RUNS_ON"}])
    a, b = r.ids["a"], r.ids["b"]
    forbidden = await gql.as_user("bob", "requester")(
        "mutation($s: ID!, $d: [ID!]!) { mergeConfigurationItems(survivorId: $s, "
        "duplicateIds: $d) { merged errors { code } } }", s=a, d=[b])
    assert forbidden["data"] is None  # refused at the root for a requester
    assert forbidden["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    data = await gql.ok("""mutation($s: ID!, $d: [ID!]!) {
        mergeConfigurationItems(survivorId: $s, duplicateIds: $d, reason: "same box") {
          merged errors { message }
          configurationItem { attributes identifiers { serialNumber macAddress }
            relationships(direction: INCOMING) { type item { id } } } } }""", s=a, d=[b])
    out = data["mergeConfigurationItems"]
    assert out["merged"] == 1 and out["errors"] == []
    item = out["configurationItem"]
    assert item["attributes"] == {"rack": "R1", "room": "B"}
    assert item["identifiers"] == {"serialNumber": "M1", "macAddress": "00:00:00:00:00:0B"}
    assert item["relationships"] == [{"type": "RUNS_ON", "item": {"id": r.ids["vm"]}}]
    history = await svc.history(a)
    assert history[0].kind is HistoryKind.MERGED
    assert history[0].detail["reason"] == "same box" and history[0].source == "user:test-admin"
    with pytest.raises(DomainError, match="retired"):
        await svc.merge(ADMIN, a, [b])


# ------------------------------------------------------------------------------ safety


async def test_malformed_records_are_rejected_with_index_and_the_rest_written(svc, clean_db):
    r = await svc.ingest(AGENT, "scanner", [
        server(serialNumber="OK1"),
        {"ciClass": "SERVER", "identifiers": {"macAddress": "not-a-mac"}},
        "not an object",
        {"ciClass": "TOASTER", "identifiers": {"serialNumber": "X"}},
        server(serialNumber="OK2", attributes={"bad key": 1}),
        server(serialNumber="OK1"),
        {"ciClass": "SERVER", "identifiers": {"serialNumber": "Z"}, "colour": "red"},
    ], [{"source": {"key": "nope"}, "target": {"id": "x"}, "type": "RUNS_ON"},
        {"source": {"id": "a", "key": "b"}, "target": {"id": "x"}, "type": "RUNS_ON"}])
    assert r.created == 1
    reasons = {(x.record, x.index): (x.code, x.field, x.reason) for x in r.rejected}
    assert reasons[("item", 1)][1] == "identifiers.macAddress"
    assert "six hex pairs" in reasons[("item", 1)][2]
    assert reasons[("item", 2)][2] == "a record must be a JSON object"
    assert reasons[("item", 3)][1] == "ciClass"
    assert reasons[("item", 4)][1] == "attributes.bad key"
    assert "also given by item 0" in reasons[("item", 5)][2]
    assert reasons[("item", 6)][1] == "colour"
    assert reasons[("relation", 0)][:2] == (RejectCode.NOT_FOUND, "source.key")
    assert "exactly one of key, id or identifiers" in reasons[("relation", 1)][2]
    assert (await counts(clean_db))[0] == 1


async def test_a_batch_that_dies_half_way_leaves_the_graph_as_before(svc, clean_db,
                                                                     monkeypatch):
    await svc.ingest(AGENT, "assets", [server(serialNumber="KEEP", attributes={"v": 1})])
    before = await counts(clean_db)
    kept = await ci(clean_db, serialNumber="KEEP")

    async def die(*_: Any, **__: Any) -> None:
        raise RuntimeError("killed")

    # Items and relationships are written, then the batch dies before its history is.
    monkeypatch.setattr(svc.repo, "write_history", die)
    with pytest.raises(RuntimeError, match="killed"):
        await svc.ingest(AGENT, "assets", [
            {**server(serialNumber="NEW", hostName="n", domain="test.example"), "key": "n"},
            server(serialNumber="KEEP", attributes={"v": 2}),
            {"ciClass": "APPLICATION_INSTANCE", "key": "a",
             "identifiers": {"cloudInstanceId": "a"}},
        ], [{"source": {"key": "a"}, "target": {"key": "n"}, "type": "RUNS_ON"}])
    assert await counts(clean_db) == before
    assert await ci(clean_db, serialNumber="KEEP") == kept


async def test_two_sources_sending_the_same_new_ci_at_once_make_one(svc, clean_db):
    rounds = 5
    for i in range(rounds):
        batch = [server(serialNumber=f"RACE-{i}-{j}", attributes={"n": j}) for j in range(20)]
        a, b = await asyncio.gather(svc.ingest(AGENT, "assets", batch),
                                    svc.ingest(AGENT, "scanner", batch))
        assert a.created + b.created == 20, (a, b)
        assert not a.rejected and not b.rejected
    rows = await clean_db.read("MATCH (n:CI) RETURN count(n) AS n, "
                               "count(DISTINCT n.serialNumber) AS s")
    assert rows == [{"n": 20 * rounds, "s": 20 * rounds}]


async def test_unregistered_source_and_permissions(svc):
    with pytest.raises(DomainError, match="not registered"):
        await svc.ingest(AGENT, "nobody", [server(serialNumber="X")])
    with pytest.raises(DomainError, match="discovery:write"):
        await svc.ingest(Principal("r", frozenset({"requester"})), "scanner", [])
    with pytest.raises(DomainError, match="discovery:admin"):
        await svc.register_source(AGENT, {"name": "mine", "trust": 100})
    with pytest.raises(DomainError) as e:
        await svc.register_source(ADMIN, {"name": "Bad Name", "trust": 101,
                                          "attribute_trust": {"colour": 5}})
    assert {x.field for x in e.value.errors} == {"input.name", "input.trust",
                                                 "input.attributeTrust"}


# ------------------------------------------------------------------------------ staleness


async def test_unseen_cis_go_stale_then_retire_with_their_relationships(svc, clean_db,
                                                                         pinned):
    pinned(T0)
    r = await svc.ingest(AGENT, "cloud", [
        {"ciClass": "VIRTUAL_MACHINE", "key": "vm", "identifiers": {"cloudInstanceId": "vm"}},
        {**server(serialNumber="H1"), "key": "h1"},
        {**server(serialNumber="H2"), "key": "h2"},
    ], [{"source": {"key": "vm"}, "target": {"key": "h1"}, "type": "RUNS_ON"}])
    await clean_db.write("CREATE (:Item:CI:Server {id: 'manual', name: 'manual', "
                         "ciClass: 'Server', lifecycleStatus: 'IN_SERVICE'})")
    vm, h1, h2 = r.ids["vm"], r.ids["h1"], r.ids["h2"]
    # Day 5: h2 and the VM are seen again, h1 is not (and neither is the RUNS_ON).
    pinned(T0 + timedelta(days=5))
    await svc.ingest(AGENT, "cloud", [
        {"ciClass": "VIRTUAL_MACHINE", "identifiers": {"cloudInstanceId": "vm"}},
        server(serialNumber="H2")])
    pinned(T0 + timedelta(days=8))
    s = await svc.sweep(ADMIN)  # defaults: stale after 7 days, retired after 30
    assert (s.stale, s.retired, s.relations_stale, s.relations_retired) == (1, 0, 1, 0)
    assert (await ci(clean_db, serialNumber="H1"))["staleSince"] is not None
    assert (await ci(clean_db, name="manual")).get("staleSince") is None  # never discovered
    # Seen again: no longer stale, and the history says so.
    pinned(T0 + timedelta(days=9))
    back = await svc.ingest(AGENT, "cloud", [
        server(serialNumber="H1"),
        {"ciClass": "VIRTUAL_MACHINE", "identifiers": {"cloudInstanceId": "vm"}}])
    assert back.updated == 1 and back.unchanged == 1
    assert (await ci(clean_db, serialNumber="H1")).get("staleSince") is None
    # h2 is never seen again: stale, then retired; h1 and the VM go stale later.
    pinned(T0 + timedelta(days=13))
    assert (await svc.sweep(ADMIN)).stale == 1  # h2 (last seen day 5)
    pinned(T0 + timedelta(days=38))
    s = await svc.sweep(ADMIN, stale_after=timedelta(days=7), retire_after=timedelta(days=30))
    assert (s.stale, s.retired, s.relations_retired) == (2, 1, 1)
    gone = await ci(clean_db, serialNumber="H2")
    assert gone["lifecycleStatus"] == "RETIRED"
    assert gone["retiredReason"].startswith("not seen by any source since 2026-11-06")
    kinds = [h.kind for h in await svc.history(h2)]
    assert kinds == [HistoryKind.RETIRED, HistoryKind.STALE, HistoryKind.UPDATED,
                     HistoryKind.CREATED] or kinds == [HistoryKind.RETIRED, HistoryKind.STALE,
                                                       HistoryKind.CREATED]
    live = await clean_db.read("MATCH (:Item {id: $vm})-[r:RUNS_ON]->() "
                               "WHERE r.retiredAt IS NULL RETURN count(r) AS n", {"vm": vm})
    assert live == [{"n": 0}]
    # Retired, never deleted; a retired CI is not brought back by a record.
    again = await svc.ingest(AGENT, "cloud", [server(serialNumber="H2")])
    assert again.rejected[0].code is RejectCode.CONFLICT and "retired" in \
        again.rejected[0].reason
    assert h1 != h2
    with pytest.raises(DomainError, match="retire-after"):
        await svc.sweep(ADMIN, stale_after=timedelta(days=9), retire_after=timedelta(days=2))


# ------------------------------------------------------------------------------ history


async def test_as_of_answers_what_it_was_before(svc, clean_db, gql, pinned):
    pinned(T0)
    r = await svc.ingest(AGENT, "assets", [
        {**server(serialNumber="H", hostName="h-old", domain="test.example",
                  attributes={"os": "RHEL 8", "cpu": 8}), "key": "h"},
        {"ciClass": "APPLICATION_INSTANCE", "key": "a", "identifiers": {"cloudInstanceId": "a"}},
        {**server(serialNumber="H2"), "key": "h2"},
    ], [{"source": {"key": "a"}, "target": {"key": "h"}, "type": "RUNS_ON",
         "properties": {"impact": "OPTIONAL"}}])
    h, a = r.ids["h"], r.ids["a"]
    pinned(T0 + timedelta(days=10))
    await svc.ingest(AGENT, "assets", [
        server(serialNumber="H", hostName="h-new", domain="test.example",
               attributes={"os": "RHEL 9", "cpu": 8})],
        [{"source": {"identifiers": {"cloudInstanceId": "a"}},
          "target": {"identifiers": {"serialNumber": "H"}}, "type": "RUNS_ON",
          "properties": {"impact": "REQUIRED"}}])
    then = await svc.as_of(h, T0 + timedelta(days=5))
    assert then.existed
    assert then.properties["hostName"] == "h-old"
    assert then.properties["attributes.os"] == "RHEL 8"
    assert then.properties["attributes.cpu"] == 8
    now = await svc.as_of(h, T0 + timedelta(days=11))
    assert now.properties["hostName"] == "h-new" and now.properties["attributes.os"] == "RHEL 9"
    assert not (await svc.as_of(h, T0 - timedelta(seconds=1))).existed
    app_then = await svc.as_of(a, T0 + timedelta(days=5))
    assert [(x.type, x.other_id, x.properties.get("impact")) for x in app_then.relations] == [
        ("RUNS_ON", h, "OPTIONAL")]
    app_now = await svc.as_of(a, T0 + timedelta(days=11))
    assert app_now.relations[0].properties["impact"] == "REQUIRED"
    data = await gql.ok("""query($id: ID!, $at: DateTime!) { node(id: $id) {
        ... on ConfigurationItem { asOf(at: $at) { existed properties
          relations { type direction otherId } } } } }""", id=h,
                        at=(T0 + timedelta(days=5)).isoformat())
    as_of = data["node"]["asOf"]
    assert as_of["existed"] and as_of["properties"]["hostName"] == "h-old"
    assert as_of["relations"] == [{"type": "RUNS_ON", "direction": "INCOMING", "otherId": a}]
    rel_hist = [x for x in await svc.history(a) if x.kind is HistoryKind.RELATION_UPDATED]
    assert [(c.attribute, c.old, c.new) for c in rel_hist[0].changes] == [
        ("impact", "OPTIONAL", "REQUIRED")]


async def test_creation_history_is_carried_by_what_was_created(svc, clean_db, pinned):
    pinned(T0)
    r = await svc.ingest(AGENT, "assets", [
        {**server(serialNumber="H", hostName="h", domain="test.example",
                  attributes={"os": "RHEL 9"}), "key": "h"},
        {**server(serialNumber="H2"), "key": "h2"},
        {"ciClass": "APPLICATION_INSTANCE", "key": "a", "identifiers": {"cloudInstanceId": "a"}},
        {"ciClass": "APPLICATION_INSTANCE", "key": "b", "identifiers": {"cloudInstanceId": "b"}},
        {"ciClass": "CLUSTER", "key": "c", "identifiers": {"cloudInstanceId": "c"}},
    ], [{"source": {"key": "a"}, "target": {"key": "h"}, "type": "RUNS_ON",
         "properties": {"impact": "OPTIONAL"}},
        {"source": {"key": "b"}, "target": {"key": "h2"}, "type": "RUNS_ON"},
        {"source": {"key": "h"}, "target": {"key": "c"}, "type": "MEMBER_OF"}])
    h, h2, a, b, c = (r.ids[k] for k in ("h", "h2", "a", "b", "c"))
    # Creations are not history nodes of their own, yet read back as such, newest first.
    assert (await counts(clean_db))[1] == 0
    history = await svc.history(a)
    assert [(x.kind, x.source, x.at, x.relation_type, x.other_id) for x in history] == [
        (HistoryKind.RELATION_CREATED, "assets", T0, "RUNS_ON", h),
        (HistoryKind.CREATED, "assets", T0, None, None)]
    assert [(x.attribute, x.old, x.new) for x in history[0].changes] == [
        ("impact", None, "OPTIONAL")]
    assert [x.kind for x in await svc.history(a, first=1)] == [HistoryKind.RELATION_CREATED]
    assert await svc.history(a, since=T0 + timedelta(seconds=1)) == []
    created = (await svc.history(h))[-1]
    assert [(x.attribute, x.new) for x in created.changes] == [
        ("attributes.os", "RHEL 9"), ("domain", "test.example"), ("hostName", "h"),
        ("name", "h"), ("serialNumber", "H")]
    # A group's HAS_MEMBER mirror is not a relationship it created.
    assert [x.kind for x in await svc.history(c)] == [HistoryKind.CREATED]
    assert [x.kind for x in await svc.history(h)] == [HistoryKind.RELATION_CREATED,
                                                       HistoryKind.CREATED]
    # Merged, b's creations move to a with the rest of its history; the relationship
    # carried over to a is no creation of a's.
    pinned(T0 + timedelta(days=1))
    assert await svc.merge(ADMIN, a, [b]) == 1
    moved = [(x.kind, x.other_id, x.detail.get("mergedFrom")) for x in await svc.history(a)]
    assert moved[0] == (HistoryKind.MERGED, b, None)
    expected = [(HistoryKind.RELATION_CREATED, h, None), (HistoryKind.CREATED, None, None),
                (HistoryKind.RELATION_CREATED, h2, b), (HistoryKind.CREATED, None, b)]
    assert sorted(moved[1:], key=str) == sorted(expected, key=str)
    assert [(x.kind, x.other_id) for x in await svc.history(b)] == [
        (HistoryKind.MERGED_INTO, a)]
    # Re-sending the first batch changes nothing, history included.
    before = await counts(clean_db)
    assert len(await svc.history(h)) == 2
    pinned(T0 + timedelta(days=1, seconds=1))
    again = await svc.ingest(AGENT, "assets", [
        {**server(serialNumber="H", hostName="h", domain="test.example",
                  attributes={"os": "RHEL 9"}), "key": "h"},
        {"ciClass": "CLUSTER", "key": "c", "identifiers": {"cloudInstanceId": "c"}}],
        [{"source": {"key": "h"}, "target": {"key": "c"}, "type": "MEMBER_OF"}])
    assert (again.created, again.updated, again.relations_created) == (0, 0, 0)
    assert await counts(clean_db) == before and len(await svc.history(h)) == 2


async def test_health_rolls_up_over_discovered_relationships(svc, clean_db, gql):
    r = await svc.ingest(AGENT, "cloud", [
        {"ciClass": "APPLICATION_INSTANCE", "key": "a", "identifiers": {"cloudInstanceId": "a"}},
        {**server(serialNumber="H"), "key": "h"}])
    await gql.ok('mutation($id: ID!) { setOperationalState(ids: [$id], state: UP) '
                 '{ changes { itemId } } }', id=r.ids["a"])
    await gql.ok('mutation($id: ID!) { setOperationalState(ids: [$id], state: DOWN) '
                 '{ changes { itemId } } }', id=r.ids["h"])
    await svc.ingest(AGENT, "cloud", [], [
        {"source": {"id": r.ids["a"]}, "target": {"id": r.ids["h"]}, "type": "RUNS_ON"}])
    await settle(clean_db)  # health follows the ingest (docs/health.md)
    data = await gql.ok('query($id: ID!) { node(id: $id) { healthState } }', id=r.ids["a"])
    assert data["node"]["healthState"] == "DOWN"


async def test_migrations_fill_gaps_in_ascending_order(clean_db):
    await clean_db.write("MATCH (m:SchemaMigration) WHERE m.version IN [3, 7] DETACH DELETE m")
    applied = await migrate(clean_db)
    assert [m.version for m in applied] == [3, 7]
    rows = await clean_db.read("MATCH (m:SchemaMigration) RETURN max(m.version) AS v")
    assert rows[0]["v"] == LATEST_VERSION
    assert await migrate(clean_db) == []


async def test_sightings_are_recorded_at_the_configured_resolution(svc, clean_db, pinned):
    pinned(T0)
    r = await svc.ingest(AGENT, "cloud", [
        {"ciClass": "VIRTUAL_MACHINE", "key": "vm", "identifiers": {"cloudInstanceId": "vm"}},
        {**server(serialNumber="H"), "key": "h"}],
        [{"source": {"key": "vm"}, "target": {"key": "h"}, "type": "RUNS_ON"}])
    batch = ([{"ciClass": "VIRTUAL_MACHINE", "identifiers": {"cloudInstanceId": "vm"}}],
             [{"source": {"id": r.ids["vm"]}, "target": {"id": r.ids["h"]},
               "type": "RUNS_ON"}])

    async def seen() -> tuple[Any, Any]:
        rows = await clean_db.read("MATCH (v:CI {cloudInstanceId: 'vm'})-[r:RUNS_ON]->() "
                                   "RETURN v.lastSeenAt AS v, r.lastSeenAt AS r")
        return rows[0]["v"].to_native(), rows[0]["r"].to_native()

    pinned(T0 + timedelta(seconds=100))  # within the default 300 s: a read, nothing written
    again = await svc.ingest(AGENT, "cloud", *batch)
    assert (again.unchanged, again.relations_unchanged) == (1, 1)
    assert await seen() == (T0, T0)
    pinned(T0 + timedelta(seconds=400))
    await svc.ingest(AGENT, "cloud", *batch)
    assert await seen() == (T0 + timedelta(seconds=400), T0 + timedelta(seconds=400))
    # Another source's first sighting is always recorded.
    pinned(T0 + timedelta(seconds=410))
    await svc.ingest(AGENT, "assets", *batch)
    v = await ci(clean_db, cloudInstanceId="vm")
    assert set(json.loads(v["seenBy"])) == {"cloud", "assets"}


async def test_an_edit_by_a_person_is_history_and_protects_the_value(svc, clean_db, gql,
                                                                      pinned):
    pinned(T0)
    r = await svc.ingest(AGENT, "scanner", [{**server(serialNumber="E1",
                                                      attributes={"os": "Linux"}),
                                             "key": "e"}])
    ci_id = r.ids["e"]
    pinned(T0 + timedelta(days=1))
    data = await gql.ok("""mutation($id: ID!) { updateConfigurationItem(id: $id,
        input: {attributes: {os: "RHEL 9.4"}, description: "payroll box"}) {
        errors { message } } }""", id=ci_id)
    assert data["updateConfigurationItem"]["errors"] == []
    latest = (await svc.history(ci_id))[0]
    assert (latest.source, latest.kind, latest.at) == ("api", HistoryKind.UPDATED,
                                                       T0 + timedelta(days=1))
    assert [(c.attribute, c.old, c.new) for c in latest.changes] == [
        ("attributes.os", "Linux", "RHEL 9.4"), ("description", None, "payroll box")]
    assert (await svc.as_of(ci_id, T0 + timedelta(hours=1))).properties["attributes.os"] \
        == "Linux"
    # The scanner (trust 30) no longer owns the value: a person set it (trust 50).
    pinned(T0 + timedelta(days=2))
    again = await svc.ingest(AGENT, "scanner", [server(serialNumber="E1",
                                                       attributes={"os": "Linux"})])
    assert again.suppressed == 1
    assert (await ci(clean_db, serialNumber="E1"))["attr_os"] == "RHEL 9.4"


async def test_relationship_properties_follow_source_precedence(svc, clean_db):
    r = await svc.ingest(AGENT, "assets", [
        {"ciClass": "APPLICATION_INSTANCE", "key": "a", "identifiers": {"cloudInstanceId": "a"}},
        {**server(serialNumber="H"), "key": "h"}],
        [{"source": {"key": "a"}, "target": {"key": "h"}, "type": "RUNS_ON",
          "properties": {"impact": "REQUIRED"}}])
    rel = [{"source": {"id": r.ids["a"]}, "target": {"id": r.ids["h"]}, "type": "RUNS_ON",
            "properties": {"impact": "OPTIONAL", "port": 8443}}]
    low = await svc.ingest(AGENT, "scanner", [], rel)  # trust 30 < 80
    assert (low.relations_updated, low.relations_unchanged, low.suppressed) == (0, 1, 1)

    async def props() -> dict[str, Any]:
        rows = await clean_db.read("MATCH (:CI {cloudInstanceId: 'a'})-[r:RUNS_ON]->() "
                                   "RETURN properties(r) AS p")
        found: dict[str, Any] = rows[0]["p"]
        return found

    p = await props()
    assert p["attr_impact"] == "REQUIRED" and "attr_port" not in p
    assert p["sources"] == ["assets", "scanner"]  # seen by both
    high = await svc.ingest(AGENT, "assets", [], rel)
    assert high.relations_updated == 1
    p = await props()
    assert (p["attr_impact"], p["attr_port"], p["propertiesSource"]) == ("OPTIONAL", 8443,
                                                                         "assets")


async def test_a_large_import_goes_in_batches_with_progress(svc, clean_db):
    items = [{"key": f"h{i}", "ciClass": "SERVER", "identifiers": {"serialNumber": f"B{i}"}}
             for i in range(7)] + [{"ciClass": "SERVER", "identifiers": {}}]
    rels = [{"source": {"key": f"h{i}"}, "target": {"key": f"h{i + 1}"},
             "type": "DEPENDS_ON"} for i in range(6)]
    seen: list[tuple[int, int]] = []
    r = await svc.ingest(AGENT, "assets", items, rels, batch_size=3,
                         progress=lambda done, total: seen.append((done, total)))
    assert (r.created, r.relations_created, r.batches) == (7, 6, 5)
    assert [(x.record, x.index) for x in r.rejected] == [("item", 7)]
    assert seen == [(3, 14), (6, 14), (8, 14), (11, 14), (14, 14)]
    rows = await clean_db.read("MATCH (:CI)-[r:DEPENDS_ON]->(:CI) RETURN count(r) AS n")
    assert rows == [{"n": 6}]


# ------------------------------------------------------------------------------ pipeline


def keyed(key: str, **ids: Any) -> dict[str, Any]:
    return {"key": key, **server(**ids)}


@pytest.fixture
def plans(svc, monkeypatch) -> list[Any]:
    """The plans ``_plan`` makes (None: reconciled in the batch's own transaction)."""
    made: list[Any] = []
    real = svc._plan

    async def spy(*args: Any, **kwargs: Any) -> Any:
        plan = await real(*args, **kwargs)
        made.append(plan)
        return plan

    monkeypatch.setattr(svc, "_plan", spy)
    return made


@pytest.fixture
def merged_on(svc, monkeypatch) -> list[str]:
    """The identifier values CIs are created (MERGEd) on, each write slowed down so that
    the next batch is planned while it is written (before it commits)."""
    values: list[str] = []
    real = svc.repo.create_items

    async def slow(tx: Any, labels: str, merge_prop: str, rows: list[Any], now: Any) -> int:
        values.extend(r["mergeValue"] for r in rows)
        await asyncio.sleep(0.3)
        created: int = await real(tx, labels, merge_prop, rows, now)
        return created

    monkeypatch.setattr(svc.repo, "create_items", slow)
    return values


async def test_a_batch_planned_ahead_sees_what_the_batch_before_it_wrote(
        svc, clean_db, plans, merged_on):
    await svc.ingest(AGENT, "assets", [server(serialNumber="OLD")])
    mac = "02:00:00:00:00:0C"
    items = [
        # batch 0: reconciled in its transaction
        keyed("a", serialNumber="S-A", attributes={"v": 1}), keyed("b", serialNumber="S-B"),
        # batch 1: new CIs, planned while batch 0 is written
        keyed("c", serialNumber="S-C", macAddress=mac, attributes={"v": 1}),
        keyed("d", serialNumber="S-D"),
        # batch 2: planned while batch 1 (which creates the CI holding this MAC) is written,
        # so its read cannot see that CI: the plan is dropped, the record updates the CI
        keyed("c2", macAddress=mac, attributes={"v": 2}), keyed("e", serialNumber="S-E"),
        # batch 3: a CI of batch 0 and one stored before: found by the plan's read
        keyed("a2", serialNumber="S-A", attributes={"v": 3}),
        keyed("old", serialNumber="OLD", attributes={"v": 4}),
        # batch 4: new again
        keyed("f", serialNumber="S-F"), keyed("g", serialNumber="S-G"),
    ]
    r = await svc.ingest(AGENT, "assets", items, batch_size=2)
    assert not r.rejected
    assert (r.created, r.updated, r.batches) == (7, 3, 5)
    # batch 1 and 4 planned and written as planned; 2 planned, then reconciled again; 3 not
    assert [p is not None for p in plans] == [True, True, False, True]
    assert mac not in merged_on  # batch 2's plan (creating a CI on this MAC) never ran
    assert merged_on.count("S-C") == 1 and merged_on.count("S-F") == 1
    assert (await counts(clean_db))[0] == 8
    c = await ci(clean_db, macAddress=mac)
    assert (c["serialNumber"], c["attr_v"]) == ("S-C", 2)
    assert (await ci(clean_db, serialNumber="S-A"))["attr_v"] == 3
    assert (await ci(clean_db, serialNumber="OLD"))["attr_v"] == 4
    assert r.ids["c"] == r.ids["c2"] == c["id"]
    # Sent again: nothing new, nothing planned (every record identifies a stored CI).
    plans.clear()
    again = await svc.ingest(AGENT, "assets", items, batch_size=2)
    assert (again.created, again.rejected) == (0, [])
    assert set(plans) == {None}
    assert (await counts(clean_db))[0] == 8


async def test_a_ci_made_by_another_source_after_a_plan_was_read_is_updated(
        svc, clean_db, monkeypatch):
    real = svc._plan
    other = DiscoveryService(clean_db, svc.settings)

    async def meanwhile(*args: Any, **kwargs: Any) -> Any:
        plan = await real(*args, **kwargs)
        if plan is not None:  # another source creates one of the planned CIs
            made = await other.ingest(AGENT, "cloud", [server(serialNumber="S-2",
                                                              attributes={"by": "cloud"})])
            assert made.created == 1
        return plan

    monkeypatch.setattr(svc, "_plan", meanwhile)
    items = [keyed(f"k{i}", serialNumber=f"S-{i}", attributes={"n": i}) for i in range(4)]
    r = await svc.ingest(AGENT, "assets", items, batch_size=2)
    assert not r.rejected
    assert (r.created, r.updated) == (3, 1)
    rows = await clean_db.read("MATCH (n:CI) RETURN count(n) AS n, "
                               "count(DISTINCT n.serialNumber) AS s")
    assert rows == [{"n": 4, "s": 4}]
    s2 = await ci(clean_db, serialNumber="S-2")
    assert (s2["attr_by"], s2["attr_n"], s2["source"]) == ("cloud", 2, "cloud")
    assert r.ids["k2"] == s2["id"]


async def test_relationships_planned_ahead_join_cis_of_earlier_batches(svc, clean_db, plans):
    old = await svc.ingest(AGENT, "assets", [keyed("old", serialNumber="OLD")])
    old_id = old.ids["old"]
    items = [keyed(f"h{i}", serialNumber=f"R{i}") for i in range(4)]

    def dep(s: str, t: dict[str, Any]) -> dict[str, Any]:
        return {"source": {"key": s}, "target": t, "type": "DEPENDS_ON"}

    rels = [
        dep("h0", {"key": "h1"}), dep("h1", {"key": "h2"}),  # after items: not planned
        dep("h2", {"key": "h3"}), dep("h3", {"key": "h0"}),  # planned
        dep("h3", {"id": old_id}), dep("h0", {"key": "nope"}),  # a CI not of this ingest
        dep("h1", {"key": "h3"}), dep("h2", {"key": "h2"}),  # planned
    ]
    r = await svc.ingest(AGENT, "assets", items, rels, batch_size=2)
    # items batch 1, relations batches 3 and 5 (batch 4 names a CI stored before)
    assert [p is not None for p in plans] == [True, True, False, True]
    assert r.relations_created == 6
    assert sorted((x.index, x.code) for x in r.rejected) == [
        (5, RejectCode.NOT_FOUND), (7, RejectCode.INVALID)]
    rows = await clean_db.read("MATCH (a:CI)-[r:DEPENDS_ON]->(b:CI) "
                               "RETURN a.serialNumber AS a, b.serialNumber AS b, "
                               "r.createdSeq IS NOT NULL AS seq, r.source AS source")
    assert sorted((x["a"], x["b"]) for x in rows) == [
        ("R0", "R1"), ("R1", "R2"), ("R1", "R3"), ("R2", "R3"), ("R3", "OLD"), ("R3", "R0")]
    assert {(x["seq"], x["source"]) for x in rows} == {(True, "assets")}
    assert all(p.relations is not None for p in plans[1:] if p is not None)
    # Sent again: relationships are checked ahead, then looked for in the transaction.
    plans.clear()
    again = await svc.ingest(AGENT, "assets", items, rels, batch_size=2)
    assert [p if p is None else p.relations for p in plans] == [None, None, None, None]
    assert [p is not None and p.accepted is not None for p in plans] == [
        False, True, False, True]
    assert (again.relations_created, again.relations_unchanged) == (0, 6)
    assert sorted((x.index, x.code) for x in again.rejected) == [
        (5, RejectCode.NOT_FOUND), (7, RejectCode.INVALID)]
    # A property changed on a planned batch's relationship is an update, with its history.
    rels[3] = {**rels[3], "properties": {"impact": "OPTIONAL"}}
    third = await svc.ingest(AGENT, "assets", items, rels, batch_size=2)
    assert (third.relations_created, third.relations_updated) == (0, 1)
    hist = await svc.history(third.ids["h3"])
    assert [(h.kind, h.other_id) for h in hist][:1] == [
        (HistoryKind.RELATION_UPDATED, third.ids["h0"])]


async def test_a_plan_that_fails_leaves_the_batch_to_its_own_transaction(
        svc, clean_db, plans, monkeypatch):
    async def broken(*_: Any, **__: Any) -> bool:
        raise RuntimeError("read failed")

    monkeypatch.setattr(svc.repo, "identifiers_held", broken)
    items = [keyed(f"k{i}", serialNumber=f"F-{i}") for i in range(6)]
    r = await svc.ingest(AGENT, "assets", items, batch_size=2)
    assert (r.created, r.rejected, r.batches) == (6, [], 3)
    assert plans == []  # every _plan call failed: nothing planned, nothing lost
    assert (await counts(clean_db))[0] == 6
