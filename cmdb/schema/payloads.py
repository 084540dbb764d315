"""Mutation results: the changed object, or errors a front end can show by field."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from cmdb.core.models import DomainError
from cmdb.schema.discovery import DiscoveryRejection, DiscoverySource
from cmdb.schema.enums import ErrorCode
from cmdb.schema.types import (
    Asset,
    ConfigurationItem,
    CostCentre,
    Location,
    OwnerGroup,
    Relation,
    Service,
    UserError,
)


def user_errors(e: DomainError) -> list[UserError]:
    return [UserError(field=x.field, message=x.message, code=ErrorCode(x.code)) for x in e.errors]


@strawberry.type
class ConfigurationItemPayload:
    configuration_item: ConfigurationItem | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class AssetPayload:
    asset: Asset | None = None
    configuration_item: ConfigurationItem | None = None
    cleared: bool = strawberry.field(default=False, description="clearAsset: whether there "
                                     "was a record to remove.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class ServicePayload:
    service: Service | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class RelationPayload:
    relation: Relation | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class OwnerGroupPayload:
    owner_group: OwnerGroup | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class CostCentrePayload:
    cost_centre: CostCentre | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class LocationPayload:
    location: Location | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class DiscoverySourcePayload:
    source: DiscoverySource | None = None
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type(description="Counts of a reconciled batch and each rejected record.")
class DiscoveryBatchPayload:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    merged: int = 0
    suppressed: int = strawberry.field(
        default=0, description="Values not applied: a more trusted source set them.")
    relations_created: int = 0
    relations_updated: int = 0
    relations_unchanged: int = 0
    rejected: list[DiscoveryRejection] = strawberry.field(default_factory=list)
    ids: JSON = strawberry.field(default_factory=dict,
                                 description="Each record key and the CI id it became.")
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class MergePayload:
    configuration_item: ConfigurationItem | None = None
    merged: int = 0
    errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class SweepPayload:
    stale: int = 0
    retired: int = 0
    relations_stale: int = 0
    relations_retired: int = 0
    errors: list[UserError] = strawberry.field(default_factory=list)
