"""GraphQL input types, and their conversion to plain dicts for the services."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

import strawberry
from strawberry.scalars import JSON

from cmdb.core.models import SortDirection as SortDirectionModel
from cmdb.schema.enums import (
    CIClass,
    CIFamily,
    CostRecovery,
    Criticality,
    ItemSortField,
    LifecycleStatus,
    OperationalState,
    RelationType,
    ServiceKind,
    SortDirection,
)


def to_dict(value: Any) -> Any:
    """Input object -> dict of the fields the client gave (UNSET ones left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: to_dict(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not strawberry.UNSET
        }
    if isinstance(value, list):
        return [to_dict(v) for v in value]
    if isinstance(value, Enum):
        return value
    return value


@strawberry.input
class IdentifiersInput:
    serial_number: str | None = strawberry.UNSET
    host_name: str | None = strawberry.UNSET
    domain: str | None = strawberry.UNSET
    mac_address: str | None = strawberry.UNSET
    cloud_instance_id: str | None = strawberry.UNSET


# Items and services share their inputs' fields. strawberry lists a type's fields in the
# order of its bases, then its own: each input below names its parts in SDL order.


@strawberry.input
class _NewConfigurationItem:
    name: str
    ci_class: CIClass


@strawberry.input
class _NewService:
    name: str
    kind: ServiceKind


@strawberry.input
class _Rename:
    name: str | None = strawberry.UNSET


@strawberry.input
class _ItemDetails:
    description: str | None = strawberry.UNSET
    lifecycle_status: LifecycleStatus | None = strawberry.UNSET
    operational_state: OperationalState | None = strawberry.UNSET
    criticality: Criticality | None = strawberry.UNSET
    owner_group_id: strawberry.ID | None = strawberry.UNSET
    cost_centre_id: strawberry.ID | None = strawberry.UNSET
    location_id: strawberry.ID | None = strawberry.UNSET


@strawberry.input
class _ConfigurationItemExtras:
    identifiers: IdentifiersInput | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class SLAInput:
    availability_target: Decimal | None = strawberry.UNSET
    response_target_minutes: int | None = strawberry.UNSET
    restore_target_minutes: int | None = strawberry.UNSET
    maintenance_windows: list[str] | None = strawberry.UNSET


@strawberry.input
class BusinessValueInput:
    revenue_per_hour: Decimal | None = strawberry.UNSET
    users: int | None = strawberry.UNSET


@strawberry.input
class _ServiceExtras:
    sla: SLAInput | None = strawberry.UNSET
    business_value: BusinessValueInput | None = strawberry.UNSET
    cost_recovery: CostRecovery | None = strawberry.UNSET
    attributes: JSON | None = strawberry.UNSET


@strawberry.input
class CreateConfigurationItemInput(_NewConfigurationItem, _ItemDetails,
                                   _ConfigurationItemExtras):
    pass


@strawberry.input(description="Only the fields given change; null clears a field or a link. "
                  "Attributes are merged; an attribute set to null is removed.")
class UpdateConfigurationItemInput(_Rename, _ItemDetails, _ConfigurationItemExtras):
    pass


@strawberry.input
class CreateServiceInput(_NewService, _ItemDetails, _ServiceExtras):
    pass


@strawberry.input
class UpdateServiceInput(_Rename, _ItemDetails, _ServiceExtras):
    pass


@strawberry.input
class RelateInput:
    source_id: strawberry.ID = strawberry.field(description="The consumer.")
    target_id: strawberry.ID = strawberry.field(description="The provider.")
    type: RelationType
    properties: JSON | None = strawberry.UNSET


@strawberry.input
class UnrelateInput:
    source_id: strawberry.ID
    target_id: strawberry.ID
    type: RelationType
    reason: str | None = strawberry.UNSET


@strawberry.input
class OwnerGroupInput:
    name: str
    email: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class CostCentreInput:
    code: str
    name: str
    parent_id: strawberry.ID | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class LocationInput:
    name: str
    parent_id: strawberry.ID | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input(description="Equality on one free-form attribute.")
class AttributeFilter:
    key: str
    value: JSON


@strawberry.input
class _ClassConditions:
    classes: list[CIClass] | None = None
    families: list[CIFamily] | None = None


@strawberry.input
class _KindConditions:
    kinds: list[ServiceKind] | None = None


@strawberry.input
class ItemConditions:
    lifecycle_status: list[LifecycleStatus] | None = None
    operational_state: list[OperationalState] | None = None
    criticality: list[Criticality] | None = None
    owner_group_id: strawberry.ID | None = None
    cost_centre_code: str | None = None
    location_id: strawberry.ID | None = None
    name_contains: str | None = None


@strawberry.input(description="All conditions given must hold. Retired items are left out "
                  "unless includeRetired is true or lifecycleStatus asks for them.")
class ConfigurationItemFilter(_ClassConditions, ItemConditions):
    identifier: str | None = strawberry.field(
        default=None,
        description="Matches serial number, host name, FQDN, MAC or cloud instance id.",
    )
    attributes: list[AttributeFilter] | None = None
    include_retired: bool = False


@strawberry.input
class ServiceFilter(_KindConditions, ItemConditions):
    attributes: list[AttributeFilter] | None = None
    include_retired: bool = False


@strawberry.input
class ItemOrder:
    field: ItemSortField = ItemSortField.NAME
    direction: SortDirection = SortDirectionModel.ASC


@strawberry.input(description="A CI's whole asset record (setting it replaces the record; "
                  "fields left out take their defaults). Money in whole cents, in the "
                  "chargeback currency.")
class AssetInput:
    purchase_price: Decimal
    purchase_date: date
    depreciation_months: int = strawberry.field(description="1 to 600 calendar months.")
    currency: str | None = strawberry.field(
        default=strawberry.UNSET, description="Default: the chargeback currency (the only one "
        "accepted).")
    residual_value: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="Not depreciated; below the purchase price. "
        "Default 0.")
    support_monthly: Decimal | None = strawberry.field(
        default=strawberry.UNSET, description="The support contract's fee a month. Default 0.")
    support_start: date | None = strawberry.field(
        default=strawberry.UNSET, description="Default: the purchase date.")
    support_end: date | None = strawberry.field(
        default=strawberry.UNSET, description="The first day no longer covered (excluded); "
        "after supportStart. Default: open.")
    warranty_end: date | None = strawberry.UNSET
    asset_tag: str | None = strawberry.UNSET
    serial_number: str | None = strawberry.UNSET
    vendor: str | None = strawberry.UNSET
