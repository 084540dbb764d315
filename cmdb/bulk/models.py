"""Rows for bulk loading and what a bulk call reports back.

Rows reuse the single-item write models (``CIWrite``, ``ServiceWrite``, ``OrgWrite``) and add
the stable id the caller supplies, so a bulk row is validated exactly like a mutation input.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from cmdb.core.models import FrozenModel, RejectCode
from cmdb.items.models import CIWrite, RelationType, ServiceWrite
from cmdb.org.models import OrgWrite

# Ids are chosen by the caller (e.g. ``ci-000001`` or a UUID) and never change.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
DEFAULT_BATCH_SIZE = 5000

# Called after each batch with (rows done, total rows or None when not known in advance).
Progress = Callable[[int, int | None], None]


class CIRow(CIWrite):
    """A configuration item to create, or to update with the fields given."""

    id: str = Field(pattern=ID_PATTERN)


class ServiceRow(ServiceWrite):
    """A business or technical service to create, or to update with the fields given."""

    id: str = Field(pattern=ID_PATTERN)


ItemRow = CIRow | ServiceRow


class OrgRow(OrgWrite):
    """An owner group, cost centre or location; ``parent_id`` may name a row of the same call."""

    id: str = Field(pattern=ID_PATTERN)


class RelationRow(BaseModel):
    """One relationship, consumer (source) to provider (target), with its properties."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source_id: str = Field(min_length=1, max_length=128)
    target_id: str = Field(min_length=1, max_length=128)
    type: RelationType
    properties: dict[str, Any] = {}


class Rejection(FrozenModel):
    """A row that was not written, by its position in the input."""

    index: int
    key: str | None  # the row's id, or "source -TYPE-> target" for a relationship
    code: RejectCode
    reason: str
    field: str | None = None


@dataclass
class BatchOutcome:
    """What one batch did; built inside its transaction, so a retried one starts afresh."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass
class BulkResult(BatchOutcome):
    """Counts of one bulk call: its batches' outcomes added up, and the call's own counts.
    ``unchanged`` rows matched what was stored and were not touched (their ``updatedAt``
    stays); ``rejected`` lists each refused row with a reason."""

    total: int = 0
    batches: int = 0
    failed_batches: int = 0

    @property
    def written(self) -> int:
        return self.created + self.updated

    def add(self, other: BatchOutcome) -> None:
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected.extend(other.rejected)
