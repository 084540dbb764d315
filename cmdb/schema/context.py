"""Per-request context: the domain services and the request's DataLoaders."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from strawberry.dataloader import DataLoader
from strawberry.fastapi import BaseContext

from cmdb.catalog import models as catalog_models
from cmdb.catalog.service import CatalogService
from cmdb.chargeback.models import PricePlan
from cmdb.core.models import OrgUnit
from cmdb.identity.models import (
    Entitlement,
    EnvironmentHealth,
    Membership,
    Role,
    ServiceRequest,
    User,
)
from cmdb.identity.principal import Principal
from cmdb.identity.scope import Visibility, visibility
from cmdb.items.models import Asset, ConfigurationItem, Relation, RelationQuery, Service
from cmdb.items.repository import item_from_row
from cmdb.services import Services
from cmdb.vdi.models import DesktopSession

# A price plan as JSON and the quantities asked of it, (meter, quantity) pairs.
EstimateKey = tuple[str, tuple[tuple[str, Decimal], ...]]


class CatalogLoaders:
    """Nested catalogue fields, one round trip per field and level."""

    def __init__(self, catalog: CatalogService) -> None:
        repo = catalog.repo
        self.steps: DataLoader[str, list[catalog_models.ApprovalStep]] = DataLoader(
            catalog.steps)
        self.transitions: DataLoader[str, list[catalog_models.Transition]] = DataLoader(
            catalog.transitions)
        self.tasks: DataLoader[str, list[catalog_models.FulfilmentTask]] = DataLoader(
            catalog.tasks_of)
        self.item_versions: DataLoader[str, list[catalog_models.ItemVersion]] = DataLoader(
            catalog.versions_of_items)

        async def versions(ids: list[str]) -> list[catalog_models.ItemVersion | None]:
            found = await repo.versions_by_id(ids)
            return [found.get(i) for i in ids]

        async def subscriptions(ids: list[str]) -> list[catalog_models.Subscription | None]:
            found = await repo.subscriptions_by_id(ids)
            return [found.get(i) for i in ids]

        self.versions: DataLoader[str, catalog_models.ItemVersion | None] = DataLoader(versions)
        self.subscriptions: DataLoader[str, catalog_models.Subscription | None] = DataLoader(
            subscriptions)
        self._catalog = catalog
        self._estimates: dict[Principal | None, DataLoader[EstimateKey,
                                                           catalog_models.Estimate]] = {}

    def estimates(self, principal: Principal | None
                  ) -> DataLoader[EstimateKey, catalog_models.Estimate]:
        """Estimates of the items of a page for one caller: the rate cards read once. A key
        is a price plan (as JSON) and the quantities asked, (meter, quantity) pairs."""
        loader = self._estimates.get(principal)
        if loader is None:
            catalog = self._catalog

            async def load(keys: list[EstimateKey]
                           ) -> list[catalog_models.Estimate | BaseException]:
                asks = [(PricePlan.model_validate_json(plan),
                         [{"meter": m, "quantity": q} for m, q in quantities])
                        for plan, quantities in keys]
                return list(await catalog.estimates(principal, asks))

            loader = self._estimates[principal] = DataLoader(load)
        return loader


class Loaders:
    """Batch loads for one request: one round trip per level and argument set, not per row."""

    def __init__(self, services: Services, visible: Visibility) -> None:
        self._services = services
        self.visible = visible  # the caller's scope: every item read below honours it
        self.items: DataLoader[str, ConfigurationItem | Service | None] = DataLoader(
            self._load_items
        )
        # For reads that ask for no owner, cost centre or location: a lighter statement.
        self.items_bare: DataLoader[str, ConfigurationItem | Service | None] = DataLoader(
            self._load_items_bare
        )
        self.org: DataLoader[str, OrgUnit | None] = DataLoader(services.org.get_many)
        self.assets: DataLoader[str, Asset | None] = DataLoader(services.inventory.assets_of)
        self._relations: dict[RelationQuery, DataLoader[str, list[Relation]]] = {}
        self.catalog = CatalogLoaders(services.catalog)
        self.people = PeopleLoaders(services)

    async def _load_items(self, ids: list[str]) -> list[ConfigurationItem | Service | None]:
        rows = await self._services.inventory.repo.get_rows(ids, visible=self.visible)
        return [item_from_row(rows[i]) if i in rows else None for i in ids]

    async def _load_items_bare(
        self, ids: list[str]
    ) -> list[ConfigurationItem | Service | None]:
        rows = await self._services.inventory.repo.get_rows(ids, with_org=False,
                                                            visible=self.visible)
        return [item_from_row(rows[i]) if i in rows else None for i in ids]

    def item_loader(
        self, selections: list[Any]
    ) -> DataLoader[str, ConfigurationItem | Service | None]:
        from cmdb.schema.types import ORG_FIELDS, selects_any

        return self.items if selects_any(selections, ORG_FIELDS) else self.items_bare

    def relations(self, rq: RelationQuery) -> DataLoader[str, list[Relation]]:
        if rq.visibility != self.visible:
            rq = rq.model_copy(update={"visibility": self.visible})
        loader = self._relations.get(rq)
        if loader is None:

            async def load(ids: list[str]) -> list[list[Relation]]:
                return await self._services.relations.neighbours(ids, rq)

            loader = self._relations[rq] = DataLoader(load)
        return loader


def _by_key(
    fetch: Any, default: Any
) -> Any:
    """A batch function answering a list of keys from a dict-returning fetch."""

    async def load(keys: list[str]) -> list[Any]:
        found = await fetch(keys)
        return [found.get(k, default() if callable(default) else default) for k in keys]

    return load


class PeopleLoaders:
    """Batch loads of users, roles and the user view: one round trip per level."""

    def __init__(self, services: Services) -> None:
        repo = services.identity.repo
        self._services = services
        self.users: DataLoader[str, User | None] = DataLoader(_by_key(repo.users_by_id, None))
        self.roles: DataLoader[str, Role | None] = DataLoader(_by_key(repo.roles_by_id, None))
        self.direct_reports: DataLoader[str, list[User]] = DataLoader(
            _by_key(repo.direct_reports, list))
        self.owner_group_ids: DataLoader[str, list[str]] = DataLoader(
            _by_key(repo.owner_group_ids, list))
        self.managed_cost_centre_ids: DataLoader[str, list[str]] = DataLoader(
            _by_key(repo.managed_cost_centre_ids, list))
        self.role_entitlements: DataLoader[str, list[Entitlement]] = DataLoader(
            _by_key(repo.role_entitlements, list))
        self.service_requests: DataLoader[str, list[ServiceRequest]] = DataLoader(
            _by_key(lambda ids: repo.service_requests(ids, services.settings.max_page_size),
                    list))
        self.current_desktops: DataLoader[str, list[dict[str, Any]]] = DataLoader(
            _by_key(repo.current_desktops, list))
        self.environment: DataLoader[str, EnvironmentHealth] = DataLoader(
            services.identity.environment_health)
        self.sessions_by_id: DataLoader[str, DesktopSession | None] = DataLoader(
            _by_key(services.vdi.repo.sessions_by_id, None))
        self._memberships: dict[tuple[str, bool], DataLoader[str, list[Membership]]] = {}
        self._entitlements: DataLoader[str, list[Entitlement]] | None = None
        self._sessions: dict[tuple[datetime, datetime, int],
                             DataLoader[str, list[DesktopSession]]] = {}

    def memberships(self, of: str, include_ended: bool) -> DataLoader[str, list[Membership]]:
        """Memberships of users (``of="user"``) or of roles (``of="role"``)."""
        key = (of, include_ended)
        loader = self._memberships.get(key)
        if loader is None:
            repo = self._services.identity.repo
            fetch = repo.memberships_of_users if of == "user" else repo.memberships_of_roles

            async def load(ids: list[str]) -> list[list[Membership]]:
                found = await fetch(ids, include_ended)
                return [found.get(i, []) for i in ids]

            loader = self._memberships[key] = DataLoader(load)
        return loader

    def entitlements(self, now: datetime) -> DataLoader[str, list[Entitlement]]:
        if self._entitlements is None:
            repo = self._services.identity.repo

            async def load(ids: list[str]) -> list[list[Entitlement]]:
                found = await repo.user_entitlements(ids, now)
                return [found.get(i, []) for i in ids]

            self._entitlements = DataLoader(load)
        return self._entitlements

    def sessions(
        self, start: datetime, end: datetime, limit: int
    ) -> DataLoader[str, list[DesktopSession]]:
        key = (start, end, limit)
        loader = self._sessions.get(key)
        if loader is None:
            vdi = self._services.vdi

            async def load(ids: list[str]) -> list[list[DesktopSession]]:
                found = await vdi.user_sessions(ids, start, end, limit)
                return [found.get(i, []) for i in ids]

            loader = self._sessions[key] = DataLoader(load)
        return loader


def _release(value: Any) -> None:
    """Empty the caches of every DataLoader in ``value``. A loader and its load function
    refer to each other (bound methods, closures over the Loaders), so a loader's cache, and
    every item and relation it holds, would otherwise wait for the cyclic garbage collector:
    on nested reads that was most of the API's growth in memory under load."""
    if isinstance(value, DataLoader):
        value.clear_all()
        if value.batch is not None and value.batch.dispatched:
            value.batch = None
    elif isinstance(value, dict):
        for v in value.values():
            _release(v)
    elif isinstance(value, Loaders | CatalogLoaders | PeopleLoaders):
        for v in vars(value).values():
            _release(v)


class Context(BaseContext):
    """What resolvers read, by one name each: ``services`` (the use cases, as named on
    ``Services``), ``principal`` (the caller; None: anonymous), ``visible`` (the caller's
    scope) and ``loaders`` (the request's batch loads). Resolvers take it as
    ``info: Info[Context, None]``."""

    services: Services
    request_id: str
    visible: Visibility

    def __init__(
        self, services: Services, request_id: str, principal: Principal | None = None
    ) -> None:
        super().__init__()
        self.services = services
        self.request_id = request_id
        self._principal: Principal | None = None
        self._loaders: Loaders | None = None
        self.principal = principal  # None: anonymous
        # Set when the read compiler answered the operation (one statement, no resolvers).
        self.compiled_read = False

    @property
    def principal(self) -> Principal | None:
        return self._principal

    @principal.setter
    def principal(self, value: Principal | None) -> None:
        # Websockets learn their principal after the context is made (connection_init).
        self._principal = value
        self.visible = visibility(value)
        self._loaders = None

    def release(self) -> None:
        """Drop what the request's loaders hold, once its operation is answered."""
        if self._loaders is not None:
            _release(self._loaders)
            self._loaders = None

    @property
    def loaders(self) -> Loaders:
        """The request's loaders, made on first use (many operations need none)."""
        if self._loaders is None:
            self._loaders = Loaders(self.services, self.visible)
        return self._loaders
