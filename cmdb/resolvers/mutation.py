"""Root mutations: each returns a payload with the result or field errors, never a traceback."""

from __future__ import annotations

import strawberry
from strawberry import Info

from cmdb.core.models import OrgKind
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.items.models import Service as ServiceModel
from cmdb.resolvers.alarms import AlarmMutation
from cmdb.resolvers.catalog import CatalogMutation
from cmdb.resolvers.chargeback import ChargebackMutation
from cmdb.resolvers.discovery import DiscoveryMutation
from cmdb.resolvers.health import HealthMutation
from cmdb.resolvers.identity import IdentityMutation
from cmdb.resolvers.payloads import current_ci, errors_in
from cmdb.schema.context import Context
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


def _ci_payload(ci: CIModel) -> ConfigurationItemPayload:
    return ConfigurationItemPayload(configuration_item=ConfigurationItem.from_model(ci))


def _service_payload(svc: ServiceModel) -> ServicePayload:
    return ServicePayload(service=Service.from_model(svc))


@strawberry.type
class Mutation(HealthMutation, AlarmMutation, CatalogMutation, IdentityMutation,
               DiscoveryMutation, ChargebackMutation):
    @strawberry.mutation(description="Create a configuration item.")
    @errors_in(ConfigurationItemPayload)
    async def create_configuration_item(
        self, info: Info[Context, None], input: CreateConfigurationItemInput
    ) -> ConfigurationItemPayload:
        return _ci_payload(await info.context.services.inventory.create(to_dict(input)))

    @strawberry.mutation(description="Change the given fields of a configuration item.")
    @errors_in(ConfigurationItemPayload)
    async def update_configuration_item(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateConfigurationItemInput
    ) -> ConfigurationItemPayload:
        return _ci_payload(await info.context.services.inventory.update(str(id),
                                                                        to_dict(input)))

    @strawberry.mutation(description="Retire a configuration item: it is kept with its "
                         "history, leaves default lists, and its relationships end.")
    @errors_in(ConfigurationItemPayload)
    async def retire_configuration_item(
        self, info: Info[Context, None], id: strawberry.ID, reason: str | None = None
    ) -> ConfigurationItemPayload:
        return _ci_payload(await info.context.services.inventory.retire(str(id), reason))

    @strawberry.mutation(description="Set a CI's asset record (replacing the one it had): "
                         "purchase, depreciation and support contract. A retired CI's record "
                         "is kept as it was.")
    @errors_in(AssetPayload)
    async def set_asset(self, info: Info[Context, None], ci_id: strawberry.ID,
                        input: AssetInput) -> AssetPayload:
        principal = info.context.principal
        asset = await info.context.services.inventory.set_asset(
            str(ci_id), to_dict(input), principal.user if principal else None)
        return AssetPayload(asset=Asset.from_model(asset), cleared=False,
                            configuration_item=await current_ci(info, ci_id))

    @strawberry.mutation(description="Remove a CI's asset record (nothing happens when it has "
                         "none). A retired CI's record is kept.")
    @errors_in(AssetPayload)
    async def clear_asset(self, info: Info[Context, None], ci_id: strawberry.ID
                          ) -> AssetPayload:
        cleared = await info.context.services.inventory.clear_asset(str(ci_id))
        return AssetPayload(cleared=cleared, configuration_item=await current_ci(info, ci_id))

    @strawberry.mutation
    @errors_in(ServicePayload)
    async def create_service(
        self, info: Info[Context, None], input: CreateServiceInput
    ) -> ServicePayload:
        return _service_payload(await info.context.services.service_records.create(to_dict(input)))

    @strawberry.mutation
    @errors_in(ServicePayload)
    async def update_service(
        self, info: Info[Context, None], id: strawberry.ID, input: UpdateServiceInput
    ) -> ServicePayload:
        return _service_payload(await info.context.services.service_records.update(
            str(id), to_dict(input)))

    @strawberry.mutation
    @errors_in(ServicePayload)
    async def retire_service(
        self, info: Info[Context, None], id: strawberry.ID, reason: str | None = None
    ) -> ServicePayload:
        return _service_payload(await info.context.services.service_records.retire(str(id),
                                                                                reason))

    @strawberry.mutation(description="Relate a consumer (source) to a provider (target). "
                         "Relating again updates the live relationship's properties.")
    @errors_in(RelationPayload)
    async def relate(self, info: Info[Context, None], input: RelateInput) -> RelationPayload:
        rel = await info.context.services.relations.relate(
            str(input.source_id), str(input.target_id), input.type,
            to_dict(input).get("properties"))
        return RelationPayload(relation=Relation.from_model(rel))

    @strawberry.mutation(description="End a relationship; it is kept, marked retired.")
    @errors_in(RelationPayload)
    async def unrelate(self, info: Info[Context, None], input: UnrelateInput
                       ) -> RelationPayload:
        rel = await info.context.services.relations.unrelate(
            str(input.source_id), str(input.target_id), input.type,
            to_dict(input).get("reason"))
        return RelationPayload(relation=Relation.from_model(rel))

    @strawberry.mutation
    @errors_in(OwnerGroupPayload)
    async def create_owner_group(
        self, info: Info[Context, None], input: OwnerGroupInput
    ) -> OwnerGroupPayload:
        unit = await info.context.services.org.create(OrgKind.OWNER_GROUP, to_dict(input))
        return OwnerGroupPayload(owner_group=OwnerGroup.from_model(unit))

    @strawberry.mutation
    @errors_in(CostCentrePayload)
    async def create_cost_centre(
        self, info: Info[Context, None], input: CostCentreInput
    ) -> CostCentrePayload:
        unit = await info.context.services.org.create(OrgKind.COST_CENTRE, to_dict(input))
        return CostCentrePayload(cost_centre=CostCentre.from_model(unit))

    @strawberry.mutation
    @errors_in(LocationPayload)
    async def create_location(
        self, info: Info[Context, None], input: LocationInput
    ) -> LocationPayload:
        unit = await info.context.services.org.create(OrgKind.LOCATION, to_dict(input))
        return LocationPayload(location=Location.from_model(unit))
