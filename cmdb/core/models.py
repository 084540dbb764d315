"""Vocabulary shared by every domain: states, criticality, item references, errors."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class FrozenModel(BaseModel):
    """A value: read back or computed, never changed in place."""

    model_config = ConfigDict(frozen=True)


class LifecycleStatus(StrEnum):
    PLANNED = "PLANNED"
    ORDERED = "ORDERED"
    IN_SERVICE = "IN_SERVICE"
    MAINTENANCE = "MAINTENANCE"
    RETIRED = "RETIRED"


class OperationalState(StrEnum):
    UP = "UP"
    DEGRADED = "DEGRADED"
    DOWN = "DOWN"
    UNKNOWN = "UNKNOWN"


class Criticality(StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class SortDirection(StrEnum):
    ASC = "ASC"
    DESC = "DESC"


class ItemKind(StrEnum):
    CI = "CI"
    SERVICE = "SERVICE"


class OrgKind(StrEnum):
    OWNER_GROUP = "OwnerGroup"
    COST_CENTRE = "CostCentre"
    LOCATION = "Location"


class OrgUnit(FrozenModel):
    """An owner group, cost centre or location."""

    id: str
    kind: OrgKind
    name: str
    code: str | None = None
    email: str | None = None
    parent_id: str | None = None
    description: str | None = None


class ItemBase(FrozenModel):
    """What configuration items and services have in common."""

    id: str
    name: str
    description: str | None = None
    lifecycle_status: LifecycleStatus
    operational_state: OperationalState
    criticality: Criticality
    owner_group: OrgUnit | None = None
    cost_centre: OrgUnit | None = None
    location: OrgUnit | None = None
    attributes: dict[str, Any] = {}
    health_state: OperationalState = OperationalState.UNKNOWN
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None = None
    retired_reason: str | None = None


class FieldError(BaseModel):
    """One problem with a request, named so that a front end can show it next to its field."""

    field: str | None
    message: str
    code: str = "INVALID"


class DomainError(Exception):
    """A request that cannot be carried out; nothing has been written."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(e.message for e in errors))
        self.errors = errors

    @property
    def extensions(self) -> dict[str, object]:
        """Read by GraphQL when a query field fails: the code and fields, never internals."""
        return {
            "code": self.errors[0].code if self.errors else "INVALID",
            "fields": [e.model_dump() for e in self.errors],
        }

    @classmethod
    def about_request(cls, code: str, message: str) -> list[FieldError]:
        """The one error of a request refused as a whole (no field to point at)."""
        return [FieldError(field=None, code=code, message=message)]

    @classmethod
    def single(cls, field: str | None, message: str, code: str = "INVALID") -> DomainError:
        return cls([FieldError(field=field, message=message, code=code)])


class RejectCode(StrEnum):
    """Why a record of a batch (bulk load, discovery) was refused."""

    INVALID = "INVALID"  # the record itself is wrong (validation, rules, duplicates)
    NOT_FOUND = "NOT_FOUND"  # it refers to an item or org unit that does not exist
    CONFLICT = "CONFLICT"  # it clashes with what is stored (identifiers, class, retired)
    BATCH_FAILED = "BATCH_FAILED"  # Neo4j refused its batch; nothing of the batch was written


class Rejected(Exception):
    """One record of a batch refused; the batch goes on without it."""

    def __init__(self, code: RejectCode, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.field = code, reason, field


def count_outcomes(outcomes: Iterable[StrEnum], every: Iterable[StrEnum]) -> dict[str, int]:
    """How many of ``outcomes`` are each of ``every``, by value, zeros included: the counts a
    batch endpoint reports."""
    seen = Counter(outcomes)
    return {o.value: seen[o] for o in every}


class NotFound(DomainError):
    def __init__(self, what: str, ident: str, field: str | None = "id") -> None:
        super().__init__([FieldError(field=field, message=f"{what} {ident!r} not found",
                                     code="NOT_FOUND")])


CRITICALITY_RANK = {
    Criticality.CRITICAL: 1,
    Criticality.HIGH: 2,
    Criticality.MEDIUM: 3,
    Criticality.LOW: 4,
}
