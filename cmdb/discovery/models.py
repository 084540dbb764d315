"""Discovery: sources, the batch payload, identification rules, provenance and history.

A *source* (scanner, hypervisor or cloud export, spreadsheet, agent) is registered with a
trust level, optionally per attribute. It sends *batches* of discovered items and
relationships. Reconciliation identifies each item by the ordered identifier rules of its
class, applies each attribute only if the source may (precedence), keeps provenance per
attribute and a history record of every change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from cmdb.core.mapping import load_json
from cmdb.core.models import FrozenModel, RejectCode
from cmdb.items.models import CIClass, Identifiers, RelationType

SOURCE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,255}$"
MAX_TRUST = 100
# Values without provenance were set by a person (API, demo loader): a source must be trusted
# at least this much for the attribute to change them.
MANUAL_TRUST = 50
DEFAULT_BATCH_SIZE = 5000
MAX_BATCH_RECORDS = 20_000  # one REST request; one transaction


class _Input(BaseModel):
    """A record as clients send it: camelCase names (or the Python ones), nothing else."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


class SourceKind(StrEnum):
    SCANNER = "SCANNER"
    HYPERVISOR = "HYPERVISOR"
    CLOUD = "CLOUD"
    AGENT = "AGENT"
    SPREADSHEET = "SPREADSHEET"
    VDI_BROKER = "VDI_BROKER"
    OTHER = "OTHER"


_ATTRIBUTE_NAME = re.compile(r"^(name|description|serialNumber|hostName|domain|macAddress|"
                             r"cloudInstanceId|attributes\.\*|attributes\.[a-z][A-Za-z0-9_]{0,62})$")


class SourceWrite(_Input):
    """Register (or re-register) a source: how far it is trusted, overall and per attribute."""

    name: str = Field(pattern=SOURCE_NAME)
    kind: SourceKind = SourceKind.OTHER
    trust: int = Field(50, ge=0, le=MAX_TRUST)
    attribute_trust: dict[str, int] = {}
    description: str | None = Field(None, max_length=1000)

    @field_validator("attribute_trust")
    @classmethod
    def _attribute_trust(cls, v: dict[str, int]) -> dict[str, int]:
        for k, t in v.items():
            if not _ATTRIBUTE_NAME.match(k):
                raise ValueError(f"{k!r} is not a reconciled attribute (name, description, "
                                 "an identifier such as serialNumber, attributes.<key> or "
                                 "attributes.*)")
            if not 0 <= t <= MAX_TRUST:
                raise ValueError(f"trust of {k!r} must be between 0 and {MAX_TRUST}")
        return v


class Source(FrozenModel):
    name: str
    kind: SourceKind
    trust: int
    attribute_trust: dict[str, int] = {}
    description: str | None = None
    registered_at: datetime | None = None

    def trust_for(self, attribute: str) -> int:
        """Trust for one provenance key (``name``, ``serialNumber``, ``attributes.os``)."""
        if attribute in self.attribute_trust:
            return self.attribute_trust[attribute]
        if attribute.startswith("attributes.") and "attributes.*" in self.attribute_trust:
            return self.attribute_trust["attributes.*"]
        return self.trust


# ------------------------------------------------------------------------------ payload


class RecordIdentifiers(Identifiers):
    """Identifiers as sent (camelCase), normalised like the inventory's."""

    model_config = ConfigDict(frozen=True, extra="forbid", alias_generator=to_camel,
                              populate_by_name=True)


class DiscoveredItem(_Input):
    """One CI as a source saw it. It must carry at least one unique identifier (serial
    number, cloud/instance id, host name + domain, MAC address)."""

    key: str | None = Field(None, pattern=KEY_PATTERN,
                            description="The record's own key, for relations in this batch")
    ci_class: CIClass
    name: str | None = Field(None, min_length=1, max_length=200)
    description: str | None = Field(None, max_length=4000)
    identifiers: RecordIdentifiers = RecordIdentifiers()
    attributes: dict[str, Any] = {}

    @field_validator("ci_class", mode="before")
    @classmethod
    def _class_name(cls, v: Any) -> Any:
        # The GraphQL enum names (VIRTUAL_MACHINE) are accepted as well as the values.
        if isinstance(v, str) and v in CIClass.__members__:
            return CIClass[v]
        return v

    @model_validator(mode="after")
    def _identified(self) -> DiscoveredItem:
        i = self.identifiers
        if not (i.serial_number or i.cloud_instance_id or i.fqdn or i.mac_address):
            raise ValueError("a discovered item needs at least one identifier: serialNumber, "
                             "cloudInstanceId, hostName with domain, or macAddress")
        return self


class EndpointRef(_Input):
    """One end of a discovered relationship: an item of the same batch by its ``key``, a
    stored item by ``id``, or a stored CI by one of its identifiers."""

    key: str | None = Field(None, pattern=KEY_PATTERN)
    id: str | None = Field(None, min_length=1, max_length=128)
    identifiers: RecordIdentifiers | None = None

    @model_validator(mode="after")
    def _one(self) -> EndpointRef:
        given = [x for x in (self.key, self.id, self.identifiers) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of key, id or identifiers")
        return self


class DiscoveredRelation(_Input):
    """A relationship a source saw: consumer (source) to provider (target)."""

    source: EndpointRef
    target: EndpointRef
    type: RelationType
    properties: dict[str, Any] = {}


class DiscoveryBatch(_Input):
    """The JSON body of ``POST /api/discovery/batches``."""

    model_config = ConfigDict(title="DiscoveryBatch")

    source: str = Field(pattern=SOURCE_NAME, description="A registered source's name")
    items: list[dict[str, Any]] = Field(
        [], description="DiscoveredItem records (validated one by one)")
    relations: list[dict[str, Any]] = Field(
        [], description="DiscoveredRelation records (validated one by one)")
    merge_duplicates: bool = Field(
        True, description="Merge duplicates the identification rules find (see README)")


# ------------------------------------------------------------------------------ rules

# Provenance key -> node property.
IDENTIFIER_KEYS = ("serialNumber", "hostName", "domain", "macAddress", "cloudInstanceId")
UNIQUE_KEYS = ("serialNumber", "cloudInstanceId", "fqdn", "macAddress")

_HARDWARE = ("serialNumber", "cloudInstanceId", "fqdn", "macAddress")
_VIRTUAL = ("cloudInstanceId", "serialNumber", "fqdn", "macAddress")
_LOGICAL = ("cloudInstanceId", "fqdn", "serialNumber", "macAddress")

# Ordered identifier sets per class: the first that matches a stored CI identifies it.
IDENTIFICATION_RULES: dict[CIClass, tuple[str, ...]] = {
    CIClass.SERVER: _HARDWARE,
    CIClass.HYPERVISOR_HOST: _HARDWARE,
    CIClass.NETWORK_DEVICE: _HARDWARE,
    CIClass.LOAD_BALANCER: _HARDWARE,
    CIClass.VIRTUAL_MACHINE: _VIRTUAL,
    CIClass.VIRTUAL_DESKTOP: _VIRTUAL,
    CIClass.CLUSTER: _LOGICAL,
    CIClass.DESKTOP_POOL: _LOGICAL,
    CIClass.STORAGE_VOLUME: _LOGICAL,
    CIClass.DATABASE: _LOGICAL,
    CIClass.APPLICATION_INSTANCE: _LOGICAL,
    CIClass.SOFTWARE_PACKAGE: _LOGICAL,
}


@lru_cache(maxsize=4096)
def attribute_property(key: str) -> str:
    """Provenance key -> node property (``attributes.os`` -> ``attr_os``)."""
    if key.startswith("attributes."):
        return "attr_" + key.removeprefix("attributes.")
    return key


def relation_key(prop: str) -> str:
    """A relationship's property as clients name it (stored with the attribute prefix)."""
    return prop.removeprefix("attr_")


# ------------------------------------------------------------------------------ results


class Rejection(FrozenModel):
    index: int
    record: str  # "item" or "relation"
    code: RejectCode
    reason: str
    field: str | None = None


_BATCH_COUNTS = ("created", "updated", "unchanged", "merged", "suppressed", "relations_created",
                 "relations_updated", "relations_unchanged")


@dataclass
class IngestResult:
    """Counts of one ingest: items and relations apart; ``suppressed`` counts attribute
    values not applied because a more trusted source set them."""

    items: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    suppressed: int = 0
    relations: int = 0
    relations_created: int = 0
    relations_updated: int = 0
    relations_unchanged: int = 0
    batches: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)  # record key -> CI id
    fresh: dict[str, str] = field(default_factory=dict)  # CIs this ingest created -> class
    classes: dict[str, str] = field(default_factory=dict)  # CIs it identified -> class

    def add(self, batch: IngestResult) -> None:
        """Count in one batch's outcome (its records and batches are counted apart)."""
        for name in _BATCH_COUNTS:
            setattr(self, name, getattr(self, name) + getattr(batch, name))
        self.rejected.extend(batch.rejected)
        self.ids.update(batch.ids)
        self.fresh.update(batch.fresh)
        self.classes.update(batch.classes)

    def counts(self) -> dict[str, int]:
        return {
            "created": self.created, "updated": self.updated, "unchanged": self.unchanged,
            "merged": self.merged, "rejected": len(self.rejected),
            "suppressed": self.suppressed, "relationsCreated": self.relations_created,
            "relationsUpdated": self.relations_updated,
            "relationsUnchanged": self.relations_unchanged,
        }


@dataclass
class SweepResult:
    stale: int = 0
    retired: int = 0
    relations_stale: int = 0
    relations_retired: int = 0


class Provenance(FrozenModel):
    attribute: str
    value: Any = None
    source: str
    set_at: datetime
    confirmed_at: datetime


class Sighting(FrozenModel):
    source: str
    last_seen_at: datetime


class AsOfRelation(FrozenModel):
    type: str
    direction: str
    other_id: str
    properties: dict[str, Any] = {}


class CIAsOf(FrozenModel):
    """A CI as it was at ``at``: reconstructed from now by undoing later history."""

    id: str
    at: datetime
    existed: bool
    properties: dict[str, Any] = {}
    relations: list[AsOfRelation] = []


def provenance_of(props_json: str | None, values: Mapping[str, Any]) -> list[Provenance]:
    """Provenance entries of a CI (its ``provenance`` property), with current values."""
    return [Provenance(attribute=key, value=values.get(key), source=src,
                       set_at=datetime.fromisoformat(set_at),
                       confirmed_at=datetime.fromisoformat(confirmed))
            for key, (src, set_at, confirmed) in sorted(load_json(props_json).items())]


def sightings_of(seen_json: str | None) -> list[Sighting]:
    """When each source last saw a CI (its ``seenBy`` property)."""
    return [Sighting(source=s, last_seen_at=datetime.fromisoformat(at))
            for s, at in sorted(load_json(seen_json).items())]


class _BatchSchema(_Input):
    """The published shape of a batch (records typed, for the JSON Schema)."""

    model_config = ConfigDict(title="DiscoveryBatch")

    source: str = Field(pattern=SOURCE_NAME, description="A registered source's name")
    items: list[DiscoveredItem] = []
    relations: list[DiscoveredRelation] = []
    merge_duplicates: bool = Field(
        True, description="Merge duplicates the identification rules find")


def batch_json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the batch payload; NDJSON sends the same records one a
    line, each with ``"record": "item"`` or ``"record": "relation"``."""
    schema = _BatchSchema.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "/api/discovery/schema"
    schema["description"] = (
        "POST /api/discovery/batches with Content-Type application/json, or as "
        "application/x-ndjson: one DiscoveredItem or DiscoveredRelation a line with an "
        "extra field \"record\": \"item\" | \"relation\" and the source in the query "
        "(?source=name). Items need at least one identifier; ciClass takes the values below "
        "or the GraphQL enum names (VIRTUAL_MACHINE). A relation's ends are an item of the "
        "same batch by key, a stored item by id, or a stored CI by identifiers."
    )
    return schema
