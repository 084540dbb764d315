"""Discovery sources: registered (or re-registered) with their trust, and listed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.mapping import dump_json
from cmdb.core.validation import validate
from cmdb.discovery.models import Source, SourceWrite
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.identity.principal import Permission, Principal, require_permission


class Sources:
    def __init__(self, repo: DiscoveryRepository) -> None:
        self.repo = repo

    async def register(self, principal: Principal | None, data: Mapping[str, Any]) -> Source:
        require_permission(principal, Permission.DISCOVERY_ADMIN, "register discovery sources")
        spec = validate(SourceWrite, dict(data))
        return await self.repo.upsert_source({
            "name": spec.name, "kind": spec.kind.value, "trust": spec.trust,
            "attributeTrust": dump_json(spec.attribute_trust),
            "description": spec.description, "now": utcnow(),
        })

    async def all(self) -> list[Source]:
        return list((await self.repo.sources()).values())
