"""GraphQL enums: the domain's enums, exposed as they are."""

from enum import StrEnum

import strawberry

from cmdb.core import models as core
from cmdb.inventory import models as inventory
from cmdb.relations import models as relations
from cmdb.servicemodel import models as servicemodel

LifecycleStatus = strawberry.enum(
    core.LifecycleStatus,
    description="Where an item is in its life; retired items are kept, never deleted.",
)
OperationalState = strawberry.enum(
    core.OperationalState, description="Whether an item works now."
)
Criticality = strawberry.enum(
    core.Criticality, description="How much the business relies on an item."
)
SortDirection = strawberry.enum(core.SortDirection)
CIClass = strawberry.enum(
    inventory.CIClass, description="Concrete class of a configuration item."
)
CIFamily = strawberry.enum(
    inventory.CIFamily, description="Abstract class: selects every concrete class below it."
)
ServiceKind = strawberry.enum(servicemodel.ServiceKind)
RelationType = strawberry.enum(
    relations.RelationType,
    description="Relationship type; impact flows from the target (provider) to the source "
    "(consumer).",
)
Direction = strawberry.enum(
    relations.Direction,
    description="Which way a relationship points, seen from the item asked about.",
)


@strawberry.enum(description="Fields lists can be sorted by; ties are broken by id.")
class ItemSortField(StrEnum):
    NAME = "NAME"
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    CRITICALITY = "CRITICALITY"
    CLASS = "CLASS"


@strawberry.enum
class ErrorCode(StrEnum):
    INVALID = "INVALID"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    FORBIDDEN = "FORBIDDEN"
