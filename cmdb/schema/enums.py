"""GraphQL enums: the domain's enums, exposed as they are."""

from enum import StrEnum

import strawberry

from cmdb.core.models import Criticality, LifecycleStatus, OperationalState, SortDirection
from cmdb.items.models import CIClass, CIFamily, CostRecovery, Direction, RelationType, ServiceKind

# strawberry.enum registers the domain enum classes in place, so the classes themselves
# are the GraphQL enums.
__all__ = [
    "CIClass",
    "CIFamily",
    "CostRecovery",
    "Criticality",
    "Direction",
    "ErrorCode",
    "ItemSortField",
    "LifecycleStatus",
    "OperationalState",
    "RelationType",
    "ServiceKind",
    "SortDirection",
]

strawberry.enum(
    LifecycleStatus,
    description="Where an item is in its life; retired items are kept, never deleted.",
)
strawberry.enum(OperationalState, description="Whether an item works now.")
strawberry.enum(Criticality, description="How much the business relies on an item.")
strawberry.enum(SortDirection)
strawberry.enum(CIClass, description="Concrete class of a configuration item.")
strawberry.enum(CIFamily, description="Abstract class: selects every concrete class below it.")
strawberry.enum(ServiceKind)
strawberry.enum(
    CostRecovery,
    description="Who pays a service's own cost: its owning cost centre (OWNER, the default); "
    "its consumers, the subscriptions for it in proportion to their active days in the month "
    "(CONSUMERS); or the prices of its catalogue items (PRICES: the service keeps its cost, "
    "not invoiced, and chargeRecovery compares it with its subscriptions' fees).",
)
strawberry.enum(
    RelationType,
    description="Relationship type; impact flows from the target (provider) to the source "
    "(consumer).",
)
strawberry.enum(
    Direction,
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
