"""The readers of real tool output, on fixture files of each tool's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmdb.discovery.models import DiscoveredItem, batch_json_schema
from cmdb.discovery.parsers import (
    Format,
    ParseError,
    parse,
    parse_csv,
    parse_kubectl,
    parse_mapping,
    parse_ndjson,
    parse_nmap,
)
from cmdb.items.models import CIClass

FIXTURES = Path(__file__).parent / "fixtures" / "discovery"
ASSET_MAPPING = {
    "Asset Tag": "attributes.assetTag", "Serial No": "identifiers.serialNumber",
    "Host": "identifiers.hostName", "DNS Domain": "identifiers.domain", "Type": "ciClass",
    "OS": "attributes.os", "RAM (GB)": "attributes.memoryGb:int",
    "In Warranty": "attributes.inWarranty:bool",
}


def test_nmap_hosts_that_are_up_with_addresses_mac_and_open_services():
    parsed = parse_nmap((FIXTURES / "nmap-scan.xml").read_text())
    assert len(parsed.items) == 4  # the down host is left out
    web, db, esx, bare = parsed.items
    assert web["identifiers"] == {"macAddress": "52:54:00:6B:1F:02", "hostName": "web-01",
                                  "domain": "test.example"}
    assert web["ciClass"] == "Server"
    assert web["attributes"]["ipAddress"] == "192.168.40.2"
    assert web["attributes"]["osGuess"] == "Linux 5.0 - 5.14"
    # Only open ports; filtered 8080 is not a service.
    assert web["attributes"]["openServices"] == [
        "22/tcp ssh OpenSSH 9.6p1 Ubuntu 3ubuntu13.5", "443/tcp http nginx 1.24.0"]
    assert db["identifiers"] == {"macAddress": "52:54:00:6B:1F:05"}
    assert db["name"] == "192.168.40.5"
    assert esx["ciClass"] == "HypervisorHost"  # the OS fingerprint says ESXi
    assert bare["identifiers"] == {}  # nothing to identify it: the ingest rejects it
    for item in parsed.items[:3]:
        DiscoveredItem.model_validate(item)


def test_nmap_refuses_other_documents_and_entities():
    with pytest.raises(ParseError, match="nmaprun"):
        parse_nmap("<?xml version='1.0'?><scan/>")
    with pytest.raises(ParseError, match="well-formed"):
        parse_nmap("<nmaprun><host>")
    bomb = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            "<nmaprun>&a;</nmaprun>")
    with pytest.raises(ParseError, match="entity"):
        parse_nmap(bomb)


def test_csv_with_a_column_mapping_and_types():
    parsed = parse_csv((FIXTURES / "assets.csv").read_text(), ASSET_MAPPING)
    assert len(parsed.items) == 4
    web = parsed.items[0]
    assert web == {
        "ciClass": "Server",
        "identifiers": {"serialNumber": "SN-WEB-01", "hostName": "web-01",
                        "domain": "test.example"},
        "attributes": {"assetTag": "A-1001", "os": "Ubuntu 24.04 LTS", "memoryGb": 64,
                       "inWarranty": True},
    }
    assert parsed.items[1]["attributes"]["inWarranty"] is False
    # A value that is not of its type is reported and left out, the row kept.
    assert "memoryGb" not in parsed.items[3]["attributes"]
    assert parsed.problems == ["line 5, column 'RAM (GB)': invalid literal for int() with "
                               "base 10: 'lots'; value left out"]


def test_csv_mapping_errors_name_the_column():
    text = (FIXTURES / "assets.csv").read_text()
    with pytest.raises(ParseError, match="Serial Number"):
        parse_csv(text, {"Serial Number": "identifiers.serialNumber", "Type": "ciClass"})
    with pytest.raises(ParseError, match=r"'Host' maps to 'identifiers\.hostname'"):
        parse_csv(text, {"Host": "identifiers.hostname", "Type": "ciClass"})
    with pytest.raises(ParseError, match="type 'date'"):
        parse_csv(text, {"Host": "attributes.h:date", "Type": "ciClass"})
    with pytest.raises(ParseError, match="ciClass"):
        parse_csv(text, {"Host": "identifiers.hostName"})
    with pytest.raises(ParseError, match="Column=field"):
        parse_mapping(["Serial"])
    assert parse_mapping(["Serial No = identifiers.serialNumber"]) == {
        "Serial No": "identifiers.serialNumber"}


def test_kubectl_nodes_and_pods():
    parsed = parse_kubectl((FIXTURES / "kubectl-nodes-pods.json").read_text(), "eks-shop")
    node, checkout, cart, job = parsed.items
    assert node["ciClass"] == "VirtualMachine"  # a provider id: a cloud instance
    assert node["identifiers"] == {
        "cloudInstanceId": "aws:///eu-west-1a/i-0a1b2c3d4e5f60718",
        "hostName": "ip-10-0-1-17", "domain": "eu-west-1.compute.internal"}
    assert node["attributes"]["cpu"] == 4
    assert node["attributes"]["memoryGb"] == 15.3
    assert node["attributes"]["k8sCluster"] == "eks-shop"
    assert checkout["ciClass"] == "ApplicationInstance"
    assert checkout["name"] == "shop/checkout-6f7d8c9b5-2xkqp"
    assert checkout["identifiers"] == {
        "cloudInstanceId": "k8s-pod:b3a1c2d4-0e5f-4a6b-8c7d-9e0f1a2b3c4d"}
    assert checkout["attributes"]["images"] == [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/checkout:1.8.2", "envoyproxy/envoy:v1.31.2"]
    assert parsed.relations == [
        {"source": {"key": checkout["key"]}, "target": {"key": node["key"]}, "type": "RUNS_ON"},
        {"source": {"key": cart["key"]}, "target": {"key": node["key"]}, "type": "RUNS_ON"},
    ]
    assert "not in the export" in parsed.problems[0] and job["attributes"]["phase"] == "Pending"
    # On-premises nodes: the class can be given.
    vm = parse(Format.KUBECTL, (FIXTURES / "kubectl-nodes-pods.json").read_text(),
               ci_class=CIClass.SERVER)
    assert vm.items[0]["ciClass"] == "Server"


def test_kubectl_refuses_other_json():
    with pytest.raises(ParseError, match="kubectl List"):
        parse_kubectl('{"kind": "Pod"}')
    with pytest.raises(ParseError, match="not JSON"):
        parse_kubectl("{")


def test_ndjson_records():
    parsed = parse_ndjson('{"record": "item", "ciClass": "Server"}\n\n'
                          '{"record": "relation", "type": "RUNS_ON"}\n')
    assert parsed.items == [{"ciClass": "Server"}]
    assert parsed.relations == [{"type": "RUNS_ON"}]
    with pytest.raises(ParseError, match="line 2"):
        parse_ndjson('{"record": "item"}\n{"ciClass": "Server"}')


def test_schema_is_published_with_the_record_shapes():
    schema = batch_json_schema()
    assert schema["$schema"].endswith("2020-12/schema")
    assert schema["required"] == ["source"]
    item = schema["$defs"]["DiscoveredItem"]
    assert item["required"] == ["ciClass"] and item["additionalProperties"] is False
    assert set(schema["$defs"]["RecordIdentifiers"]["properties"]) == {
        "serialNumber", "hostName", "domain", "macAddress", "cloudInstanceId"}
    assert "Server" in schema["$defs"]["CIClass"]["enum"]


RELATION_RECORDS = [
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "vm-1:x@y/z"}, "target": {"key": "B.2"}, "type": "MEMBER_OF",
     "properties": {"impact": "OPTIONAL"}},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "RUNS_ON", "properties": {}},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "runs_on"},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "TOUCHES"},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": ["RUNS_ON"]},
    {"source": {"key": "-a"}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a\n"}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": ""}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a" * 257}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a" * 256}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": 1}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a", "id": "x"}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a", "id": None}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"id": "x"}, "target": {"key": "b"}, "type": "RUNS_ON"},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "RUNS_ON", "colour": "red"},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "RUNS_ON", "properties": [1]},
    {"source": {"key": "a"}, "target": {"key": "b"}, "type": "RUNS_ON",
     "properties": {1: "x"}},
    {"source": {"key": "a"}, "target": {"key": "b"}},
    {"source": "a", "target": {"key": "b"}, "type": "RUNS_ON"},
]


@pytest.mark.parametrize("raw", RELATION_RECORDS)
def test_quick_relation_check_agrees_with_the_model(raw):
    """The fast path for relations by key accepts exactly what the model accepts, as the
    model would build it, and leaves every other record to the model."""
    from pydantic import ValidationError

    from cmdb.discovery.models import DiscoveredRelation
    from cmdb.discovery.records import quick_relation

    quick = quick_relation(raw)
    try:
        full = DiscoveredRelation.model_validate(raw)
    except ValidationError:
        full = None
    if quick is not None:
        assert full is not None and quick.model_dump() == full.model_dump()
        assert quick == full and quick.model_fields_set == full.model_fields_set
        for end in ("source", "target"):
            assert getattr(quick, end) == getattr(full, end)
            assert getattr(quick, end).model_fields_set == getattr(full, end).model_fields_set
    shape = {k for k in raw if k != "properties"} == {"source", "target", "type"} and \
        all(isinstance(raw[s], dict) and list(raw[s]) == ["key"] for s in ("source", "target"))
    if full is not None and shape:
        assert quick is not None  # the usual record takes the fast path
