"""Relate and unrelate items, and read relations for many items at once."""

from __future__ import annotations

from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError, NotFound
from cmdb.core.values import attribute_properties
from cmdb.db.driver import CountingTx, Database
from cmdb.items import writes
from cmdb.items.models import (
    SERVICE,
    Direction,
    Relation,
    RelationQuery,
    RelationType,
    rule_violation,
)
from cmdb.items.repository import RelationRepository
from cmdb.rollup.models import rule_property_errors
from cmdb.settings import Settings


class RelationService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = RelationRepository(db)

    def relation_query(
        self,
        direction: Direction,
        types: list[RelationType] | None,
        depth: int,
        first: int | None,
        include_retired: bool,
        with_org: bool = True,
    ) -> RelationQuery:
        errors = []
        if not 1 <= depth <= self.settings.max_relationship_depth:
            errors.append(FieldError(
                field="depth",
                message=f"depth must be between 1 and {self.settings.max_relationship_depth}",
            ))
        size = first if first is not None else self.settings.default_page_size
        if not 0 <= size <= self.settings.max_page_size:
            errors.append(FieldError(
                field="first", message=f"first must be between 0 and {self.settings.max_page_size}"
            ))
        if errors:
            raise DomainError(errors)
        return RelationQuery(
            direction=direction,
            types=tuple(sorted(set(types or []), key=lambda t: t.value)),
            depth=depth,
            first=size,
            include_retired=include_retired,
            with_org=with_org,
        )

    async def neighbours(self, ids: list[str], rq: RelationQuery) -> list[list[Relation]]:
        found = await self.repo.neighbours(ids, rq)
        return [found.get(i, []) for i in ids]

    async def relate(
        self, source_id: str, target_id: str, rel_type: RelationType,
        properties: dict[str, Any] | None,
    ) -> Relation:
        if source_id == target_id:
            raise DomainError.single("input.targetId", "an item cannot be related to itself")
        if properties is not None and not isinstance(properties, dict):
            # JSON input may be any value; anything but an object was a 500.
            raise DomainError.single("input.properties", "properties must be a JSON object")
        rule_errors = rule_property_errors(properties or {})
        if rule_errors:
            raise DomainError([FieldError(field=f"input.properties.{k}", message=m)
                               for k, m in rule_errors.items()])
        props = attribute_properties(properties or {}, "input.properties")
        now = utcnow()

        async def work(tx: CountingTx) -> Relation:
            source, target = await self.repo.ends(tx, source_id, target_id, now)
            problems: list[FieldError] = []
            if source is None:
                raise NotFound("item", source_id, "input.sourceId")
            if target is None:
                raise NotFound("item", target_id, "input.targetId")
            for end, field in ((source, "input.sourceId"), (target, "input.targetId")):
                if end["lifecycleStatus"] == "RETIRED":
                    problems.append(FieldError(field=field, code="CONFLICT",
                                               message=f"item {end['id']!r} is retired"))
            why = rule_violation(rel_type, _cls(source), _cls(target))
            if why:
                problems.append(FieldError(field="input.type", message=why))
            if problems:
                raise DomainError(problems)
            return await writes.relate(tx, rel_type, source_id, target_id, props, now)

        return await self.db.write_tx(work)

    async def unrelate(
        self, source_id: str, target_id: str, rel_type: RelationType, reason: str | None
    ) -> Relation:
        async def work(tx: CountingTx) -> Relation:
            rel = await writes.unrelate(tx, rel_type, source_id, target_id, reason, utcnow())
            if rel is None:
                raise DomainError.single(
                    "input", f"no live {rel_type.value} relationship from {source_id!r} "
                    f"to {target_id!r}", code="NOT_FOUND",
                )
            return rel

        return await self.db.write_tx(work)


def _cls(end: dict[str, Any]) -> str:
    return SERVICE if end["kind"] == "SERVICE" else str(end["ciClass"])
