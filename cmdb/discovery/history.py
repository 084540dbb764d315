"""Reading the past: a CI's history, and the CI as it was at a moment (today's values with
every later change undone)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.mapping import as_datetime, load_json, native
from cmdb.core.models import NotFound
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery.models import AsOfRelation, CIAsOf, attribute_property, relation_key
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.items.history import MAX_HISTORY_PAGE, history_entry
from cmdb.items.models import HistoryEntry
from cmdb.items.repository import HistoryRepository

Row = dict[str, Any]
# Properties an as-of view shows (provenance keys and lifecycle).
_AS_OF_KEYS = ("name", "description", "serialNumber", "hostName", "domain", "macAddress",
               "cloudInstanceId", "lifecycleStatus", "staleSince", "retiredReason")


def _undo(values: dict[str, Any], changes: str | None) -> None:
    """Put back the old value of each change of one history record."""
    for key, (old, _new) in load_json(changes).items():
        values[key] = old


def _relation_as_of(r: Row, rel_changes: list[Row]) -> AsOfRelation:
    """A relationship as it was: its outgoing properties with later updates undone."""
    p = {relation_key(k): native(v) for k, v in r["props"].items() if k.startswith("attr_")}
    if r["direction"] == "OUTGOING":
        for rec in rel_changes:
            if rec.get("relationType") == r["type"] and rec.get("otherId") == r["otherId"] \
                    and rec["kind"] == "RELATION_UPDATED":
                _undo(p, rec.get("changes"))
    return AsOfRelation(type=r["type"], direction=r["direction"], other_id=r["otherId"],
                        properties=p)


class HistoryReads:
    def __init__(self, db: Database, repo: DiscoveryRepository) -> None:
        self.db = db
        self.repo = repo

    async def history(
        self, item_id: str, since: datetime | None = None, until: datetime | None = None,
        first: int = 100,
    ) -> list[HistoryEntry]:
        since = since or datetime(1970, 1, 1, tzinfo=utcnow().tzinfo)
        until = until or utcnow() + timedelta(days=1)
        rows = await HistoryRepository(self.db).read(
            item_id, since, until, max(1, min(first, MAX_HISTORY_PAGE)))
        return [history_entry(r) for r in rows]

    async def as_of(self, item_id: str, at: datetime) -> CIAsOf:
        """The CI as it was at ``at``: today's values with every later change undone."""
        return await self.db.read_tx(lambda tx: self._as_of(tx, item_id, at))

    async def _as_of(self, tx: CountingTx, item_id: str, at: datetime) -> CIAsOf:
        props = (await self.repo.item_props(tx, [item_id])).get(item_id)
        if props is None:
            raise NotFound("CI", item_id)
        created = as_datetime(native(props.get("createdAt")))
        if created is not None and created > at:
            return CIAsOf(id=item_id, at=at, existed=False)
        state: dict[str, Any] = {k: native(props.get(attribute_property(k)))
                                 for k in _AS_OF_KEYS}
        state.update({"attributes." + k[5:]: native(v) for k, v in props.items()
                      if k.startswith("attr_")})
        rel_changes: list[Row] = []
        for rec in await HistoryRepository.after(tx, item_id, at):
            if rec.get("mergedFrom"):
                continue  # a duplicate's own past, not this CI's
            if rec["kind"].startswith("RELATION_"):
                rel_changes.append(rec)
            else:
                _undo(state, rec.get("changes"))
        rels = [_relation_as_of(r, rel_changes)
                for r in await self.repo.relations_as_of(tx, item_id, at)]
        attrs = {k: v for k, v in state.items() if v is not None}
        return CIAsOf(id=item_id, at=at, existed=True, properties=attrs,
                      relations=sorted(rels, key=lambda x: (x.type, x.other_id)))
