"""GraphQL views of discovery: sources, provenance, sightings, history, as-of, payloads."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from cmdb.core.models import RejectCode as RejectCodeModel
from cmdb.discovery.models import CIAsOf as CIAsOfModel
from cmdb.discovery.models import IngestResult
from cmdb.discovery.models import Source as SourceModel
from cmdb.discovery.models import SourceKind as SourceKindModel
from cmdb.items.models import HistoryEntry as HistoryModel
from cmdb.items.models import HistoryKind as HistoryKindModel

DiscoverySourceKind = strawberry.enum(cast(type[Enum], SourceKindModel),
                                      name="DiscoverySourceKind")
HistoryKind = strawberry.enum(cast(type[Enum], HistoryKindModel), name="HistoryKind")
DiscoveryRejectCode = strawberry.enum(cast(type[Enum], RejectCodeModel),
                                      name="DiscoveryRejectCode")


@strawberry.type(description="A registered discovery source and how far it is trusted.")
class DiscoverySource:
    name: str
    kind: DiscoverySourceKind  # type: ignore[valid-type]
    trust: int = strawberry.field(description="0-100; the default for every attribute.")
    attribute_trust: JSON = strawberry.field(
        description="Trust per attribute (name, serialNumber, attributes.os, attributes.*).")
    description: str | None
    registered_at: datetime | None

    @classmethod
    def from_model(cls, m: SourceModel) -> DiscoverySource:
        return cls(name=m.name, kind=m.kind, trust=m.trust,
                   attribute_trust=cast(JSON, m.attribute_trust), description=m.description,
                   registered_at=m.registered_at)


@strawberry.type(description="Who set an attribute, when, and when a source last confirmed "
                 "it.")
class AttributeProvenance:
    attribute: str
    value: JSON | None
    source: str
    set_at: datetime
    confirmed_at: datetime


@strawberry.type(description="When a source last saw this CI.")
class Sighting:
    source: str
    last_seen_at: datetime


@strawberry.type
class AttributeChange:
    attribute: str
    old: JSON | None
    new: JSON | None


@strawberry.type(description="One recorded change: attributes (old and new values), a "
                 "relationship, staleness, retirement or a merge, with its source and time.")
class HistoryEntry:
    at: datetime
    source: str
    kind: HistoryKind  # type: ignore[valid-type]
    changes: list[AttributeChange]
    relation_type: str | None
    other_id: strawberry.ID | None
    detail: JSON = strawberry.field(description="For merges: which CIs, by which identifier, "
                                    "and why.")

    @classmethod
    def from_model(cls, m: HistoryModel) -> HistoryEntry:
        return cls(
            at=m.at, source=m.source, kind=m.kind,
            changes=[AttributeChange(attribute=c.attribute, old=c.old, new=c.new)
                     for c in m.changes],
            relation_type=m.relation_type,
            other_id=strawberry.ID(m.other_id) if m.other_id else None,
            detail=cast(JSON, m.detail),
        )


@strawberry.type
class AsOfRelation:
    type: str
    direction: str
    other_id: strawberry.ID
    properties: JSON


@strawberry.type(description="A CI as it was at a past time.")
class CIAsOf:
    id: strawberry.ID
    at: datetime
    existed: bool
    properties: JSON = strawberry.field(description="name, description, identifiers, "
                                        "lifecycleStatus and attributes.<key> as they were.")
    relations: list[AsOfRelation]

    @classmethod
    def from_model(cls, m: CIAsOfModel) -> CIAsOf:
        return cls(id=strawberry.ID(m.id), at=m.at, existed=m.existed,
                   properties=cast(JSON, m.properties),
                   relations=[AsOfRelation(type=r.type, direction=r.direction,
                                           other_id=strawberry.ID(r.other_id),
                                           properties=cast(JSON, r.properties))
                              for r in m.relations])


@strawberry.type
class DiscoveryRejection:
    index: int
    record: str = strawberry.field(description="item or relation")
    code: DiscoveryRejectCode  # type: ignore[valid-type]
    reason: str
    field: str | None


def rejections(result: IngestResult) -> list[DiscoveryRejection]:
    return [DiscoveryRejection(index=r.index, record=r.record, code=r.code, reason=r.reason,
                               field=r.field) for r in result.rejected]


def counts(result: IngestResult) -> dict[str, Any]:
    return {
        "created": result.created, "updated": result.updated, "unchanged": result.unchanged,
        "merged": result.merged, "suppressed": result.suppressed,
        "relations_created": result.relations_created,
        "relations_updated": result.relations_updated,
        "relations_unchanged": result.relations_unchanged,
    }


@strawberry.input(description="Register a source, or change how far it is trusted.")
class RegisterDiscoverySourceInput:
    name: str
    kind: DiscoverySourceKind = SourceKindModel.OTHER  # type: ignore[valid-type]
    trust: int = 50
    attribute_trust: JSON | None = None
    description: str | None = None


@strawberry.input(description="A small batch in the payload format of POST "
                  "/api/discovery/batches (see GET /api/discovery/schema).")
class DiscoveryBatchInput:
    source: str
    items: list[JSON] = strawberry.field(default_factory=list)
    relations: list[JSON] = strawberry.field(default_factory=list)
    merge_duplicates: bool = True
