"""Per-request context: the domain services and the request's DataLoaders."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from cmdb.changes.service import ChangeService
from cmdb.core.models import OrgUnit
from cmdb.db.driver import Database
from cmdb.discovery.service import DiscoveryService
from cmdb.health.service import HealthService
from cmdb.identity.principal import Principal
from cmdb.inventory.models import ConfigurationItem
from cmdb.inventory.service import InventoryService
from cmdb.org.service import OrgService
from cmdb.relations.models import Relation, RelationQuery
from cmdb.relations.repository import item_from_row
from cmdb.relations.service import RelationService
from cmdb.servicemodel.models import Service
from cmdb.servicemodel.service import ServiceModelService
from cmdb.settings import Settings


@dataclass
class Services:
    """The domain services; one set per process, shared by requests."""

    db: Database
    settings: Settings
    inventory: InventoryService = field(init=False)
    servicemodel: ServiceModelService = field(init=False)
    relations: RelationService = field(init=False)
    org: OrgService = field(init=False)
    health: HealthService = field(init=False)
    changes: ChangeService = field(init=False)
    discovery: DiscoveryService = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = InventoryService(self.db, self.settings)
        self.servicemodel = ServiceModelService(self.db, self.settings)
        self.relations = RelationService(self.db, self.settings)
        self.org = OrgService(self.db, self.settings)
        self.health = HealthService(self.db, self.settings)
        self.changes = ChangeService(self.db, self.settings, self.health)
        self.discovery = DiscoveryService(self.db, self.settings)


class Loaders:
    """Batch loads for one request: one round trip per level and argument set, not per row."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self.items: DataLoader[str, ConfigurationItem | Service | None] = DataLoader(
            self._load_items
        )
        # For reads that ask for no owner, cost centre or location: a lighter statement.
        self.items_bare: DataLoader[str, ConfigurationItem | Service | None] = DataLoader(
            self._load_items_bare
        )
        self.org: DataLoader[str, OrgUnit | None] = DataLoader(services.org.get_many)
        self._relations: dict[RelationQuery, DataLoader[str, list[Relation]]] = {}

    async def _load_items(self, ids: list[str]) -> list[ConfigurationItem | Service | None]:
        rows = await self._services.inventory.repo.get_rows(ids)
        return [item_from_row(rows[i]) if i in rows else None for i in ids]

    async def _load_items_bare(
        self, ids: list[str]
    ) -> list[ConfigurationItem | Service | None]:
        rows = await self._services.inventory.repo.get_rows(ids, with_org=False)
        return [item_from_row(rows[i]) if i in rows else None for i in ids]

    def item_loader(
        self, selections: list[Any]
    ) -> DataLoader[str, ConfigurationItem | Service | None]:
        from cmdb.schema.types import ORG_FIELDS, selects_any

        return self.items if selects_any(selections, ORG_FIELDS) else self.items_bare

    def relations(self, rq: RelationQuery) -> DataLoader[str, list[Relation]]:
        loader = self._relations.get(rq)
        if loader is None:

            async def load(ids: list[str]) -> list[list[Relation]]:
                return await self._services.relations.neighbours(ids, rq)

            loader = self._relations[rq] = DataLoader(load)
        return loader


class Context(BaseContext):
    def __init__(
        self, services: Services, request_id: str, principal: Principal | None = None
    ) -> None:
        super().__init__()
        self.services = services
        self.loaders = Loaders(services)
        self.request_id = request_id
        self.principal = principal  # None: anonymous
