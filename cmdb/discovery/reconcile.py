"""Reconciliation in plain Python: identification, precedence, provenance and merge fills.

Nothing here touches the database; the service reads what is stored, asks these functions
what to write, and writes it in the batch's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cmdb.core.mapping import dump_json, load_json
from cmdb.core.models import CRITICALITY_RANK, Criticality, DomainError, RejectCode, Rejected
from cmdb.core.values import attribute_properties
from cmdb.discovery.models import (
    IDENTIFICATION_RULES,
    MANUAL_TRUST,
    UNIQUE_KEYS,
    DiscoveredItem,
    Source,
    attribute_property,
)
from cmdb.items.models import Identifiers

Row = dict[str, Any]
RETIRED = "RETIRED"

# Node properties a merge never copies from the duplicate to the survivor.
_NOT_CARRIED = {"id", "createdAt", "updatedAt", "ciClass", "lifecycleStatus", "retiredAt",
                "retiredReason", "provenance", "seenBy", "lastSeenAt", "staleSince", "source",
                "healthState", "healthChangedAt", "operationalState", "mergedInto", "name",
                "nameLower", "criticality", "criticalityRank", "fqdn", "createdSeq",
                "createdChanges"}


@dataclass
class Candidate:
    """A validated item record: its provenance keys and values, its unique identifiers."""

    index: int
    item: DiscoveredItem
    values: dict[str, Any]
    unique: dict[str, str]
    cls: str = ""  # the class's value (as stored in ``ciClass``)
    rules: tuple[str, ...] = ()  # the class's identification rules, in order

    def __post_init__(self) -> None:
        self.cls = self.item.ci_class.value
        self.rules = IDENTIFICATION_RULES[self.item.ci_class]


def candidate(index: int, item: DiscoveredItem) -> Candidate:
    ids = item.identifiers
    # A name the record does not give is derived for a new CI only, never sent as a value.
    values: dict[str, Any] = {"name": item.name} if item.name else {}
    if item.description is not None:
        values["description"] = item.description
    for key, value in (("serialNumber", ids.serial_number), ("hostName", ids.host_name),
                       ("domain", ids.domain), ("macAddress", ids.mac_address),
                       ("cloudInstanceId", ids.cloud_instance_id)):
        if value:
            values[key] = value
    try:
        attrs = attribute_properties(item.attributes, "attributes")
    except DomainError as e:
        first = e.errors[0]
        raise Rejected(RejectCode.INVALID, "; ".join(
            f"{x.field}: {x.message}" for x in e.errors), first.field) from None
    for prop, value in attrs.items():
        if value is not None:
            values["attributes." + prop.removeprefix("attr_")] = value
    return Candidate(index, item, values, unique_values(ids))


def unique_values(ids: Identifiers) -> dict[str, str]:
    """The unique identifiers given (property -> value as text)."""
    return {k: str(v) for k, v in (("serialNumber", ids.serial_number),
                                   ("cloudInstanceId", ids.cloud_instance_id),
                                   ("fqdn", ids.fqdn), ("macAddress", ids.mac_address)) if v}


# ------------------------------------------------------------------------------ identify


@dataclass
class Identified:
    primary: Row | None  # {id, props}
    rule: str | None  # the identifier that identified it
    duplicates: list[tuple[str, Row]] = field(default_factory=list)  # (identifier, row)


def identify(c: Candidate, found: Mapping[tuple[str, str], Row]) -> Identified:
    """Walk the class's ordered identifier rules: the first that matches a stored CI
    identifies it. Other CIs matched by the record's other identifiers are duplicates when
    nothing contradicts (same class, live, no different value of any identifier the record
    gives); otherwise the record is rejected with both CIs named, not guessed."""
    matches = [(p, found[(p, c.unique[p])]) for p in c.rules
               if p in c.unique and (p, c.unique[p]) in found]
    if not matches:
        return Identified(None, None)
    rule, primary = matches[0]
    pp = primary["props"]
    value = c.unique[rule]
    if pp.get("ciClass") != c.cls:
        raise Rejected(RejectCode.CONFLICT, f"{rule} {value!r} identifies CI {primary['id']!r} "
                       f"of class {pp.get('ciClass')}, not {c.cls}", f"identifiers.{rule}")
    if pp.get("lifecycleStatus") == RETIRED:
        raise Rejected(RejectCode.CONFLICT, f"{rule} {value!r} identifies CI "
                       f"{primary['id']!r}, which is retired", f"identifiers.{rule}")
    out = Identified(primary, rule)
    seen = {primary["id"]}
    for prop, row in matches[1:]:
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        op = row["props"]
        why = None
        if op.get("ciClass") != c.cls:
            why = f"it is a {op.get('ciClass')}"
        elif op.get("lifecycleStatus") == RETIRED:
            why = "it is retired"
        else:
            for q in UNIQUE_KEYS:
                if q in c.unique and op.get(q) not in (None, c.unique[q]):
                    why = f"it has {q} {op.get(q)!r}"
                    break
        if why:
            raise Rejected(RejectCode.CONFLICT, f"conflicting identifiers: {rule} {value!r} "
                           f"identifies CI {primary['id']!r} but {prop} {c.unique[prop]!r} "
                           f"identifies CI {row['id']!r} ({why}); not merged",
                           f"identifiers.{prop}")
        out.duplicates.append((prop, row))
    return out


# ------------------------------------------------------------------------------ precedence


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@dataclass
class Applied:
    props: dict[str, Any]  # node properties to SET
    changes: dict[str, list[Any]]  # provenance key -> [old, new]
    suppressed: int


def _trust(sources: Mapping[str, Source], name: str | None, key: str) -> int:
    if name is None:
        return MANUAL_TRUST
    s = sources.get(name)
    return s.trust_for(key) if s is not None else -1


def apply(
    source: Source, sources: Mapping[str, Source], stored: Mapping[str, Any],
    values: Mapping[str, Any], now: str,
) -> Applied:
    """What ``source`` may change on a stored CI: a value differing from the stored one is
    applied when the source's trust for that attribute is at least that of the source that
    set it (values without provenance, typed in by a person, count as ``MANUAL_TRUST``; a
    value set by a source no longer registered counts as -1); otherwise it is suppressed.
    An equal value confirms the provenance of the source that set it."""
    prov = load_json(stored.get("provenance"))
    props: dict[str, Any] = {}
    changes: dict[str, list[Any]] = {}
    suppressed = 0
    mine = source.name
    for key, value in values.items():
        prop = attribute_property(key)
        current = stored.get(prop)
        entry = prov.get(key)
        if _same(current, value):
            if entry is not None and entry[0] == mine:
                prov[key] = [mine, entry[1], now]
            continue
        owner = entry[0] if entry else None
        if current is not None and owner != mine and (
            source.trust_for(key) < _trust(sources, owner, key)
        ):
            suppressed += 1
            continue
        props[prop] = value
        prov[key] = [mine, now, now]
        changes[key] = [current, value]
    if "name" in props:
        props["nameLower"] = props["name"].lower()
    if "hostName" in props or "domain" in props:
        host = props.get("hostName", stored.get("hostName"))
        domain = props.get("domain", stored.get("domain"))
        fqdn = f"{host}.{domain}" if host and domain else None
        if fqdn != stored.get("fqdn"):
            props["fqdn"] = fqdn
    seen = load_json(stored.get("seenBy"))
    seen[mine] = now
    props["provenance"] = dump_json(prov)
    props["seenBy"] = dump_json(seen)
    if stored.get("staleSince") is not None:
        props["staleSince"] = None
        changes["staleSince"] = [stored["staleSince"], None]
    return Applied(props, changes, suppressed)


def unchanged(stored: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    """Whether ``apply`` would change nothing but confirmation times: every value equal to
    the stored one and the CI not stale."""
    if stored.get("staleSince") is not None:
        return False
    for key, value in values.items():  # = all(_same(...)), without a generator
        current = stored.get(attribute_property(key))
        if type(current) is not type(value):
            return False
        if type(value) is list:
            if not _same(current, value):
                return False
        elif current != value:
            return False
    return True


def fill_from(survivor: dict[str, Any], duplicate: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Carry the duplicate's values into the survivor's gaps (with their provenance);
    returns what was filled, as changes. ``survivor`` is updated in place."""
    filled: dict[str, list[Any]] = {}
    prov = load_json(survivor.get("provenance"))
    dup_prov = load_json(duplicate.get("provenance"))
    for prop, value in duplicate.items():
        if prop in _NOT_CARRIED or prop.startswith("merged") or value is None:
            continue
        if survivor.get(prop) is None:
            survivor[prop] = value
            key = prop if not prop.startswith("attr_") else "attributes." + prop[5:]
            filled[key] = [None, value]
            if key in dup_prov and key not in prov:
                prov[key] = dup_prov[key]
    if "hostName" in filled or "domain" in filled:
        host, domain = survivor.get("hostName"), survivor.get("domain")
        survivor["fqdn"] = f"{host}.{domain}" if host and domain else survivor.get("fqdn")
    seen = load_json(survivor.get("seenBy"))
    for name, at in load_json(duplicate.get("seenBy")).items():
        if name not in seen or seen[name] < at:
            seen[name] = at
    survivor["provenance"] = dump_json(prov)
    survivor["seenBy"] = dump_json(seen)
    return filled


@lru_cache(maxsize=8)
def _stamps(source: str, now: str) -> tuple[str, str]:
    """A new CI's sightings (JSON) and one provenance entry (JSON), the same for every CI a
    batch creates."""
    return dump_json({source: now}), json.dumps([source, now, now], separators=(",", ":"))


@lru_cache(maxsize=256)
def _provenance(keys: tuple[str, ...], entry: str) -> str:
    """= ``dump_json({k: [source, now, now] for k in keys})``, built from one entry (JSON),
    once for the many new CIs of a batch that give the same keys."""
    return "{" + ",".join(f"{json.dumps(k)}:{entry}" for k in keys) + "}"


def new_item_props(source: Source, c: Candidate, now: str) -> dict[str, Any]:
    props: dict[str, Any] = {attribute_property(k): v for k, v in c.values.items()}
    seen, entry = _stamps(source.name, now)
    ids = c.item.identifiers
    props.setdefault("name", ids.host_name or ids.cloud_instance_id or ids.serial_number
                     or ids.mac_address)
    props["nameLower"] = props["name"].lower()
    fqdn = c.item.identifiers.fqdn
    if fqdn:
        props["fqdn"] = fqdn
    props.update({
        "ciClass": c.cls, "lifecycleStatus": "IN_SERVICE", "operationalState": "UNKNOWN",
        "healthState": "UNKNOWN", "criticality": Criticality.MEDIUM.value,
        "criticalityRank": CRITICALITY_RANK[Criticality.MEDIUM], "source": source.name,
        "provenance": _provenance(tuple(sorted({*c.values, "name"})), entry),
        "seenBy": seen,
    })
    return props
