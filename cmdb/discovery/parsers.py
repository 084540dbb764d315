"""Readers for what real tools produce, each turned into discovery records.

- ``nmap -oX`` XML scans: hosts that are up, their addresses, MAC, host name, OS guess and
  open services;
- CSV with a column mapping (``column -> field``, e.g. ``Serial -> identifiers.serialNumber``);
- ``kubectl get nodes,pods -o json``: nodes become servers or VMs, pods application
  instances that RUN_ON their node.

A parser never talks to the database; records it cannot make sense of are still returned
(so the ingest reports them with their index) or named in ``Parsed.problems``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from xml.etree import ElementTree

from cmdb.items.models import CIClass


class Format(StrEnum):
    NMAP = "nmap"
    CSV = "csv"
    KUBECTL = "kubectl"
    JSON = "json"  # the batch payload itself: {"source"?, "items": [...], "relations": [...]}
    NDJSON = "ndjson"  # one record a line: {"record": "item"|"relation", ...}


class ParseError(ValueError):
    """The file as a whole cannot be read (not the tool's format)."""


@dataclass
class Parsed:
    items: list[dict[str, Any]] = field(default_factory=list)
    relations: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _split_fqdn(name: str) -> tuple[str, str | None]:
    host, _, domain = name.strip().rstrip(".").partition(".")
    return host.lower(), (domain.lower() or None)


# ------------------------------------------------------------------------------ nmap


def parse_nmap(text: str, ci_class: CIClass = CIClass.SERVER) -> Parsed:
    """Hosts of an ``nmap -oX`` report. Identifiers: host name + domain (from the first
    user-given or PTR host name) and the MAC address; the IPv4 address, MAC vendor, OS guess
    (``osGuess``) and open services (``22/tcp ssh OpenSSH 9.6``) become attributes. The class
    is ``ci_class`` unless the OS fingerprint says otherwise (ESXi: a hypervisor host; a
    switch, router or firewall: a network device)."""
    if "<!DOCTYPE" in text[:2000] and "<!ENTITY" in text:
        raise ParseError("entity declarations are not accepted in nmap XML")
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise ParseError(f"not well-formed XML: {e}") from None
    if root.tag != "nmaprun":
        raise ParseError(f"expected an <nmaprun> document (nmap -oX), found <{root.tag}>")
    out = Parsed()
    for number, host in enumerate(root.findall("host"), start=1):
        status = host.find("status")
        if status is None or status.get("state") == "up":
            out.items.append(_nmap_host(host, number, ci_class))
    return out


def _nmap_host(host: ElementTree.Element, number: int, ci_class: CIClass) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    for addr in host.findall("address"):
        kind = addr.get("addrtype")
        if kind == "mac" and addr.get("addr"):
            ids["macAddress"] = addr.get("addr")
            if addr.get("vendor"):
                attrs["macVendor"] = addr.get("vendor")
        elif kind in ("ipv4", "ipv6") and addr.get("addr"):
            attrs.setdefault("ipAddress", addr.get("addr"))
    names = [h.get("name") or "" for h in host.findall("hostnames/hostname")]
    names = [n for n in names if n]
    if names:
        host_name, domain = _split_fqdn(names[0])
        ids["hostName"] = host_name
        if domain:
            ids["domain"] = domain
    host_class = _nmap_class(host, ci_class, attrs)
    services = _open_services(host)
    if services:
        attrs["openServices"] = services
    item: dict[str, Any] = {"key": f"host-{number}", "ciClass": host_class.value,
                            "identifiers": ids, "attributes": attrs}
    if "hostName" not in ids and "ipAddress" in attrs:
        item["name"] = attrs["ipAddress"]
    return item


def _nmap_class(host: ElementTree.Element, ci_class: CIClass, attrs: dict[str, Any]) -> CIClass:
    """What the OS fingerprint says the device is (its guess kept in ``attrs``)."""
    osmatch = host.find("os/osmatch")
    if osmatch is None or not osmatch.get("name"):
        return ci_class
    attrs["osGuess"] = osmatch.get("name")
    osclass = osmatch.find("osclass")
    if osclass is None:
        return ci_class
    if osclass.get("osfamily") == "ESXi":
        return CIClass.HYPERVISOR_HOST
    if osclass.get("type") in ("switch", "router", "firewall"):
        return CIClass.NETWORK_DEVICE
    if osclass.get("type") == "load balancer":
        return CIClass.LOAD_BALANCER
    return ci_class


def _open_services(host: ElementTree.Element) -> list[str]:
    services = []
    for port in host.findall("ports/port"):
        state = port.find("state")
        if state is None or state.get("state") != "open":
            continue
        svc = port.find("service")
        words = [f"{port.get('portid')}/{port.get('protocol')}"]
        if svc is not None:
            words += [svc.get(k) or "" for k in ("name", "product", "version")]
        services.append(" ".join(w for w in words if w))
    return services


# ------------------------------------------------------------------------------ CSV

_TYPES = {"str", "int", "float", "bool", "list"}
_FIELDS = {"key", "ciClass", "name", "description"}
_IDENTIFIERS = {"serialNumber", "hostName", "domain", "fqdn", "macAddress", "cloudInstanceId"}


def parse_mapping(pairs: list[str]) -> dict[str, str]:
    """``Column=field[:type]`` pairs (from the command line) as a mapping."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        column, sep, target = pair.partition("=")
        if not sep or not column.strip() or not target.strip():
            raise ParseError(f"mapping {pair!r} must look like Column=field, e.g. "
                             "'Serial No=identifiers.serialNumber'")
        mapping[column.strip()] = target.strip()
    return mapping


def _check_target(column: str, target: str) -> tuple[str, str]:
    path, _, kind = target.partition(":")
    kind = kind or "str"
    if kind not in _TYPES:
        raise ParseError(f"column {column!r}: type {kind!r} is not one of {sorted(_TYPES)}")
    head, _, rest = path.partition(".")
    ok = (path in _FIELDS or (head == "identifiers" and rest in _IDENTIFIERS)
          or (head == "attributes" and rest))
    if not ok:
        raise ParseError(f"column {column!r} maps to {path!r}; use key, ciClass, name, "
                         "description, identifiers.<serialNumber|hostName|domain|fqdn|"
                         "macAddress|cloudInstanceId> or attributes.<key>")
    return path, kind


def _convert(value: str, kind: str) -> Any:
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    if kind == "bool":
        low = value.strip().lower()
        if low in ("true", "yes", "y", "1"):
            return True
        if low in ("false", "no", "n", "0"):
            return False
        raise ValueError(f"{value!r} is not a yes/no value")
    if kind == "list":
        return [v.strip() for v in value.split(";") if v.strip()]
    return value


def parse_csv(
    text: str, mapping: Mapping[str, str] | None = None,
    ci_class: CIClass | None = None, delimiter: str | None = None,
) -> Parsed:
    """Rows of a CSV export. ``mapping`` maps column headers to record fields with an
    optional type (``CPUs=attributes.cpu:int``); without one, headers must be field names
    already. ``ci_class`` is used for rows without a class column. Columns not mapped are
    ignored; empty cells are left out."""
    sample = text[:4096]
    if delimiter is None:
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        except csv.Error:
            delimiter = ","
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    headers = reader.fieldnames or []
    if not headers:
        raise ParseError("the CSV has no header row")
    mapping = dict(mapping) if mapping else {h: h for h in headers}
    missing = [c for c in mapping if c not in headers]
    if missing:
        raise ParseError(f"mapped columns not in the header: {', '.join(missing)} "
                         f"(header: {', '.join(headers)})")
    targets = {c: _check_target(c, t) for c, t in mapping.items()}
    if ci_class is None and not any(p == "ciClass" for p, _ in targets.values()):
        raise ParseError("map a column to ciClass or give the class of every row")
    out = Parsed()
    for line, row in enumerate(reader, start=2):
        item: dict[str, Any] = {"identifiers": {}, "attributes": {}}
        if ci_class is not None:
            item["ciClass"] = ci_class.value
        for column, (path, kind) in targets.items():
            raw = (row.get(column) or "").strip()
            if not raw:
                continue
            try:
                value = _convert(raw, kind)
            except ValueError as e:
                out.problems.append(f"line {line}, column {column!r}: {e}; value left out")
                continue
            head, _, rest = path.partition(".")
            if head == "identifiers" and rest == "fqdn":
                host, domain = _split_fqdn(str(value))
                item["identifiers"]["hostName"] = host
                if domain:
                    item["identifiers"]["domain"] = domain
            elif head in ("identifiers", "attributes"):
                item[head][rest] = value
            else:
                item[path] = value
        if not item["attributes"]:
            del item["attributes"]
        out.items.append(item)
    return out


# ------------------------------------------------------------------------------ kubectl


def _quantity_gib(q: str) -> float | None:
    units = {"Ki": 1 / 1024 / 1024, "Mi": 1 / 1024, "Gi": 1.0, "Ti": 1024.0}
    for suffix, factor in units.items():
        if q.endswith(suffix):
            try:
                return round(float(q[: -len(suffix)]) * factor, 1)
            except ValueError:
                return None
    return None


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None


def _objects(doc: dict[str, Any], kind: str) -> list[tuple[Any, Any, Any]]:
    """(metadata, spec, status) of each object of a kind in a kubectl List."""
    return [(obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {}))
            for obj in doc["items"] if isinstance(obj, dict) and obj.get("kind") == kind]


def _present(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attrs.items() if v is not None}


def parse_kubectl(
    text: str, cluster: str | None = None, node_class: CIClass | None = None
) -> Parsed:
    """``kubectl get nodes,pods -o json`` (a ``List``). Nodes: identified by their provider
    id (cloud) and their name as host name + domain when it is a FQDN; a node with a provider
    id is a VirtualMachine, otherwise a Server (``node_class`` overrides both). Pods:
    ApplicationInstances identified by ``k8s-pod:<uid>``, RUNS_ON their node."""
    doc = _json(text)
    if not isinstance(doc, dict) or doc.get("kind") != "List" or not isinstance(
        doc.get("items"), list
    ):
        raise ParseError('expected a kubectl List ({"kind": "List", "items": [...]}), as '
                         "`kubectl get nodes,pods -o json` prints")
    out = Parsed()
    nodes: dict[str, str] = {}
    for meta, spec, status in _objects(doc, "Node"):
        item = _kube_node(meta, spec, status, cluster, node_class)
        nodes[str(meta.get("name", ""))] = item["key"]
        out.items.append(item)
    for meta, spec, status in _objects(doc, "Pod"):
        _kube_pod(meta, spec, status, cluster, nodes, out)
    return out


def _kube_node(meta: Any, spec: Any, status: Any, cluster: str | None,
               node_class: CIClass | None) -> dict[str, Any]:
    name = str(meta.get("name", ""))
    info = status.get("nodeInfo", {})
    host, domain = _split_fqdn(name)
    ids: dict[str, Any] = {}
    if spec.get("providerID"):
        ids["cloudInstanceId"] = spec["providerID"]
    if domain:
        ids["hostName"], ids["domain"] = host, domain
    attrs: dict[str, Any] = {
        "os": info.get("osImage"), "kernel": info.get("kernelVersion"),
        "kubelet": info.get("kubeletVersion"), "architecture": info.get("architecture"),
        "containerRuntime": info.get("containerRuntimeVersion"),
        "systemUuid": info.get("systemUUID"),
    }
    cap = status.get("capacity", {})
    if str(cap.get("cpu", "")).isdigit():
        attrs["cpu"] = int(cap["cpu"])
    mem = _quantity_gib(str(cap.get("memory", "")))
    if mem is not None:
        attrs["memoryGb"] = mem
    for a in status.get("addresses", []):
        if a.get("type") == "InternalIP":
            attrs["ipAddress"] = a.get("address")
    if cluster:
        attrs["k8sCluster"] = cluster
    return {
        "key": f"node/{name}", "name": host,
        "ciClass": (node_class or (CIClass.VIRTUAL_MACHINE if ids.get("cloudInstanceId")
                                   else CIClass.SERVER)).value,
        "identifiers": ids,
        "attributes": _present(attrs),
    }


def _kube_pod(meta: Any, spec: Any, status: Any, cluster: str | None,
              nodes: Mapping[str, str], out: Parsed) -> None:
    ns, name, uid = meta.get("namespace", "default"), meta.get("name", ""), meta.get("uid")
    images = [c.get("image") for c in spec.get("containers", []) if c.get("image")]
    attrs = {"namespace": ns, "phase": status.get("phase"), "podIp": status.get("podIP"),
             "images": images or None,
             "app": (meta.get("labels") or {}).get("app")}
    if cluster:
        attrs["k8sCluster"] = cluster
    key = f"pod/{ns}/{name}"
    out.items.append({
        "key": key, "name": f"{ns}/{name}", "ciClass": CIClass.APPLICATION_INSTANCE.value,
        "identifiers": {"cloudInstanceId": f"k8s-pod:{uid}"} if uid else {},
        "attributes": _present(attrs),
    })
    node = spec.get("nodeName")
    if node in nodes:
        out.relations.append({"source": {"key": key}, "target": {"key": nodes[node]},
                              "type": "RUNS_ON"})
    elif node:
        out.problems.append(f"pod {ns}/{name} runs on node {node!r}, which is not in "
                            "the export")


# ------------------------------------------------------------------------------ payload


def parse_payload(text: str) -> tuple[str | None, Parsed]:
    """The batch payload as JSON: (the source it names, its records)."""
    doc = _json(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("items", []), list) or \
            not isinstance(doc.get("relations", []), list):
        raise ParseError('expected {"source": ..., "items": [...], "relations": [...]}')
    source = doc.get("source")
    return (str(source) if source else None,
            Parsed(items=list(doc.get("items", [])), relations=list(doc.get("relations", []))))


def parse_ndjson(text: str) -> Parsed:
    """One record a line: ``{"record": "item", ...}`` or ``{"record": "relation", ...}``."""
    out = Parsed()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ParseError(f"line {number}: not JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(rec, dict) or rec.get("record") not in ("item", "relation"):
            raise ParseError(f'line {number}: expected "record": "item" or "relation"')
        kind = rec.pop("record")
        (out.items if kind == "item" else out.relations).append(rec)
    return out


def parse(fmt: Format, text: str, *, mapping: Mapping[str, str] | None = None,
          ci_class: CIClass | None = None, cluster: str | None = None) -> Parsed:
    if fmt is Format.NMAP:
        return parse_nmap(text, ci_class or CIClass.SERVER)
    if fmt is Format.CSV:
        return parse_csv(text, mapping, ci_class)
    if fmt is Format.KUBECTL:
        return parse_kubectl(text, cluster, ci_class)
    if fmt is Format.NDJSON:
        return parse_ndjson(text)
    return parse_payload(text)[1]
