"""Mutation results: the changed object, or errors a front end can show by field."""

from __future__ import annotations

import strawberry

from cmdb.core.models import DomainError
from cmdb.schema.enums import ErrorCode
from cmdb.schema.types import (
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
