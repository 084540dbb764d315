"""GraphQL object types: views of domain models. Nested fields go through request loaders."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, cast

import strawberry
from strawberry import Info
from strawberry.scalars import JSON
from strawberry.types.nodes import SelectedField

from cmdb.chargeback.assets import AssetTerms, book_value, nominal_monthly_depreciation
from cmdb.core.clock import utcnow
from cmdb.core.models import ItemBase, OrgUnit
from cmdb.health.maintenance import in_maintenance
from cmdb.items.models import Asset as AssetModel
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.items.models import Direction as DirectionModel
from cmdb.items.models import Relation as RelationModel
from cmdb.items.models import Service as ServiceModel
from cmdb.schema.context import Context
from cmdb.schema.discovery import (
    AttributeProvenance,
    CIAsOf,
    HistoryEntry,
    Sighting,
)
from cmdb.schema.enums import (
    CIClass,
    CostRecovery,
    Criticality,
    Direction,
    ErrorCode,
    LifecycleStatus,
    OperationalState,
    RelationType,
    ServiceKind,
)


@strawberry.type(description="A problem with the request, named by the input field it concerns.")
class UserError:
    field: str | None
    message: str
    code: ErrorCode


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class OwnerGroup:
    id: strawberry.ID
    name: str
    email: str | None
    description: str | None

    @classmethod
    def from_model(cls, m: OrgUnit) -> OwnerGroup:
        return cls(id=strawberry.ID(m.id), name=m.name, email=m.email, description=m.description)


async def _org_unit(info: Info[Context, None], unit_id: str | None) -> OrgUnit | None:
    return await info.context.loaders.org.load(unit_id) if unit_id is not None else None


@strawberry.type(description="A cost centre; costs roll up its parent chain.")
class CostCentre:
    id: strawberry.ID
    code: str
    name: str
    description: str | None
    parent_id: strawberry.Private[str | None]

    @strawberry.field
    async def parent(self, info: Info[Context, None]) -> CostCentre | None:
        unit = await _org_unit(info, self.parent_id)
        return CostCentre.from_model(unit) if unit else None

    @classmethod
    def from_model(cls, m: OrgUnit) -> CostCentre:
        return cls(id=strawberry.ID(m.id), code=m.code or "", name=m.name,
                   description=m.description, parent_id=m.parent_id)


@strawberry.type
class Location:
    id: strawberry.ID
    name: str
    description: str | None
    parent_id: strawberry.Private[str | None]

    @strawberry.field
    async def parent(self, info: Info[Context, None]) -> Location | None:
        unit = await _org_unit(info, self.parent_id)
        return Location.from_model(unit) if unit else None

    @classmethod
    def from_model(cls, m: OrgUnit) -> Location:
        return cls(id=strawberry.ID(m.id), name=m.name, description=m.description,
                   parent_id=m.parent_id)


@strawberry.interface(description="Anything in the graph: a configuration item or a service.")
class Item:
    id: strawberry.ID
    name: str
    description: str | None
    lifecycle_status: LifecycleStatus
    operational_state: OperationalState = strawberry.field(
        description="The item's own state, as monitoring or an operator set it. A service's "
        "own UNKNOWN (its default) means nothing was asserted and does not count in its "
        "roll-up; its own DEGRADED or DOWN does."
    )
    health_state: OperationalState = strawberry.field(
        description="The state rolled up from the item's own state and its providers "
        "(precedence DOWN > DEGRADED > UNKNOWN > UP); rules in docs/health.md."
    )
    criticality: Criticality
    owner_group: OwnerGroup | None
    cost_centre: CostCentre | None
    location: Location | None
    attributes: JSON = strawberry.field(description="Free-form attributes (scalars or lists).")
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None
    retired_reason: str | None
    in_maintenance: bool = strawberry.field(
        description="Lifecycle status MAINTENANCE, or (a service) inside one of its SLA "
        "maintenance windows now. Lifecycle MAINTENANCE passes UP on to consumers; an open "
        "window does not change what the service passes on (its state still reaches its "
        "consumers), it keeps the window's minutes out of the service's SLA figures."
    )

    @strawberry.field(
        description="Relationships of this item, both ways unless a direction is given. "
        "Depth above 1 follows the given types transitively and returns each reachable item "
        "once, at its shortest distance, with the path that reaches it."
    )
    async def relationships(
        self,
        info: Info[Context, None],
        direction: Direction = DirectionModel.BOTH,
        types: list[RelationType] | None = None,
        depth: int = 1,
        first: int | None = None,
        include_retired: bool = False,
    ) -> list[Relation]:
        ctx = info.context
        with_org = selects_any(info.selected_fields[0].selections, ORG_FIELDS)
        rq = ctx.services.relations.relation_query(direction, types, depth, first,
                                                   include_retired, with_org)
        rels = await ctx.loaders.relations(rq).load(str(self.id))
        return [Relation.from_model(r) for r in rels]


ORG_FIELDS = frozenset({"ownerGroup", "costCentre", "location"})


def selects_any(selections: list[Any], names: frozenset[str]) -> bool:
    """Whether any of ``names`` is asked for anywhere below, fragments included."""
    for sel in selections:
        if isinstance(sel, SelectedField) and sel.name in names:
            return True
        if selects_any(sel.selections, names):
            return True
    return False


def selects(selections: list[Any], name: str) -> bool:
    """Whether the field ``name`` is asked for in this selection set itself, directly or
    through fragments (named or inline); fields of sub-selections do not count."""
    for sel in selections:
        if isinstance(sel, SelectedField):
            if sel.name == name:
                return True
        elif selects(sel.selections, name):
            return True
    return False


def wants_total(info: Info[Context, None]) -> bool:
    """Whether a connection field's ``totalCount`` is asked for (it costs a count query)."""
    return any(selects(f.selections, "totalCount") for f in info.selected_fields)


def _item_fields(m: ItemBase) -> dict[str, Any]:
    return {
        "id": strawberry.ID(m.id),
        "name": m.name,
        "description": m.description,
        "lifecycle_status": m.lifecycle_status,
        "operational_state": m.operational_state,
        "health_state": m.health_state,
        "criticality": m.criticality,
        "owner_group": OwnerGroup.from_model(m.owner_group) if m.owner_group else None,
        "cost_centre": CostCentre.from_model(m.cost_centre) if m.cost_centre else None,
        "location": Location.from_model(m.location) if m.location else None,
        "attributes": cast(JSON, m.attributes),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
        "retired_at": m.retired_at,
        "retired_reason": m.retired_reason,
        "in_maintenance": in_maintenance(m, utcnow()),
    }


@strawberry.type(description="Identifiers that reconciliation matches on.")
class Identifiers:
    serial_number: str | None
    host_name: str | None
    domain: str | None
    fqdn: str | None
    mac_address: str | None
    cloud_instance_id: str | None


@strawberry.type(description="A CI's asset record: what it cost, how it depreciates (straight "
                 "line, by the day, over depreciationMonths calendar months from the "
                 "purchase date) and its support contract. Amounts in the chargeback currency.")
class Asset:
    purchase_price: Decimal
    currency: str
    purchase_date: date
    depreciation_months: int
    residual_value: Decimal
    support_monthly: Decimal
    support_start: date
    support_end: date | None = strawberry.field(
        description="The first day the support contract no longer covers; null: open.")
    warranty_end: date | None
    asset_tag: str | None
    serial_number: str | None
    vendor: str | None
    updated_at: datetime | None
    updated_by: str | None
    depreciation_end: date = strawberry.field(
        description="The first day after the depreciation span (purchase date plus "
        "depreciationMonths calendar months).")
    monthly_depreciation: Decimal = strawberry.field(
        description="(purchasePrice - residualValue) / depreciationMonths, to the cent: an "
        "average month. Each month carries its own days' share (see docs/chargeback.md).")
    model: strawberry.Private[AssetModel]

    @strawberry.field(description="The value at the start of the day `at` (default today, "
                      "UTC), to the cent: the purchase price less the depreciation of the "
                      "days before it; the residual value once fully depreciated.")
    def book_value(self, at: date | None = None) -> Decimal:
        return book_value(_terms(self.model), at or utcnow().date())

    @classmethod
    def from_model(cls, m: AssetModel) -> Asset:
        terms = _terms(m)
        return cls(
            purchase_price=m.purchase_price, currency=m.currency,
            purchase_date=m.purchase_date, depreciation_months=m.depreciation_months,
            residual_value=m.residual_value, support_monthly=m.support_monthly,
            support_start=m.support_start, support_end=m.support_end,
            warranty_end=m.warranty_end, asset_tag=m.asset_tag,
            serial_number=m.serial_number, vendor=m.vendor, updated_at=m.updated_at,
            updated_by=m.updated_by, depreciation_end=terms.depreciation_end,
            monthly_depreciation=nominal_monthly_depreciation(terms), model=m)


def _terms(m: AssetModel) -> AssetTerms:
    return AssetTerms(purchase_price=m.purchase_price, purchase_date=m.purchase_date,
                      depreciation_months=m.depreciation_months,
                      residual_value=m.residual_value, support_monthly=m.support_monthly,
                      support_start=m.support_start, support_end=m.support_end)


@strawberry.type(description="A configuration item: anything that is managed.")
class ConfigurationItem(Item):
    ci_class: CIClass
    families: list[str]
    identifiers: Identifiers
    source: str | None = strawberry.field(description="The source that first reported it.")
    last_seen_at: datetime | None = strawberry.field(
        description="When any discovery source last saw it.")
    stale_since: datetime | None = strawberry.field(
        description="Set when no source has seen it for the stale period; cleared when seen.")
    merged_into: strawberry.ID | None = strawberry.field(
        description="The CI this duplicate was merged into.")
    provenance_json: strawberry.Private[str | None] = None
    seen_by_json: strawberry.Private[str | None] = None

    @strawberry.field(description="Per attribute: the value, the source that set it, when, "
                      "and when that source last confirmed it.")
    def provenance(self) -> list[AttributeProvenance]:
        from cmdb.discovery.service import provenance_of

        ids = self.identifiers
        values: dict[str, Any] = {
            "name": self.name, "description": self.description,
            "serialNumber": ids.serial_number, "hostName": ids.host_name,
            "domain": ids.domain, "macAddress": ids.mac_address,
            "cloudInstanceId": ids.cloud_instance_id,
        }
        attrs = cast(dict[str, Any], self.attributes)
        values.update({f"attributes.{k}": v for k, v in attrs.items()})
        return [AttributeProvenance(attribute=p.attribute, value=p.value, source=p.source,
                                    set_at=p.set_at, confirmed_at=p.confirmed_at)
                for p in provenance_of(self.provenance_json, values)]

    @strawberry.field(description="When each discovery source last saw this CI.")
    def sightings(self) -> list[Sighting]:
        from cmdb.discovery.service import sightings_of

        return [Sighting(source=s.source, last_seen_at=s.last_seen_at)
                for s in sightings_of(self.seen_by_json)]

    @strawberry.field(description="Recorded changes, newest first: attributes (old and new "
                      "value), relationships, staleness, retirement and merges, each with "
                      "its source and time. One query per CI: ask for it on detail views.")
    async def history(
        self, info: Info[Context, None], first: int = 50, since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[HistoryEntry]:
        found = await info.context.services.discovery.history(str(self.id), since, until, first)
        return [HistoryEntry.from_model(h) for h in found]

    @strawberry.field(description="Its asset record (purchase, depreciation, support), or "
                      "null when it has none. Kept when the CI is retired.")
    async def asset(self, info: Info[Context, None]) -> Asset | None:
        found = await info.context.loaders.assets.load(str(self.id))
        return Asset.from_model(found) if found else None

    @strawberry.field(description="This CI as it was at a past time (its attributes, "
                      "lifecycle and relationships), rebuilt from the recorded history.")
    async def as_of(self, info: Info[Context, None], at: datetime) -> CIAsOf:
        svc = info.context.services.discovery
        return CIAsOf.from_model(await svc.as_of(str(self.id), at))

    @classmethod
    def from_model(cls, m: CIModel) -> ConfigurationItem:
        from cmdb.items.models import CLASS_ANCESTORS

        ids = m.identifiers
        return cls(
            **_item_fields(m),
            ci_class=m.ci_class,
            families=[f.value for f in CLASS_ANCESTORS[m.ci_class]],
            identifiers=Identifiers(
                serial_number=ids.serial_number, host_name=ids.host_name, domain=ids.domain,
                fqdn=ids.fqdn, mac_address=ids.mac_address,
                cloud_instance_id=ids.cloud_instance_id,
            ),
            source=m.source,
            last_seen_at=m.last_seen_at,
            stale_since=m.stale_since,
            merged_into=strawberry.ID(m.merged_into) if m.merged_into else None,
            provenance_json=m.provenance_json,
            seen_by_json=m.seen_by_json,
        )


@strawberry.type
class SLA:
    availability_target: Decimal | None = strawberry.field(
        description="Percent of the period the service must be available, e.g. 99.9."
    )
    response_target_minutes: int | None
    restore_target_minutes: int | None
    maintenance_windows: list[str] = strawberry.field(
        description="Weekly or daily windows in UTC, e.g. 'Sun 02:00-04:00' or "
        "'Daily 23:00-01:00'. Their minutes do not count against this service's SLA "
        "(availability, minutesToSlaBreach); they do not change the service's state or what "
        "it passes on to its consumers."
    )


@strawberry.type
class BusinessValue:
    revenue_per_hour: Decimal | None
    users: int | None


@strawberry.type(description="A business or technical service.")
class Service(Item):
    kind: ServiceKind
    sla: SLA
    business_value: BusinessValue
    cost_recovery: CostRecovery = strawberry.field(
        description="Who pays this service's own cost in chargeback: its owning cost centre "
        "(OWNER), the subscriptions for it by their active days (CONSUMERS), or the fees of "
        "its catalogue items (PRICES: its cost lines are not invoiced).")

    @classmethod
    def from_model(cls, m: ServiceModel) -> Service:
        return cls(
            **_item_fields(m),
            kind=m.kind,
            sla=SLA(
                availability_target=m.sla.availability_target,
                response_target_minutes=m.sla.response_target_minutes,
                restore_target_minutes=m.sla.restore_target_minutes,
                maintenance_windows=list(m.sla.maintenance_windows),
            ),
            business_value=BusinessValue(
                revenue_per_hour=m.business_value.revenue_per_hour,
                users=m.business_value.users,
            ),
            cost_recovery=m.cost_recovery,
        )


def item_view(m: CIModel | ServiceModel) -> ConfigurationItem | Service:
    if isinstance(m, ServiceModel):
        return Service.from_model(m)
    return ConfigurationItem.from_model(m)


@strawberry.type(description="A relationship seen from one item, with the item at the other end.")
class Relation:
    type: RelationType
    direction: Direction
    depth: int
    source_id: strawberry.ID
    target_id: strawberry.ID
    properties: JSON
    created_at: datetime | None
    retired_at: datetime | None
    path: list[strawberry.ID] = strawberry.field(
        description="Item ids from the asking item to the related one."
    )
    item: Item

    @classmethod
    def from_model(cls, m: RelationModel) -> Relation:
        return cls(
            type=m.type, direction=m.direction, depth=m.depth,
            source_id=strawberry.ID(m.source_id), target_id=strawberry.ID(m.target_id),
            properties=cast(JSON, m.properties), created_at=m.created_at, retired_at=m.retired_at,
            path=[strawberry.ID(p) for p in m.path], item=item_view(m.item),
        )


@strawberry.type
class ConfigurationItemEdge:
    cursor: str
    node: ConfigurationItem


@strawberry.type
class ConfigurationItemConnection:
    edges: list[ConfigurationItemEdge]
    page_info: PageInfo
    total_count: int | None = strawberry.field(
        description="Number of items matching the filter (null unless asked for)."
    )


@strawberry.type
class ServiceEdge:
    cursor: str
    node: Service


@strawberry.type
class ServiceConnection:
    edges: list[ServiceEdge]
    page_info: PageInfo
    total_count: int | None
