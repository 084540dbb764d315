"""Root mutations: each returns a payload with the result or field errors, never a traceback."""

from __future__ import annotations

import strawberry

from cmdb.core.models import DomainError, OrgKind
from cmdb.resolvers.alarms import AlarmMutation
from cmdb.resolvers.catalog import CatalogMutation
from cmdb.resolvers.chargeback import ChargebackMutation
from cmdb.resolvers.discovery import DiscoveryMutation
from cmdb.resolvers.health import HealthMutation
from cmdb.resolvers.identity import IdentityMutation
from cmdb.schema.inputs import (
    AssetInput,
    CostCentreInput,
    CreateConfigurationItemInput,
    CreateServiceInput,
    LocationInput,
    OwnerGroupInput,
    RelateInput,
    UnrelateInput,
    UpdateConfigurationItemInput,
    UpdateServiceInput,
    to_dict,
)
from cmdb.schema.payloads import (
    AssetPayload,
    ConfigurationItemPayload,
    CostCentrePayload,
    LocationPayload,
    OwnerGroupPayload,
    RelationPayload,
    ServicePayload,
    user_errors,
)
from cmdb.schema.types import (
    Asset,
    ConfigurationItem,
    CostCentre,
    Location,
    OwnerGroup,
    Relation,
    Service,
)


def _services(info: strawberry.Info):  # type: ignore[no-untyped-def]
    return info.context.services


@strawberry.type
class Mutation(HealthMutation, AlarmMutation, CatalogMutation, IdentityMutation,
               DiscoveryMutation, ChargebackMutation):
    @strawberry.mutation(description="Create a configuration item.")
    async def create_configuration_item(
        self, info: strawberry.Info, input: CreateConfigurationItemInput
    ) -> ConfigurationItemPayload:
        try:
            ci = await _services(info).inventory.create(to_dict(input))
        except DomainError as e:
            return ConfigurationItemPayload(errors=user_errors(e))
        return ConfigurationItemPayload(configuration_item=ConfigurationItem.from_model(ci))

    @strawberry.mutation(description="Change the given fields of a configuration item.")
    async def update_configuration_item(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateConfigurationItemInput
    ) -> ConfigurationItemPayload:
        try:
            ci = await _services(info).inventory.update(str(id), to_dict(input))
        except DomainError as e:
            return ConfigurationItemPayload(errors=user_errors(e))
        return ConfigurationItemPayload(configuration_item=ConfigurationItem.from_model(ci))

    @strawberry.mutation(description="Retire a configuration item: it is kept with its "
                         "history, leaves default lists, and its relationships end.")
    async def retire_configuration_item(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None
    ) -> ConfigurationItemPayload:
        try:
            ci = await _services(info).inventory.retire(str(id), reason)
        except DomainError as e:
            return ConfigurationItemPayload(errors=user_errors(e))
        return ConfigurationItemPayload(configuration_item=ConfigurationItem.from_model(ci))

    @strawberry.mutation(description="Set a CI's asset record (replacing the one it had): "
                         "purchase, depreciation and support contract. A retired CI's record "
                         "is kept as it was.")
    async def set_asset(self, info: strawberry.Info, ci_id: strawberry.ID, input: AssetInput
                        ) -> AssetPayload:
        principal = info.context.principal
        inventory = _services(info).inventory
        try:
            asset = await inventory.set_asset(str(ci_id), to_dict(input),
                                              principal.user if principal else None)
        except DomainError as e:
            return AssetPayload(errors=user_errors(e))
        ci = await inventory.get(str(ci_id))
        return AssetPayload(asset=Asset.from_model(asset), cleared=False,
                            configuration_item=ConfigurationItem.from_model(ci) if ci else None)

    @strawberry.mutation(description="Remove a CI's asset record (nothing happens when it has "
                         "none). A retired CI's record is kept.")
    async def clear_asset(self, info: strawberry.Info, ci_id: strawberry.ID) -> AssetPayload:
        inventory = _services(info).inventory
        try:
            cleared = await inventory.clear_asset(str(ci_id))
        except DomainError as e:
            return AssetPayload(errors=user_errors(e))
        ci = await inventory.get(str(ci_id))
        return AssetPayload(cleared=cleared,
                            configuration_item=ConfigurationItem.from_model(ci) if ci else None)

    @strawberry.mutation
    async def create_service(
        self, info: strawberry.Info, input: CreateServiceInput
    ) -> ServicePayload:
        try:
            svc = await _services(info).servicemodel.create(to_dict(input))
        except DomainError as e:
            return ServicePayload(errors=user_errors(e))
        return ServicePayload(service=Service.from_model(svc))

    @strawberry.mutation
    async def update_service(
        self, info: strawberry.Info, id: strawberry.ID, input: UpdateServiceInput
    ) -> ServicePayload:
        try:
            svc = await _services(info).servicemodel.update(str(id), to_dict(input))
        except DomainError as e:
            return ServicePayload(errors=user_errors(e))
        return ServicePayload(service=Service.from_model(svc))

    @strawberry.mutation
    async def retire_service(
        self, info: strawberry.Info, id: strawberry.ID, reason: str | None = None
    ) -> ServicePayload:
        try:
            svc = await _services(info).servicemodel.retire(str(id), reason)
        except DomainError as e:
            return ServicePayload(errors=user_errors(e))
        return ServicePayload(service=Service.from_model(svc))

    @strawberry.mutation(description="Relate a consumer (source) to a provider (target). "
                         "Relating again updates the live relationship's properties.")
    async def relate(self, info: strawberry.Info, input: RelateInput) -> RelationPayload:
        d = to_dict(input)
        try:
            rel = await _services(info).relations.relate(
                str(input.source_id), str(input.target_id), input.type, d.get("properties")
            )
        except DomainError as e:
            return RelationPayload(errors=user_errors(e))
        return RelationPayload(relation=Relation.from_model(rel))

    @strawberry.mutation(description="End a relationship; it is kept, marked retired.")
    async def unrelate(self, info: strawberry.Info, input: UnrelateInput) -> RelationPayload:
        d = to_dict(input)
        try:
            rel = await _services(info).relations.unrelate(
                str(input.source_id), str(input.target_id), input.type, d.get("reason")
            )
        except DomainError as e:
            return RelationPayload(errors=user_errors(e))
        return RelationPayload(relation=Relation.from_model(rel))

    @strawberry.mutation
    async def create_owner_group(
        self, info: strawberry.Info, input: OwnerGroupInput
    ) -> OwnerGroupPayload:
        try:
            unit = await _services(info).org.create(OrgKind.OWNER_GROUP, to_dict(input))
        except DomainError as e:
            return OwnerGroupPayload(errors=user_errors(e))
        return OwnerGroupPayload(owner_group=OwnerGroup.from_model(unit))

    @strawberry.mutation
    async def create_cost_centre(
        self, info: strawberry.Info, input: CostCentreInput
    ) -> CostCentrePayload:
        try:
            unit = await _services(info).org.create(OrgKind.COST_CENTRE, to_dict(input))
        except DomainError as e:
            return CostCentrePayload(errors=user_errors(e))
        return CostCentrePayload(cost_centre=CostCentre.from_model(unit))

    @strawberry.mutation
    async def create_location(
        self, info: strawberry.Info, input: LocationInput
    ) -> LocationPayload:
        try:
            unit = await _services(info).org.create(OrgKind.LOCATION, to_dict(input))
        except DomainError as e:
            return LocationPayload(errors=user_errors(e))
        return LocationPayload(location=Location.from_model(unit))
