"""Root query fields: argument conversion and delegation to the domain services."""

from __future__ import annotations

import dataclasses
from typing import Any

import strawberry
from strawberry import Info

from cmdb.core.cypher import ItemFilter
from cmdb.core.models import OrgKind
from cmdb.core.pagination import Page
from cmdb.identity.scope import Visibility
from cmdb.items.models import CIClass, CIFamily, expand_classes
from cmdb.items.models import ConfigurationItem as CIModel
from cmdb.items.models import Service as ServiceModel
from cmdb.resolvers.alarms import AlarmQuery
from cmdb.resolvers.catalog import CatalogQuery
from cmdb.resolvers.chargeback import ChargebackQuery
from cmdb.resolvers.discovery import DiscoveryQuery
from cmdb.resolvers.health import HealthQuery
from cmdb.resolvers.identity import IdentityQuery
from cmdb.schema.context import Context
from cmdb.schema.inputs import (
    ConfigurationItemFilter,
    ItemConditions,
    ItemOrder,
    ServiceFilter,
)
from cmdb.schema.types import (
    ConfigurationItem,
    ConfigurationItemConnection,
    ConfigurationItemEdge,
    CostCentre,
    Item,
    Location,
    OwnerGroup,
    PageInfo,
    Service,
    ServiceConnection,
    ServiceEdge,
    item_view,
    wants_total,
)


def _page_info(page: Page[Any]) -> PageInfo:
    return PageInfo(
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        start_cursor=page.items[0][0] if page.items else None,
        end_cursor=page.items[-1][0] if page.items else None,
    )


def _common_filter(f: ConfigurationItemFilter | ServiceFilter | None) -> ItemFilter:
    if f is None:
        return ItemFilter()
    # The conditions both filters have go to ItemFilter under the same names.
    shared = {c.name: getattr(f, c.name) for c in dataclasses.fields(ItemConditions)}
    return ItemFilter(**shared, attributes=[(a.key, a.value) for a in f.attributes or []],
                      include_retired=f.include_retired)


def ci_filter(f: ConfigurationItemFilter | None, visible: Visibility | None = None) -> ItemFilter:
    out = _common_filter(f)
    out.visibility = visible
    if f is not None:
        if f.classes is not None or f.families is not None:
            out.classes = expand_classes(
                [CIClass(c) for c in f.classes or []], [CIFamily(x) for x in f.families or []]
            )
        out.identifier = f.identifier
    return out


def service_filter(f: ServiceFilter | None, visible: Visibility | None = None) -> ItemFilter:
    out = _common_filter(f)
    out.visibility = visible
    if f is not None and f.kinds is not None:
        out.service_kinds = [k.value for k in f.kinds]
    return out


@strawberry.type
class Query(HealthQuery, AlarmQuery, CatalogQuery, IdentityQuery, DiscoveryQuery,
            ChargebackQuery):
    @strawberry.field(description="Any item (configuration item or service) by id.")
    async def node(self, info: Info[Context, None], id: strawberry.ID) -> Item | None:
        found = await info.context.loaders.item_loader(
            info.selected_fields[0].selections).load(str(id))
        return item_view(found) if found else None

    @strawberry.field(description="A configuration item by id (retired ones too).")
    async def configuration_item(
        self, info: Info[Context, None], id: strawberry.ID
    ) -> ConfigurationItem | None:
        found = await info.context.loaders.item_loader(
            info.selected_fields[0].selections).load(str(id))
        return ConfigurationItem.from_model(found) if isinstance(found, CIModel) else None

    @strawberry.field(description="Configuration items, filtered and sorted, a page at a time.")
    async def configuration_items(
        self,
        info: Info[Context, None],
        filter: ConfigurationItemFilter | None = None,
        order_by: ItemOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ConfigurationItemConnection:
        order = order_by or ItemOrder()
        page = await info.context.services.inventory.list(
            ci_filter(filter, info.context.visible), order.field.value, order.direction,
            first, after, last, before, wants_total(info),
        )
        return ConfigurationItemConnection(
            edges=[ConfigurationItemEdge(cursor=c, node=ConfigurationItem.from_model(m))
                   for c, m in page.items],
            page_info=_page_info(page),
            total_count=page.total_count,
        )

    @strawberry.field(description="A service by id (retired ones too).")
    async def service(self, info: Info[Context, None], id: strawberry.ID) -> Service | None:
        found = await info.context.loaders.item_loader(
            info.selected_fields[0].selections).load(str(id))
        return Service.from_model(found) if isinstance(found, ServiceModel) else None

    @strawberry.field(description="Business and technical services, a page at a time.")
    async def services(
        self,
        info: Info[Context, None],
        filter: ServiceFilter | None = None,
        order_by: ItemOrder | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> ServiceConnection:
        order = order_by or ItemOrder()
        page = await info.context.services.service_records.list(
            service_filter(filter, info.context.visible), order.field.value, order.direction,
            first, after, last, before, wants_total(info),
        )
        return ServiceConnection(
            edges=[ServiceEdge(cursor=c, node=Service.from_model(m)) for c, m in page.items],
            page_info=_page_info(page),
            total_count=page.total_count,
        )

    @strawberry.field
    async def owner_groups(
        self, info: Info[Context, None], name_contains: str | None = None, first: int | None = None
    ) -> list[OwnerGroup]:
        units = await info.context.services.org.list(OrgKind.OWNER_GROUP, name_contains, first)
        return [OwnerGroup.from_model(u) for u in units]

    @strawberry.field
    async def cost_centres(
        self, info: Info[Context, None], name_contains: str | None = None, first: int | None = None
    ) -> list[CostCentre]:
        units = await info.context.services.org.list(OrgKind.COST_CENTRE, name_contains, first)
        return [CostCentre.from_model(u) for u in units]

    @strawberry.field
    async def locations(
        self, info: Info[Context, None], name_contains: str | None = None, first: int | None = None
    ) -> list[Location]:
        units = await info.context.services.org.list(OrgKind.LOCATION, name_contains, first)
        return [Location.from_model(u) for u in units]
