"""Merging duplicates by hand: the survivor keeps its values, fills its gaps from the
duplicates and takes over their relationships and history; the duplicates are retired."""

from __future__ import annotations

from typing import Any

from cmdb.core.clock import utcnow
from cmdb.core.models import DomainError, NotFound
from cmdb.db.driver import CountingTx, Database
from cmdb.discovery.reconcile import fill_from
from cmdb.discovery.repository import DiscoveryRepository
from cmdb.identity.principal import Permission, Principal, require_permission
from cmdb.items import writes
from cmdb.items.history import History
from cmdb.items.models import HistoryKind

Row = dict[str, Any]


def _check(props: dict[str, Row], survivor_id: str, dups: list[str]) -> None:
    """Every CI named exists, is live and is of the survivor's class."""
    cls = props[survivor_id].get("ciClass") if survivor_id in props else None
    for ident, name in [(survivor_id, "survivorId"), *((d, "duplicateIds") for d in dups)]:
        if ident not in props:
            raise NotFound("CI", ident, name)
        if props[ident].get("lifecycleStatus") == "RETIRED":
            raise DomainError.single(name, f"CI {ident!r} is retired", "CONFLICT")
        if props[ident].get("ciClass") != cls:
            raise DomainError.single(name, f"CI {ident!r} is a {props[ident].get('ciClass')}, "
                                     f"the survivor a {cls}", "CONFLICT")


class Merge:
    def __init__(self, db: Database, repo: DiscoveryRepository) -> None:
        self.db = db
        self.repo = repo

    async def run(
        self, principal: Principal | None, survivor_id: str, duplicate_ids: list[str],
        reason: str | None = None,
    ) -> int:
        who = require_permission(principal, Permission.DISCOVERY_WRITE, "merge CIs")
        dups = list(dict.fromkeys(duplicate_ids))
        if not dups:
            raise DomainError.single("duplicateIds", "name at least one duplicate")
        if survivor_id in dups:
            raise DomainError.single("duplicateIds", "a CI cannot be merged into itself")

        async def work(tx: CountingTx) -> int:
            now = utcnow()
            props = await self.repo.item_props(tx, [survivor_id, *dups])
            _check(props, survivor_id, dups)
            history = History(f"user:{who.user}")
            stored = dict(props[survivor_id])
            for d in dups:
                filled = fill_from(stored, props[d])
                detail = {"duplicate": d, "survivor": survivor_id, "reason": reason,
                          "by": who.user}
                history.add(survivor_id, HistoryKind.MERGED, filled, otherId=d, detail=detail)
                history.add(d, HistoryKind.MERGED_INTO,
                            {"lifecycleStatus": [props[d].get("lifecycleStatus"), "RETIRED"]},
                            otherId=survivor_id, detail=detail)
            before = props[survivor_id]
            changed = {k: v for k, v in stored.items() if before.get(k) != v}
            await self.repo.merge(tx, [{"survivor": survivor_id, "dup": d} for d in dups], now)
            await self.repo.update_items(tx, [{"id": survivor_id, "props": changed,
                                               "seen": False, "changed": True}], now)
            await writes.record_history(tx, history, now)
            await writes.roll_up(tx, [survivor_id], "merged", now)
            return len(dups)

        return await self.db.write_tx(work)
