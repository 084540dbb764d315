"""The use-case services of every domain, built once per process and shared by requests."""

from __future__ import annotations

from dataclasses import dataclass, field

from cmdb.catalog.service import CatalogService
from cmdb.changes.service import ChangeService
from cmdb.chargeback.service import ChargebackService
from cmdb.db.driver import Database
from cmdb.discovery.service import DiscoveryService
from cmdb.health.service import HealthService
from cmdb.identity.service import IdentityService
from cmdb.items.inventory import InventoryService
from cmdb.items.relations import RelationService
from cmdb.items.service_records import ServiceRecordService
from cmdb.org.service import OrgService
from cmdb.rollup.worker import RollupWorker
from cmdb.settings import Settings
from cmdb.vdi.service import VdiService


@dataclass
class Services:
    """The domain services; one set per process, shared by requests."""

    db: Database
    settings: Settings
    inventory: InventoryService = field(init=False)
    service_records: ServiceRecordService = field(init=False)
    relations: RelationService = field(init=False)
    org: OrgService = field(init=False)
    health: HealthService = field(init=False)
    changes: ChangeService = field(init=False)
    catalog: CatalogService = field(init=False)
    identity: IdentityService = field(init=False)
    vdi: VdiService = field(init=False)
    discovery: DiscoveryService = field(init=False)
    chargeback: ChargebackService = field(init=False)
    rollup: RollupWorker = field(init=False)

    def __post_init__(self) -> None:
        self.inventory = InventoryService(self.db, self.settings)
        self.service_records = ServiceRecordService(self.db, self.settings)
        self.relations = RelationService(self.db, self.settings)
        self.org = OrgService(self.db, self.settings)
        self.health = HealthService(self.db, self.settings)
        self.changes = ChangeService(self.db, self.settings, self.health)
        self.catalog = CatalogService(self.db, self.settings)
        self.identity = IdentityService(self.db, self.settings)
        self.vdi = VdiService(self.db, self.settings)
        self.discovery = DiscoveryService(self.db, self.settings)
        self.chargeback = ChargebackService(self.db, self.settings)
        self.rollup = RollupWorker(self.db, self.settings.rollup_delay_ms / 1000)

    async def close(self) -> None:
        """Stop what runs in the background (the roll-up worker, the change feeds); open
        subscriptions end."""
        await self.rollup.close()
        await self.health.close()
        await self.catalog.close()
