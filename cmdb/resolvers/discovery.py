"""Root fields for discovery: sources, small batches, merges and the staleness sweep.
Permissions are checked by the service with the request's principal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import strawberry
from strawberry import Info

from cmdb.core.models import DomainError
from cmdb.resolvers.payloads import current_ci, errors_in
from cmdb.schema.context import Context
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
)

MAX_GRAPHQL_RECORDS = 500
MAX_SWEEP_DAYS = 36500  # a hundred years


@strawberry.type
class DiscoveryQuery:
    @strawberry.field(description="Registered discovery sources, by name.")
    async def discovery_sources(self, info: Info[Context, None]) -> list[DiscoverySource]:
        found = await info.context.services.discovery.sources()
        return [DiscoverySource.from_model(s) for s in found]


@strawberry.type
class DiscoveryMutation:
    @strawberry.mutation(description="Register a discovery source or change its trust "
                         "(needs discovery:admin).")
    @errors_in(DiscoverySourcePayload)
    async def register_discovery_source(
        self, info: Info[Context, None], input: RegisterDiscoverySourceInput
    ) -> DiscoverySourcePayload:
        data: dict[str, Any] = {"name": input.name, "kind": input.kind, "trust": input.trust,
                                "description": input.description}
        if input.attribute_trust is not None:
            data["attribute_trust"] = input.attribute_trust
        src = await info.context.services.discovery.register_source(info.context.principal,
                                                                    data)
        return DiscoverySourcePayload(source=DiscoverySource.from_model(src))

    @strawberry.mutation(description="Reconcile a small batch (at most 500 records) of "
                         "discovered items and relations, as POST /api/discovery/batches "
                         "does (needs discovery:write). One transaction; rejected records "
                         "come back with their index and reason.")
    @errors_in(DiscoveryBatchPayload)
    async def ingest_discovery_batch(
        self, info: Info[Context, None], input: DiscoveryBatchInput
    ) -> DiscoveryBatchPayload:
        if len(input.items) + len(input.relations) > MAX_GRAPHQL_RECORDS:
            raise DomainError.single("input.items", f"at most {MAX_GRAPHQL_RECORDS} records; "
                                     "use POST /api/discovery/batches for more")
        result = await info.context.services.discovery.ingest(
            info.context.principal, input.source, list(input.items),
            list(input.relations), merge_duplicates=input.merge_duplicates,
            batch_size=MAX_GRAPHQL_RECORDS)
        return DiscoveryBatchPayload(**counts(result), rejected=rejections(result),
                                     ids=cast(Any, result.ids))

    @strawberry.mutation(description="Merge duplicates into a survivor (needs "
                         "discovery:write): relationships and history carried over, gaps "
                         "filled, duplicates retired, the merge recorded on both.")
    @errors_in(MergePayload)
    async def merge_configuration_items(
        self, info: Info[Context, None], survivor_id: strawberry.ID,
        duplicate_ids: list[strawberry.ID], reason: str | None = None,
    ) -> MergePayload:
        n = await info.context.services.discovery.merge(
            info.context.principal, str(survivor_id), [str(d) for d in duplicate_ids], reason)
        return MergePayload(configuration_item=await current_ci(info, survivor_id), merged=n)

    @strawberry.mutation(description="Mark CIs and discovered relationships no source has "
                         "seen for the stale period stale, and retire stale ones past the "
                         "retire period (needs discovery:admin). Days default to the "
                         "settings.")
    @errors_in(SweepPayload)
    async def sweep_stale_configuration_items(
        self, info: Info[Context, None], stale_after_days: float | None = None,
        retire_after_days: float | None = None,
    ) -> SweepPayload:
        for name, days in (("staleAfterDays", stale_after_days),
                           ("retireAfterDays", retire_after_days)):
            # A day count outside this range overflowed the date arithmetic (a 500), and a
            # negative one would have marked everything stale.
            if days is not None and not 0 < days <= MAX_SWEEP_DAYS:
                raise DomainError.single(
                    name, f"{name} must be more than 0 and at most {MAX_SWEEP_DAYS}")
        r = await info.context.services.discovery.sweep(
            info.context.principal,
            timedelta(days=stale_after_days) if stale_after_days else None,
            timedelta(days=retire_after_days) if retire_after_days else None)
        return SweepPayload(stale=r.stale, retired=r.retired, relations_stale=r.relations_stale,
                            relations_retired=r.relations_retired)
