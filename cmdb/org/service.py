from __future__ import annotations

import uuid
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, FieldError
from cmdb.core.pagination import check_page_size
from cmdb.core.validation import validate
from cmdb.db.driver import CountingTx, Database
from cmdb.org.models import OrgKind, OrgUnit, OrgWrite
from cmdb.org.repository import OrgRepository
from cmdb.settings import Settings

_NAMES = {OrgKind.OWNER_GROUP: "owner group", OrgKind.COST_CENTRE: "cost centre",
          OrgKind.LOCATION: "location"}


class OrgService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.repo = OrgRepository(db)

    async def get_many(self, ids: list[str]) -> list[OrgUnit | None]:
        found = await self.repo.get_many(ids)
        return [found.get(i) for i in ids]

    async def list(self, kind: OrgKind, name: str | None, first: int | None) -> list[OrgUnit]:
        limit = first if first is not None else self.settings.default_page_size
        return await self.repo.list(kind, name, check_page_size(limit, self.settings.max_page_size))

    async def create(self, kind: OrgKind, data: dict[str, Any]) -> OrgUnit:
        spec = validate(OrgWrite, data)
        what = _NAMES[kind]
        errors: list[FieldError] = []
        if kind is OrgKind.COST_CENTRE and spec.code is None:
            errors.append(FieldError(field="input.code", message="a cost centre needs a code"))
        if kind is OrgKind.OWNER_GROUP and spec.parent_id is not None:
            errors.append(FieldError(field="input.parentId",
                                     message="owner groups have no parent"))
        if errors:
            raise DomainError(errors)
        props = {k: v for k, v in {
            "name": spec.name, "nameLower": spec.name.lower(), "code": spec.code,
            "email": spec.email, "description": spec.description,
        }.items() if v is not None}
        unit_id = str(uuid.uuid4())

        async def work(tx: CountingTx) -> OrgUnit:
            found = await self.repo.conflicts(tx, kind, spec.name, spec.code, spec.parent_id)
            problems = []
            if found["nameHeldBy"]:
                problems.append(FieldError(field="input.name", code="CONFLICT",
                                           message=f"a {what} named {spec.name!r} exists"))
            if found["codeHeldBy"]:
                problems.append(FieldError(field="input.code", code="CONFLICT",
                                           message=f"cost centre code {spec.code!r} exists"))
            if not found["parentOk"]:
                problems.append(FieldError(field="input.parentId", code="NOT_FOUND",
                                           message=f"parent {what} {spec.parent_id!r} "
                                           "not found"))
            if problems:
                raise DomainError(problems)
            return await self.repo.create(tx, kind, unit_id, props, spec.parent_id, utcnow())

        return await self.db.write_tx(work)
