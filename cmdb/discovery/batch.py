"""What one batch of an import decides and writes: its outcome, its item and relationship
writes, and the plan of a batch reconciled ahead of its transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cmdb.discovery.models import IngestResult
from cmdb.items.history import History
from cmdb.items.models import RelationType

Row = dict[str, Any]
# A relationship with both ends resolved to CI ids: (index, type, properties, source, target).
Accepted = tuple[int, RelationType, dict[str, Any], str, str]


class Raced(Exception):
    """A concurrent batch created a CI this batch was about to create: read again."""


@dataclass
class Outcome(IngestResult):
    """One batch's counts, rejections and CIs, added to the import's once it commits."""

    # Relationships created from CIs this batch created: (source, type, target).
    fresh_relations: set[tuple[str, str, str]] = field(default_factory=set)


@dataclass
class ItemWrites:
    """What a batch writes for its items: CIs to create (by labels and the identifier
    they are MERGEd on), CIs to update, duplicates to merge (survivor, dup)."""

    creates: dict[tuple[str, str], list[Row]] = field(default_factory=dict)
    updates: list[Row] = field(default_factory=list)
    pairs: list[Row] = field(default_factory=list)


@dataclass
class RelationWrites:
    """What a batch writes for its relationships: those to create (by type), the
    MEMBER_OF ones whose HAS_MEMBER mirrors follow, the ends whose consumers roll up."""

    creates: dict[RelationType, list[Row]]
    mirrors: list[Row]
    changed_ends: set[str]


@dataclass
class Plan:
    """A batch reconciled before its transaction, while the batch before it is written
    (see ``Ingest.plan``): its outcome, and what its transaction writes."""

    now: datetime
    out: Outcome
    history: History
    items: ItemWrites | None = None
    relations: RelationWrites | None = None
    accepted: list[Accepted] | None = None  # relationships to look for first, then write
