"""The use-case services of every domain, built once per process and shared by requests."""

from __future__ import annotations

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


class Services:
    """The domain services; one set per process, shared by requests."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.inventory = InventoryService(db, settings)
        self.service_records = ServiceRecordService(db, settings)
        self.relations = RelationService(db, settings)
        self.org = OrgService(db, settings)
        self.health = HealthService(db, settings)
        self.changes = ChangeService(db, settings, self.health)
        self.catalog = CatalogService(db, settings)
        self.identity = IdentityService(db, settings)
        self.vdi = VdiService(db, settings)
        self.discovery = DiscoveryService(db, settings)
        self.chargeback = ChargebackService(db, settings)
        self.rollup = RollupWorker(db, settings.rollup_delay_ms / 1000)

    async def close(self) -> None:
        """Stop what runs in the background (the roll-up worker, the change feeds); open
        subscriptions end."""
        await self.rollup.close()
        await self.health.close()
        await self.catalog.close()
