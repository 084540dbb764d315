"""Root fields for discovery: sources, small batches, merges and the staleness sweep.
Permissions are checked by the service with the request's principal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import strawberry

from cmdb.core.models import DomainError
from cmdb.discovery.service import DiscoveryService
from cmdb.schema.discovery import (
    DiscoveryBatchInput,
    DiscoverySource,
    RegisterDiscoverySourceInput,
    counts,
    rejections,
)
from cmdb.schema.payloads import (
    DiscoveryBatchPayload,
    DiscoverySourcePayload,
    MergePayload,
    SweepPayload,
    user_errors,
)
from cmdb.schema.types import ConfigurationItem

MAX_GRAPHQL_RECORDS = 500
MAX_SWEEP_DAYS = 36500  # a hundred years


def _discovery(info: strawberry.Info) -> DiscoveryService:
    service: DiscoveryService = info.context.services.discovery
    return service


@strawberry.type
class DiscoveryQuery:
    @strawberry.field(description="Registered discovery sources, by name.")
    async def discovery_sources(self, info: strawberry.Info) -> list[DiscoverySource]:
        return [DiscoverySource.from_model(s) for s in await _discovery(info).sources()]


@strawberry.type
class DiscoveryMutation:
    @strawberry.mutation(description="Register a discovery source or change its trust "
                         "(needs discovery:admin).")
    async def register_discovery_source(
        self, info: strawberry.Info, input: RegisterDiscoverySourceInput
    ) -> DiscoverySourcePayload:
        data: dict[str, Any] = {"name": input.name, "kind": input.kind, "trust": input.trust,
                                "description": input.description}
        if input.attribute_trust is not None:
            data["attribute_trust"] = input.attribute_trust
        try:
            src = await _discovery(info).register_source(info.context.principal, data)
        except DomainError as e:
            return DiscoverySourcePayload(errors=user_errors(e))
        return DiscoverySourcePayload(source=DiscoverySource.from_model(src))

    @strawberry.mutation(description="Reconcile a small batch (at most 500 records) of "
                         "discovered items and relations, as POST /api/discovery/batches "
                         "does (needs discovery:write). One transaction; rejected records "
                         "come back with their index and reason.")
    async def ingest_discovery_batch(
        self, info: strawberry.Info, input: DiscoveryBatchInput
    ) -> DiscoveryBatchPayload:
        if len(input.items) + len(input.relations) > MAX_GRAPHQL_RECORDS:
            return DiscoveryBatchPayload(errors=user_errors(DomainError.single(
                "input.items", f"at most {MAX_GRAPHQL_RECORDS} records; use POST "
                "/api/discovery/batches for more")))
        try:
            result = await _discovery(info).ingest(
                info.context.principal, input.source, list(input.items),
                list(input.relations), merge_duplicates=input.merge_duplicates,
                batch_size=MAX_GRAPHQL_RECORDS)
        except DomainError as e:
            return DiscoveryBatchPayload(errors=user_errors(e))
        return DiscoveryBatchPayload(**counts(result), rejected=rejections(result),
                                     ids=cast(Any, result.ids))

    @strawberry.mutation(description="Merge duplicates into a survivor (needs "
                         "discovery:write): relationships and history carried over, gaps "
                         "filled, duplicates retired, the merge recorded on both.")
    async def merge_configuration_items(
        self, info: strawberry.Info, survivor_id: strawberry.ID,
        duplicate_ids: list[strawberry.ID], reason: str | None = None,
    ) -> MergePayload:
        svc = _discovery(info)
        try:
            n = await svc.merge(info.context.principal, str(survivor_id),
                                [str(d) for d in duplicate_ids], reason)
        except DomainError as e:
            return MergePayload(errors=user_errors(e))
        ci = await info.context.services.inventory.get(str(survivor_id))
        return MergePayload(configuration_item=ConfigurationItem.from_model(ci) if ci else None,
                            merged=n)

    @strawberry.mutation(description="Mark CIs and discovered relationships no source has "
                         "seen for the stale period stale, and retire stale ones past the "
                         "retire period (needs discovery:admin). Days default to the "
                         "settings.")
    async def sweep_stale_configuration_items(
        self, info: strawberry.Info, stale_after_days: float | None = None,
        retire_after_days: float | None = None,
    ) -> SweepPayload:
        for name, days in (("staleAfterDays", stale_after_days),
                           ("retireAfterDays", retire_after_days)):
            # A day count outside this range overflowed the date arithmetic (a 500), and a
            # negative one would have marked everything stale.
            if days is not None and not 0 < days <= MAX_SWEEP_DAYS:
                return SweepPayload(errors=user_errors(DomainError.single(
                    name, f"{name} must be more than 0 and at most {MAX_SWEEP_DAYS}")))
        try:
            r = await _discovery(info).sweep(
                info.context.principal,
                timedelta(days=stale_after_days) if stale_after_days else None,
                timedelta(days=retire_after_days) if retire_after_days else None)
        except DomainError as e:
            return SweepPayload(errors=user_errors(e))
        return SweepPayload(stale=r.stale, retired=r.retired, relations_stale=r.relations_stale,
                            relations_retired=r.relations_retired)
